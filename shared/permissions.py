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
