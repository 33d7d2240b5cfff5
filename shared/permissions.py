"""Names of the actions the permission check (orgs.can / orgs.authorize) knows.

The table that says which role may do what lives in services/orgs/permissions.py.
"""
from shared.errors import NotFound

VIEW_ORG = "org.view"
VIEW_BILLING = "billing.view"
MANAGE_BILLING = "billing.manage"
MANAGE_MEMBERS = "members.manage"
TRANSFER_OWNERSHIP = "org.transfer"

ACTIONS = (VIEW_ORG, VIEW_BILLING, MANAGE_BILLING, MANAGE_MEMBERS, TRANSFER_OWNERSHIP)
BILLING_ACTIONS = (VIEW_BILLING, MANAGE_BILLING)


def personal_account(user_id):
    return {"kind": "personal", "id": str(user_id)}


def org_account(org_id):
    return {"kind": "org", "id": str(org_id)}


ACCOUNT_KINDS = ("personal", "org")


def requested_account(actor, account_ref):
    """The account an {acct} route names, as orgs.authorize wants it: /billing/personal is always
    the caller's own licence; an unknown kind names nothing (NotFound, like any unknown account)."""
    account_ref = account_ref or {}
    kind = account_ref.get("kind")
    if kind not in ACCOUNT_KINDS:
        raise NotFound("No such account.")
    return {"kind": kind, "id": actor["id"] if kind == "personal" else str(account_ref.get("id") or "")}
