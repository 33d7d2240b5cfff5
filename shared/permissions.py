"""Who may do what: the permission table of API.md, in one place, and the account an {acct} names.

orgs answers the check for everyone (orgs.can / orgs.authorize) from its memberships; usage answers
its own reads from a projection of the same memberships (services/usage/members.py). Both read this
table, so a change to it is a change for every service.

An organization's members act by role. A personal account (a user's own licence) has one person
who may do every billing action on it, and nobody else may see that it exists.
"""
from shared.errors import Forbidden, NotFound

VIEW_ORG = "org.view"
VIEW_BILLING = "billing.view"
MANAGE_BILLING = "billing.manage"
MANAGE_MEMBERS = "members.manage"
TRANSFER_OWNERSHIP = "org.transfer"

ACTIONS = (VIEW_ORG, VIEW_BILLING, MANAGE_BILLING, MANAGE_MEMBERS, TRANSFER_OWNERSHIP)
BILLING_ACTIONS = (VIEW_BILLING, MANAGE_BILLING)

OWNER, SUPER_ADMIN, ADMIN, STANDARD = "owner", "super_admin", "admin", "standard"
ROLES = (OWNER, SUPER_ADMIN, ADMIN, STANDARD)

ROLES_ALLOWED = {
    VIEW_ORG: {OWNER, SUPER_ADMIN, ADMIN, STANDARD},
    VIEW_BILLING: {OWNER, SUPER_ADMIN, ADMIN},
    MANAGE_BILLING: {OWNER, SUPER_ADMIN},
    MANAGE_MEMBERS: {OWNER, SUPER_ADMIN},
    TRANSFER_OWNERSHIP: {OWNER},
}

# What a refused caller is told. A non-member learns nothing, not even that the organization exists.
NO_SUCH_ORG = "No such organization."
ROLE_REFUSED = "Your role in this organization does not allow this."


def role_may(role, action):
    return role in ROLES_ALLOWED[action]


def personal_owner_may(action):
    return action in BILLING_ACTIONS


def check_role(role, action):
    """Nothing when `role` (None: not a member) may do `action`; NotFound or Forbidden otherwise."""
    if role is None:
        raise NotFound(NO_SUCH_ORG)
    if not role_may(role, action):
        raise Forbidden(ROLE_REFUSED)


def check_personal(action):
    """Nothing when the owner of a personal account may do `action` on it; NotFound otherwise (the
    caller's own licence is the only personal account anyone can name)."""
    if not personal_owner_may(action):
        raise NotFound("No such account.")


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
