"""Plan usage end to end: usage reported by a service with the ingest key shows on the billing page
against the plan's quota; crossing 80 % is announced once."""
import uuid
from datetime import datetime, timezone

import pytest

from tests.e2e.conftest import buy, eventually

pytestmark = pytest.mark.e2e
GIB = 1024 ** 3


def report(client, account, value, key="e2e-usage-key", event_id=None):
    return client.post("/api/v1/usage/events", headers={"Authorization": f"Bearer {key}"}, json={"events": [{
        "id": event_id or str(uuid.uuid4()), "account": account, "metric": "storage_bytes", "value": value,
        "timestamp": datetime.now(timezone.utc).isoformat()}]})


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "e2e-usage-key"}])
def test_ingestion_needs_the_ingest_key(anonymous, headers):
    answer = anonymous.post("/api/v1/usage/events", headers=headers, json={"events": []})
    assert answer.status_code == 401


@pytest.mark.parametrize("body", [b'{"events": [', b"[1, 2]", b'{"events": "all of them"}'])
def test_a_body_that_is_not_a_batch_is_refused_in_the_api_format(anonymous, body):
    """usage_ingest parses the body (gateway_http passes it on as text): its refusal crosses RPC."""
    answer = anonymous.post("/api/v1/usage/events", data=body, headers={
        "Authorization": "Bearer e2e-usage-key", "Content-Type": "application/json"})
    expected = (400, "MALFORMED_JSON") if body == b'{"events": [' else (422, "VALIDATION_FAILED")
    assert (answer.status_code, answer.json()["error"]["code"]) == expected, answer.text


def test_more_than_1000_events_are_refused(anonymous):
    events = [{"id": str(i), "account": {"kind": "org", "id": "x"}, "metric": "storage_bytes", "value": 1,
               "timestamp": "2026-01-01T00:00:00Z"} for i in range(1001)]
    answer = anonymous.post("/api/v1/usage/events", headers={"Authorization": "Bearer e2e-usage-key"},
                            json={"events": events})
    assert answer.status_code == 422


def test_usage_shows_against_the_quota_and_80_percent_is_announced_once(org_owner, region, tap, anonymous):
    buy(org_owner, region, "starter_monthly")  # 10 GiB
    account = {"kind": "org", "id": org_owner.org["id"]}
    crossings = tap("usage", "usage.threshold_crossed")
    quota_known = eventually(lambda: (u := org_owner.get(f"{org_owner.acct}/usage").json())["quota_bytes"] and u)
    assert quota_known["quota_bytes"] == 10 * GIB

    event_id = str(uuid.uuid4())
    first = report(anonymous, account, 9 * GIB, event_id=event_id)
    assert first.status_code == 202 and first.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    assert report(anonymous, account, 9 * GIB, event_id=event_id).json()["duplicates"] == 1  # sent again
    report(anonymous, account, int(9.5 * GIB))

    summary = org_owner.get(org_owner.acct).json()["usage"]
    assert (summary["used_bytes"], summary["quota_bytes"], summary["percent"]) == (int(9.5 * GIB), 10 * GIB, 95.0)
    usage = org_owner.get(f"{org_owner.acct}/usage").json()
    assert usage["used_bytes"] == int(9.5 * GIB) and usage["daily"][-1]["used_bytes"] == int(9.5 * GIB)
    assert [(c["threshold"], c["account"]["id"]) for c in eventually(crossings.drain)] == [(80, account["id"])]


def test_a_batch_with_bad_events_keeps_the_good_ones(org_owner, anonymous):
    account = {"kind": "org", "id": org_owner.org["id"]}
    # usage learns of a new org from orgs' org.created event: a moment after it is made
    assert eventually(lambda: report(anonymous, account, 1).json()["accepted"] == 1)
    good = {"id": str(uuid.uuid4()), "account": account, "metric": "storage_bytes", "value": 5,
            "timestamp": datetime.now(timezone.utc).isoformat()}
    bad = [{**good, "id": "negative", "value": -1}, {**good, "id": "future", "timestamp": "2999-01-01T00:00:00Z"},
           {**good, "id": "stranger", "account": {"kind": "org", "id": str(uuid.uuid4())}}]
    answer = anonymous.post("/api/v1/usage/events", headers={"Authorization": "Bearer e2e-usage-key"},
                            json={"events": [good, *bad]}).json()
    assert answer["accepted"] == 1
    assert sorted(rejected["id"] for rejected in answer["rejected"]) == ["future", "negative", "stranger"]


def test_usage_reads_follow_role_changes_and_removals(team):
    """usage authorizes reads from its projection of orgs' member events: a demotion and a removal
    reach it through RabbitMQ, a moment after orgs made them."""
    org, members = team
    usage_page = f"/api/v1/orgs/{org['id']}/billing/usage"
    admin = members["admin"]
    assert admin.get(usage_page).status_code == 200
    assert members["standard"].get(usage_page).status_code == 403
    assert members["outsider"].get(usage_page).status_code == 404

    owner = members["owner"]
    assert owner.patch(f"/api/v1/orgs/{org['id']}/members/{admin.user['id']}",
                       json={"role": "standard"}).status_code == 200
    assert eventually(lambda: admin.get(usage_page).status_code == 403)
    assert owner.patch(f"/api/v1/orgs/{org['id']}/members/{admin.user['id']}",
                       json={"role": "super_admin"}).status_code == 200
    assert eventually(lambda: admin.get(usage_page).status_code == 200)
    assert owner.delete(f"/api/v1/orgs/{org['id']}/members/{admin.user['id']}").status_code == 204
    assert eventually(lambda: admin.get(usage_page).status_code == 404)
