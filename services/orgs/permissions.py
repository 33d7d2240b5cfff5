"""Who may do what: the permission table of API.md, in one place.

An organization's members act by role. A personal account (a user's own licence) has one person
who may do every billing action on it, and nobody else may see that it exists.
"""
from shared.permissions import (
    BILLING_ACTIONS, MANAGE_BILLING, MANAGE_MEMBERS, TRANSFER_OWNERSHIP, VIEW_BILLING, VIEW_ORG,
)

OWNER, SUPER_ADMIN, ADMIN, STANDARD = "owner", "super_admin", "admin", "standard"
ROLES = (OWNER, SUPER_ADMIN, ADMIN, STANDARD)

ROLES_ALLOWED = {
    VIEW_ORG: {OWNER, SUPER_ADMIN, ADMIN, STANDARD},
    VIEW_BILLING: {OWNER, SUPER_ADMIN, ADMIN},
    MANAGE_BILLING: {OWNER, SUPER_ADMIN},
    MANAGE_MEMBERS: {OWNER, SUPER_ADMIN},
    TRANSFER_OWNERSHIP: {OWNER},
}


def role_may(role, action):
    return role in ROLES_ALLOWED[action]


def personal_owner_may(action):
    return action in BILLING_ACTIONS
