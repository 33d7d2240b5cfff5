"""The plan catalogue, read from deploy/plans.yaml (or PLANS_FILE)."""
import os
from functools import lru_cache
from pathlib import Path

import yaml
from marshmallow import Schema, fields, validate

from shared.money import CURRENCY_BY_COUNTRY, MINOR_UNIT_EXPONENT

DEFAULT_PLANS_FILE = Path(__file__).resolve().parents[2] / "deploy" / "plans.yaml"


class PlanEntry(Schema):
    code = fields.String(required=True, validate=validate.Regexp(r"^[a-z0-9_]{1,64}$"))
    name = fields.String(required=True)
    interval = fields.String(required=True, validate=validate.OneOf(("month", "year")))
    prices = fields.Dict(
        keys=fields.String(validate=validate.OneOf(tuple(MINOR_UNIT_EXPONENT))),
        values=fields.Integer(strict=True, validate=validate.Range(min=1)),
        required=True,
    )
    data_quota_bytes = fields.Integer(strict=True, required=True, validate=validate.Range(min=0))
    features = fields.List(fields.String(), load_default=list)


class Catalogue(Schema):
    plans = fields.List(fields.Nested(PlanEntry), required=True, validate=validate.Length(min=1))


@lru_cache(maxsize=4)
def load_catalogue(path=None):
    """Plans by code. Refuses a file with missing prices or duplicate codes at startup, not at checkout."""
    path = Path(path or os.environ.get("PLANS_FILE") or DEFAULT_PLANS_FILE)
    plans = Catalogue().load(yaml.safe_load(path.read_text()))["plans"]
    by_code = {}
    for plan in plans:
        if plan["code"] in by_code:
            raise ValueError(f"{path}: duplicate plan code {plan['code']}")
        missing = set(MINOR_UNIT_EXPONENT) - set(plan["prices"])
        if missing:
            raise ValueError(f"{path}: plan {plan['code']} has no price in {sorted(missing)}")
        by_code[plan["code"]] = plan
    return by_code


def priced_plan(plan, country):
    """The plan as a buyer in `country` sees it: one amount in that country's currency."""
    currency = CURRENCY_BY_COUNTRY[country]
    return {
        "code": plan["code"],
        "name": plan["name"],
        "interval": plan["interval"],
        "amount": plan["prices"][currency],
        "currency": currency,
        "data_quota_bytes": plan["data_quota_bytes"],
        "features": list(plan["features"]),
    }
