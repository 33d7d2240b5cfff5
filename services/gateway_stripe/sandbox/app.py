"""The WSGI application: routes requests to the API, the hosted pages or the control API.

Everything Stripe does around an API call lives here, in the order Stripe does it: authenticate,
(injected faults), claim the Idempotency-Key, run the handler, expand, store the idempotent
response, answer with Stripe's headers, and log the request for GET /_sandbox/requests.

What Stripe does on its own clock and the sandbox does lazily happens before a request is served
(API or control): pending subscription updates past their expires_at are discarded then.
"""
import json
import logging
import threading
import time

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from services.sandbox_kit import faults

from . import api, control, idempotency, listing, pages, subscriptions
from .errors import StripeError, api_error, unauthenticated, unrecognized_url
from .ids import new_id
from .params import decode
from .shapes import API_VERSION
from .store import Store

log = logging.getLogger(__name__)


class SandboxApp:
    def __init__(self, store: Store, public_url: str, secret_key: str, account_id: str):
        self.store = store
        self.public_url = public_url
        self.secret_key = secret_key
        self.account_id = account_id  # which Stripe account this sandbox is (GET /v1/account)
        self.stopping = threading.Event()  # cuts injected delays short when the server stops
        self.control = control.Control(store, public_url)
        rules = [Rule(path, methods=[method], endpoint=("api", handler)) for method, path, handler in api.ROUTES]
        rules += [Rule(path, methods=[method], endpoint=("control", getattr(self.control, name)))
                  for method, path, name in control.ROUTES]
        rules += [
            Rule("/checkout/<id>", methods=["GET"], endpoint=("page", self._checkout_page)),
            Rule("/checkout/<id>/pay", methods=["POST"], endpoint=("page", self._pay_page)),
            Rule("/checkout/<id>/decline", methods=["POST"], endpoint=("page", self._decline_page)),
            Rule("/invoices/<id>", methods=["GET"], endpoint=("page", self._invoice_page)),
            Rule("/b/<id>", methods=["GET"], endpoint=("page", self._link_page)),
            Rule("/b/<id>/pay", methods=["POST"], endpoint=("page", self._link_pay)),
            Rule("/b/<id>/decline", methods=["POST"], endpoint=("page", self._link_decline)),
            Rule("/b/<id>/start", methods=["POST"], endpoint=("page", self._link_start)),
        ]
        self.url_map = Map(rules, strict_slashes=False, merge_slashes=False)

    def __call__(self, environ, start_response):
        request = Request(environ)
        return self.dispatch(request)(environ, start_response)

    def dispatch(self, request: Request) -> Response:
        try:
            (area, target), args = self.url_map.bind_to_environ(request.environ).match()
        except (NotFound, MethodNotAllowed):
            return self._api_call(request, None, {})
        except HTTPException as exc:  # e.g. a redirect for a trailing slash
            return exc.get_response()
        if area == "api":
            return self._api_call(request, target, args)
        if area == "control":
            return self._control_call(request, target, args)
        try:
            return target(**args)
        except StripeError as exc:
            return Response(exc.message, status=exc.status, mimetype="text/plain")

    # the Stripe API

    def _api_call(self, request: Request, handler, args: dict) -> Response:
        request_id = new_id("req")
        key = request.headers.get("Idempotency-Key") if request.method == "POST" else None
        raw, replayed, delay = {}, False, 0.0
        try:
            if handler is not None or request.path.startswith("/v1/"):
                self._authenticate(request)
            if handler is None:
                raise unrecognized_url(request.method, request.path)
            raw = decode(list(request.args.items(multi=True)) + list(request.form.items(multi=True)))
            delay = faults.inject(self.store, request.method, request.path, self.stopping, api_error)
            record = idempotency.claim(self.store, key, request.method, request.path, raw, request_id) if key else None
            if record is not None:
                status, body, replayed = record.status, record.response, True
            else:
                status, body = self._run(handler, request, raw, args, request_id, key)
                if key:
                    idempotency.settle(self.store, key, status, body)
        except StripeError as exc:
            status, body = exc.status, _json(exc.body(request_id))
        self._log(request, raw, key, status, body, replayed, request_id)
        if delay:  # create_then_timeout: the work is done and stored; the client gives up waiting
            self.stopping.wait(delay)
        response = Response(body, status=status, mimetype="application/json")
        response.headers["Request-Id"] = request_id
        response.headers["Stripe-Version"] = request.headers.get("Stripe-Version") or API_VERSION
        if key:
            response.headers["Idempotency-Key"] = key
        if replayed:
            response.headers["Idempotent-Replayed"] = "true"
            response.headers["Original-Request"] = record.request_id
        return response

    def _run(self, handler, request: Request, raw: dict, args: dict, request_id: str, key):
        call = api.Call(store=self.store, public_url=self.public_url, raw=raw, args=args,
                        request={"id": request_id, "idempotency_key": key}, account_id=self.account_id)
        try:
            self._catch_up()
            obj = handler(call)
            expansions = raw.get("expand") or []
            if expansions:
                obj = listing.expand(self.store, obj, expansions)
            return 200, _json(obj)
        except StripeError as exc:
            return exc.status, _json(exc.body(request_id))
        except Exception:
            log.exception("sandbox handler %s failed", getattr(handler, "__name__", handler))
            return 500, _json(api_error().body(request_id))

    def _authenticate(self, request: Request) -> None:
        header = request.headers.get("Authorization", "")
        if header.lower().startswith("bearer "):
            key = header[7:].strip()
        elif request.authorization and request.authorization.type == "basic":
            key = request.authorization.username  # curl -u sk_test_...:
        else:
            key = None
        if key != self.secret_key:
            raise unauthenticated(key)

    def _log(self, request: Request, raw: dict, key, status: int, body: bytes, replayed: bool,
             request_id: str) -> None:
        answered = json.loads(body) if status < 300 else {}
        with self.store.lock:
            self.store.requests.append({
                "id": request_id, "method": request.method, "path": request.path, "params": raw,
                "idempotency_key": key, "status": status, "replayed": replayed,
                "object_id": answered.get("id"),  # what it created or read (None for lists and errors)
                "stripe_version": request.headers.get("Stripe-Version"), "at": time.time(),
            })

    def _catch_up(self) -> None:
        """What Stripe would have done by now on its own clock (no transaction, so no save, if nothing is due)."""
        if subscriptions.pending_updates_due(self.store):
            with self.store.transaction() as store:
                subscriptions.expire_pending_updates(store)

    # the control API and the pages

    def _control_call(self, request: Request, target, args: dict) -> Response:
        try:
            self._catch_up()
            status, body = target(request, **args)
        except StripeError as exc:
            status, body = exc.status, exc.body()
        return Response(_json(body), status=status, mimetype="application/json")

    def _checkout_page(self, id):
        return pages.checkout_page(self.store, id)

    def _pay_page(self, id):
        return pages.pay(self.store, self.public_url, id)

    def _decline_page(self, id):
        return pages.decline(self.store, id)

    def _invoice_page(self, id):
        return pages.invoice_page(self.store, id)

    def _link_page(self, id):
        return pages.link_page(self.store, id)

    def _link_pay(self, id):
        return pages.link_pay(self.store, self.public_url, id)

    def _link_decline(self, id):
        return pages.link_decline(self.store, self.public_url, id)

    def _link_start(self, id):
        return pages.link_start(self.store, self.public_url, id)


def _json(obj) -> bytes:
    return json.dumps(obj, indent=2).encode("utf-8")
