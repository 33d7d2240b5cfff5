"""Pure billing rules: what a purchase or a plan change costs (pricing.quote_lines), and which
gateway snapshot of a subscription wins (subscriptions.is_newer, next_payment_date).

No database and no service: plans are the dicts billing prices (catalogue.priced_plan's shape) and
a held subscription is any object with the model's attributes.
"""
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from services.billing.pricing import quote_lines
from services.billing.subscriptions import is_newer, next_payment_date

STARTER_MONTHLY = {"code": "starter_monthly", "name": "Starter", "interval": "month", "amount": 1900, "currency": "usd"}
GROWTH_MONTHLY = {"code": "growth_monthly", "name": "Growth", "interval": "month", "amount": 4900, "currency": "usd"}
STARTER_YEARLY = {"code": "starter_yearly", "name": "Starter", "interval": "year", "amount": 19000, "currency": "usd"}

PERIOD_START = datetime(2026, 3, 1, tzinfo=timezone.utc)
PERIOD_END = PERIOD_START + timedelta(days=30)
HALFWAY = PERIOD_START + timedelta(days=15)


def current(plan, start=PERIOD_START, end=PERIOD_END):
    """The active subscription a change is priced against, as billing hands it to quote_lines."""
    return {"plan": plan, "period_start": start, "period_end": end}


def assert_adds_up(lines, amount_due):
    assert all(type(line["amount"]) is int for line in lines), lines
    assert type(amount_due) is int
    assert sum(line["amount"] for line in lines) == amount_due


# -- quote lines -------------------------------------------------------------------------------

def test_a_new_purchase_is_one_line_at_the_full_price():
    lines, amount_due, _ = quote_lines(STARTER_MONTHLY, HALFWAY)

    assert lines == [{"description": "Starter (monthly)", "amount": 1900}]
    assert amount_due == 1900


def test_an_upgrade_halfway_through_the_period_credits_half_the_old_plan_and_charges_half_the_new():
    lines, amount_due, _ = quote_lines(GROWTH_MONTHLY, HALFWAY, current(STARTER_MONTHLY))

    assert [line["amount"] for line in lines] == [-950, 2450]
    assert "Starter" in lines[0]["description"] and "Growth" in lines[1]["description"]
    assert amount_due == 1500
    assert_adds_up(lines, amount_due)


def test_a_downgrade_that_would_cost_less_than_nothing_is_free_and_leaves_a_credit_line():
    lines, amount_due, _ = quote_lines(STARTER_MONTHLY, HALFWAY, current(GROWTH_MONTHLY))

    assert amount_due == 0
    assert [line["amount"] for line in lines] == [-2450, 950, 1500]
    assert "credit" in lines[-1]["description"].lower()
    assert_adds_up(lines, amount_due)


def test_a_change_of_interval_credits_the_unused_time_and_charges_the_full_new_price():
    lines, amount_due, _ = quote_lines(STARTER_YEARLY, HALFWAY, current(STARTER_MONTHLY))

    assert [line["amount"] for line in lines] == [-950, 19000]
    assert amount_due == 18050
    assert_adds_up(lines, amount_due)


@pytest.mark.parametrize("start, end", [
    pytest.param(None, None, id="unknown-period"),
    pytest.param(PERIOD_START, None, id="unknown-end"),
    pytest.param(PERIOD_START - timedelta(days=60), PERIOD_START - timedelta(days=30), id="period-ended"),
    pytest.param(HALFWAY - timedelta(days=30), HALFWAY, id="period-ends-now"),
])
def test_a_change_without_a_running_period_costs_the_full_price(start, end):
    lines, amount_due, _ = quote_lines(GROWTH_MONTHLY, HALFWAY, current(STARTER_MONTHLY, start, end))

    assert [line["amount"] for line in lines] == [4900]
    assert amount_due == 4900


@pytest.mark.parametrize("days_left", [1, 7, 10, 20, 29])
@pytest.mark.parametrize("old, new", [
    (STARTER_MONTHLY, GROWTH_MONTHLY), (GROWTH_MONTHLY, STARTER_MONTHLY), (STARTER_MONTHLY, STARTER_YEARLY),
])
def test_prorated_amounts_are_whole_minor_units_that_add_up_to_the_amount_due(old, new, days_left):
    now = PERIOD_END - timedelta(days=days_left, seconds=1)  # a third of a cent is not a price

    lines, amount_due, _ = quote_lines(new, now, current(old))

    assert_adds_up(lines, amount_due)
    assert amount_due >= 0


def test_proration_rounds_to_the_nearest_minor_unit():
    # 2/3 of 1900 = 1266.67 and 2/3 of 4900 = 3266.67: each line rounds on its own.
    lines, amount_due, _ = quote_lines(GROWTH_MONTHLY, PERIOD_START + timedelta(days=10), current(STARTER_MONTHLY))

    assert [line["amount"] for line in lines] == [-1267, 3267]
    assert amount_due == 2000


# -- snapshot ordering -------------------------------------------------------------------------

T = 1_780_000_000  # a gateway time (unix seconds)
END = 1_782_000_000
LATER_END = END + 30 * 86400


def held(status="active", last_event_at=T, period_end=END, cancel_at_period_end=False):
    """What billing holds for a subscription (the model's attributes that ordering reads)."""
    return SimpleNamespace(
        status=status, last_event_at=last_event_at, cancel_at_period_end=cancel_at_period_end,
        current_period_end=datetime.fromtimestamp(period_end, timezone.utc) if period_end else None)


def snapshot(status="active", at=T, period_end=END, cancel_at_period_end=False):
    """gateway.subscription_updated data, the fields ordering reads (and the rest, as sent)."""
    return {"gateway_subscription_id": "sub_1", "plan_code": "starter_monthly", "status": status, "amount": 1900,
            "currency": "usd", "current_period_start": END - 30 * 86400, "current_period_end": period_end,
            "cancel_at_period_end": cancel_at_period_end, "gateway_event_at": at}


def test_a_newer_snapshot_replaces_what_is_held():
    assert is_newer(held(last_event_at=T), snapshot(at=T + 1)) is True


def test_an_older_snapshot_is_ignored():
    assert is_newer(held(last_event_at=T), snapshot(at=T - 1, period_end=LATER_END, status="past_due")) is False


def test_the_same_snapshot_twice_is_ignored_the_second_time():
    assert is_newer(held(), snapshot()) is False


def test_a_fresh_subscription_takes_its_first_snapshot():
    assert is_newer(held(status="active", last_event_at=0, period_end=None), snapshot()) is True


def test_at_the_same_second_the_later_period_wins():
    assert is_newer(held(period_end=END), snapshot(period_end=LATER_END)) is True
    assert is_newer(held(period_end=LATER_END), snapshot(period_end=END)) is False


def test_at_the_same_second_and_period_the_cancelled_state_wins():
    assert is_newer(held(status="active"), snapshot(status="cancelled")) is True
    assert is_newer(held(status="past_due"), snapshot(status="cancelled")) is True


def test_at_the_same_second_a_later_period_beats_a_cancellation():
    assert is_newer(held(status="cancelled", period_end=END),
                    snapshot(status="cancelled", period_end=LATER_END)) is True
    assert is_newer(held(status="active", period_end=LATER_END), snapshot(status="cancelled", period_end=END)) is False


def test_at_the_same_second_a_pending_cancellation_beats_a_renewing_plan():
    assert is_newer(held(cancel_at_period_end=False), snapshot(cancel_at_period_end=True)) is True
    assert is_newer(held(cancel_at_period_end=True), snapshot(cancel_at_period_end=False)) is False


@pytest.mark.parametrize("status", ["active", "past_due", "incomplete"])
@pytest.mark.parametrize("at", [T - 100, T, T + 100], ids=["older", "same-second", "newer"])
def test_a_cancelled_subscription_is_never_revived(status, at):
    assert is_newer(held(status="cancelled"), snapshot(status=status, at=at, period_end=LATER_END)) is False


def test_a_newer_cancelled_snapshot_may_still_update_a_cancelled_subscription():
    assert is_newer(held(status="cancelled"), snapshot(status="cancelled", at=T + 1)) is True


# -- next payment date -------------------------------------------------------------------------

def test_the_next_payment_is_at_the_end_of_the_period_while_active_and_renewing():
    subscription = held(status="active", cancel_at_period_end=False)
    assert next_payment_date(subscription) == datetime.fromtimestamp(END, timezone.utc)


@pytest.mark.parametrize("status, cancel_at_period_end", [
    ("active", True), ("past_due", False), ("incomplete", False), ("cancelled", False), ("cancelled", True),
])
def test_there_is_no_next_payment_unless_active_and_renewing(status, cancel_at_period_end):
    assert next_payment_date(held(status=status, cancel_at_period_end=cancel_at_period_end)) is None


def test_the_recurring_price_starts_now_for_a_purchase_and_at_the_period_end_for_an_upgrade():
    assert quote_lines(STARTER_MONTHLY, HALFWAY)[2] == HALFWAY
    assert quote_lines(GROWTH_MONTHLY, HALFWAY, current(STARTER_MONTHLY))[2] == PERIOD_END
    assert quote_lines(STARTER_YEARLY, HALFWAY, current(STARTER_MONTHLY))[2] == HALFWAY  # the period restarts


def test_a_gateway_that_changes_plans_next_cycle_charges_nothing_now():
    lines, amount_due, recurring_from = quote_lines(GROWTH_MONTHLY, HALFWAY, current(STARTER_MONTHLY),
                                                    policy="next_cycle")
    assert (amount_due, recurring_from) == (0, PERIOD_END)
    assert [line["amount"] for line in lines] == [0]
