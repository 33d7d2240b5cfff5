"""Plans: created on their own (POST /pg/plans) or inline in a subscription's plan_details.

The two requests name the recurring amount differently (`plan_recurring_amount` for a plan,
`plan_amount` inline), as Cashfree's document does; both produce the same PlanEntity.
"""
from decimal import Decimal

from . import params, shapes
from .errors import duplicate, invalid_value
from .ids import random_token
from .periods import INTERVAL_TYPES
from .store import Store

PLAN_TYPES = ("PERIODIC", "ON_DEMAND")
PLAN_ID = r"[A-Za-z0-9._-]{1,40}"


def build(fields: dict, *, plan_id: str, prefix: str = "", amount_field: str = "plan_recurring_amount",
          default_intervals=None) -> dict:
    """A PlanEntity from request fields, checked the way Cashfree's prose describes them."""
    plan_type = params.choice(fields, "plan_type", PLAN_TYPES, prefix, required=True)
    name = params.text(fields, "plan_name", prefix, required=True, max_length=40)
    currency = params.text(fields, "plan_currency", prefix, default="INR")
    if currency.upper() != "INR":
        raise invalid_value(prefix + "plan_currency", "Subscriptions are charged in INR only")
    max_amount = params.amount(fields, "plan_max_amount", prefix, required=True)
    periodic = plan_type == "PERIODIC"
    recurring = params.amount(fields, amount_field, prefix, required=periodic)
    interval_type = params.choice(fields, "plan_interval_type", INTERVAL_TYPES, prefix, required=periodic)
    intervals = params.integer(fields, "plan_intervals", prefix, minimum=1,
                               required=periodic and default_intervals is None,
                               default=default_intervals if periodic else None)
    if recurring is not None and recurring > max_amount:
        raise invalid_value(prefix + amount_field, "Must not exceed plan_max_amount")
    return shapes.plan(
        plan_id=plan_id, plan_name=name, plan_type=plan_type, plan_currency="INR",
        plan_recurring_amount=recurring if recurring is not None else Decimal(0),
        plan_max_amount=max_amount, plan_max_cycles=params.integer(fields, "plan_max_cycles", prefix, default=0),
        plan_interval_type=interval_type or "", plan_intervals=intervals or 0,
        plan_note=params.text(fields, "plan_note", prefix, default=""),
    )


def create(store: Store, body: dict) -> dict:
    plan_id = params.text(body, "plan_id", required=True, pattern=PLAN_ID,
                          why="Only alpha-numerics, dot, hyphen and underscore are allowed (at most 40)")
    plan = build(body, plan_id=plan_id)
    with store.transaction():
        if plan_id in store.plans:
            raise duplicate("plan")
        store.plans[plan_id] = plan
        return store.render(plan)


def inline(store: Store, fields: dict) -> dict:
    """The plan a subscription defines for itself: stored too, so GET /pg/plans/{id} finds it."""
    plan = build(fields, plan_id="plan_" + random_token(20), prefix="plan_details.", amount_field="plan_amount",
                 default_intervals=1)
    with store.lock:
        store.plans[plan["plan_id"]] = plan
    return plan
