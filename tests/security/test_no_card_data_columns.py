"""No column anywhere can hold a card number or a card security code. Payers type those only on
the gateway's hosted page; we keep what gateways report for showing a method: brand, last 4 digits
and expiry month and year. Checked on every service's migrated database (information_schema) and on
every SQLAlchemy model, so neither a migration nor a model can add one unnoticed."""
import importlib
import re

import pytest
from sqlalchemy import text

from shared import db
from shared.migrate import services_with_migrations

# What a reviewer looks for: the number (PAN) under any of its names, the security code (CVC, CVV,
# CVV2, CSC, CID), the PIN and magnetic-stripe track data.
CARD_WORDS = {"pan", "cvc", "cvc2", "cvv", "cvv2", "csc", "cid", "pin", "track1", "track2", "magstripe",
              "number", "num", "no", "nr", "card", "cc", "ccn", "cardnumber", "cardno", "ccnum", "securitycode"}
CARD_PHRASES = ("card_number", "card_no", "card_num", "cc_num", "credit_card", "security_code", "card_code",
                "card_verification", "account_number", "primary_account", "track_data", "full_number")
# What may be kept about a card (PCI DSS allows these without the number).
ALLOWED = {"last4", "brand", "exp_month", "exp_year", "card_last4", "card_brand", "card_exp_month", "card_exp_year"}
ALLOWED_COLUMNS = {("alembic_version", "version_num")}  # Alembic's revision id


def words(name):
    snake = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()
    return snake, re.findall(r"[a-z]+\d*|\d+", snake)


def could_hold_card_data(column_name, table_name=None):
    if column_name.lower() in ALLOWED or (table_name, column_name) in ALLOWED_COLUMNS:
        return False
    snake, tokens = words(column_name)
    return bool(CARD_WORDS & set(tokens)) or any(phrase in snake for phrase in CARD_PHRASES)


@pytest.mark.parametrize("name", ["card_number", "cardNumber", "CardNo", "pan", "pan_hash", "cvc", "cvv2",
                                  "card_cvv", "security_code", "cc_num", "number", "account_number",
                                  "track2", "credit_card_token", "pin", "card"])
def test_the_check_flags_what_a_reviewer_would(name):
    assert could_hold_card_data(name)


@pytest.mark.parametrize("name", sorted(ALLOWED) + ["method_type", "method_reference", "company", "panel",
                                                     "plan_code", "amount", "payment_link_id", "pending_plan_name"])
def test_the_check_lets_the_allowed_and_the_unrelated_pass(name):
    assert not could_hold_card_data(name)


def test_no_column_of_any_service_database_could_hold_card_data(migrated_databases):
    suspects, seen = [], 0
    for service in migrated_databases:
        with db.engine_for(service).connect() as conn:
            columns = conn.execute(text(
                "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'"
            )).all()
        seen += len(columns)
        suspects += [f"{service}.{table}.{column}" for table, column in columns
                     if could_hold_card_data(column, table)]
    assert seen > 100  # every service's tables were read, not an empty schema
    assert suspects == []


def test_no_model_column_could_hold_card_data():
    suspects, seen = [], 0
    for service in services_with_migrations():
        metadata = importlib.import_module(f"services.{service}.models").Base.metadata
        for table in metadata.tables.values():
            seen += len(table.columns)
            suspects += [f"{service}.{table.name}.{column.name}" for column in table.columns
                         if could_hold_card_data(column.name, table.name) or could_hold_card_data(column.key)]
    assert seen > 100
    assert suspects == []
