"""Quote lines: what a purchase or a plan change costs now, in the account's currency.

A change within the same interval is prorated by the seconds left in the current period: a credit
for the unused time on the old plan and a charge for the same time on the new one (as Stripe and
Cashfree prorate). A change of interval restarts the period: the credit, then the full new price.
The lines always add up to `amount_due`; a change that costs less than nothing leaves a credit.
"""
from datetime import datetime

from shared.money import Money

INTERVAL_WORD = {"month": "monthly", "year": "yearly"}


def plan_label(plan):
    return f"{plan['name']} ({INTERVAL_WORD[plan['interval']]})"


def _day(moment: datetime):
    return moment.strftime("%Y-%m-%d")


PRORATE_NOW = "prorate_now"  # the gateway charges the difference at once (Stripe)
NEXT_CYCLE = "next_cycle"  # the gateway charges the new price from the next cycle (Cashfree)


def quote_lines(plan, now, current=None, policy=PRORATE_NOW):
    """(lines, amount_due, recurring_from) for buying `plan` at `now`; `current` is the active
    subscription's {plan, period_start, period_end} when this is a change, and `policy` how the
    account's gateway charges a change. recurring_from: when the plan's own price starts to apply."""
    price = Money(plan["amount"], plan["currency"])
    if current is None:
        return (*_finish([{"description": plan_label(plan), "amount": price.amount}], price.currency), now)

    old_plan = current["plan"]
    start, end = current["period_start"], current["period_end"]
    if start is None or end is None or end <= now:
        return (*_finish([{"description": f"{plan_label(plan)} from today", "amount": price.amount}],
                         price.currency), now)
    if policy == NEXT_CYCLE:
        # Nothing is charged now, so nothing changes now: the current plan (and its quota) stays until
        # the new plan's first charge on `end` succeeds.
        line = {"description": f"{plan_label(plan)} from {_day(end)}, when it is first charged", "amount": 0}
        return (*_finish([line], price.currency), end)

    total, left = (end - start).total_seconds(), (end - now).total_seconds()
    credit = -Money(old_plan["amount"], old_plan["currency"]).prorate(int(left), int(total))
    lines = [{"description": f"Unused time on {plan_label(old_plan)} until {_day(end)}", "amount": credit.amount}]
    if plan["interval"] == old_plan["interval"]:
        charge = price.prorate(int(left), int(total))
        lines.append({"description": f"Remaining time on {plan_label(plan)} until {_day(end)}",
                      "amount": charge.amount})
        return (*_finish(lines, price.currency), end)
    lines.append({"description": f"{plan_label(plan)} from today", "amount": price.amount})
    return (*_finish(lines, price.currency), now)


def _finish(lines, currency):
    total = sum(line["amount"] for line in lines)
    if total < 0:
        lines.append({"description": "Credit toward your next invoices", "amount": -total})
        total = 0
    Money(total, currency)  # asserts an int amount in a known currency
    return lines, total
