"""Names of the actions the permission check (orgs.can / orgs.authorize) knows.

The table that says which role may do what lives in services/orgs/permissions.py.
"""
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
    from shared.errors import NotFound

    account_ref = account_ref or {}
    kind = account_ref.get("kind")
    if kind not in ACCOUNT_KINDS:
        raise NotFound("No such account.")
    return {"kind": kind, "id": actor["id"] if kind == "personal" else str(account_ref.get("id") or "")}


def quota_figures(used_bytes, quota_bytes):
    """{used_bytes, quota_bytes, percent, over_quota}; percent needs both a measurement and a quota."""
    known = used_bytes is not None and quota_bytes is not None
    return {"used_bytes": used_bytes, "quota_bytes": quota_bytes,
            "percent": round(used_bytes * 100 / quota_bytes, 2) if known and quota_bytes else None,
            "over_quota": known and used_bytes > quota_bytes}
