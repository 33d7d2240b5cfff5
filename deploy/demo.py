"""`make demo`: purchases end to end over HTTP against a running portal (`make up`), in both regions.

For a US user (Stripe, usd) and then an India user (Cashfree, inr): sign up, create an
organization, ask for a quote, press Pay Now, open the gateway's hosted page and press its Pay
button as a browser would, then print the billing page once the gateway's webhooks have made the
plan active; then the same for the user's personal licence; then a payment link for another
organization, paid by someone with no account here.

    python -m deploy.demo [BASE_URL]       (default http://127.0.0.1:8000)
"""
import json
import re
import sys
import time
import uuid
from urllib.parse import urljoin

import requests

PLAN = "growth_monthly"
PHONES = {"US": None, "IN": "+919812345678"}  # Cashfree takes no payment without the payer's phone


def step(text):
    print(f"\n== {text}")


def show(data):
    print(json.dumps(data, indent=2))


class Portal:
    def __init__(self, base_url):
        self.base = base_url.rstrip("/")
        self.http = requests.Session()

    def call(self, method, path, expect, **kwargs):
        answer = self.http.request(method, self.base + path, timeout=30, **kwargs)
        if answer.status_code != expect:
            sys.exit(f"{method} {path} answered {answer.status_code}, expected {expect}: {answer.text}")
        return answer.json() if answer.content else None


def press_pay(redirect_url):
    """What a payer's browser does: open the page; where it is our Cashfree page, follow what
    Cashfree's JS SDK would do (open the session's checkout); then submit the Pay form."""
    browser = requests.Session()
    page = browser.get(redirect_url, timeout=30)
    page.raise_for_status()
    session = re.search(r'data-session-id="([^"]+)"', page.text)
    if session:  # the JS SDK navigates to Cashfree's checkout for the session
        sdk = re.search(r'<script src="([^"]+)"', page.text).group(1)
        checkout_url = urljoin(sdk, f"/checkout/subscription/{session.group(1)}")
        page = browser.get(checkout_url, timeout=30)
        page.raise_for_status()
    action = next(a for a in re.findall(r"<form[^>]*action=['\"]([^'\"]+)['\"]", page.text) if a.endswith("pay"))
    landed = browser.post(urljoin(page.url, action), data={"method": "upi"}, timeout=30)
    landed.raise_for_status()
    print(f"paid on the gateway page; back on {landed.url}")


def wait_active(portal, acct):
    for _ in range(100):
        summary = portal.call("GET", acct, 200)
        if summary["subscription"] and summary["subscription"]["status"] == "active":
            return summary
        time.sleep(0.2)
    sys.exit("the plan did not become active within 20 s")


def buy(portal, acct, label):
    step(f"{label}: quote for {PLAN} (what 'Upgrade Now' shows)")
    quote = portal.call("POST", f"{acct}/quotes", 201, json={"plan_code": PLAN})
    show({k: quote[k] for k in ("plan", "lines", "amount_due", "currency", "expires_at")})

    step(f"{label}: Pay Now")
    checkout = portal.call("POST", f"{acct}/checkout", 201, json={"quote_id": quote["id"]})
    print(f"checkout {checkout['id']} at {checkout['gateway']}: {checkout['redirect_url']}")
    press_pay(checkout["redirect_url"])

    step(f"{label}: the billing page once the gateway's webhooks arrived")
    show(wait_active(portal, acct))
    show({"history": portal.call("GET", f"{acct}/history", 200)["items"],
          "payment_methods": portal.call("GET", f"{acct}/payment-methods", 200)["items"]})


def pay_by_link(portal, acct, label):
    step(f"{label}: a payment link, paid by someone with no account here")
    link = portal.call("POST", f"{acct}/payment-links", 201, json={"plan_code": "starter_monthly"})
    print(f"link {link['id']} ({link['status']}, {link['amount']} {link['currency']}, expires {link['expires_at']}): "
          f"{link['url']}")
    press_pay(link["url"])
    summary = wait_active(portal, acct)
    for _ in range(100):  # the link's own webhook may trail the subscription's
        links = portal.call("GET", f"{acct}/payment-links", 200)["items"]
        status = next(item["status"] for item in links if item["id"] == link["id"])
        if status == "paid":
            break
        time.sleep(0.2)
    show({"plan": summary["subscription"]["plan"]["code"], "status": summary["subscription"]["status"],
          "link_status": status})


def main(base_url):
    for country, region in (("US", "USA, so Stripe and usd"), ("IN", "India, so Cashfree and inr")):
        portal = Portal(base_url)
        email = f"demo-{country.lower()}-{uuid.uuid4().hex[:8]}@example.com"
        step(f"sign up {email} ({region})")
        signed_up = portal.call("POST", "/api/v1/auth/signup", 201, json={
            "email": email, "password": "demo password 123", "name": "Demo Buyer", "country": country,
            "phone": PHONES[country], "plan": PLAN})
        portal.http.headers["Authorization"] = f"Bearer {signed_up['token']}"
        print(f"pending plan offered after signup: {signed_up['pending_plan']}")

        org = portal.call("POST", "/api/v1/orgs", 201, json={"name": f"Demo Corp {country}"})
        buy(portal, f"/api/v1/orgs/{org['id']}/billing", f"organization {org['name']}")
        buy(portal, "/api/v1/billing/personal", f"personal licence ({country})")
        linked = portal.call("POST", "/api/v1/orgs", 201, json={"name": f"Demo Links {country}"})
        pay_by_link(portal, f"/api/v1/orgs/{linked['id']}/billing", f"organization {linked['name']}")
    print("\nDemo complete.")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8000")
