"""orgs: organizations, memberships, invitations, and the permission check every service asks."""
from datetime import timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from services.orgs.models import Invitation, Membership, Organization, Outbox
from services.orgs.schemas import ChangeRoleInput, CreateOrgInput, InviteInput, TransferInput
from shared.config import settings
from shared.db import Database, parse_uuid
from shared.emails import email_key
from shared.errors import Conflict, Forbidden, NotFound, ValidationFailed
from shared.outbox import OutboxRelay, add_event, rfc3339, utc_now
from shared.permissions import (
    ACTIONS, ADMIN, MANAGE_MEMBERS, OWNER, STANDARD, SUPER_ADMIN, TRANSFER_OWNERSHIP, VIEW_ORG, check_personal, check_role,
    personal_owner_may, role_may,
)
from shared.schemas import Principal, load_or_raise
from shared.service import HealthMixin, api_rpc
from shared.tokens import hash_token, new_token

ROLE_RANK = {OWNER: 0, SUPER_ADMIN: 1, ADMIN: 2, STANDARD: 3}


def org_dict(org):
    return {
        "id": str(org.id), "name": org.name, "country": org.country,
        "owner_id": str(org.owner_id), "created_at": rfc3339(org.created_at),
    }


def member_dict(member):
    return {
        "user_id": str(member.user_id), "email": member.email, "name": member.name,
        "role": member.role, "joined_at": rfc3339(member.joined_at),
    }


def invitation_status(invitation):
    if invitation.status == "pending" and invitation.expires_at <= utc_now():
        return "expired"
    return invitation.status


def invitation_dict(invitation):
    return {
        "id": str(invitation.id), "org_id": str(invitation.org_id), "email": invitation.email,
        "role": invitation.role, "status": invitation_status(invitation),
        "invited_by": str(invitation.invited_by), "created_at": rfc3339(invitation.created_at),
        "expires_at": rfc3339(invitation.expires_at),
    }


class OrgsService(HealthMixin):
    name = "orgs"

    db = Database()
    outbox = OutboxRelay(Outbox)

    # -- organizations -------------------------------------------------------------------------

    @api_rpc
    def create_org(self, actor, data):
        """A new organization owned by `actor`; its country defaults to the actor's."""
        actor = load_or_raise(Principal(), actor)
        data = load_or_raise(CreateOrgInput(), data)
        org = Organization(name=data["name"], country=data["country"] or actor["country"],
                           owner_id=actor["id"])
        self.db.add(org)
        self.db.flush()
        self._add_member(org, actor, OWNER)
        add_event(self.db, Outbox, "org.created", {
            "org_id": str(org.id), "name": org.name, "country": org.country, "owner_id": str(org.owner_id),
        })
        self.db.commit()
        return org_dict(org)

    @api_rpc
    def list_my_orgs(self, actor):
        """`actor`'s organizations, each with `my_role`, oldest membership first."""
        rows = self.db.execute(
            select(Organization, Membership.role)
            .join(Membership, Membership.org_id == Organization.id)
            .where(Membership.user_id == parse_uuid(actor["id"]))
            .order_by(Membership.joined_at, Organization.id)
        ).all()
        return [{**org_dict(org), "my_role": role} for org, role in rows]

    @api_rpc
    def get_org(self, actor, org_id):
        org, _ = self._authorized(actor, org_id, VIEW_ORG)
        return org_dict(org)

    @api_rpc
    def list_members(self, actor, org_id):
        """Members, owner first, then by role and join date."""
        org, _ = self._authorized(actor, org_id, VIEW_ORG)
        members = self.db.scalars(select(Membership).where(Membership.org_id == org.id)).all()
        members.sort(key=lambda m: (ROLE_RANK[m.role], m.joined_at, str(m.user_id)))
        return [member_dict(m) for m in members]

    # -- permission check ----------------------------------------------------------------------

    @api_rpc
    def can(self, user_id, account, action):
        """True when `user_id` may do `action` on `account` ({kind: "org"|"personal", id})."""
        try:
            self.authorize(user_id, account, action)
        except (NotFound, Forbidden):
            return False
        return True

    @api_rpc
    def authorize(self, user_id, account, action):
        """Check the permission table for `action` on `account`; returns `{account, role, actions}`,
        `actions` being everything the caller may do there (so callers need no copy of the table).

        Raises NotFound when the caller is not a member (or it is another user's personal
        account: never leak existence), Forbidden when the caller's role lacks the permission.
        """
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        if account.get("kind") == "personal":
            if str(account.get("id")) != str(user_id):
                raise NotFound("No such account.")
            check_personal(action)
            return {"account": {"kind": "personal", "id": str(user_id), "owner_id": str(user_id)},
                    "role": OWNER, "actions": [a for a in ACTIONS if personal_owner_may(a)]}
        org, member = self._authorized({"id": user_id}, account.get("id"), action)
        return {"account": {"kind": "org", "id": str(org.id), "name": org.name, "country": org.country,
                            "owner_id": str(org.owner_id)}, "role": member.role,
                "actions": [a for a in ACTIONS if role_may(member.role, a)]}

    # -- invitations ---------------------------------------------------------------------------

    @api_rpc
    def invite(self, actor, org_id, data):
        """Invite an email with a role; returns the invitation with its one-time token."""
        org, _ = self._authorized(actor, org_id, MANAGE_MEMBERS, lock=True)
        data = load_or_raise(InviteInput(), data)
        if data["role"] == OWNER:
            raise self._second_owner()
        email = data["email"].strip()
        key = email_key(email)
        already_member = self.db.scalar(select(Membership).where(
            Membership.org_id == org.id, Membership.email_key == key))
        if already_member:
            raise Conflict("This person is already a member.", code="ALREADY_MEMBER")
        self._expire_stale_invitations(org.id)
        pending = self.db.scalar(select(Invitation).where(
            Invitation.org_id == org.id, Invitation.status == "pending", Invitation.email_key == key))
        if pending:
            raise Conflict("An invitation for this email is already pending; revoke it to send a new one.",
                           code="INVITATION_PENDING")
        token = new_token()
        invitation = Invitation(
            org_id=org.id, email=email, email_key=key, role=data["role"], token_hash=hash_token(token),
            invited_by=parse_uuid(actor["id"]),
            expires_at=utc_now() + timedelta(seconds=settings().invitation_ttl_seconds),
        )
        self.db.add(invitation)
        self.db.flush()
        self.db.commit()
        return {**invitation_dict(invitation), "token": token}

    @api_rpc
    def list_invitations(self, actor, org_id):
        org, _ = self._authorized(actor, org_id, MANAGE_MEMBERS)
        invitations = self.db.scalars(
            select(Invitation).where(Invitation.org_id == org.id).order_by(Invitation.created_at.desc())
        ).all()
        return [invitation_dict(i) for i in invitations]

    @api_rpc
    def revoke_invitation(self, actor, org_id, invitation_id):
        """Revoke a pending invitation. Revoking twice is a no-op; an accepted one is a Conflict."""
        org, _ = self._authorized(actor, org_id, MANAGE_MEMBERS, lock=True)
        invitation = self._invitation_in(org, invitation_id, lock=True)
        if invitation.status == "accepted":
            raise Conflict("This invitation was already accepted; remove the member instead.",
                           code="INVITATION_ACCEPTED")
        if invitation.status == "pending":
            invitation.status = "revoked"
            invitation.closed_at = utc_now()
        self.db.commit()

    @api_rpc
    def accept_invitation(self, actor, token):
        """Join the invitation's organization. Only the user whose email it was sent to may accept
        (compared as shared.emails.email_key: the same key identity keeps one account per)."""
        actor = load_or_raise(Principal(), actor)
        by_token = Invitation.token_hash == hash_token(token or "")
        org_id = self.db.scalar(select(Invitation.org_id).where(by_token))
        if org_id is None:
            raise NotFound("No such invitation.")
        # The organization's lock first, then the invitation's: every call that locks both takes
        # them in this order (revoke, removals, role changes), so none waits for the other (deadlock).
        org = self.db.scalar(select(Organization).where(Organization.id == org_id).with_for_update())
        invitation = self.db.scalar(select(Invitation).where(by_token).with_for_update()
                                    .execution_options(populate_existing=True))
        if invitation.email_key != email_key(actor["email"]):
            raise Forbidden("This invitation was sent to another email address.", code="INVITATION_EMAIL_MISMATCH")
        existing = self._membership(invitation.org_id, actor["id"])
        if invitation.status == "accepted" and existing is not None:
            return {"org_id": str(invitation.org_id), "role": existing.role}  # a repeated click
        status = invitation_status(invitation)
        if status != "pending":
            raise Conflict(f"This invitation is {status}.", code=f"INVITATION_{status.upper()}")
        invitation.status = "accepted"
        invitation.accepted_by = parse_uuid(actor["id"])
        invitation.closed_at = utc_now()
        if existing is None:
            self._add_member(org, actor, invitation.role)
        self.db.commit()
        return {"org_id": str(org.id), "role": existing.role if existing else invitation.role}

    # -- members -------------------------------------------------------------------------------

    @api_rpc
    def change_role(self, actor, org_id, user_id, data):
        """Give a member another role. The owner's role changes only by a transfer."""
        org, me = self._authorized(actor, org_id, MANAGE_MEMBERS, lock=True)
        data = load_or_raise(ChangeRoleInput(), data)
        member = self._member_or_404(org, user_id)
        if data["role"] == OWNER:
            raise self._second_owner()
        if member.role == OWNER:
            self._refuse_touching_owner(me, "demote")
        if member.role != data["role"]:
            old_role, member.role = member.role, data["role"]
            self._role_changed(org, member, old_role, actor)
        self.db.commit()
        return member_dict(member)

    @api_rpc
    def remove_member(self, actor, org_id, user_id):
        """Remove a member (managers), or leave (anyone but the owner removing themself). The pending
        invitations they sent are revoked with it."""
        leaving = parse_uuid(user_id) is not None and parse_uuid(user_id) == parse_uuid(actor["id"])
        org, me = self._authorized(actor, org_id, VIEW_ORG if leaving else MANAGE_MEMBERS, lock=True)
        member = self._member_or_404(org, user_id)
        if member.role == OWNER:
            self._refuse_touching_owner(me, "remove")
        self.db.delete(member)
        self._revoke_invitations_sent_by(org, member.user_id)
        add_event(self.db, Outbox, "member.removed", {
            "org_id": str(org.id), "user_id": str(member.user_id), "role": member.role,
            "removed_by": actor["id"],
        })
        self.db.commit()

    @api_rpc
    def transfer_ownership(self, actor, org_id, data):
        """Make another member the owner; the old owner becomes super_admin. One transaction."""
        org, me = self._authorized(actor, org_id, TRANSFER_OWNERSHIP, lock=True)
        data = load_or_raise(TransferInput(), data)
        if parse_uuid(data["user_id"]) == me.user_id:
            raise ValidationFailed(details={"user_id": ["You already own this organization."]})
        new_owner = self._membership(org.id, data["user_id"])
        if new_owner is None:
            raise ValidationFailed(details={"user_id": ["Not a member of this organization."]})
        changes = [(me, OWNER), (new_owner, new_owner.role)]
        me.role = SUPER_ADMIN
        self.db.flush()  # the old owner steps down first: the one-owner index holds at every step
        new_owner.role = OWNER
        org.owner_id = new_owner.user_id
        for member, old_role in changes:
            if old_role != member.role:
                self._role_changed(org, member, old_role, actor)
        self.db.commit()
        return {**org_dict(org), "my_role": SUPER_ADMIN}

    # -- helpers -------------------------------------------------------------------------------

    def _authorized(self, actor, org_id, action, lock=False):
        """(org, my membership) if `actor` may do `action`; NotFound for non-members, Forbidden by role.

        `lock` takes the organization's row lock, so that concurrent role changes, removals and
        transfers of one organization run one after another.
        """
        org_uuid = parse_uuid(org_id)
        query = select(Organization).where(Organization.id == org_uuid)
        org = self.db.scalar(query.with_for_update() if lock else query) if org_uuid else None
        member = self._membership(org.id, actor["id"]) if org else None
        check_role(member.role if member else None, action)
        return org, member

    def _membership(self, org_id, user_id):
        user_uuid = parse_uuid(user_id)
        return self.db.get(Membership, (org_id, user_uuid)) if user_uuid else None

    def _member_or_404(self, org, user_id):
        member = self._membership(org.id, user_id)
        if member is None:
            raise NotFound("No such member.")
        return member

    def _invitation_in(self, org, invitation_id, lock=False):
        """The invitation `invitation_id` of `org` (NotFound otherwise); `lock` takes its row lock,
        after the organization's (see accept_invitation), and reads it afresh."""
        invitation_uuid = parse_uuid(invitation_id)
        invitation = self.db.get(Invitation, invitation_uuid, with_for_update=lock or None,
                                 populate_existing=lock) if invitation_uuid else None
        if invitation is None or invitation.org_id != org.id:
            raise NotFound("No such invitation.")
        return invitation

    def _add_member(self, org, person, role):
        member = Membership(org_id=org.id, user_id=parse_uuid(person["id"]), role=role,
                            email=person["email"], email_key=email_key(person["email"]), name=person["name"])
        self.db.add(member)
        try:
            self.db.flush()
        except IntegrityError:
            self.db.rollback()
            raise Conflict("Already a member.", code="ALREADY_MEMBER") from None
        add_event(self.db, Outbox, "member.joined", {
            "org_id": str(org.id), "user_id": str(member.user_id), "role": role,
        })
        return member

    def _role_changed(self, org, member, old_role, actor):
        """Announce `member`'s new role; if it may no longer invite, their pending invitations end."""
        add_event(self.db, Outbox, "member.role_changed", {
            "org_id": str(org.id), "user_id": str(member.user_id), "old_role": old_role,
            "new_role": member.role, "changed_by": actor["id"],
        })
        if not role_may(member.role, MANAGE_MEMBERS):
            self._revoke_invitations_sent_by(org, member.user_id)

    def _revoke_invitations_sent_by(self, org, user_id):
        """An invitation stands on its sender's right to invite: when that ends (removed, left,
        demoted), the pending ones they sent in `org` are revoked in the same transaction, as if a
        manager had revoked each. The caller holds the organization's lock (taken before these rows').
        One already past its expiry stays expired."""
        self.db.execute(
            update(Invitation)
            .where(Invitation.org_id == org.id, Invitation.invited_by == user_id, Invitation.status == "pending",
                   Invitation.expires_at > func.now())
            .values(status="revoked", closed_at=func.now())
        )

    def _expire_stale_invitations(self, org_id):
        self.db.execute(
            update(Invitation)
            .where(Invitation.org_id == org_id, Invitation.status == "pending", Invitation.expires_at <= func.now())
            .values(status="expired", closed_at=func.now())
        )

    @staticmethod
    def _refuse_touching_owner(me, verb):
        if me.role != OWNER:
            raise Forbidden(f"Only a transfer of ownership can {verb} the owner.")
        raise Conflict(f"The owner cannot {verb} themself; transfer ownership first.", code="OWNER_REQUIRED")

    @staticmethod
    def _second_owner():
        return Conflict("An organization has exactly one owner; use transfer-ownership.", code="SECOND_OWNER")
