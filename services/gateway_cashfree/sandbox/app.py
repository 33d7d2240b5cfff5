"""The WSGI application: routes requests to the PG API, the payer's pages or the control API.

Everything Cashfree does around an API call lives here, in this order: authenticate
(x-client-id / x-client-secret), check x-api-version, (injected faults), claim the
x-idempotency-key, validate the body against the operation's schema in Cashfree's OpenAPI
document, run the handler, store the idempotent response, answer with Cashfree's headers, and log
the request for GET /_sandbox/requests.
"""
import hmac
import logging
import threading
import time
from typing import Optional

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from services.sandbox_kit import faults

from . import api, control, idempotency, pages
from .config import API_VERSION
from .encoding import JSONBodyError, dumps, loads
from .errors import CashfreeError, api_error, bad_url, invalid, unauthenticated
from .ids import new_uuid
from .openapi import Contract
from .store import Store
from .webhooks import WebhookSender

log = logging.getLogger(__name__)


class SandboxApp:
    def __init__(self, store: Store, public_url: str, client_id: str, client_secret: str,
                 contract: Optional[Contract], sender: WebhookSender):
        self.store = store
        self.public_url = public_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.contract = contract
        self.stopping = threading.Event()  # cuts injected delays short when the server stops
        self.control = control.Control(store, public_url, sender)
        rules = [Rule(path, methods=[method], endpoint=("api", (template, handler)))
                 for method, path, template, handler in api.ROUTES]
        rules += [Rule(path, methods=[method], endpoint=("control", getattr(self.control, name)))
                  for method, path, name in control.ROUTES]
        rules += [Rule(path, methods=[method], endpoint=("page", getattr(self, name)))
                  for method, path, name in pages.ROUTES]
        self.url_map = Map(rules, strict_slashes=False, merge_slashes=False)

    def __call__(self, environ, start_response):
        request = Request(environ)
        return self.dispatch(request)(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        try:
            (area, target), args = self.url_map.bind_to_environ(request.environ).match()
        except (NotFound, MethodNotAllowed):
            if request.path.startswith("/pg/") or request.path == "/pg":
                return self._api_call(request, None, {})
            return pages.not_found()
        except HTTPException as exc:  # e.g. a redirect for a trailing slash
            return exc.get_response()
        if area == "api":
            return self._api_call(request, target, args)
        if area == "control":
            return self._control_call(request, target, args)
        return target(request, **args)

    # the PG API

    def _api_call(self, request: Request, route, args: dict) -> Response:
        request_id = request.headers.get("x-request-id") or new_uuid()
        key = request.headers.get("x-idempotency-key") if request.method == "POST" else None
        body, replayed, delay, problems, record = None, False, 0.0, [], None
        try:
            self._authenticate(request)
            self._check_version(request)
            if route is None:
                raise bad_url()
            template, handler = route
            if request.method == "POST":
                body = _json_body(request, optional=template in api.BODYLESS)
            delay = faults.inject(self.store, request.method, request.path, self.stopping, api_error)
            record = idempotency.claim(self.store, key, request.method, request.path, body, request_id) if key else None
            if record is not None:
                status, payload, replayed = record.status, record.response, True
            else:
                status, payload, problems = self._run(template, handler, request, body, args, request_id)
                if key:
                    idempotency.settle(self.store, key, status, payload)
        except CashfreeError as exc:
            status, payload = exc.status, _json(exc.body())
        self._log(request, body, key, status, payload, replayed, problems, request_id)
        if delay:  # create_then_timeout: the work is done and stored; the client gives up waiting
            self.stopping.wait(delay)
        response = Response(payload, status=status, mimetype="application/json")
        response.headers["x-request-id"] = request_id
        response.headers["x-api-version"] = API_VERSION
        if key:
            response.headers["x-idempotency-key"] = key
            response.headers["x-idempotency-replayed"] = "true" if replayed else "false"
        return response

    def _run(self, template: str, handler, request: Request, body, args: dict, request_id: str):
        try:
            if self.contract is not None and body is not None:
                self.contract.check_request(request.method, template, body)
            call = api.Call(store=self.store, public_url=self.public_url, body=body, args=args,
                            request_id=request_id, query=request.args.to_dict())
            return 200, _json(handler(call)), []
        except CashfreeError as exc:
            # Only what the OpenAPI schema refused counts as a validation error; a business refusal
            # (e.g. cancelling a paid link) is a correct request answered 400.
            problems = exc.problems or []
            return exc.status, _json(exc.body()), problems
        except Exception:
            log.exception("sandbox handler %s failed", getattr(handler, "__name__", handler))
            return 500, _json(api_error().body()), []

    def _authenticate(self, request: Request) -> None:
        client_id = request.headers.get("x-client-id", "")
        secret = request.headers.get("x-client-secret", "")
        if not (hmac.compare_digest(client_id.encode(), self.client_id.encode())
                and hmac.compare_digest(secret.encode(), self.client_secret.encode())):
            raise unauthenticated()

    def _check_version(self, request: Request) -> None:
        version = request.headers.get("x-api-version")
        if not version:
            raise invalid("x-api-version : is missing in the request", code="x-api-version_missing")
        if version != API_VERSION:
            raise invalid(f"x-api-version : invalid value provided. The sandbox speaks {API_VERSION} only, "
                          f"not {version}", code="x-api-version_invalid")

    def _log(self, request: Request, body, key, status: int, payload: bytes, replayed: bool, problems: list,
             request_id: str) -> None:
        answered = loads(payload) if status == 200 else {}
        object_id = (answered.get("subscription_id") or answered.get("plan_id") or answered.get("link_id")
                     if isinstance(answered, dict) else None)
        with self.store.lock:
            self.store.requests.append({
                "id": request_id, "method": request.method, "path": request.path,
                "headers": {name: request.headers.get(name)
                            for name in ("x-api-version", "x-request-id", "x-idempotency-key")},
                "body": body, "status": status, "replayed": replayed, "validation_errors": problems,
                "object_id": object_id, "at": time.time(),
            })

    # the control API and the pages

    def _control_call(self, request: Request, target, args: dict) -> Response:
        try:
            status, body = target(request, **args)
        except CashfreeError as exc:
            status, body = exc.status, exc.body()
        return Response(_json(body), status=status, mimetype="application/json")

    def sdk_script(self, request: Request) -> Response:
        return pages.sdk_script(self.public_url)

    def checkout_page(self, request: Request, session_id: str) -> Response:
        return pages.checkout_page(self.store, session_id)

    def pay_page(self, request: Request, session_id: str) -> Response:
        return pages.pay(self.store, session_id, request.form.get("method") or "upi")

    def decline_page(self, request: Request, session_id: str) -> Response:
        return pages.decline(self.store, session_id)

    def link_page(self, request: Request, link_id: str) -> Response:
        return pages.link_page(self.store, link_id)

    def link_pay_page(self, request: Request, link_id: str) -> Response:
        return pages.link_attempt(self.store, self.public_url, link_id, "pay", request.form.get("method") or "upi")

    def link_fail_page(self, request: Request, link_id: str) -> Response:
        return pages.link_attempt(self.store, self.public_url, link_id, "fail", request.form.get("method") or "upi")

    def link_drop_page(self, request: Request, link_id: str) -> Response:
        return pages.link_attempt(self.store, self.public_url, link_id, "drop", request.form.get("method") or "upi")

    def order_page(self, request: Request, order_id: str) -> Response:
        return pages.not_found("Order checkout is not part of this sandbox yet.")


def _json_body(request: Request, optional: bool = False):
    data = request.get_data()
    if not data.strip():
        if optional:
            return {}
        raise invalid("request body : is missing in the request", code="request_body_missing")
    try:
        return loads(data)
    except (ValueError, JSONBodyError):
        raise invalid("request body : invalid JSON", code="request_body_invalid")


def _json(obj) -> bytes:
    return dumps(obj).encode("utf-8")
