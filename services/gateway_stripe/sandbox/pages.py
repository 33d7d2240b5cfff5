"""The pages a payer sees: hosted checkout (Pay / Decline), a Payment Link's page (/b/<id>: Pay /
Decline) and the hosted invoice.

Deliberately plain HTML with relative form actions, so the pages work behind any public URL.
"""
from html import escape

from werkzeug.utils import redirect
from werkzeug.wrappers import Response

from . import checkout, links
from .errors import StripeError
from .invoices import product_name
from .money import format_amount
from .store import Store

_STYLE = ("body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#1a1f36}"
          ".amount{font-size:2rem;font-weight:600}button{font-size:1rem;padding:.6rem 1.4rem;margin-right:.5rem;"
          "border-radius:6px;border:1px solid #635bff;cursor:pointer}.pay{background:#635bff;color:#fff}"
          ".decline{background:#fff;color:#635bff}.note{color:#697386}table{width:100%;border-collapse:collapse}"
          "td{padding:.3rem 0;border-bottom:1px solid #e3e8ee}td.num{text-align:right}")


def _page(title: str, body: str, status: int = 200) -> Response:
    html = (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body>{body}"
            "<p class='note'>Stripe sandbox: test mode, no real money moves.</p></body></html>")
    return Response(html, status=status, mimetype="text/html")


def checkout_page(store: Store, session_id: str) -> Response:
    with store.transaction():
        session = checkout.get(store, session_id)
        facts = store.private[session_id]
        price = store.get(facts["price"], "price")
        name = product_name(store, price)
    amount = format_amount(session["amount_total"], session["currency"])
    every = price["recurring"]["interval"]
    summary = f"<h1>{escape(name)}</h1><p class='amount'>{escape(amount)} <small>per {escape(every)}</small></p>"
    if session["status"] != "open":
        message = ("This checkout is complete: it has been paid." if session["status"] == "complete"
                   else "This checkout has expired. Go back and start again.")
        return _page(name, summary + f"<p class='message'>{escape(message)}</p>")
    card = "<p class='note'>Card: Visa •••• 4242 (test card)</p>"
    forms = (f"<form method='post' action='{escape(session_id)}/pay' style='display:inline'>"
             "<button class='pay' type='submit'>Pay</button></form>"
             f"<form method='post' action='{escape(session_id)}/decline' style='display:inline'>"
             "<button class='decline' type='submit'>Decline</button></form>")
    return _page(name, summary + card + forms)


def pay(store: Store, public_url: str, session_id: str) -> Response:
    try:
        with store.transaction():
            session = checkout.pay(store, public_url, session_id)
    except StripeError as exc:
        if exc.status == 404:
            raise
        return _page("Checkout", f"<p class='message'>{escape(exc.message)} Nothing was charged again.</p>", 409)
    if not session["success_url"]:
        return _page("Paid", "<p class='message'>Payment complete. You can close this page.</p>")
    return redirect(checkout.success_redirect(session), code=303)


def decline(store: Store, session_id: str) -> Response:
    try:
        with store.transaction():
            session = checkout.decline(store, session_id)
    except StripeError as exc:
        if exc.status == 404:
            raise
        return _page("Checkout", f"<p class='message'>{escape(exc.message)}</p>", 409)
    if not session["cancel_url"]:
        return _page("Declined", "<p class='message'>Your card was declined. Nothing was charged.</p>")
    return redirect(session["cancel_url"], code=303)


def link_page(store: Store, link_id: str) -> Response:
    """A Payment Link: the plan and its price with Pay and Decline while it is active; a message after."""
    with store.transaction():
        link = store.render(links.get(store, link_id))
        facts = store.private[link_id]
        price = store.get(facts["price"], "price")
        name = product_name(store, price)
        amount = format_amount(price["unit_amount"] * facts["quantity"], price["currency"])
    every = price["recurring"]["interval"]
    summary = f"<h1>{escape(name)}</h1><p class='amount'>{escape(amount)} <small>per {escape(every)}</small></p>"
    if not link["active"]:
        message = link["inactive_message"] or "This payment link is no longer active. Nothing can be paid here."
        return _page(name, summary + f"<p class='message'>{escape(message)}</p>")
    card = "<p class='note'>Card: Visa •••• 4242 (test card)</p>"
    forms = (f"<form method='post' action='{escape(link_id)}/pay' style='display:inline'>"
             "<button class='pay' type='submit'>Pay</button></form>"
             f"<form method='post' action='{escape(link_id)}/decline' style='display:inline'>"
             "<button class='decline' type='submit'>Decline</button></form>")
    return _page(name, summary + card + forms)


def link_pay(store: Store, public_url: str, link_id: str) -> Response:
    try:
        with store.transaction():
            session = links.pay(store, public_url, link_id)
            link = store.render(links.get(store, link_id))
    except StripeError as exc:
        if exc.status == 404:
            raise
        return _page("Payment link", f"<p class='message'>{escape(exc.message)} Nothing was charged.</p>", 409)
    target = links.completion_redirect(link, session)
    if target:
        return redirect(target, code=303)
    message = link["after_completion"]["hosted_confirmation"]["custom_message"] or (
        "Thanks for your payment. You can close this page.")
    return _page("Paid", f"<p class='message'>{escape(message)}</p>")


def link_decline(store: Store, public_url: str, link_id: str) -> Response:
    """The card was declined: nothing is charged and the payer is back on the link's page."""
    with store.lock:
        links.get(store, link_id)
    return redirect(f"{public_url}/b/{link_id}", code=303)


def link_start(store: Store, public_url: str, link_id: str) -> Response:
    """Open (not pay) a session for the link and go to its hosted checkout: a payer part way through."""
    try:
        with store.transaction():
            session = links.open_session(store, public_url, link_id)
    except StripeError as exc:
        if exc.status == 404:
            raise
        return _page("Payment link", f"<p class='message'>{escape(exc.message)} Nothing was charged.</p>", 409)
    return redirect(session["url"], code=303)


def invoice_page(store: Store, invoice_id: str) -> Response:
    invoice = store.render(store.get(invoice_id, "invoice"))
    currency = invoice["currency"]
    rows = "".join(
        f"<tr><td>{escape(line['description'] or '')}</td>"
        f"<td class='num'>{escape(format_amount(line['amount'], currency))}</td></tr>"
        for line in invoice["lines"]["data"])
    body = (f"<h1>Invoice {escape(invoice['number'] or invoice['id'])}</h1>"
            f"<p>Status: <strong>{escape(invoice['status'])}</strong></p>"
            f"<table>{rows}<tr><td><strong>Total</strong></td>"
            f"<td class='num'><strong>{escape(format_amount(invoice['total'], currency))}</strong></td></tr>"
            f"<tr><td>Amount paid</td><td class='num'>{escape(format_amount(invoice['amount_paid'], currency))}"
            "</td></tr></table>")
    return _page(f"Invoice {invoice['number']}", body)
