"""Drivers for the gateway sandboxes: what a payer does on the hosted page, and the sandbox's
control API for renewals and faults. One driver per region, so billing scenarios are written once."""
import re
from decimal import Decimal

import requests
from kombu import Connection, Exchange, Queue


class WebhookOutage:
    """The gateway cannot reach the portal for a while, and what it sends later: the same at both sandboxes."""

    def fail_webhooks(self):
        """Deliveries falling due fail unsent, as if the portal were down; the gateway retries later."""
        answer = self.http.post(f"{self.base}/_sandbox/webhooks/pause", json={"mode": "fail"}, timeout=10)
        assert answer.status_code == 200, answer.text

    def resume_webhooks(self):
        assert self.http.post(f"{self.base}/_sandbox/webhooks/resume", timeout=10).status_code == 200

    def undelivered_events(self):
        """Ids of the events no delivery attempt has reached the portal with yet."""
        events = self.http.get(f"{self.base}/_sandbox/events", timeout=10).json()
        return [event["id"] for event in events
                if not any(attempt["outcome"] == "delivered" for attempt in event["delivery_attempts"])]

    def redeliver(self, event_ids):
        """Send these events again (each then retried on its own schedule): late deliveries."""
        for event_id in event_ids:
            answer = self.http.post(f"{self.base}/_sandbox/webhooks/{event_id}/redeliver", timeout=10)
            assert answer.status_code == 200, answer.text

    def block_closing(self, checkout):
        """Closing this checkout at the gateway fails until clear_faults(): it stays payable."""
        answer = self.http.post(f"{self.base}/_sandbox/faults", timeout=10, json={
            "method": "POST", "path": self.closing_path(checkout), "kind": "error_500", "times": 10000})
        assert answer.status_code in (200, 201), answer.text


class LinkPages(WebhookOutage):
    """What a payer does with a payment link's page, the same at both sandboxes."""

    # -- payment links -------------------------------------------------------------------------

    def link_payable(self, url):
        """Whether the link's page still offers to pay (a form posting to .../pay)."""
        page = self.http.get(url, timeout=10)
        return page.status_code == 200 and re.search(r"<form[^>]*action=['\"][^'\"]*pay['\"]", page.text) is not None

    def pay_link(self, url):
        """Someone with no account with us opens the link and pays (this session carries no token)."""
        assert self.link_payable(url), self.http.get(url, timeout=10).text
        answer = self.http.post(f"{url}/pay", data={"method": self.method_type}, timeout=10, allow_redirects=False)
        assert answer.status_code == 303, answer.text
        landed = self.http.get(answer.headers["Location"], timeout=10)
        assert landed.status_code == 200, landed.text

    def fail_next_link_creation(self, kind, times=1, delay_seconds=3):
        answer = self.http.post(f"{self.base}/_sandbox/faults", timeout=10, json={
            "method": "POST", "path": self.link_path, "kind": kind, "times": times, "delay_seconds": delay_seconds})
        assert answer.status_code in (200, 201), answer.text


class StripeSandbox(LinkPages):
    country, currency, gateway = "US", "usd", "stripe"
    payer_phone = None  # what a payer here signs up with: Stripe needs no phone
    method_type = "card"  # what the hosted page pays with
    prorates_changes = True  # a plan change is charged at once, prorated
    link_path = "/v1/payment_links"
    api_headers = {"Authorization": "Bearer sk_test_sandbox"}

    def link_active_at_gateway(self, url):
        payment_link = self.http.get(f"{self.base}/v1/payment_links/{url.rstrip('/').rsplit('/', 1)[1]}",
                                     headers=self.api_headers, timeout=10).json()
        return payment_link["active"]

    def active_links_for(self, link_id):
        """Payment Links at the sandbox made for our link, still payable."""
        log = self.http.get(f"{self.base}/_sandbox/requests", timeout=10).json()
        made = {entry["object_id"] for entry in log if entry["method"] == "POST" and entry["path"] == self.link_path
                and (entry["params"].get("metadata") or {}).get("link_id") == link_id and entry["object_id"]}
        return sum(self.http.get(f"{self.base}/v1/payment_links/{plink}", headers=self.api_headers,
                                 timeout=10).json()["active"] for plink in made)

    def __init__(self, stack):
        self.base = stack.stripe_sandbox
        self.http = requests.Session()

    def session_id(self, redirect_url):
        return re.search(r"/checkout/([^/?#]+)", redirect_url).group(1)

    def press_pay(self, redirect_url):
        """Open the hosted page as a browser would and press Pay; the gateway's 303 back to us."""
        page = self.http.get(redirect_url, timeout=10)
        assert page.status_code == 200 and "Pay" in page.text, page.text
        answer = self.http.post(f"{self.base}/checkout/{self.session_id(redirect_url)}/pay", timeout=10,
                                allow_redirects=False)
        assert answer.status_code == 303, answer.text
        return answer

    def pay(self, redirect_url):
        """Press Pay and follow the redirect back to us."""
        return self.http.get(self.press_pay(redirect_url).headers["Location"], timeout=10)

    def decline(self, redirect_url):
        answer = self.http.post(f"{self.base}/checkout/{self.session_id(redirect_url)}/decline", timeout=10,
                                allow_redirects=False)
        assert answer.status_code == 303, answer.text
        return answer

    def subscription_of(self, checkout):
        session = self.http.get(f"{self.base}/v1/checkout/sessions/{self.session_id(checkout['redirect_url'])}",
                                timeout=10, headers={"Authorization": "Bearer sk_test_sandbox"}).json()
        return session["subscription"]

    def renew(self, checkout, paid=True):
        subscription = self.subscription_of(checkout)
        answer = self.http.post(f"{self.base}/_sandbox/subscriptions/{subscription}/renew", timeout=10,
                                json={"outcome": "paid" if paid else "failed"})
        assert answer.status_code == 200, answer.text

    def checkout_state_at_gateway(self, checkout):
        session = self.http.get(f"{self.base}/v1/checkout/sessions/{self.session_id(checkout['redirect_url'])}",
                                headers=self.api_headers, timeout=10).json()
        return session["status"]  # open | complete | expired

    def fail_next_checkout_creation(self, kind, times=1, delay_seconds=3):
        answer = self.http.post(f"{self.base}/_sandbox/faults", timeout=10, json={
            "method": "POST", "path": "/v1/checkout/sessions", "kind": kind, "times": times,
            "delay_seconds": delay_seconds})
        assert answer.status_code in (200, 201), answer.text

    def clear_faults(self):
        self.http.delete(f"{self.base}/_sandbox/faults", timeout=10)

    def assert_requests_valid(self):
        """Stripe's sandbox refuses unknown parameters itself; nothing more to check here."""

    # -- money checks: what is live, refunded, closed at the gateway --------------------------

    LIVE = ("active", "trialing", "past_due", "incomplete")

    def _api(self, path, **params):
        answer = self.http.get(f"{self.base}{path}", params=params, headers=self.api_headers, timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()

    def _listed(self, path, **params):
        items, after = [], None
        while True:
            page = self._api(path, limit=100, **({"starting_after": after} if after else {}), **params)
            items += page["data"]
            if not page["has_more"]:
                return items
            after = page["data"][-1]["id"]

    def live_subscriptions_by_account(self):
        """{billing account id: live subscriptions at Stripe} (every subscription carries our ids)."""
        counts = {}
        for subscription in self._listed("/v1/subscriptions", status="all"):
            account = (subscription.get("metadata") or {}).get("account_id")
            if subscription["status"] in self.LIVE and account:
                counts[account] = counts.get(account, 0) + 1
        return counts

    def subscription_status(self, checkout):
        return self._api(f"/v1/subscriptions/{self.subscription_of(checkout)}")["status"]

    def refunded_amount(self, checkout):
        """What was refunded at Stripe of the payments of the checkout's subscription."""
        refunded = 0
        for invoice in self._listed("/v1/invoices", subscription=self.subscription_of(checkout), status="paid"):
            for payment in self._listed("/v1/invoice_payments", invoice=invoice["id"]):
                refunded += sum(refund["amount"] for refund in self._listed(
                    "/v1/refunds", payment_intent=payment["payment"]["payment_intent"]))
        return refunded

    def closing_path(self, checkout):
        return f"/v1/checkout/sessions/{self.session_id(checkout['redirect_url'])}/expire"

    def decline_saved_cards(self, checkout):
        customer = self._api(f"/v1/checkout/sessions/{self.session_id(checkout['redirect_url'])}")["customer"]
        answer = self.http.post(f"{self.base}/_sandbox/customers/{customer}/card", json={"declines": True}, timeout=10)
        assert answer.status_code == 200, answer.text

    def subscription_price(self, checkout):
        subscription = self._api(f"/v1/subscriptions/{self.subscription_of(checkout)}")
        return subscription["items"]["data"][0]["price"]["unit_amount"], subscription.get("pending_update")

    def checkout_sessions_created_for(self, checkout_id):
        """How many distinct Checkout Sessions the sandbox made for one of our checkouts."""
        log = self.http.get(f"{self.base}/_sandbox/requests", timeout=10).json()
        return len({entry["object_id"] for entry in log
                    if entry["method"] == "POST" and entry["path"] == "/v1/checkout/sessions"
                    and entry["params"].get("client_reference_id") == checkout_id and entry["object_id"]})


class CashfreeSandbox(LinkPages):
    country, currency, gateway = "IN", "inr", "cashfree"
    payer_phone = "+919812345678"  # Cashfree takes no payment without one (signup requires it in India)
    method_type = "upi"
    prorates_changes = False  # Cashfree's CHANGE_PLAN charges the new price from the next cycle
    create_path = "/pg/subscriptions"
    link_path = "/pg/links"
    api_headers = {"x-client-id": "cf_sandbox_client", "x-client-secret": "cf_sandbox_secret",
                   "x-api-version": "2025-01-01", "x-request-id": "e2e-test-driver"}

    def _link_status(self, cashfree_link_id):
        answer = self.http.get(f"{self.base}/pg/links/{cashfree_link_id}", headers=self.api_headers, timeout=10)
        return answer.json().get("link_status") if answer.status_code == 200 else None

    def link_active_at_gateway(self, url):
        return self._link_status(url.rstrip("/").rsplit("/", 1)[1]) == "ACTIVE"

    def active_links_for(self, link_id):
        return int(self._link_status(f"lnk_{link_id.replace('-', '')}") == "ACTIVE")  # the adapter's naming

    def __init__(self, stack):
        self.base = stack.cashfree_sandbox
        self.http = requests.Session()

    def session_id(self, redirect_url):
        """Our page names the Cashfree session it opens (the JS SDK would navigate there)."""
        page = self.http.get(redirect_url, timeout=10)
        assert page.status_code == 200 and "subscriptionsCheckout" in page.text, page.text
        script = re.search(r'<script src="([^"]+)"', page.text).group(1)
        assert "subscriptionsCheckout" in self.http.get(script, timeout=10).text
        return re.search(r'data-session-id="([^"]+)"', page.text).group(1)

    # -- money checks: what is live, refunded, closed at the gateway --------------------------

    LIVE = ("ACTIVE", "ON_HOLD", "BANK_APPROVAL_PENDING", "PAUSED")

    def live_subscriptions_by_account(self):
        """{billing account id: live subscriptions at Cashfree} (tagged with our ids when made)."""
        answer = self.http.get(f"{self.base}/_sandbox/subscriptions", timeout=10)
        assert answer.status_code == 200, answer.text
        counts = {}
        for subscription in answer.json():
            account = (subscription.get("subscription_tags") or {}).get("account_id")
            if subscription["subscription_status"] in self.LIVE and account:
                counts[account] = counts.get(account, 0) + 1
        return counts

    def subscription_status(self, checkout):
        return self.http.get(f"{self.base}/pg/subscriptions/{self.subscription_of(checkout)}",
                             headers=self.api_headers, timeout=10).json()["subscription_status"]

    def payments(self, checkout):
        return self.http.get(f"{self.base}/pg/subscriptions/{self.subscription_of(checkout)}/payments",
                             headers=self.api_headers, timeout=10).json()

    def refunded_amount(self, checkout):
        """What was refunded at Cashfree of the payments of the checkout's subscription (in paise)."""
        refunded = 0
        for payment in self.payments(checkout):
            answer = self.http.get(f"{self.base}/pg/subscriptions/{self.subscription_of(checkout)}/refunds/"
                                   f"dup_{payment['cf_payment_id']}", headers=self.api_headers, timeout=10)
            if answer.status_code == 200:
                refunded += int(Decimal(str(answer.json()["refund_amount"])) * 100)
        return refunded

    def closing_path(self, checkout):
        return f"/pg/subscriptions/{self.subscription_of(checkout)}/manage"  # CANCEL closes it

    def fail_charges(self, checkout):
        """The bank will refuse the mandate's charges (sticky)."""
        answer = self.http.post(f"{self.base}/_sandbox/subscriptions/{self.subscription_of(checkout)}/charges",
                                json={"outcome": "failed"}, timeout=10)
        assert answer.status_code == 200, answer.text

    def pay_with(self, redirect_url, method):
        return self.http.get(self._press(redirect_url, "pay", method).headers["Location"], timeout=10)

    def _press(self, redirect_url, button, method="upi"):
        checkout_page = f"{self.base}/checkout/subscription/{self.session_id(redirect_url)}"
        assert "Pay" in self.http.get(checkout_page, timeout=10).text
        answer = self.http.post(f"{checkout_page}/{button}", data={"method": method}, timeout=10,
                                allow_redirects=False)
        assert answer.status_code == 303, answer.text
        return answer

    def press_pay(self, redirect_url):
        return self._press(redirect_url, "pay")

    def pay(self, redirect_url):
        return self.http.get(self.press_pay(redirect_url).headers["Location"], timeout=10)

    def decline(self, redirect_url):
        return self._press(redirect_url, "decline")

    @staticmethod
    def subscription_of(checkout):
        return f"chk_{checkout['id'].replace('-', '')}"  # the adapter names it after our checkout

    def checkout_state_at_gateway(self, checkout):
        subscription = self.http.get(f"{self.base}/pg/subscriptions/{self.subscription_of(checkout)}",
                                     headers=self.api_headers, timeout=10).json()
        return {"INITIALIZED": "open", "ACTIVE": "complete"}.get(subscription["subscription_status"], "expired")

    def renew(self, checkout, paid=True):
        answer = self.http.post(f"{self.base}/_sandbox/subscriptions/{self.subscription_of(checkout)}/charge",
                                json={"outcome": "success" if paid else "failed"}, timeout=10)
        assert answer.status_code == 200, answer.text

    def fail_next_checkout_creation(self, kind, times=1, delay_seconds=3):
        answer = self.http.post(f"{self.base}/_sandbox/faults", timeout=10, json={
            "method": "POST", "path": self.create_path, "kind": kind, "times": times,
            "delay_seconds": delay_seconds})
        assert answer.status_code in (200, 201), answer.text

    def clear_faults(self):
        self.http.delete(f"{self.base}/_sandbox/faults", timeout=10)

    def assert_requests_valid(self):
        """The sandbox checks every request body against Cashfree's OpenAPI: the adapter sent none it refused."""
        log = self.http.get(f"{self.base}/_sandbox/requests", timeout=10).json()
        refused = [entry for entry in log if entry.get("validation_errors")]
        assert refused == [], refused
        api_calls = [entry for entry in log if entry["path"].startswith("/pg/")]
        assert all(entry["headers"]["x-api-version"] == "2025-01-01" and entry["headers"]["x-request-id"]
                   for entry in api_calls)
        assert all(entry["headers"]["x-idempotency-key"] for entry in api_calls if entry["method"] == "POST")

    def customers_sent_for(self, email):
        """customer_details of every subscription and link Cashfree was asked to make for the payer
        with this email, oldest first."""
        log = self.http.get(f"{self.base}/_sandbox/requests", timeout=10).json()
        return [entry["body"]["customer_details"] for entry in log
                if entry["method"] == "POST" and entry["path"] in (self.create_path, self.link_path)
                and entry["body"]["customer_details"].get("customer_email") == email]

    def checkout_sessions_created_for(self, checkout_id):
        log = self.http.get(f"{self.base}/_sandbox/requests", timeout=10).json()
        return len({(entry.get("body") or {}).get("subscription_id") for entry in log
                    if entry["method"] == "POST" and entry["path"] == self.create_path
                    and ((entry.get("body") or {}).get("subscription_tags") or {}).get("checkout_id") == checkout_id
                    and entry["status"] == 200})


DRIVERS = {"US": StripeSandbox, "IN": CashfreeSandbox}


class EventTap:
    """A queue bound to one service's events on the stack's vhost: counts what was announced."""

    def __init__(self, amqp_uri, source, event_type):
        self.connection = Connection(amqp_uri)
        exchange = Exchange(f"{source}.events", type="topic", durable=True)
        self.queue = Queue(f"tap-{source}-{event_type}-{id(self)}", exchange, routing_key=event_type,
                           auto_delete=False, durable=False)
        self.queue = self.queue(self.connection.default_channel)
        self.queue.declare()

    def drain(self):
        messages = []
        while (message := self.queue.get(no_ack=True)) is not None:
            messages.append(message.payload)
        return messages

    def close(self):
        self.queue.delete()
        self.connection.release()
