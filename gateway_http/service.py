"""gateway_http: the HTTP face of the portal. It authenticates, validates shapes, calls a service
and maps errors; every business rule lives in the service it calls."""
import hmac

import eventlet
from marshmallow import Schema, fields, validate
from nameko.events import BROADCAST, event_handler
from nameko.rpc import RpcProxy
from nameko.web.handlers import http

from gateway_http import pages
from gateway_http.dependencies import RequestContext
from gateway_http.errors import error_response, json_response
from gateway_http.openapi import openapi_document
from gateway_http.routing import WEBHOOK_BODY_LIMIT, bearer_token, route, signed_in_user
from gateway_http.schemas import Health, MeOut
from gateway_http.sessions import Sessions
from services.billing.schemas import (
    CancelInput, CheckoutInput, CheckoutOut, HistoryList, PaymentLinkInput, PaymentLinkList, PaymentLinkOut,
    PaymentMethodList, PlanList, QuoteInput, QuoteOut, SubscriptionOut, SummaryOut,
)
from services.identity.schemas import LoginInput, LoginOut, SignupInput, SignupOut, UpdatedMeOut, UpdateMeInput
from services.orgs.schemas import (
    AcceptedOut, ChangeRoleInput, CreatedInvitationOut, CreateOrgInput, InvitationList, InviteInput,
    MemberList, MemberOut, MyOrgList, MyOrgOut, OrgOut, TransferInput,
)
from services.usage.schemas import UsageBatchInput, UsageBatchOut, UsageOut
from shared.config import SERVICE_NAMES, settings
from shared.errors import BadRequest, Unauthorized, ValidationFailed
from shared.events import COUNTRIES
from shared.schemas import malformed_json

HEALTH_TIMEOUT_SECONDS = 2


class PlansQuery(Schema):
    country = fields.String(validate=validate.OneOf(COUNTRIES))


def acct(suffix=""):
    """Both forms of {acct}: the caller's personal licence, and an organization's billing."""
    return [f"/api/v1/billing/personal{suffix}", f"/api/v1/orgs/<org_id>/billing{suffix}"]


def account_ref(call):
    org_id = call.params.get("org_id")
    return {"kind": "org", "id": org_id} if org_id else {"kind": "personal"}


class HttpGateway:
    name = "gateway_http"

    request_context = RequestContext()
    sessions = Sessions()  # tokens checked lately, so most requests need no identity hop
    identity = RpcProxy("identity")
    orgs = RpcProxy("orgs")
    billing = RpcProxy("billing")
    # Usage's two hot paths skip what a synchronous call does not need: the caller waits for the
    # answer, so a request the broker lost (it restarted) ends in a 503 after the RPC timeout, with
    # confirms or without, and is sent again by the client (reads are safe to repeat; ingestion
    # dedupes on event ids). Transient (delivery_mode 1), a 200 KB batch is not written to the
    # broker's disk; unconfirmed, a read saves a round trip to the broker (0.4 ms of 1 ms of the
    # broker's CPU per read, measured). The price: a call to a service whose queue was never
    # declared waits for the timeout instead of failing at once (UnknownService).
    usage = RpcProxy("usage", use_confirms=False, delivery_mode=1)
    usage_ingest = RpcProxy("usage_ingest", delivery_mode=1)  # the write side of usage, a process of its own
    gateway_stripe = RpcProxy("gateway_stripe")
    gateway_cashfree = RpcProxy("gateway_cashfree")

    # -- operations ----------------------------------------------------------------------------

    @http("GET", "/healthz")
    def healthz(self, request):
        """200 when every service answers its health ping within 2 s, else 503 naming the silent ones."""
        def ping(name):
            try:
                with eventlet.Timeout(HEALTH_TIMEOUT_SECONDS):
                    return name, getattr(self, name).health()
            except BaseException:  # a timeout, an unknown service, a broken database
                return name, "unavailable"

        pool = eventlet.GreenPool(len(SERVICE_NAMES))
        services = dict(pool.imap(ping, SERVICE_NAMES))
        healthy = all(state == "ok" for state in services.values())
        return json_response(200 if healthy else 503,
                             Health().dump({"status": "ok" if healthy else "degraded", "services": services}))

    @http("GET", "/api/v1/openapi.json")
    def openapi(self, request):
        return json_response(200, openapi_document())

    # Every method a client sends gets the JSON error body, not werkzeug's HTML 405 (fuzzing found it).
    @http("GET,POST,PUT,PATCH,DELETE,OPTIONS,TRACE", "/<path:unknown>")
    def no_such_route(self, request, unknown):
        return error_response(404, "NOT_FOUND", "No such route.")

    # -- identity ------------------------------------------------------------------------------

    @route("POST", "/api/v1/auth/signup", tag="identity", auth=False, body=SignupInput,
           responses={201: SignupOut}, errors=(409,), summary="Create an account and sign in")
    def signup(self, call):
        return 201, self.identity.signup(call.body)

    @route("POST", "/api/v1/auth/login", tag="identity", auth=False, body=LoginInput,
           responses={200: LoginOut}, errors=(401, 429), summary="Sign in with email and password")
    def login(self, call):
        # Failures are counted per email and per client address (identity's brute-force limit). Behind
        # a reverse proxy remote_addr is the proxy's: that deployment must pass the client's on.
        return 200, self.identity.login(call.body, call.request.remote_addr)

    @route("POST", "/api/v1/auth/logout", tag="identity", responses={204: None},
           summary="Revoke this token at once")
    def logout(self, call):
        self.identity.logout(call.token)
        # At once for this process; the others hear identity's session.revoked (below).
        self.sessions.forget(call.token)
        return 204, None

    @event_handler("identity", "session.revoked", handler_type=BROADCAST, reliable_delivery=False)
    def on_session_revoked(self, payload):
        """Every gateway_http process drops a revoked token from its cache. A broadcast queue lives
        and dies with its process: nothing to catch up on after a restart, since the cache starts empty."""
        self.sessions.evict(payload["token_hash"])

    @event_handler("identity", "user.updated", handler_type=BROADCAST, reliable_delivery=False)
    def on_user_updated(self, payload):
        """Every gateway_http process drops the changed user's cached sessions (all their tokens)."""
        self.sessions.evict_user(payload["user_id"])

    @route("GET", "/api/v1/me", tag="identity", responses={200: MeOut},
           summary="The signed-in user, the plan picked before signup, and their organizations")
    def me(self, call):
        profile = self.identity.get_profile(call.user["id"])
        orgs = self.orgs.list_my_orgs(call.user)
        organizations = [{"id": o["id"], "name": o["name"], "role": o["my_role"]} for o in orgs]
        return 200, {**profile, "organizations": organizations}

    @route("PATCH", "/api/v1/me", tag="identity", body=UpdateMeInput, responses={200: UpdatedMeOut},
           summary="Change my name or phone (the phone Cashfree needs for India; null removes it outside India)")
    def update_me(self, call):
        answer = self.identity.update_me(call.user["id"], call.body)
        # At once for this process (the next request sees the change); identity's user.updated
        # drops the user's other sessions here and everywhere (below).
        self.sessions.forget(call.token)
        return 200, answer

    @route("DELETE", "/api/v1/me/pending-plan", tag="identity", responses={204: None},
           summary="Dismiss the post-signup 'buy your plan' offer")
    def dismiss_pending_plan(self, call):
        self.identity.dismiss_pending_plan(call.user["id"])
        return 204, None

    # -- organizations -------------------------------------------------------------------------

    @route("POST", "/api/v1/orgs", tag="orgs", body=CreateOrgInput, responses={201: OrgOut},
           summary="Create an organization; the creator is its owner")
    def create_org(self, call):
        return 201, self.orgs.create_org(call.user, call.body)

    @route("GET", "/api/v1/orgs", tag="orgs", responses={200: MyOrgList}, summary="My organizations")
    def list_orgs(self, call):
        return 200, {"items": self.orgs.list_my_orgs(call.user)}

    @route("GET", "/api/v1/orgs/<org_id>", tag="orgs", responses={200: OrgOut}, summary="One organization")
    def get_org(self, call):
        return 200, self.orgs.get_org(call.user, call.params["org_id"])

    @route("GET", "/api/v1/orgs/<org_id>/members", tag="orgs", responses={200: MemberList},
           summary="Members and their roles")
    def list_members(self, call):
        return 200, {"items": self.orgs.list_members(call.user, call.params["org_id"])}

    @route("POST", "/api/v1/orgs/<org_id>/invitations", tag="orgs", body=InviteInput,
           responses={201: CreatedInvitationOut}, errors=(403, 409),
           summary="Invite someone by email with a role")
    def invite(self, call):
        return 201, self.orgs.invite(call.user, call.params["org_id"], call.body)

    @route("GET", "/api/v1/orgs/<org_id>/invitations", tag="orgs", responses={200: InvitationList},
           errors=(403,), summary="Invitations of the organization")
    def list_invitations(self, call):
        return 200, {"items": self.orgs.list_invitations(call.user, call.params["org_id"])}

    @route("DELETE", "/api/v1/orgs/<org_id>/invitations/<invitation_id>", tag="orgs",
           responses={204: None}, errors=(403, 409), summary="Revoke an invitation")
    def revoke_invitation(self, call):
        self.orgs.revoke_invitation(call.user, call.params["org_id"], call.params["invitation_id"])
        return 204, None

    @route("POST", "/api/v1/invitations/<token>/accept", tag="orgs", responses={200: AcceptedOut},
           errors=(403, 409), secret_path=True, summary="Accept an invitation sent to my email")
    def accept_invitation(self, call):
        return 200, self.orgs.accept_invitation(call.user, call.params["token"])

    @route("PATCH", "/api/v1/orgs/<org_id>/members/<user_id>", tag="orgs", body=ChangeRoleInput,
           responses={200: MemberOut}, errors=(403, 409), summary="Change a member's role")
    def change_role(self, call):
        return 200, self.orgs.change_role(call.user, call.params["org_id"], call.params["user_id"], call.body)

    @route("DELETE", "/api/v1/orgs/<org_id>/members/<user_id>", tag="orgs", responses={204: None},
           errors=(403, 409), summary="Remove a member (or leave)")
    def remove_member(self, call):
        self.orgs.remove_member(call.user, call.params["org_id"], call.params["user_id"])
        return 204, None

    @route("POST", "/api/v1/orgs/<org_id>/transfer-ownership", tag="orgs", body=TransferInput,
           responses={200: MyOrgOut}, errors=(403,),
           summary="Make another member the owner; the old owner becomes super_admin")
    def transfer_ownership(self, call):
        return 200, self.orgs.transfer_ownership(call.user, call.params["org_id"], call.body)

    # -- plans ---------------------------------------------------------------------------------

    @route("GET", "/api/v1/plans", tag="billing", auth=False, query=PlansQuery, responses={200: PlanList},
           summary="The plan catalogue priced for a country (default: the signed-in caller's)")
    def list_plans(self, call):
        country = call.query.get("country")
        if country is None and call.request.headers.get("Authorization"):
            country = signed_in_user(self, bearer_token(call.request))["country"]
        if country is None:
            raise ValidationFailed(details={"country": ["Required when not signed in."]})
        return 200, {"items": self.billing.list_plans(country)}

    # -- billing ({acct} = /api/v1/billing/personal or /api/v1/orgs/{org_id}/billing) ------------

    @route("GET", acct(), tag="billing", responses={200: SummaryOut}, errors=(403,),
           summary="The billing page: plan, status, next payment date, usage")
    def billing_summary(self, call):
        return 200, self.billing.summary(call.user, account_ref(call))

    @route("POST", acct("/quotes"), tag="billing", body=QuoteInput, responses={201: QuoteOut},
           errors=(403, 409), summary="Price a plan (with proration for a change) before paying")
    def create_quote(self, call):
        return 201, self.billing.create_quote(call.user, account_ref(call), call.body)

    @route("POST", acct("/checkout"), tag="billing", body=CheckoutInput, responses={201: CheckoutOut},
           errors=(402, 403, 404, 409, 502), summary="Pay Now: a hosted checkout at the region's gateway")
    def create_checkout(self, call):
        return 201, self.billing.create_checkout(call.user, account_ref(call), call.body)

    @route("GET", acct("/checkout/<checkout_id>"), tag="billing", responses={200: CheckoutOut}, errors=(403,),
           summary="A checkout's status")
    def get_checkout(self, call):
        return 200, self.billing.get_checkout(call.user, account_ref(call), call.params["checkout_id"])

    @route("GET", acct("/history"), tag="billing", responses={200: HistoryList}, errors=(403,),
           summary="Payments and failed attempts, newest first")
    def billing_history(self, call):
        return 200, {"items": self.billing.list_history(call.user, account_ref(call))}

    @route("GET", acct("/payment-methods"), tag="billing", responses={200: PaymentMethodList}, errors=(403,),
           summary="Saved payment methods, as the gateway reports them")
    def payment_methods(self, call):
        return 200, self.billing.list_payment_methods(call.user, account_ref(call))

    @route("POST", acct("/subscription/cancel"), tag="billing", body=CancelInput, responses={200: SubscriptionOut},
           errors=(403, 409, 502), summary="Cancel the plan (at the end of the paid period by default)")
    def cancel_subscription(self, call):
        return 200, self.billing.cancel_subscription(call.user, account_ref(call), call.body)

    @route("POST", acct("/payment-links"), tag="billing", body=PaymentLinkInput, responses={201: PaymentLinkOut},
           errors=(403, 404, 409, 502), summary="Make a payment link for a plan, to send to whoever pays")
    def create_payment_link(self, call):
        return 201, self.billing.create_payment_link(call.user, account_ref(call), call.body)

    @route("GET", acct("/payment-links"), tag="billing", responses={200: PaymentLinkList}, errors=(403,),
           summary="The account's payment links, newest first")
    def list_payment_links(self, call):
        return 200, {"items": self.billing.list_payment_links(call.user, account_ref(call))}

    @route("POST", acct("/payment-links/<link_id>/cancel"), tag="billing", responses={200: PaymentLinkOut},
           errors=(403, 409, 502),
           summary="Cancel a payment link, at the gateway too (409 if it was paid or has expired)")
    def cancel_payment_link(self, call):
        return 200, self.billing.cancel_payment_link(call.user, account_ref(call), call.params["link_id"])

    @route("GET", acct("/usage"), tag="usage", responses={200: UsageOut}, errors=(403,),
           summary="Plan usage: data used this period against the plan's quota, with a daily series")
    def account_usage(self, call):
        return 200, self.usage.get_usage(call.user, account_ref(call))

    # -- usage ingestion (service to service, with USAGE_INGEST_KEY) ---------------------------

    @route("POST", "/api/v1/usage/events", tag="usage", auth=False, raw_body=True, documented_body=UsageBatchInput,
           security="usageIngestKey", responses={202: UsageBatchOut}, errors=(401, 422),
           summary="Report usage: up to 1000 events, each id counted once")
    def ingest_usage(self, call):
        scheme, _, supplied = call.request.headers.get("Authorization", "").partition(" ")
        supplied = supplied.strip() if scheme.lower() == "bearer" else ""
        expected = settings().usage_ingest_key
        if not expected or not hmac.compare_digest(supplied.encode(), expected.encode()):
            raise Unauthorized("Send 'Authorization: Bearer <USAGE_INGEST_KEY>'.", code="BAD_INGEST_KEY")
        # The body goes on as text: usage_ingest parses it, checks the batch (a list, at most 1000) and
        # each event, and says which ones it refused and why (a batch with some bad events still
        # records the good ones). Parsing 1000 events here and encoding them again for RPC took 3 ms
        # of this process per batch, a wait for every request behind it; ingestion runs at nice 10.
        return 202, self.usage_ingest.record_batch(_text(call.body, malformed_json()))

    # -- gateways ------------------------------------------------------------------------------

    @route("POST", "/webhooks/stripe", tag="webhooks", auth=False, raw_body=True, body_limit=WEBHOOK_BODY_LIMIT,
           signature_headers=("Stripe-Signature",), responses={200: None},
           summary="Stripe's webhooks (Stripe-Signature checked by gateway_stripe)")
    def stripe_webhook(self, call):
        self.gateway_stripe.handle_webhook(dict(call.request.headers), _webhook_text(call.body))
        return 200, None

    @route("POST", "/webhooks/cashfree", tag="webhooks", auth=False, raw_body=True, body_limit=WEBHOOK_BODY_LIMIT,
           signature_headers=("x-webhook-signature", "x-webhook-timestamp"), responses={200: None},
           summary="Cashfree's webhooks (x-webhook-signature checked by gateway_cashfree)")
    def cashfree_webhook(self, call):
        self.gateway_cashfree.handle_webhook(dict(call.request.headers), _webhook_text(call.body))
        return 200, None

    @http("GET", "/pay/cashfree/subscription/<session_id>")
    def cashfree_checkout_page(self, request, session_id):
        """"Pay Now" for India lands here: the page opens Cashfree's checkout for the session."""
        return pages.cashfree_subscription_checkout(session_id)

    @http("GET", "/billing/checkout/<checkout_id>/return")
    def checkout_return(self, request, checkout_id):
        """Where the gateway's page sends the payer back after paying."""
        return pages.checkout_returned()

    @http("GET", "/billing/links/<link_id>/paid")
    def link_paid_page(self, request, link_id):
        """Where a gateway sends whoever paid a link (they need no account with us)."""
        return pages.link_paid()

    @http("GET", "/billing/checkout/<checkout_id>/cancelled")
    def checkout_cancelled(self, request, checkout_id):
        return pages.checkout_cancelled()


def _text(body, error):
    """The body as text for a service that parses it itself; `error` when it is not UTF-8."""
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise error from None


def _webhook_text(body):
    return _text(body, BadRequest("A webhook body must be UTF-8 JSON.", code="MALFORMED_EVENT"))
