"""Declaring routes once: the nameko HTTP entrypoint, the request pipeline and the OpenAPI entry.

A handler is declared as

    @route("POST", "/api/v1/orgs", body=CreateOrgInput, responses={201: OrgOut}, summary="...")
    def create_org(self, call):
        return 201, self.orgs.create_org(call.user, call.body)

and receives a `Call` (the signed-in user, the validated body, path parameters, query). The
pipeline around it enforces the body limit, authenticates, parses and validates JSON, maps typed
errors to the status table, and logs one line per request with its request id.
"""
import functools
import json
import logging
import re
import time
import uuid
from dataclasses import dataclass, field

import eventlet
from nameko.exceptions import RpcTimeout, UnknownService
from nameko.web.handlers import http

from gateway_http.errors import app_error_response, error_response, json_response
from shared.config import settings
from shared.errors import AppError, BadRequest, PayloadTooLarge, Unauthorized
from shared.schemas import load_or_raise, parse_json

log = logging.getLogger("gateway_http")

API_BODY_LIMIT = 1024 * 1024  # 1 MiB
WEBHOOK_BODY_LIMIT = 256 * 1024  # 256 KiB
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")

ROUTES = []  # every RouteSpec, in declaration order: the OpenAPI document is built from it


@dataclass
class RouteSpec:
    method: str
    path: str  # werkzeug syntax, /orgs/<org_id>
    summary: str
    handler_name: str
    tag: str
    body: type | None = None
    responses: dict = field(default_factory=dict)  # status -> schema class, or None for no body
    auth: bool = True
    query: type | None = None
    body_limit: int = API_BODY_LIMIT
    raw_body: bool = False  # webhooks: the handler gets the bytes untouched
    errors: tuple = ()  # extra documented error statuses
    documented_body: type | None = None  # a raw body's schema, for the OpenAPI document only
    security: str | None = None  # the scheme of a credential other than a user's token (OpenAPI only)
    signature_headers: tuple = ()  # headers a webhook must carry (OpenAPI only; the adapter checks them)
    secret_path: bool = False  # the path holds a bearer secret (an invitation's token): never logged

    @property
    def openapi_path(self):
        return re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", self.path)

    @property
    def path_params(self):
        return re.findall(r"<(?:[a-z]+:)?([a-z_]+)>", self.path)


@dataclass
class Call:
    request: object
    request_id: str
    params: dict
    token: str | None = None
    user: dict | None = None
    body: object = None
    query: dict = field(default_factory=dict)


def route(method, path, *, summary, tag, responses, body=None, auth=True, query=None,
          body_limit=API_BODY_LIMIT, raw_body=False, errors=(), documented_body=None, security=None,
          signature_headers=(), secret_path=False):
    """Declare a route; `path` may be a list of paths served by one handler (e.g. both {acct} forms).
    `secret_path`: the log line shows the route's template ({token}) instead of the path."""
    paths = [path] if isinstance(path, str) else list(path)

    def decorate(fn):
        specs = []
        for index, one_path in enumerate(paths):
            name = fn.__name__ if len(paths) == 1 else f"{fn.__name__}_{index + 1}"
            specs.append(RouteSpec(method, one_path, summary, name, tag, body, responses, auth, query,
                                   body_limit, raw_body, errors, documented_body, security, signature_headers,
                                   secret_path))
        ROUTES.extend(specs)

        @functools.wraps(fn)
        def entrypoint(self, request, **params):
            return handle(self, specs[0], fn, request, params)

        for one_path in paths:
            entrypoint = http(method, one_path)(entrypoint)
        return entrypoint

    return decorate


def request_id_of(request):
    given = request.headers.get("X-Request-Id", "")
    return given if REQUEST_ID_PATTERN.match(given) else uuid.uuid4().hex


def handle(service, spec, fn, request, params):
    started = time.perf_counter()
    call = Call(request=request, request_id=request_id_of(request), params=params)
    service.request_context.set_request_id(call.request_id)
    try:
        with eventlet.Timeout(settings().rpc_timeout_seconds, RpcTimeout()):
            response = _run(service, spec, fn, call)
    except AppError as error:
        response = app_error_response(error)
    except (RpcTimeout, UnknownService):
        log.warning("request %s: a service did not answer in time", call.request_id)
        response = error_response(503, "SERVICE_UNAVAILABLE", "A service is not answering; try again shortly.")
    except Exception:
        log.exception("request %s failed", call.request_id)
        response = error_response(500, "INTERNAL_ERROR", "Something went wrong on our side.",
                                  {"request_id": call.request_id})
    response.headers["X-Request-Id"] = call.request_id
    # A log is read by more people, and kept longer, than a bearer secret may be.
    path = spec.openapi_path if spec.secret_path else request.path
    log.info("%s %s %s %d %.1fms", call.request_id, request.method, path, response.status_code,
             (time.perf_counter() - started) * 1000)
    return response


def _run(service, spec, fn, call):
    raw = _read_body(call.request, spec.body_limit) if (spec.body or spec.raw_body) else b""
    if spec.auth:
        call.token = bearer_token(call.request)
        call.user = signed_in_user(service, call.token)
    if spec.query is not None:
        call.query = _validate(spec.query, call.request.args.to_dict())
    if spec.raw_body:
        call.body = raw
    elif spec.body is not None:
        call.body = _validate(spec.body, parse_json(raw))
    status, data = fn(service, call)
    schema = spec.responses.get(status)
    if data is None or schema is None:
        return json_response(status)
    return json_response(status, _schema(schema).dump(data))


def signed_in_user(service, token):
    """The user of a bearer token: from this process's session cache, else from identity (which
    raises Unauthorized for a token that is unknown, expired or revoked)."""
    return service.sessions.user_for(token, service.identity.authenticate_session)


def bearer_token(request):
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("Send 'Authorization: Bearer <token>' (from signup or login).", code="MISSING_TOKEN")
    return token.strip()


def _read_body(request, limit):
    if request.content_length is not None:
        if request.content_length > limit:
            raise PayloadTooLarge(details={"limit_bytes": limit})
        return request.get_data(cache=True)
    if "chunked" in request.headers.get("Transfer-Encoding", "").lower():
        # werkzeug reads nothing without a Content-Length; eventlet's input de-chunks for us.
        raw = request.environ["wsgi.input"].read(limit + 1)
        if len(raw) > limit:
            raise PayloadTooLarge(details={"limit_bytes": limit})
        return raw
    return b""


def _validate(schema_cls, data):
    return load_or_raise(_schema(schema_cls), data)


@functools.cache
def _schema(schema_cls):
    """One instance per schema class, reused: making one copies every declared field, which cost a
    tenth of the gateway's CPU per request; load and dump keep nothing on the instance."""
    return schema_cls()
