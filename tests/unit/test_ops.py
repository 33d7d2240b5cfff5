"""deploy.ops without a running stack: arguments, and how answers are told (tests/e2e/test_ops.py
runs it against one)."""
from unittest import mock

import pytest

from deploy import ops


def test_an_account_is_kind_colon_id():
    assert ops.parse_account("org:42") == {"kind": "org", "id": "42"}
    assert ops.parse_account("personal:u-1") == {"kind": "personal", "id": "u-1"}
    for wrong in ("org:", "team:42", "42"):
        with pytest.raises(ops.OpsError):
            ops.parse_account(wrong)


def test_reconcile_needs_an_account_or_all(capsys):
    with pytest.raises(SystemExit):
        ops.main(["reconcile"])
    with pytest.raises(SystemExit):
        ops.main(["reconcile", "--account", "nobody"])


@pytest.mark.parametrize("answer, said", [
    ({"status": "unchanged", "type": "invoice.paid", "facts": []}, "already processed; replaying it changed nothing"),
    ({"status": "republished", "type": "invoice.paid", "facts": ["gateway.payment_succeeded"]},
     "re-published gateway.payment_succeeded"),
])
def test_a_replay_says_whether_it_changed_anything(capsys, answer, said):
    with mock.patch.object(ops, "call", return_value={"event_id": "evt_1", **answer}) as call:
        assert ops.main(["replay-webhook", "stripe", "evt_1"]) == 0
    call.assert_called_once_with("gateway_stripe", "replay_webhook", "evt_1")
    assert said in capsys.readouterr().out


def test_a_refusal_is_an_error_and_status_1(capsys):
    with mock.patch.object(ops, "call", side_effect=ops.OpsError("No stored Cashfree webhook x.")):
        assert ops.main(["replay-webhook", "cashfree", "x"]) == 1
    assert "error: No stored Cashfree webhook x." in capsys.readouterr().err


def test_reconcile_tells_what_was_recovered_and_closed(capsys):
    summary = {"accounts": 1, "checked": {"checkouts": 1, "subscriptions": 0, "links": 0},
               "recovered": [{"gateway": "cashfree", "gateway_event_id": "reconcile:9:SUCCESS",
                              "facts": ["gateway.checkout_completed"]}],
               "closed_checkouts": ["c-1"], "failed": ["stripe"]}
    with mock.patch.object(ops, "call", return_value=summary) as call:
        assert ops.main(["reconcile", "--account", "org:42"]) == 0
    call.assert_called_once_with("billing", "reconcile", {"kind": "org", "id": "42"})
    out = capsys.readouterr().out
    assert "recovered from cashfree reconcile:9:SUCCESS: gateway.checkout_completed" in out
    assert "closed checkout c-1" in out and "stripe could not be checked" in out


def test_alerts_list_what_billing_asks_an_operator_to_decide(capsys):
    row = {"id": "al-1", "account": {"kind": "org", "id": "42"}, "kind": "amount_mismatch",
           "created_at": "2026-12-01T00:00:00Z", "message": "The gateway collected 100 usd ...",
           "details": {"collected": {"amount": 100, "currency": "usd"}}}
    with mock.patch.object(ops, "call", return_value=[row]) as call:
        assert ops.main(["alerts"]) == 0
    call.assert_called_once_with("billing", "list_alerts")
    out = capsys.readouterr().out
    assert "al-1 org:42 amount_mismatch: The gateway collected 100 usd" in out and '"amount": 100' in out
    with mock.patch.object(ops, "call", return_value=[]):
        assert ops.main(["alerts"]) == 0
    assert capsys.readouterr().out.strip() == "no alerts"


PARKED_ROW = {"id": "p-1", "event_type": "gateway.payment_succeeded", "event_id": "e-1",
              "error": "IntegrityError: duplicate key\nDETAIL: ...", "parked_at": "2026-12-01 10:00:00+00"}


def fake_databases(tables):
    """ops.query against {service: parked rows}."""
    def query(service, sql, **params):
        return tables[service]
    return query


def test_parked_lists_every_services_parked_messages(capsys):
    with mock.patch.object(ops, "query", side_effect=fake_databases({"billing": [PARKED_ROW], "usage": []})):
        assert ops.main(["parked"]) == 0
    out = capsys.readouterr().out
    assert "1 parked message(s)" in out
    assert ("billing p-1: gateway.payment_succeeded e-1, parked 2026-12-01 10:00:00+00: IntegrityError: duplicate key"
            in out)
    with mock.patch.object(ops, "query", side_effect=fake_databases({"billing": [], "usage": []})):
        assert ops.main(["parked"]) == 0
    assert "no parked messages" in capsys.readouterr().out


def test_a_database_that_cannot_be_read_is_an_error_not_no_parked_messages(capsys):
    def query(service, sql, **params):
        if service == "usage":
            raise ConnectionRefusedError("connection refused")
        return []

    with mock.patch.object(ops, "query", side_effect=query):
        assert ops.main(["parked"]) == 1
    err = capsys.readouterr().err
    assert "usage's parked messages could not be read" in err and "no parked messages" not in err


def test_only_services_that_park_messages_can_replay_them():
    with pytest.raises(SystemExit):
        ops.main(["replay-parked", "orgs", "p-1"])


@pytest.mark.parametrize("status, said", [
    ("applied", "applied"),
    ("already_handled", "already handled by another delivery"),
    ("already_replayed", "already replayed at 2026-12-01T11:00:00Z"),
])
def test_replay_parked_says_what_happened(capsys, status, said):
    message = {**PARKED_ROW, "id": "p-1", "replayed_at": "2026-12-01T11:00:00Z"}
    with mock.patch.object(ops, "call", return_value={"status": status, "message": message}) as call:
        assert ops.main(["replay-parked", "billing", "p-1"]) == 0
    call.assert_called_once_with("billing", "replay_parked", "p-1")
    assert said in capsys.readouterr().out


def test_a_replay_that_fails_again_is_an_error(capsys):
    message = {**PARKED_ROW, "error": "ValueError: still wrong", "replayed_at": None}
    with mock.patch.object(ops, "call", return_value={"status": "failed", "message": message}):
        assert ops.main(["replay-parked", "usage", "p-1"]) == 1
    assert "failed again, still parked: ValueError: still wrong" in capsys.readouterr().err


@pytest.mark.parametrize("open_before, said", [(True, "alert al-1 resolved"), (False, "was resolved already")])
def test_resolving_an_alert_says_whether_it_was_open(capsys, open_before, said):
    with mock.patch.object(ops, "call", return_value=open_before) as call:
        assert ops.main(["resolve-alert", "al-1"]) == 0
    call.assert_called_once_with("billing", "resolve_alert", "al-1")
    assert said in capsys.readouterr().out
