"""The thin wrapper around Cashfree's PG REST API (version 2025-01-01), with `requests`.

Base URL from CASHFREE_API_BASE (the local sandbox by default). Every call carries x-client-id,
x-client-secret, x-api-version and a fresh x-request-id; every POST carries an x-idempotency-key
derived from our own record, which is what makes retrying a POST safe: retries (on connection
errors, timeouts and 5xx) happen only because of it. Amounts cross as rupees with exact decimals
(simplejson's Decimal support), never floats. Cashfree's `{message, code, type}` errors and any
transport failure leave this module as the shared GatewayError; the details go to our log.
"""
import logging
import os
import uuid
from decimal import Decimal
from functools import lru_cache
from urllib.parse import urlsplit

import requests
import simplejson
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from shared.config import settings
from shared.errors import GatewayError
from shared.money import Money

log = logging.getLogger(__name__)

API_VERSION = "2025-01-01"
TIMEOUT_SECONDS = float(os.environ.get("CASHFREE_TIMEOUT_SECONDS", "6"))
NETWORK_RETRIES = int(os.environ.get("CASHFREE_NETWORK_RETRIES", "2"))


def account_scope():
    """The merchant and environment of the credentials in use, "<client id>@<API host>": what the
    adapter keeps the plans it made under. Cashfree has no account endpoint, but a client id
    belongs to one merchant in one environment, and the host tells sandbox from production."""
    config = settings()
    return f"{config.cashfree_client_id}@{urlsplit(config.cashfree_api_base).netloc}"


def refusal_status(error: GatewayError):
    """The HTTP status Cashfree refused with (None when it did not answer): for the adapter's own
    decisions, e.g. 409 on a plan that already exists. The error itself stays the shared type, so
    it crosses RPC as GatewayError."""
    return error.details.get("status")


def rupees(paise: int) -> Decimal:
    return Money(paise, "inr").to_major()


def paise(amount) -> int:
    """Cashfree's rupee amount (Decimal, int or numeric string) in paise; refuses sub-paisa values."""
    return Money.from_major(amount if isinstance(amount, (int, str)) else str(amount), "inr").amount


@lru_cache(maxsize=1)
def _session():
    session = requests.Session()
    retry = Retry(total=NETWORK_RETRIES, connect=NETWORK_RETRIES, read=NETWORK_RETRIES, status=NETWORK_RETRIES,
                  backoff_factor=0.3, status_forcelist=(500, 502, 503, 504), allowed_methods=None,
                  raise_on_status=False)
    session.mount("http://", HTTPAdapter(max_retries=retry))
    session.mount("https://", HTTPAdapter(max_retries=retry))
    return session


def call(method, path, body=None, idempotency_key=None):
    """One API call; the parsed JSON answer (Decimal amounts). Raises GatewayError."""
    config = settings()
    headers = {
        "x-client-id": config.cashfree_client_id,
        "x-client-secret": config.cashfree_client_secret,
        "x-api-version": API_VERSION,
        "x-request-id": str(uuid.uuid4()),
        "Accept": "application/json",
    }
    if idempotency_key:
        headers["x-idempotency-key"] = idempotency_key
    data = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = simplejson.dumps(body, use_decimal=True)
    url = f"{config.cashfree_api_base.rstrip('/')}{path}"
    try:
        response = _session().request(method, url, data=data, headers=headers, timeout=(3, TIMEOUT_SECONDS))
    except requests.RequestException as exc:
        log.warning("cashfree %s %s failed: %r (request %s)", method, path, exc, headers["x-request-id"])
        raise GatewayError(details={"gateway": "cashfree"}) from None
    try:
        answer = simplejson.loads(response.text, use_decimal=True) if response.text else {}
    except ValueError:
        answer = {}
    if response.status_code >= 400:
        error = answer if isinstance(answer, dict) else {}
        log.warning("cashfree %s %s answered %s: %s (%s, %s; request %s)", method, path, response.status_code,
                    error.get("message"), error.get("code"), error.get("type"), headers["x-request-id"])
        raise GatewayError(details={"gateway": "cashfree", "status": response.status_code, "code": error.get("code")})
    return answer
