"""Settings from the environment variables of API.md, with its defaults.

One place reads the environment; everything else asks `settings()`. Secrets have defaults only in
sandbox mode (check_secrets says what must be set outside it).
"""
import os
import sys
from dataclasses import dataclass
from functools import lru_cache

# The services that own a database (each its own; usage_ingest writes into usage's).
DATABASE_OWNERS = ("identity", "orgs", "billing", "gateway_stripe", "gateway_cashfree", "usage")
# Every nameko service of the portal (gateway_http pings them all for /healthz).
SERVICE_NAMES = DATABASE_OWNERS + ("usage_ingest",)


@dataclass(frozen=True)
class Settings:
    amqp_uri: str
    database_url: str
    database_prefix: str
    http_port: int
    public_base_url: str
    stripe_secret_key: str
    stripe_webhook_secret: str
    stripe_api_base: str
    cashfree_client_id: str
    cashfree_client_secret: str
    cashfree_api_base: str
    cashfree_js_sdk_url: str
    cashfree_mode: str  # "sandbox" | "production", as Cashfree's JS SDK wants it
    usage_ingest_key: str
    token_ttl_seconds: int
    invitation_ttl_seconds: int
    rpc_timeout_seconds: float
    login_failures_per_email: int
    login_failures_per_ip: int
    login_failure_window_seconds: int

    def nameko_config(self, **overrides):
        """The dict nameko containers are built with."""
        config = {
            "AMQP_URI": self.amqp_uri,
            "WEB_SERVER_ADDRESS": f"0.0.0.0:{self.http_port}",
            "max_workers": 10,
            "parent_calls_tracked": 10,
            "serializer": "json",
        }
        config.update(overrides)
        return config


def _env(name, default):
    value = os.environ.get(name)
    return default if value in (None, "") else value


# The local sandboxes' credentials: public (they are in this repository), so only ever good for the
# sandboxes, which sign their webhooks with them.
SANDBOX_STRIPE_KEY = "sk_test_sandbox"
SANDBOX_STRIPE_WEBHOOK_SECRET = "whsec_sandbox"
SANDBOX_CASHFREE_CLIENT_ID = "cf_sandbox_client"
SANDBOX_CASHFREE_CLIENT_SECRET = "cf_sandbox_secret"
SANDBOX_VALUES = {
    "STRIPE_SECRET_KEY": SANDBOX_STRIPE_KEY, "STRIPE_WEBHOOK_SECRET": SANDBOX_STRIPE_WEBHOOK_SECRET,
    "CASHFREE_CLIENT_ID": SANDBOX_CASHFREE_CLIENT_ID, "CASHFREE_CLIENT_SECRET": SANDBOX_CASHFREE_CLIENT_SECRET,
}
# What a deployment outside sandbox mode must set itself, in the order the refusal names them.
REQUIRED_SECRETS = ("STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "CASHFREE_CLIENT_ID", "CASHFREE_CLIENT_SECRET",
                    "USAGE_INGEST_KEY")


def stripe_is_sandbox():
    """No real Stripe key set: `make up` runs the local Stripe sandbox and the adapter talks to it."""
    return _env("STRIPE_SECRET_KEY", SANDBOX_STRIPE_KEY) == SANDBOX_STRIPE_KEY


def cashfree_is_sandbox():
    return _env("CASHFREE_CLIENT_ID", SANDBOX_CASHFREE_CLIENT_ID) == SANDBOX_CASHFREE_CLIENT_ID


def sandbox_mode():
    """No real credentials for either gateway: both adapters talk to the local sandboxes."""
    return stripe_is_sandbox() and cashfree_is_sandbox()


def _secret(name):
    """A secret's value; outside sandbox mode there is no default (the sandbox's is public)."""
    return _env(name, SANDBOX_VALUES[name] if sandbox_mode() else "")


class MissingSecrets(RuntimeError):
    """Secrets a deployment outside sandbox mode must set, and did not: the services refuse to start."""

    def __init__(self, names):
        self.names = tuple(names)
        super().__init__(
            f"set {', '.join(self.names)}: outside sandbox mode (a real STRIPE_SECRET_KEY or CASHFREE_CLIENT_ID "
            f"is set) no secret has a default, and the sandboxes' public values do not count (README: Secrets)")


def check_secrets():
    """Raise MissingSecrets naming every secret that must be set and is not (one check at start,
    shared.runner, for every service). Sandbox mode needs none: the sandboxes' public values stand
    in for the gateways' secrets, and an unset USAGE_INGEST_KEY only leaves ingestion shut (an empty
    key authenticates nothing). Outside it, each of REQUIRED_SECRETS must be set, and to something
    other than the sandbox's value, which anyone can read here: a webhook secret left at it would
    let anyone sign events."""
    if sandbox_mode():
        return
    missing = [name for name in REQUIRED_SECRETS if _env(name, "") in ("", SANDBOX_VALUES.get(name))]
    if missing:
        raise MissingSecrets(missing)


def _cashfree_sdk_default(default_base):
    """The local sandbox serves a stand-in for Cashfree's JS SDK beside its API; otherwise Cashfree's own."""
    if cashfree_is_sandbox():
        base = _env("CASHFREE_API_BASE", default_base)
        return f"{base.rstrip('/').removesuffix('/pg')}/js/v3/cashfree.js"
    return "https://sdk.cashfree.com/js/v3/cashfree.js"


@lru_cache(maxsize=1)
def settings() -> Settings:
    http_port = int(_env("HTTP_PORT", "8000"))
    stripe_default_base = (f"http://127.0.0.1:{_env('STRIPE_SANDBOX_PORT', '12111')}" if stripe_is_sandbox()
                           else "https://api.stripe.com")
    cashfree_default_base = (f"http://127.0.0.1:{_env('CASHFREE_SANDBOX_PORT', '12112')}/pg"
                             if cashfree_is_sandbox() else "https://api.cashfree.com/pg")
    return Settings(
        amqp_uri=_env("AMQP_URI", "pyamqp://guest:guest@127.0.0.1:5672/"),
        database_url=_env("DATABASE_URL", "postgresql://127.0.0.1:5432/"),
        # Each service's database is <prefix><service>; tests use their own prefix.
        database_prefix=_env("DATABASE_PREFIX", "portal_"),
        http_port=http_port,
        public_base_url=_env("PUBLIC_BASE_URL", f"http://127.0.0.1:{http_port}").rstrip("/"),
        stripe_secret_key=_env("STRIPE_SECRET_KEY", SANDBOX_STRIPE_KEY),
        stripe_webhook_secret=_secret("STRIPE_WEBHOOK_SECRET"),
        stripe_api_base=_env("STRIPE_API_BASE", stripe_default_base),
        cashfree_client_id=_env("CASHFREE_CLIENT_ID", SANDBOX_CASHFREE_CLIENT_ID),
        cashfree_client_secret=_secret("CASHFREE_CLIENT_SECRET"),
        cashfree_api_base=_env("CASHFREE_API_BASE", cashfree_default_base),
        cashfree_js_sdk_url=_env("CASHFREE_JS_SDK_URL", _cashfree_sdk_default(cashfree_default_base)),
        cashfree_mode=_env("CASHFREE_MODE", "production" if "api.cashfree.com" in
                           _env("CASHFREE_API_BASE", cashfree_default_base) else "sandbox"),
        usage_ingest_key=_env("USAGE_INGEST_KEY", ""),
        token_ttl_seconds=int(_env("TOKEN_TTL_SECONDS", str(24 * 3600))),
        invitation_ttl_seconds=int(_env("INVITATION_TTL_SECONDS", str(7 * 24 * 3600))),
        rpc_timeout_seconds=float(_env("RPC_TIMEOUT_SECONDS", "30")),
        # Login brute force: this many failed logins within the window lock out further attempts
        # for that email (any client), or from that client address (any email), until the oldest
        # failures age out of the window. An address sees many people behind one NAT: a wider limit.
        login_failures_per_email=max(1, int(_env("LOGIN_FAILURES_PER_EMAIL", "5"))),
        login_failures_per_ip=max(1, int(_env("LOGIN_FAILURES_PER_IP", "50"))),
        login_failure_window_seconds=int(_env("LOGIN_FAILURE_WINDOW_SECONDS", str(15 * 60))),
    )


if __name__ == "__main__":  # python -m shared.config: deploy/up.sh asks before it starts anything
    try:
        check_secrets()
    except MissingSecrets as missing:
        sys.exit(str(missing))
