"""The usage service, one worker at a time, on a real PostgreSQL database.

`worker_factory` hands the service the test's own session and mocks `orgs` (authorize) and the
outbox relay. Events from identity, orgs and billing are delivered by calling the consumers
directly, as nameko would (the consumer commits itself and dedupes on `event_id`). After every call
the session is rolled back, as a worker's session is closed: only what the service committed survives.
"""
import json
from datetime import timedelta, timezone
from uuid import uuid4

import pytest
from nameko.testing.services import worker_factory
from sqlalchemy import func, select, update

from services.usage.models import DailyUsage, Outbox, PeriodUsage, UsageEvent, UsageMember
from services.usage.ingest import UsageIngestService
from services.usage.periods import calendar_month
from services.usage.service import UsageService
from shared.errors import BadRequest, Forbidden, NotFound, ValidationFailed
from shared.events import validate_event
from shared.outbox import rfc3339, utc_now
from shared.permissions import VIEW_BILLING
from tests.unit.workers import end_like_workers

GIB = 1024 ** 3
ENTRYPOINTS = ("get_usage", "summary_for", "purge_raw_events", "on_user_signed_up", "on_org_created",
               "on_member_joined", "on_member_role_changed", "on_member_removed",
               "on_plan_purchased", "on_plan_changed", "on_plan_renewed", "on_plan_cancelled")


def iso(moment):
    return rfc3339(moment)


def make_person():
    user_id = str(uuid4())
    return {"id": user_id, "email": f"user-{user_id[:8]}@example.com", "name": "User", "country": "US"}


@pytest.fixture
def session(db_session):
    return db_session("usage")


@pytest.fixture
def usage(session):
    service = worker_factory(UsageService, db=session)

    end_like_workers(service, session, ENTRYPOINTS)
    return service


@pytest.fixture
def ingest(session):
    service = worker_factory(UsageIngestService, db=session)
    end_like_workers(service, session, ("record_events", "record_batch"))
    return service


def signed_up(usage, person):
    payload = {"event_id": str(uuid4()), "occurred_at": iso(utc_now()), "user_id": person["id"],
               "email": person["email"], "name": person["name"], "country": "US"}
    validate_event("user.signed_up", payload)
    usage.on_user_signed_up(payload)
    return {"kind": "personal", "id": person["id"]}


def org_created(usage):
    org_id = str(uuid4())
    payload = {"event_id": str(uuid4()), "occurred_at": iso(utc_now()), "org_id": org_id, "name": "Acme",
               "country": "US", "owner_id": str(uuid4())}
    validate_event("org.created", payload)
    usage.on_org_created(payload)
    return {"kind": "org", "id": org_id}


def plan_event(usage, type, account, quota=10 * GIB, start=None, end=None, subscription_id="sub-1",
               occurred_at=None, plan_code="starter_monthly"):
    payload = {"event_id": str(uuid4()), "occurred_at": iso(occurred_at or utc_now()),
               "billing_account_id": str(uuid4()), "account": account, "subscription_id": subscription_id,
               "gateway": "stripe", "plan_code": plan_code}
    if type != "cancelled":
        payload.update({"checkout_id": None, "data_quota_bytes": quota, "amount": 1900, "currency": "usd",
                        "interval": "month", "current_period_start": iso(start) if start else None,
                        "current_period_end": iso(end) if end else None})
        if type == "changed":
            payload["from_plan_code"] = "starter_monthly"
    validate_event(f"plan.{type}", payload)
    getattr(usage, f"on_plan_{type}")(payload)


def report(account, value, at=None, metric="storage_bytes", id=None):
    return {"id": id or str(uuid4()), "account": account, "metric": metric, "value": value,
            "timestamp": iso(at or utc_now())}


def thresholds(session):
    return [row.payload for row in session.scalars(
        select(Outbox).where(Outbox.event_type == "usage.threshold_crossed").order_by(Outbox.created_at))]


@pytest.fixture
def person():
    return make_person()


@pytest.fixture
def account(usage, person):
    return signed_up(usage, person)


@pytest.fixture
def current_period():
    now = utc_now()
    return now - timedelta(days=10), now + timedelta(days=20)


# -- ingestion ---------------------------------------------------------------------------------

def test_a_good_batch_is_accepted(usage, account, session, ingest):
    events = [report(account, 100 * i, utc_now() - timedelta(minutes=10 - i)) for i in range(5)]
    assert ingest.record_events(events) == {"accepted": 5, "duplicates": 0, "rejected": []}
    assert session.scalar(select(func.count()).select_from(UsageEvent)) == 5
    assert usage.summary_for(account)["used_bytes"] == 400


def test_the_ingestion_endpoints_body_is_parsed_by_usage_ingest(account, ingest):
    body = json.dumps({"events": [report(account, 7), report(account, -1, id="negative")]})
    assert ingest.record_batch(body) == {"accepted": 1, "duplicates": 0,
                                         "rejected": [{"id": "negative", "reason": "negative_value"}]}


@pytest.mark.parametrize("body, refusal, code", [
    ('{"events": [', BadRequest, "MALFORMED_JSON"),
    ("not json", BadRequest, "MALFORMED_JSON"),
    ('{"events": "a"}', ValidationFailed, "VALIDATION_FAILED"),
    ("[]", ValidationFailed, "VALIDATION_FAILED"),
    ("", ValidationFailed, "VALIDATION_FAILED"),
])
def test_a_body_that_is_not_a_batch_is_refused_whole(account, ingest, session, body, refusal, code):
    with pytest.raises(refusal) as raised:
        ingest.record_batch(body)
    assert raised.value.error_code == code
    assert session.scalar(select(func.count()).select_from(UsageEvent)) == 0


def test_the_same_batch_twice_is_all_duplicates_and_applied_once(usage, account, session, ingest):
    events = [report(account, 10, metric="transfer_bytes") for _ in range(3)]
    ingest.record_events(events)
    assert ingest.record_events(events) == {"accepted": 0, "duplicates": 3, "rejected": []}
    assert session.scalar(select(PeriodUsage.value).where(PeriodUsage.metric == "transfer_bytes")) == 30
    assert session.scalar(select(DailyUsage.value).where(DailyUsage.metric == "transfer_bytes")) == 30


def test_duplicates_inside_one_batch_count_once(usage, account, session, ingest):
    event = report(account, 7, metric="transfer_bytes")
    conflicting = {**event, "value": 8}
    result = ingest.record_events([event, dict(event), conflicting])
    assert result == {"accepted": 1, "duplicates": 1, "rejected": [{"id": event["id"], "reason": "duplicate_in_batch"}]}
    assert session.scalar(select(PeriodUsage.value).where(PeriodUsage.metric == "transfer_bytes")) == 7


def test_a_batch_with_some_bad_events_accepts_the_good_ones(usage, account, ingest):
    good = report(account, 5)
    bad = [
        {**report(account, 1), "id": ""},
        {**report(account, 1), "account": {"kind": "team", "id": "x"}},
        {**report(account, 1), "timestamp": "yesterday"},
        "not an object",
    ]
    result = ingest.record_events([bad[0], good, *bad[1:]])
    assert result["accepted"] == 1 and result["duplicates"] == 0
    assert [entry["reason"] for entry in result["rejected"]] == [
        "missing_id", "bad_account", "bad_timestamp", "bad_event"]


def test_negative_values_are_rejected(usage, account, ingest):
    event = report(account, -1)
    assert ingest.record_events([event])["rejected"] == [{"id": event["id"], "reason": "negative_value"}]


@pytest.mark.parametrize("value", [True, False, 1.0, 1.5, "10", None, 2 ** 63])
def test_bool_float_string_and_huge_values_are_rejected(usage, account, value, ingest):
    result = ingest.record_events([report(account, value)])
    assert result["accepted"] == 0
    assert result["rejected"][0]["reason"] in ("bad_value", "value_too_large")


def test_timestamps_far_in_the_future_are_rejected(usage, account, ingest):
    soon, later = report(account, 1, utc_now() + timedelta(minutes=4)), report(account, 1, utc_now() + timedelta(hours=1))
    result = ingest.record_events([soon, later])
    assert result["accepted"] == 1
    assert result["rejected"] == [{"id": later["id"], "reason": "future_timestamp"}]


def test_timestamps_older_than_the_raw_retention_are_rejected(usage, account, ingest):
    old = report(account, 1, utc_now() - timedelta(days=36))
    assert ingest.record_events([old])["rejected"] == [{"id": old["id"], "reason": "too_old"}]


def test_offset_timestamps_are_accepted_and_kept_as_the_same_instant(usage, account, ingest, session):
    moment = (utc_now() - timedelta(hours=1)).astimezone(timezone(timedelta(hours=5, minutes=30)))
    for at in (moment.isoformat(), rfc3339(moment).replace("T", " ").lower()):
        event = {**report(account, 1), "timestamp": at}
        assert ingest.record_events([event])["accepted"] == 1
        assert session.get(UsageEvent, event["id"]).occurred_at == moment


def test_unknown_accounts_are_rejected(usage, account, ingest):
    stranger = report({"kind": "org", "id": str(uuid4())}, 1)
    result = ingest.record_events([stranger, report(account, 1)])
    assert result["accepted"] == 1
    assert result["rejected"] == [{"id": stranger["id"], "reason": "unknown_account"}]


def test_unknown_metrics_are_rejected(usage, account, ingest):
    event = report(account, 1, metric="cpu_seconds")
    assert ingest.record_events([event])["rejected"] == [{"id": event["id"], "reason": "unknown_metric"}]


def test_more_than_1000_events_fail_the_request(usage, account, ingest):
    with pytest.raises(ValidationFailed) as raised:
        ingest.record_events([report(account, 1) for _ in range(1001)])
    assert raised.value.details == {"events": ["At most 1000 events per request."]}


# -- aggregates --------------------------------------------------------------------------------

def test_a_late_older_gauge_report_does_not_overwrite_a_newer_one(usage, account, ingest):
    now = utc_now()
    ingest.record_events([report(account, 500, now - timedelta(minutes=1))])
    ingest.record_events([report(account, 900, now - timedelta(minutes=30))])  # late, older
    assert usage.summary_for(account)["used_bytes"] == 500
    # and inside one batch, in any order
    ingest.record_events([report(account, 700, now), report(account, 100, now - timedelta(minutes=2))])
    assert usage.summary_for(account)["used_bytes"] == 700


def test_counters_sum_per_period(usage, account, session, ingest):
    now = utc_now()
    ingest.record_events([report(account, 10, now, metric="transfer_bytes"),
                         report(account, 5, now - timedelta(seconds=1), metric="transfer_bytes")])
    ingest.record_events([report(account, 7, now - timedelta(seconds=2), metric="transfer_bytes")])
    start, _ = calendar_month(now)
    assert session.scalar(select(PeriodUsage.value).where(
        PeriodUsage.metric == "transfer_bytes", PeriodUsage.period_start == start)) == 22
    assert usage.summary_for(account)["used_bytes"] == 0  # storage is what the quota measures


def test_the_daily_series_has_each_days_latest_gauge(usage, account, person, current_period, ingest):
    usage.orgs.authorize.return_value = {"account": {"kind": "personal", "id": person["id"]}, "role": "owner"}
    plan_event(usage, "purchased", account, start=current_period[0], end=current_period[1])
    now = utc_now()
    two_days_ago = now - timedelta(days=2)
    ingest.record_events([report(account, 100, two_days_ago), report(account, 300, two_days_ago + timedelta(minutes=1)),
                         report(account, 250, now - timedelta(minutes=1))])
    page = usage.get_usage(person, {"kind": "personal"})
    assert page["daily"] == [{"date": two_days_ago.date().isoformat(), "used_bytes": 300},
                             {"date": now.date().isoformat(), "used_bytes": 250}]
    assert page["used_bytes"] == 250
    assert page["period_start"] == iso(current_period[0]) and page["period_end"] == iso(current_period[1])


# -- plans -------------------------------------------------------------------------------------

def test_plan_events_set_quota_and_period_a_bigger_plan_changes_it_and_cancel_removes_it(
        usage, account, current_period, ingest):
    ingest.record_events([report(account, 2 * GIB)])
    plan_event(usage, "purchased", account, quota=10 * GIB, start=current_period[0], end=current_period[1])
    assert usage.summary_for(account) == {"used_bytes": 2 * GIB, "quota_bytes": 10 * GIB, "percent": 20.0,
                                          "over_quota": False}
    plan_event(usage, "changed", account, quota=100 * GIB, start=current_period[0], end=current_period[1],
               plan_code="pro_monthly")
    assert usage.summary_for(account)["quota_bytes"] == 100 * GIB
    assert usage.summary_for(account)["percent"] == 2.0
    plan_event(usage, "cancelled", account)
    assert usage.summary_for(account) == {"used_bytes": 2 * GIB, "quota_bytes": None, "percent": None,
                                          "over_quota": False}


def test_a_plan_event_delivered_late_changes_nothing(usage, account, current_period):
    plan_event(usage, "changed", account, quota=100 * GIB, start=current_period[0], end=current_period[1])
    plan_event(usage, "purchased", account, quota=10 * GIB, start=current_period[0], end=current_period[1],
               occurred_at=utc_now() - timedelta(minutes=5))
    assert usage.summary_for(account)["quota_bytes"] == 100 * GIB


def test_plan_events_teach_usage_the_account(usage, current_period, ingest):
    stranger = {"kind": "org", "id": str(uuid4())}
    plan_event(usage, "purchased", stranger, start=current_period[0], end=current_period[1])
    assert ingest.record_events([report(stranger, 1)])["accepted"] == 1


def test_an_org_account_is_known_from_org_created(usage, ingest):
    org = org_created(usage)
    assert ingest.record_events([report(org, 1)])["accepted"] == 1


# -- thresholds --------------------------------------------------------------------------------

def test_crossing_80_twice_in_one_period_announces_once(usage, account, session, current_period, ingest):
    plan_event(usage, "purchased", account, quota=1000, start=current_period[0], end=current_period[1])
    now = utc_now()
    ingest.record_events([report(account, 810, now - timedelta(minutes=3))])
    ingest.record_events([report(account, 500, now - timedelta(minutes=2))])
    ingest.record_events([report(account, 850, now - timedelta(minutes=1))])
    events = thresholds(session)
    assert [event["threshold"] for event in events] == [80]
    assert events[0]["account"] == account and events[0]["used_bytes"] == 810
    assert events[0]["quota_bytes"] == 1000 and events[0]["period_start"] == iso(current_period[0])
    validate_event("usage.threshold_crossed", events[0])


def test_crossing_100_after_80_announces_a_second_event(usage, account, session, current_period, ingest):
    plan_event(usage, "purchased", account, quota=1000, start=current_period[0], end=current_period[1])
    now = utc_now()
    ingest.record_events([report(account, 800, now - timedelta(minutes=2))])
    ingest.record_events([report(account, 1001, now - timedelta(minutes=1))])
    assert [event["threshold"] for event in thresholds(session)] == [80, 100]
    assert usage.summary_for(account)["over_quota"] is True


def test_below_80_announces_nothing(usage, account, session, current_period, ingest):
    plan_event(usage, "purchased", account, quota=1000, start=current_period[0], end=current_period[1])
    ingest.record_events([report(account, 799)])
    assert thresholds(session) == []


def test_a_new_period_resets_thresholds(usage, account, session, ingest):
    now = utc_now()
    old_start, old_end = now - timedelta(days=29), now - timedelta(hours=1)
    plan_event(usage, "purchased", account, quota=1000, start=old_start, end=now + timedelta(hours=1),
               occurred_at=now - timedelta(minutes=10))
    ingest.record_events([report(account, 900, now - timedelta(hours=2))])
    plan_event(usage, "renewed", account, quota=1000, start=old_end, end=old_end + timedelta(days=30),
               occurred_at=now - timedelta(minutes=5))
    ingest.record_events([report(account, 900, now - timedelta(minutes=1))])
    events = thresholds(session)
    assert [(event["threshold"], event["period_start"]) for event in events] == [
        (80, iso(old_start)), (80, iso(old_end))]


# -- reads and authorization -------------------------------------------------------------------

@pytest.mark.parametrize("error", [NotFound("No such organization."), Forbidden()])
def test_get_usage_passes_not_found_and_forbidden_through(usage, person, error):
    usage.orgs.authorize.side_effect = error
    org_id = str(uuid4())
    with pytest.raises(type(error)):
        usage.get_usage(person, {"kind": "org", "id": org_id})
    usage.orgs.authorize.assert_called_once_with(person["id"], {"kind": "org", "id": org_id}, VIEW_BILLING)


def test_get_usage_of_personal_is_the_callers_own_account_without_asking_orgs(usage, person, account, ingest):
    ingest.record_events([report(account, 321)])
    page = usage.get_usage(person, {"kind": "personal", "id": str(uuid4())})  # another id is ignored
    usage.orgs.authorize.assert_not_called()
    assert page["used_bytes"] == 321


def test_get_usage_of_a_personal_account_without_reports(usage, person, account):
    page = usage.get_usage(person, {"kind": "personal", "id": person["id"]})
    start, end = calendar_month(utc_now())
    assert page == {"period_start": iso(start), "period_end": iso(end), "used_bytes": 0, "quota_bytes": None,
                    "percent": None, "daily": [], "over_quota": False}


# -- the membership projection (services/usage/members.py) ----------------------------------------

def member_event(usage, type, org, person, role, at):
    payload = {"event_id": str(uuid4()), "occurred_at": iso(at), "org_id": org["id"], "user_id": person["id"]}
    if type == "joined":
        payload["role"] = role
    elif type == "role_changed":
        payload.update({"old_role": "standard", "new_role": role, "changed_by": str(uuid4())})
    else:
        payload.update({"role": role, "removed_by": str(uuid4())})
    validate_event(f"member.{type}", payload)
    getattr(usage, f"on_member_{type}")(payload)
    return payload


@pytest.mark.parametrize("role", ["owner", "super_admin", "admin"])
def test_a_projected_member_who_may_view_billing_reads_without_asking_orgs(usage, person, role, ingest):
    org = org_created(usage)
    member_event(usage, "joined", org, person, role, utc_now())
    ingest.record_events([report(org, 4096)])
    assert usage.get_usage(person, org)["used_bytes"] == 4096
    usage.orgs.authorize.assert_not_called()


@pytest.mark.parametrize("change, role, refusal", [
    ("role_changed", "standard", Forbidden),  # a member whose role may not view billing
    ("removed", "admin", NotFound),  # no longer a member: the organization is not even shown to exist
])
def test_a_projected_member_is_refused_without_asking_orgs(usage, person, change, role, refusal):
    org = org_created(usage)
    member_event(usage, "joined", org, person, "admin", utc_now() - timedelta(seconds=5))
    member_event(usage, change, org, person, role, utc_now())
    with pytest.raises(refusal):
        usage.get_usage(person, org)
    usage.orgs.authorize.assert_not_called()


def test_a_member_of_another_org_is_asked_of_orgs_and_refused(usage, person):
    mine, theirs = org_created(usage), org_created(usage)
    member_event(usage, "joined", mine, person, "owner", utc_now())
    usage.orgs.authorize.side_effect = NotFound("No such organization.")
    with pytest.raises(NotFound):
        usage.get_usage(person, theirs)
    usage.orgs.authorize.assert_called_once_with(person["id"], theirs, VIEW_BILLING)


def test_member_events_out_of_order_converge_on_the_newest(usage, person):
    """A removal delivered before the join (and a role change) that preceded it stays a removal."""
    org, now = org_created(usage), utc_now()
    member_event(usage, "removed", org, person, "admin", now)
    member_event(usage, "role_changed", org, person, "super_admin", now - timedelta(seconds=1))
    member_event(usage, "joined", org, person, "admin", now - timedelta(seconds=2))
    with pytest.raises(NotFound):
        usage.get_usage(person, org)
    member_event(usage, "joined", org, person, "admin", now + timedelta(seconds=1))  # invited back later
    usage.get_usage(person, org)
    usage.orgs.authorize.assert_not_called()


def test_a_member_event_delivered_again_after_a_later_one_changes_nothing(usage, person, session):
    org = org_created(usage)
    joined = member_event(usage, "joined", org, person, "admin", utc_now() - timedelta(seconds=5))
    member_event(usage, "removed", org, person, "admin", utc_now())
    usage.on_member_joined(joined)  # the broker redelivers the join (same event id)
    usage.on_member_joined({**joined, "event_id": str(uuid4())})  # or it comes again as a new event
    with pytest.raises(NotFound):
        usage.get_usage(person, org)
    assert session.get(UsageMember, (org["id"], person["id"])).role is None


def test_a_membership_the_projection_never_heard_of_is_asked_of_orgs(usage, person):
    org, other = org_created(usage), make_person()
    member_event(usage, "joined", org, other, "owner", utc_now())  # someone else's membership
    usage.orgs.authorize.return_value = {"account": {"kind": "org", "id": org["id"]}, "role": "admin"}
    usage.get_usage(person, org)
    usage.orgs.authorize.assert_called_once_with(person["id"], org, VIEW_BILLING)


def test_summary_without_a_plan_has_no_quota_and_no_percent(usage, account, ingest):
    ingest.record_events([report(account, 123)])
    assert usage.summary_for(account) == {"used_bytes": 123, "quota_bytes": None, "percent": None,
                                          "over_quota": False}


def test_a_gauge_carries_over_into_a_new_period(usage, account, ingest):
    now = utc_now()
    plan_event(usage, "purchased", account, quota=1000, start=now - timedelta(days=40), end=now - timedelta(days=10),
               occurred_at=now - timedelta(minutes=10))
    ingest.record_events([report(account, 400, now - timedelta(days=11))])
    plan_event(usage, "renewed", account, quota=1000, start=now - timedelta(days=10), end=now + timedelta(days=20))
    assert usage.summary_for(account)["used_bytes"] == 400


# -- retention ---------------------------------------------------------------------------------

def test_the_retention_purge_deletes_only_old_raw_rows_and_keeps_aggregates(usage, account, session, ingest):
    now = utc_now()
    old, recent = report(account, 5, now - timedelta(days=20), metric="transfer_bytes"), report(account, 6, now)
    ingest.record_events([old, recent])
    session.execute(update(UsageEvent).where(UsageEvent.event_id == old["id"])
                    .values(occurred_at=now - timedelta(days=40)))  # time passes
    session.commit()
    aggregates = (session.scalar(select(func.count()).select_from(PeriodUsage)),
                  session.scalar(select(func.count()).select_from(DailyUsage)))
    assert usage.purge_raw_events() == 1
    assert session.scalars(select(UsageEvent.event_id)).all() == [recent["id"]]
    assert (session.scalar(select(func.count()).select_from(PeriodUsage)),
            session.scalar(select(func.count()).select_from(DailyUsage))) == aggregates
    assert usage.summary_for(account)["used_bytes"] == 6
