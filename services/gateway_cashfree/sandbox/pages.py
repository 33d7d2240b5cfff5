"""What a payer's browser gets: the JS SDK (v3), the hosted subscription checkout and a payment
link's page (/links/<link_id>: Pay, Fail, Drop).

`/js/v3/cashfree.js` mirrors the calls of Cashfree's own SDK (sdk.cashfree.com/js/v3/cashfree.js),
so a page written for it works unchanged when it loads the script from the sandbox instead:
`Cashfree({mode}).subscriptionsCheckout({subsSessionId | subscriptionSessionId, redirectTarget})`
opens the subscription checkout, `.checkout({paymentSessionId, redirectTarget})` an order's.
The checkout page is deliberately plain HTML with relative form actions, so it works behind any
public URL.
"""
import json
from html import escape

from werkzeug.utils import redirect
from werkzeug.wrappers import Response

from . import checkout, links
from .errors import CashfreeError
from .money import format_inr
from .store import Store

_STYLE = ("body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#1f2937}"
          ".amount{font-size:2rem;font-weight:600}button{font-size:1rem;padding:.6rem 1.4rem;margin-right:.5rem;"
          "border-radius:6px;border:1px solid #6933d3;cursor:pointer}.pay{background:#6933d3;color:#fff}"
          ".decline{background:#fff;color:#6933d3}.note{color:#6b7280}label{display:block;margin:.3rem 0}"
          "fieldset{border:1px solid #e5e7eb;border-radius:6px;margin:1rem 0}")

_LABELS = {"upi": "UPI AutoPay", "card": "Card (standing instruction)",
           "netbanking": "Net banking (e-NACH: registers the mandate, nothing is debited now)"}

_SDK = """/* Cashfree JS SDK v3, sandbox edition: the same calls, pointed at the local sandbox. */
(function (root) {
  "use strict";
  var BASE = %(base)s;
  function go(url, target) {
    if (target === "_blank") { root.open(url, "_blank"); return; }
    if (target === "_top" && root.top) { root.top.location.href = url; return; }
    if (target === "_parent" && root.parent) { root.parent.location.href = url; return; }
    root.location.href = url;  /* "_self", "_modal" and anything else */
  }
  function need(value, name) {
    if (!value) { throw new Error("Cashfree sandbox: " + name + " is required"); }
    return encodeURIComponent(value);
  }
  function Cashfree(options) {
    var mode = (options && options.mode) || "sandbox";
    return {
      mode: mode,
      version: function () { return "3-sandbox"; },
      subscriptionsCheckout: function (opts) {
        opts = opts || {};
        var id = need(opts.subsSessionId || opts.subscriptionSessionId, "subsSessionId");
        go(BASE + "/checkout/subscription/" + id, opts.redirectTarget);
        return Promise.resolve({redirect: true});
      },
      checkout: function (opts) {
        opts = opts || {};
        var id = need(opts.paymentSessionId, "paymentSessionId");
        go(BASE + "/checkout/order/" + id, opts.redirectTarget);
        return Promise.resolve({redirect: true});
      }
    };
  }
  Cashfree.load = function (options) { return Promise.resolve(Cashfree(options)); };
  root.Cashfree = Cashfree;
})(typeof window !== "undefined" ? window : this);
"""


def _page(title: str, body: str, status: int = 200) -> Response:
    html = (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>{body}"
            "<p class='note'>Cashfree sandbox: test mode, no real money moves.</p></body></html>")
    return Response(html, status=status, mimetype="text/html")


def not_found(message: str = "Not found.") -> Response:
    return _page("Not found", f"<p class='message'>{escape(message)}</p>", 404)


def sdk_script(public_url: str) -> Response:
    response = Response(_SDK % {"base": json.dumps(public_url)}, mimetype="application/javascript")
    response.headers["Cache-Control"] = "no-store"
    return response


def checkout_page(store: Store, session_id: str) -> Response:
    try:
        with store.lock:
            stored = store.subscription_by_session(session_id)
            subscription = store.render(stored)
            is_open = checkout.is_open(store, stored)
            methods = checkout.allowed_methods(store, stored)
    except CashfreeError:
        return not_found("This subscription link is not valid.")
    plan = subscription["plan_details"]
    amount = format_inr(subscription["authorisation_details"]["authorization_amount"])
    summary = (f"<h1>{escape(plan['plan_name'])}</h1><p class='amount'>{escape(amount)}</p>"
               f"<p class='note'>Authorise a mandate for subscription {escape(subscription['subscription_id'])}"
               f"{_cadence(plan)}.</p>")
    if not is_open:
        status = subscription["subscription_status"]
        if status == "ACTIVE" or subscription["authorisation_details"]["authorization_status"] == "ACTIVE":
            message = "This mandate is already authorised. You can close this page."
        elif subscription["authorisation_details"]["authorization_status"] == "FAILED":
            message = "This authorisation was declined. Nothing was charged."
        else:
            message = f"This subscription can no longer be authorised (status {status})."
        return _page(plan["plan_name"], summary + f"<p class='message'>{escape(message)}</p>")
    radios = "".join(
        f"<label><input type='radio' name='method' value='{method}'{' checked' if index == 0 else ''}> "
        f"{escape(_LABELS[method])}</label>" for index, method in enumerate(_ordered(methods)))
    forms = (f"<form method='post' action='{escape(session_id)}/pay'>"
             f"<fieldset><legend>Pay with</legend>{radios}</fieldset>"
             "<button class='pay' type='submit'>Pay</button></form>"
             f"<form method='post' action='{escape(session_id)}/decline' style='margin-top:.5rem'>"
             "<button class='decline' type='submit'>Decline</button></form>")
    return _page(plan["plan_name"], summary + forms)


def pay(store: Store, session_id: str, method: str) -> Response:
    try:
        subscription, _ = checkout.pay(store, session_id, method)
    except CashfreeError as exc:
        return _refused(exc)
    target = checkout.return_redirect(subscription)
    if not target:
        return _page("Authorised", "<p class='message'>Mandate authorised. You can close this page.</p>")
    return redirect(target, code=303)


def decline(store: Store, session_id: str) -> Response:
    try:
        subscription, _ = checkout.decline(store, session_id)
    except CashfreeError as exc:
        return _refused(exc)
    target = checkout.return_redirect(subscription)
    if not target:
        return _page("Declined", "<p class='message'>Authorisation declined. Nothing was charged.</p>")
    return redirect(target, code=303)


_LINK_LABELS = {"upi": "UPI", "card": "Card", "netbanking": "Net banking"}
_LINK_CLOSED = {"PAID": "This payment link has been paid. You can close this page.",
                "CANCELLED": "This payment link was cancelled. Nothing can be paid here.",
                "EXPIRED": "This payment link has expired. Nothing can be paid here."}


def link_page(store: Store, link_id: str) -> Response:
    """The amount and purpose; while the link is ACTIVE, a payment method and Pay, Fail (the payment
    fails; the payer may try again) and Drop (the payer gives up). A message, no buttons, after."""
    try:
        with store.transaction():
            link = store.render(links.refresh(store, store.link(link_id)))
            last = links.last_attempt(store, link_id)
    except CashfreeError:
        return not_found("This payment link is not valid.")
    purpose, status = link["link_purpose"], link["link_status"]
    summary = (f"<h1>{escape(purpose)}</h1><p class='amount'>{escape(format_inr(link['link_amount']))}</p>"
               f"<p class='note'>Payment link {escape(link_id)}</p>")
    if not links.is_open(link):
        message = _LINK_CLOSED.get(status, f"This payment link can no longer be paid (status {status}).")
        return _page(purpose, summary + f"<p class='message'>{escape(message)}</p>")
    note = ""
    if last is not None:
        note = (f"<p class='message'>Your last attempt did not go through ({escape(last['payment_status'])}: "
                f"{escape(last['payment_message'])}). You can try again.</p>")
    radios = "".join(
        f"<label><input type='radio' name='method' value='{method}'{' checked' if method == 'upi' else ''}> "
        f"{escape(_LINK_LABELS[method])}</label>" for method in links.METHODS)
    quoted = escape(link_id)
    form = (f"<form method='post' action='{quoted}/pay'>"
            f"<fieldset><legend>Pay with</legend>{radios}</fieldset>"
            "<button class='pay' type='submit'>Pay</button>"
            f"<button class='decline' type='submit' formaction='{quoted}/fail'>Fail</button>"
            f"<button class='decline' type='submit' formaction='{quoted}/drop'>Drop</button></form>")
    return _page(purpose, summary + note + form)


def link_attempt(store: Store, public_url: str, link_id: str, outcome: str, method: str) -> Response:
    """Pay: to link_meta.return_url (?link_id=...); Fail and Drop: back to the link's page."""
    try:
        link, _, _ = links.attempt(store, link_id, outcome, method)
    except CashfreeError as exc:
        if exc.status == 404:
            return not_found("This payment link is not valid.")
        return _page("Payment link", f"<p class='message'>{escape(exc.message)}. Nothing was charged.</p>",
                     exc.status)
    if outcome != "pay":
        return redirect(f"{public_url}/links/{link_id}", code=303)
    target = links.return_redirect(link)
    if not target:
        return _page("Paid", "<p class='message'>Payment received. You can close this page.</p>")
    return redirect(target, code=303)


def _refused(exc: CashfreeError) -> Response:
    if exc.status == 404:
        return not_found("This subscription link is not valid.")
    return _page("Checkout", f"<p class='message'>{escape(exc.message)}. Nothing was charged again.</p>",
                 exc.status)


def _ordered(methods: list) -> list:
    return [method for method in ("upi", "card", "netbanking") if method in methods]


def _cadence(plan: dict) -> str:
    if plan["plan_type"] != "PERIODIC":
        return ", charged on demand"
    every = plan["plan_interval_type"].lower()
    count = plan["plan_intervals"] or 1
    return f", then {format_inr(plan['plan_recurring_amount'])} every " + (every if count == 1 else f"{count} {every}s")


# (method, path, SandboxApp method)
ROUTES = [
    ("GET", "/js/v3/cashfree.js", "sdk_script"),
    ("GET", "/checkout/subscription/<session_id>", "checkout_page"),
    ("POST", "/checkout/subscription/<session_id>/pay", "pay_page"),
    ("POST", "/checkout/subscription/<session_id>/decline", "decline_page"),
    ("GET", "/checkout/order/<order_id>", "order_page"),
    ("GET", "/links/<link_id>", "link_page"),
    ("POST", "/links/<link_id>/pay", "link_pay_page"),
    ("POST", "/links/<link_id>/fail", "link_fail_page"),
    ("POST", "/links/<link_id>/drop", "link_drop_page"),
]
