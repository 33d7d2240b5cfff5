"""orgs' boundary: what its RPCs accept and return (gateway_http validates with these too)."""
from marshmallow import Schema, fields, validate

from shared.permissions import ROLES
from shared.events import COUNTRIES
from shared.schemas import TrimmedEmail, TrimmedString


class CreateOrgInput(Schema):
    name = TrimmedString(required=True, validate=validate.Length(min=1, max=200))
    country = fields.String(load_default=None, validate=validate.OneOf(COUNTRIES))


class InviteInput(Schema):
    email = TrimmedEmail(required=True, validate=validate.Length(max=320))
    # "owner" passes the shape check so that the service can answer the clearer 409.
    role = fields.String(required=True, validate=validate.OneOf(ROLES))


class ChangeRoleInput(Schema):
    role = fields.String(required=True, validate=validate.OneOf(ROLES))


class TransferInput(Schema):
    user_id = fields.String(required=True, validate=validate.Length(min=1, max=64))


class OrgOut(Schema):
    id = fields.String(required=True)
    name = fields.String(required=True)
    country = fields.String(required=True)
    owner_id = fields.String(required=True)
    created_at = fields.String(required=True)


class MyOrgOut(OrgOut):
    my_role = fields.String(required=True)


class MyOrgList(Schema):
    items = fields.List(fields.Nested(MyOrgOut), required=True)


class MemberOut(Schema):
    user_id = fields.String(required=True)
    email = fields.String(required=True)
    name = fields.String(required=True)
    role = fields.String(required=True)
    joined_at = fields.String(required=True)


class MemberList(Schema):
    items = fields.List(fields.Nested(MemberOut), required=True)


class InvitationOut(Schema):
    id = fields.String(required=True)
    org_id = fields.String(required=True)
    email = fields.String(required=True)
    role = fields.String(required=True)
    status = fields.String(required=True)
    invited_by = fields.String(required=True)
    created_at = fields.String(required=True)
    expires_at = fields.String(required=True)


class CreatedInvitationOut(InvitationOut):
    token = fields.String(required=True)  # shown once; deliver it to the invitee


class InvitationList(Schema):
    items = fields.List(fields.Nested(InvitationOut), required=True)


class AcceptedOut(Schema):
    org_id = fields.String(required=True)
    role = fields.String(required=True)

