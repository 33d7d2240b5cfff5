"""Secrets fail closed: outside sandbox mode every secret is set by the deployment, or no service starts."""
import os
import subprocess
import sys

import pytest

from deploy.stack import ROOT
from shared.config import (
    REQUIRED_SECRETS, SANDBOX_VALUES, MissingSecrets, check_secrets, sandbox_mode, settings,
)

REAL = {"STRIPE_SECRET_KEY": "sk_live_x", "STRIPE_WEBHOOK_SECRET": "whsec_real",
        "CASHFREE_CLIENT_ID": "cf_real_client", "CASHFREE_CLIENT_SECRET": "cf_real_secret",
        "USAGE_INGEST_KEY": "a-real-ingest-key"}


@pytest.fixture
def environment(monkeypatch):
    """environment(**variables): exactly these secrets set (the rest unset), settings re-read."""
    def set_only(**variables):
        for name in REQUIRED_SECRETS:
            monkeypatch.delenv(name, raising=False)
        for name, value in variables.items():
            monkeypatch.setenv(name, value)
        settings.cache_clear()

    yield set_only
    settings.cache_clear()


def test_sandbox_mode_needs_no_secret_and_uses_the_sandboxes_values(environment):
    environment()
    assert sandbox_mode()
    check_secrets()  # no refusal: the local sandboxes sign with their public values
    assert (settings().stripe_webhook_secret, settings().cashfree_client_secret) == (
        SANDBOX_VALUES["STRIPE_WEBHOOK_SECRET"], SANDBOX_VALUES["CASHFREE_CLIENT_SECRET"])
    assert settings().usage_ingest_key == ""  # ingestion stays shut: an empty key authenticates nothing


def test_a_complete_set_of_real_secrets_starts(environment):
    environment(**REAL)
    assert not sandbox_mode()
    check_secrets()
    assert settings().stripe_webhook_secret == "whsec_real"


@pytest.mark.parametrize("name", REQUIRED_SECRETS)
def test_outside_sandbox_mode_each_missing_secret_is_named(environment, name):
    environment(**{key: value for key, value in REAL.items() if key != name})
    assert not sandbox_mode()  # one gateway's real key is enough to leave it
    with pytest.raises(MissingSecrets) as raised:
        check_secrets()
    assert raised.value.names == (name,)
    assert name in str(raised.value)


@pytest.mark.parametrize("name", sorted(SANDBOX_VALUES))
def test_outside_sandbox_mode_a_sandbox_value_counts_as_missing(environment, name):
    """The sandboxes' values are in this repository: a live webhook secret left at one lets anyone sign."""
    environment(**{**REAL, name: SANDBOX_VALUES[name]})
    assert not sandbox_mode()  # the other gateway's real key
    with pytest.raises(MissingSecrets) as raised:
        check_secrets()
    assert raised.value.names == (name,)


def test_a_real_stripe_key_alone_names_every_other_secret_and_has_no_default(environment):
    environment(STRIPE_SECRET_KEY="sk_live_x")
    with pytest.raises(MissingSecrets) as raised:
        check_secrets()
    assert raised.value.names == ("STRIPE_WEBHOOK_SECRET", "CASHFREE_CLIENT_ID", "CASHFREE_CLIENT_SECRET",
                                  "USAGE_INGEST_KEY")
    assert (settings().stripe_webhook_secret, settings().cashfree_client_secret) == ("", "")


def test_a_service_with_a_live_key_and_no_webhook_secret_refuses_to_start():
    """python -m shared.runner billing, as supervisord starts it: a one-line refusal naming the
    variable and a non-zero exit, before it touches the broker (an unreachable one here) or a database."""
    env = {key: value for key, value in os.environ.items() if key not in REQUIRED_SECRETS}
    env.update(STRIPE_SECRET_KEY="sk_live_x", CASHFREE_CLIENT_ID="cf_real_client",
               CASHFREE_CLIENT_SECRET="cf_real_secret", USAGE_INGEST_KEY="a-real-ingest-key",
               AMQP_URI="pyamqp://guest:guest@127.0.0.1:9/", DATABASE_URL="postgresql://127.0.0.1:9/")
    done = subprocess.run([sys.executable, "-m", "shared.runner", "billing"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "STRIPE_WEBHOOK_SECRET" in output, output
    assert "Traceback" not in output and len(output.strip().splitlines()) == 1, output
