"""Operator commands against a running portal:  python -m deploy.ops <command> ...

  replay-webhook <stripe|cashfree> <event id>   run a stored webhook event through processing again
  reconcile [--account org:<id>|personal:<id>] [--all]   ask the gateways what webhooks missed
  show-account <org:<id>|personal:<id>|email>   an account's billing state across the services
  parked                                        messages consumers could not apply, every service's
  replay-parked <service> <parked id>           run a parked message through its handler again

Services are asked over RPC (AMQP_URI); what no RPC tells (users, organizations, the usage
projection, outbox backlogs) is read from the services' databases (DATABASE_URL, DATABASE_PREFIX)
in read-only transactions. Nothing here writes to a database itself.
"""
import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")
import eventlet  # noqa: E402

eventlet.monkey_patch()  # noqa: E402  (nameko's standalone proxy runs on eventlet)

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from functools import lru_cache  # noqa: E402

from nameko.exceptions import RemoteError  # noqa: E402
from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402
from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.pool import NullPool  # noqa: E402

from shared import db  # noqa: E402
from shared.config import DATABASE_OWNERS, settings  # noqa: E402
from shared.emails import email_key  # noqa: E402
from shared.errors import AppError  # noqa: E402

GATEWAYS = {"stripe": "gateway_stripe", "cashfree": "gateway_cashfree"}
RPC_TIMEOUT_SECONDS = 120  # reconciling every account may take a while


class OpsError(ValueError):
    """What the operator did wrong, or what the portal refused: printed, exit status 1."""


@contextmanager
def services():
    with ClusterRpcProxy({"AMQP_URI": settings().amqp_uri}, timeout=RPC_TIMEOUT_SECONDS) as cluster:
        yield cluster


def call(service, method, *args):
    with services() as cluster:
        try:
            return getattr(getattr(cluster, service), method)(*args)
        except AppError as error:  # the shared errors cross RPC as themselves
            raise OpsError(f"{service}.{method}: {error.message}") from None
        except RemoteError as error:
            raise OpsError(f"{service}.{method} failed: {error.exc_type}: {error.value}") from None


@lru_cache(maxsize=None)
def _engine(service):
    # Not db.engine_for: that one creates a missing database, and this tool writes nothing.
    return create_engine(db.database_url(service), poolclass=NullPool)


def query(service, sql, **params):
    """Rows (as dicts) of a read-only query on a service's own database."""
    with _engine(service).connect().execution_options(postgresql_readonly=True) as connection:
        return [dict(row._mapping) for row in connection.execute(text(sql), params)]


def parse_account(value):
    """org:<id> or personal:<id> -> {"kind", "id"}."""
    kind, _, account_id = value.partition(":")
    if kind not in ("org", "personal") or not account_id:
        raise OpsError(f"not an account: {value!r} (org:<org id> or personal:<user id>)")
    return {"kind": kind, "id": account_id}


# -- replay-webhook --------------------------------------------------------------------------

def replay_webhook(gateway, event_id):
    result = call(GATEWAYS[gateway], "replay_webhook", event_id)
    if result["status"] == "unchanged":
        return (f"{gateway} event {event_id} ({result['type']}): already processed; replaying it changed "
                f"nothing")
    return f"{gateway} event {event_id} ({result['type']}): re-published {', '.join(result['facts'])}"


# -- reconcile -------------------------------------------------------------------------------

def reconcile(account):
    summary = call("billing", "reconcile", account)
    checked = summary["checked"]
    lines = [f"reconciled {summary['accounts']} account(s): {checked['checkouts']} open checkout(s), "
             f"{checked['subscriptions']} subscription(s), {checked['links']} link(s) checked"]
    for item in summary["recovered"]:
        lines.append(f"  recovered from {item['gateway']} {item['gateway_event_id']}: {', '.join(item['facts'])}")
    if not summary["recovered"]:
        lines.append("  nothing missed: no facts recovered")
    for checkout_id in summary["closed_checkouts"]:
        lines.append(f"  closed checkout {checkout_id} (it can no longer be paid)")
    for failed in summary["failed"]:
        lines.append(f"  {failed} could not be checked: try again later")
    lines.append(json.dumps(summary, sort_keys=True))
    return "\n".join(lines)


# -- parked messages -------------------------------------------------------------------------

PARKED_COLUMNS = "id, event_type, event_id, error, parked_at"
PARKING_SERVICES = ("billing", "usage")  # the services with consumers (shared.consumers.ReplayParkedMixin)


def parked_rows(service, sql, **params):
    """Parked messages of one service: a database that cannot be read is an error, never "none"."""
    try:
        return query(service, sql, **params)
    except Exception as error:  # noqa: BLE001  (down, unreachable, not made yet)
        raise OpsError(f"{service}'s parked messages could not be read: {type(error).__name__}: {error}") from None


def parked_line(service, row):
    return (f"  {service} {row['id']}: {row['event_type']} {row['event_id']}, parked {row['parked_at']}: "
            f"{row['error'].splitlines()[0] if row['error'] else ''}")


def list_parked():
    lines = []
    for service in PARKING_SERVICES:
        rows = parked_rows(service, f"SELECT {PARKED_COLUMNS} FROM parked_messages WHERE replayed_at IS NULL "
                                    f"ORDER BY parked_at")
        lines += [parked_line(service, row) for row in rows]
    if not lines:
        return "no parked messages"
    return "\n".join([f"{len(lines)} parked message(s) (replay one: replay-parked <service> <id>):", *lines])


def parked_naming(ids):
    """Unreplayed parked messages whose payload names any of `ids` (an account's, its billing account's)."""
    lines = []
    for service in PARKING_SERVICES:
        for account_id in dict.fromkeys(ids):
            rows = parked_rows(service, f"SELECT {PARKED_COLUMNS} FROM parked_messages WHERE replayed_at IS NULL "
                                        f"AND strpos(payload, :id) > 0 ORDER BY parked_at", id=account_id)
            lines += [parked_line(service, row) for row in rows]
    return list(dict.fromkeys(lines))


def replay_parked(service, parked_id):
    result = call(service, "replay_parked", parked_id)
    message = result["message"]
    said = {"applied": "applied", "already_handled": "already handled by another delivery; marked replayed",
            "already_replayed": f"already replayed at {message['replayed_at']}; nothing done"}
    if result["status"] == "failed":
        raise OpsError(f"{service} {parked_id} ({message['event_type']} {message['event_id']}) failed again, "
                       f"still parked: {message['error']}")
    return f"{service} {parked_id} ({message['event_type']} {message['event_id']}): {said[result['status']]}"


# -- show-account ----------------------------------------------------------------------------

def resolve(target):
    """The accounts `target` names: an email gives the user's personal licence and their orgs'."""
    if "@" not in target:
        return [parse_account(target)]
    users = query("identity", "SELECT id FROM users WHERE email_key = :key", key=email_key(target))
    if not users:
        raise OpsError(f"no user with email {target}")
    user_id = str(users[0]["id"])
    orgs = query("orgs", "SELECT org_id FROM memberships WHERE user_id = :user_id ORDER BY joined_at",
                 user_id=user_id)
    return [{"kind": "personal", "id": user_id}] + [{"kind": "org", "id": str(o["org_id"])} for o in orgs]


def who(account):
    if account["kind"] == "personal":
        users = query("identity", "SELECT email, name, country, created_at FROM users WHERE id::text = :id",
                      id=account["id"])
        if not users:
            return f"personal:{account['id']}  (identity knows no such user)"
        user = users[0]
        return f"personal:{account['id']}  {user['name']} <{user['email']}>, {user['country']}"
    orgs = query("orgs", "SELECT o.name, o.country, o.owner_id, (SELECT count(*) FROM memberships m "
                         "WHERE m.org_id = o.id) AS members FROM organizations o WHERE o.id::text = :id",
                 id=account["id"])
    if not orgs:
        return f"org:{account['id']}  (orgs knows no such organization)"
    org = orgs[0]
    return f"org:{account['id']}  {org['name']}, {org['country']}, {org['members']} member(s), owner {org['owner_id']}"


def describe(account):
    lines = [who(account)]
    billing = call("billing", "describe_account", account)
    named_by = [account["id"]]
    if billing is None:
        lines.append("  billing: no billing account yet")
    else:
        acct = billing["account"]
        named_by.append(acct["billing_account_id"])
        lines.append(f"  billing account {acct['billing_account_id']}: {acct['gateway']}, {acct['currency']}")
        subscriptions = billing["subscriptions"]
        if not subscriptions:
            lines.append("  subscription: none")
        for s in subscriptions:
            held = (f", on hold: {s['hold_reason']} (gateway settled {s['gateway_settled_at'] or 'not yet'})"
                    if s.get("hold_reason") else "")
            unverified = "" if s.get("verified_at") or s.get("hold_reason") else ", payment not verified yet"
            lines.append(f"  subscription {s['gateway_subscription_id']}: {s['plan']['code']} {s['status']}, "
                         f"period {s['current_period_start']} .. {s['current_period_end']}, "
                         f"next payment {s['next_payment_date']}, cancel at period end {s['cancel_at_period_end']}"
                         f"{unverified}{held}")
        lines.append(f"  open checkouts: {len(billing['checkouts'])}")
        for c in billing["checkouts"]:
            lines.append(f"    {c['id']} {c['plan_code']} {c['status']} at {c['gateway_checkout_id']}, "
                         f"expires {c['expires_at']}"
                         + ("" if c["status"] == "open" else ", still to be closed at the gateway"))
        lines.append(f"  last payments: {len(billing['payments'])}")
        for p in billing["payments"]:
            lines.append(f"    {p['date']} {p['status']} {p['amount']} {p['currency']} {p['description']}")
        lines.append(f"  payment links: {len(billing['links'])}")
        for link in billing["links"]:
            lines.append(f"    {link['id']} {link['plan_code']} {link['status']}, expires {link['expires_at']}")
        lines.append(f"  alerts: {len(billing.get('alerts') or [])}")
        for alert in billing.get("alerts") or []:
            lines.append(f"    {alert['created_at']} {alert['id']} {alert['kind']}: {alert['message']} "
                         f"{json.dumps(alert['details'])}")
    usage = call("usage", "summary_for", account)
    projection = query("usage", "SELECT plan_code, quota_bytes, period_start, period_end FROM usage_accounts "
                                "WHERE kind = :kind AND account_id = :id", kind=account["kind"], id=account["id"])
    plan = projection[0] if projection else None
    lines.append(f"  usage: {usage['used_bytes']} of {usage['quota_bytes']} bytes used"
                 + (f" ({usage['percent']} %)" if usage.get("percent") is not None else ""))
    lines.append("  usage projection: " + (f"{plan['plan_code']}, quota {plan['quota_bytes']}, period "
                                           f"{plan['period_start']} .. {plan['period_end']}" if plan else "none"))
    parked = parked_naming(named_by)
    lines.append(f"  parked messages naming it: {len(parked)}")
    lines += ["  " + line for line in parked]
    return lines


def alerts():
    """Every unresolved alert billing raised for operators, oldest first, with its account."""
    rows = call("billing", "list_alerts")
    if not rows:
        return "no alerts"
    return "\n".join(f"{row['created_at']} {row['id']} {row['account']['kind']}:{row['account']['id']} "
                     f"{row['kind']}: {row['message']} {json.dumps(row['details'])}" for row in rows)


def resolve_alert(alert_id):
    if call("billing", "resolve_alert", alert_id):
        return f"alert {alert_id} resolved"
    return f"alert {alert_id} was resolved already"


def outbox_backlog():
    backlog = {}
    for service in DATABASE_OWNERS:
        try:
            backlog[service] = query(service, "SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL")[0]["n"]
        except Exception as error:  # noqa: BLE001  (its database is down or not made yet)
            backlog[service] = f"unknown ({type(error).__name__})"
    return backlog


def show_account(target):
    lines = []
    for account in resolve(target):
        lines += describe(account)
    lines.append("outbox backlog (unsent events): " + ", ".join(
        f"{service} {count}" for service, count in outbox_backlog().items()))
    return "\n".join(lines)


# -- the command line ------------------------------------------------------------------------

def parser():
    top = argparse.ArgumentParser(prog="python -m deploy.ops", description=__doc__.split("\n\n")[0])
    commands = top.add_subparsers(dest="command", required=True)
    replay = commands.add_parser("replay-webhook", help="run a stored webhook event through processing again")
    replay.add_argument("gateway", choices=sorted(GATEWAYS))
    replay.add_argument("event_id")
    recon = commands.add_parser("reconcile", help="ask the gateways for what webhooks missed")
    which = recon.add_mutually_exclusive_group(required=True)
    which.add_argument("--account", type=parse_account, help="org:<org id> or personal:<user id>")
    which.add_argument("--all", action="store_true", help="every account with something open")
    show = commands.add_parser("show-account", help="an account's billing state across the services")
    show.add_argument("target", help="org:<org id>, personal:<user id> or a user's email")
    commands.add_parser("alerts", help="what billing asks an operator to decide (amounts that did not match "
                                       "the quote, plans that came back beside another)")
    resolve_one = commands.add_parser("resolve-alert", help="mark an alert decided: alerts stops listing it")
    resolve_one.add_argument("alert_id")
    commands.add_parser("parked", help="messages consumers could not apply, every service's")
    replay_one = commands.add_parser("replay-parked", help="run a parked message through its handler again")
    replay_one.add_argument("service", choices=PARKING_SERVICES)
    replay_one.add_argument("parked_id")
    return top


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        if args.command == "replay-webhook":
            output = replay_webhook(args.gateway, args.event_id)
        elif args.command == "reconcile":
            output = reconcile(None if args.all else args.account)
        elif args.command == "alerts":
            output = alerts()
        elif args.command == "resolve-alert":
            output = resolve_alert(args.alert_id)
        elif args.command == "parked":
            output = list_parked()
        elif args.command == "replay-parked":
            output = replay_parked(args.service, args.parked_id)
        else:
            output = show_account(args.target)
    except OpsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
