"""The few HTML pages the portal itself serves around a gateway's hosted checkout."""
import re
from html import escape

from werkzeug.wrappers import Response

from shared.config import settings

PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title></head>
<body style="font-family: sans-serif; max-width: 36em; margin: 4em auto"><h1>{title}</h1>{body}</body></html>"""
SESSION_ID = re.compile(r"^[A-Za-z0-9_\-]{1,200}$")


def html(status, title, body):
    return Response(PAGE.format(title=escape(title), body=body), status=status, mimetype="text/html")


def checkout_returned():
    return html(200, "Thank you", "<p>Your payment is being confirmed; your plan shows as active on the billing "
                                  "page in a moment.</p>")


def link_paid():
    return html(200, "Payment received", "<p>Thank you: the payment was received, and the plan is on its way to "
                                         "the account that sent you the link.</p>")


def checkout_cancelled():
    return html(200, "Payment not completed", "<p>Nothing was charged. You can try again from the billing page.</p>")


def cashfree_subscription_checkout(session_id):
    """Opens Cashfree's hosted checkout for a subscription session, as Cashfree documents for its
    JS SDK v3. In sandbox mode the SDK is the local Cashfree sandbox's stand-in."""
    if not SESSION_ID.match(session_id):
        return html(404, "No such checkout", "<p>This payment page does not exist.</p>")
    config = settings()
    script = (f'<script src="{escape(config.cashfree_js_sdk_url)}"></script>\n'
              f'<script>Cashfree({{mode: "{escape(config.cashfree_mode)}"}}).subscriptionsCheckout('
              f'{{subscriptionSessionId: "{session_id}", redirectTarget: "_self"}});</script>')
    return html(200, "Opening Cashfree checkout",
                f'<p data-session-id="{session_id}">Taking you to Cashfree to authorise your plan…</p>'
                f"<noscript><p>Please enable JavaScript to pay.</p></noscript>\n{script}")
