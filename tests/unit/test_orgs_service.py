"""The orgs service, one worker at a time, on a real PostgreSQL database.

`worker_factory` hands the service the test's own session (and mocks the outbox relay), so what a
call commits, and the outbox rows it stages, can be read back here. After an expected error the
session is rolled back, as the worker's own session would be closed: nothing half-done survives.
"""
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID, uuid4

import eventlet
import pytest
from nameko.testing.services import worker_factory
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from services.orgs.models import Invitation, Membership, Outbox
from services.orgs.service import OrgsService
from shared.config import settings
from shared.errors import Conflict, Forbidden, NotFound, ValidationFailed
from shared.outbox import utc_now
from shared.permissions import (
    MANAGE_BILLING, MANAGE_MEMBERS, TRANSFER_OWNERSHIP, VIEW_BILLING, VIEW_ORG, org_account,
    personal_account,
)

ROLES = ("owner", "super_admin", "admin", "standard")
ALL_ACTIONS = (VIEW_ORG, VIEW_BILLING, MANAGE_BILLING, MANAGE_MEMBERS, TRANSFER_OWNERSHIP)
BILLING_ACTIONS = (VIEW_BILLING, MANAGE_BILLING)
NON_BILLING_ACTIONS = (VIEW_ORG, MANAGE_MEMBERS, TRANSFER_OWNERSHIP)

# ---------------------------------------------------------------------------------------------
# The permission table of API.md ("Permissions"), written out by hand, not read from the code.
# VIEW_ORG is not a row there, but every member may see the org ("404 on every route" otherwise).
# ---------------------------------------------------------------------------------------------
YES, NO = True, False
PERMISSION_TABLE = {
    #                     owner  super_admin  admin  standard
    VIEW_ORG:            (YES,   YES,         YES,   YES),
    VIEW_BILLING:        (YES,   YES,         YES,   NO),
    MANAGE_BILLING:      (YES,   YES,         NO,    NO),
    MANAGE_MEMBERS:      (YES,   YES,         NO,    NO),
    TRANSFER_OWNERSHIP:  (YES,   NO,          NO,    NO),
}
PERMISSION_CELLS = [
    pytest.param(action, role, allowed, id=f"{role}-{action}-{'yes' if allowed else '403'}")
    for action, row in PERMISSION_TABLE.items()
    for role, allowed in zip(ROLES, row, strict=True)
]


# -- helpers -----------------------------------------------------------------------------------

def make_person(country="US", email=None, name=None):
    """A signed-in principal, as gateway_http hands it to the service."""
    user_id = str(uuid4())
    short = user_id[:8]
    return {"id": user_id, "email": email or f"user-{short}@example.com", "name": name or f"User {short}",
            "country": country}


def invite(orgs, inviter, org_id, email, role="standard"):
    return orgs.invite(inviter, org_id, {"email": email, "role": role})


def add_member(orgs, org_id, inviter, role, **person):
    """A new person who joined `org_id` with `role` by invitation; returns the person."""
    person = make_person(**person)
    invitation = invite(orgs, inviter, org_id, person["email"], role)
    assert orgs.accept_invitation(person, invitation["token"]) == {"org_id": org_id, "role": role}
    return person


def outbox_events(session, event_type):
    """Payloads of the staged `event_type` events, without their envelope (event_id, occurred_at)."""
    rows = session.scalars(select(Outbox).where(Outbox.event_type == event_type)).all()
    payloads = []
    for row in rows:
        payload = dict(row.payload)
        assert UUID(payload.pop("event_id")) == row.id
        assert payload.pop("occurred_at").endswith("Z")
        payloads.append(payload)
    return payloads


def roles_in(orgs, actor, org_id):
    return {m["user_id"]: m["role"] for m in orgs.list_members(actor, org_id)}


def memberships_of(session, org_id, user_id):
    return session.scalar(select(func.count()).select_from(Membership).where(
        Membership.org_id == UUID(org_id), Membership.user_id == UUID(user_id)))


def expire(session, invitation):
    """Move an invitation's expiry into the past, as time passing would."""
    session.get(Invitation, UUID(invitation["id"])).expires_at = utc_now() - timedelta(seconds=5)
    session.commit()


def parse_time(value):
    return datetime.fromisoformat(value)


def stored(session, invitation):
    """The invitation's row as committed now (not as this session last saw it)."""
    session.expire_all()
    return session.get(Invitation, UUID(invitation["id"]))


@dataclass
class Team:
    """An organization with one member of each role, and a person who is not a member."""

    org: dict
    owner: dict
    super_admin: dict
    admin: dict
    standard: dict
    outsider: dict

    @property
    def org_id(self):
        return self.org["id"]

    def person(self, role):
        return getattr(self, role)


# -- fixtures ----------------------------------------------------------------------------------

@pytest.fixture
def session(db_session):
    return db_session("orgs")


@pytest.fixture
def orgs(session):
    return worker_factory(OrgsService, db=session)


@pytest.fixture
def refused(session):
    """`with refused(Conflict, "SECOND_OWNER"):` the call must raise that error (and code)."""

    @contextmanager
    def refused(error_type, code=None):
        with pytest.raises(error_type) as caught:
            yield caught
        assert type(caught.value) is error_type
        if code is not None:
            assert caught.value.error_code == code
        session.rollback()  # the worker's session is closed after an error

    return refused


@pytest.fixture
def org_with_roles(orgs):
    owner = make_person(country="US")
    org = orgs.create_org(owner, {"name": "Acme"})
    return Team(
        org=org,
        owner=owner,
        super_admin=add_member(orgs, org["id"], owner, "super_admin"),
        admin=add_member(orgs, org["id"], owner, "admin"),
        standard=add_member(orgs, org["id"], owner, "standard"),
        outsider=make_person(),
    )


# -- creating an organization ------------------------------------------------------------------

def test_the_creator_owns_a_new_org(orgs):
    creator = make_person()
    org = orgs.create_org(creator, {"name": "  Acme Inc  "})

    assert org["name"] == "Acme Inc"
    assert org["owner_id"] == creator["id"]
    assert parse_time(org["created_at"]) <= utc_now()
    assert orgs.get_org(creator, org["id"]) == org
    assert roles_in(orgs, creator, org["id"]) == {creator["id"]: "owner"}


@pytest.mark.parametrize("country", ["US", "IN"])
def test_an_org_takes_its_creators_country_by_default(orgs, country):
    org = orgs.create_org(make_person(country=country), {"name": "Acme"})
    assert org["country"] == country


@pytest.mark.parametrize("creator_country, org_country", [("US", "IN"), ("IN", "US")])
def test_an_explicit_org_country_is_kept(orgs, creator_country, org_country):
    org = orgs.create_org(make_person(country=creator_country), {"name": "Acme", "country": org_country})
    assert org["country"] == org_country


@pytest.mark.parametrize("data, bad_field", [
    ({"name": "Acme", "country": "FR"}, "country"),
    ({"name": ""}, "name"),
    ({}, "name"),
])
def test_an_org_with_invalid_fields_is_refused(orgs, refused, data, bad_field):
    with refused(ValidationFailed) as caught:
        orgs.create_org(make_person(), data)
    assert bad_field in caught.value.details


def test_a_blank_org_name_is_refused(orgs, refused, session):
    with refused(ValidationFailed) as caught:
        orgs.create_org(make_person(), {"name": "   "})
    assert "name" in caught.value.details


def test_creating_an_org_records_org_created_and_member_joined(orgs, session):
    creator = make_person(country="IN")
    org = orgs.create_org(creator, {"name": "Acme"})

    assert outbox_events(session, "org.created") == [
        {"org_id": org["id"], "name": "Acme", "country": "IN", "owner_id": creator["id"]},
    ]
    assert outbox_events(session, "member.joined") == [
        {"org_id": org["id"], "user_id": creator["id"], "role": "owner"},
    ]


# -- the permission check ----------------------------------------------------------------------

@pytest.mark.parametrize("action, role, allowed", PERMISSION_CELLS)
def test_each_role_may_do_what_the_permission_table_says(orgs, refused, org_with_roles, action, role, allowed):
    team = org_with_roles
    user_id = team.person(role)["id"]
    account = org_account(team.org_id)

    if allowed:
        answer = orgs.authorize(user_id, account, action)
        assert answer["role"] == role
        # everything the role may do there, as the table says (callers need no copy of it)
        assert set(answer["actions"]) == {a for a, row in PERMISSION_TABLE.items() if dict(zip(ROLES, row))[role]}
        assert answer["account"] == {"kind": "org", "id": team.org_id, "name": team.org["name"],
                                     "country": team.org["country"], "owner_id": team.owner["id"]}
    else:
        with refused(Forbidden):
            orgs.authorize(user_id, account, action)
    assert orgs.can(user_id, account, action) is allowed


@pytest.mark.parametrize("action", ALL_ACTIONS)
def test_a_non_member_is_told_the_org_does_not_exist(orgs, refused, org_with_roles, action):
    outsider, account = org_with_roles.outsider["id"], org_account(org_with_roles.org_id)
    with refused(NotFound):
        orgs.authorize(outsider, account, action)
    assert orgs.can(outsider, account, action) is False


@pytest.mark.parametrize("org_id", [str(uuid4()), "not-a-uuid", "", None, 42])
def test_an_unknown_or_garbage_org_id_is_not_found(orgs, refused, org_with_roles, org_id):
    owner = org_with_roles.owner["id"]
    with refused(NotFound):
        orgs.authorize(owner, {"kind": "org", "id": org_id}, VIEW_ORG)
    assert orgs.can(owner, {"kind": "org", "id": org_id}, VIEW_ORG) is False


@pytest.mark.parametrize("action", BILLING_ACTIONS)
def test_a_user_may_do_billing_on_their_own_personal_account(orgs, action):
    me = make_person()["id"]
    assert orgs.authorize(me, personal_account(me), action) == {
        "account": {"kind": "personal", "id": me, "owner_id": me}, "role": "owner",
        "actions": list(BILLING_ACTIONS),
    }
    assert orgs.can(me, personal_account(me), action) is True


@pytest.mark.parametrize("action", ALL_ACTIONS)
def test_another_users_personal_account_is_not_found(orgs, refused, action):
    me, someone_else = make_person()["id"], make_person()["id"]
    with refused(NotFound):
        orgs.authorize(me, personal_account(someone_else), action)
    assert orgs.can(me, personal_account(someone_else), action) is False


@pytest.mark.parametrize("action", NON_BILLING_ACTIONS)
def test_non_billing_actions_on_a_personal_account_are_not_found(orgs, refused, action):
    me = make_person()["id"]
    with refused(NotFound):
        orgs.authorize(me, personal_account(me), action)
    assert orgs.can(me, personal_account(me), action) is False


def test_an_unknown_action_is_a_programming_error(orgs, org_with_roles):
    with pytest.raises(ValueError):
        orgs.can(org_with_roles.owner["id"], org_account(org_with_roles.org_id), "org.delete")


ORG_ROUTES = {
    "get_org": lambda orgs, me, team, inv: orgs.get_org(me, team.org_id),
    "list_members": lambda orgs, me, team, inv: orgs.list_members(me, team.org_id),
    "invite": lambda orgs, me, team, inv: invite(orgs, me, team.org_id, "new@example.com"),
    "list_invitations": lambda orgs, me, team, inv: orgs.list_invitations(me, team.org_id),
    "revoke_invitation": lambda orgs, me, team, inv: orgs.revoke_invitation(me, team.org_id, inv["id"]),
    "change_role": lambda orgs, me, team, inv: orgs.change_role(me, team.org_id, team.admin["id"],
                                                                {"role": "standard"}),
    "remove_member": lambda orgs, me, team, inv: orgs.remove_member(me, team.org_id, team.admin["id"]),
    "leave": lambda orgs, me, team, inv: orgs.remove_member(me, team.org_id, me["id"]),
    "transfer_ownership": lambda orgs, me, team, inv: orgs.transfer_ownership(me, team.org_id,
                                                                              {"user_id": team.admin["id"]}),
}


@pytest.mark.parametrize("route", ORG_ROUTES.values(), ids=ORG_ROUTES.keys())
def test_every_org_route_is_not_found_for_a_non_member(orgs, refused, org_with_roles, route):
    team = org_with_roles
    invitation = invite(orgs, team.owner, team.org_id, "pending@example.com")
    with refused(NotFound):
        route(orgs, team.outsider, team, invitation)


# -- invitations -------------------------------------------------------------------------------

def test_an_invitation_is_pending_with_a_token_and_an_expiry(orgs, org_with_roles):
    team = org_with_roles
    before = utc_now()
    invitation = invite(orgs, team.owner, team.org_id, "dana@example.com", "admin")

    assert invitation["email"] == "dana@example.com"
    assert invitation["role"] == "admin"
    assert invitation["status"] == "pending"
    assert invitation["org_id"] == team.org_id
    assert invitation["invited_by"] == team.owner["id"]
    assert len(invitation["token"]) >= 32
    ttl = timedelta(seconds=settings().invitation_ttl_seconds)
    assert before + ttl <= parse_time(invitation["expires_at"]) <= utc_now() + ttl


def test_each_invitation_gets_its_own_token(orgs, org_with_roles):
    team = org_with_roles
    tokens = {invite(orgs, team.owner, team.org_id, f"p{i}@example.com")["token"] for i in range(3)}
    assert len(tokens) == 3


def test_the_invited_email_accepts_in_any_case_and_joins_with_the_invited_role(orgs, session, org_with_roles):
    team = org_with_roles
    invitation = invite(orgs, team.owner, team.org_id, "Dana@Example.COM", "admin")
    dana = make_person(email="dana@example.com")

    assert orgs.accept_invitation(dana, invitation["token"]) == {"org_id": team.org_id, "role": "admin"}
    assert roles_in(orgs, team.owner, team.org_id)[dana["id"]] == "admin"
    assert {"org_id": team.org_id, "user_id": dana["id"], "role": "admin"} in outbox_events(session, "member.joined")
    assert orgs.list_invitations(team.owner, team.org_id)[0]["status"] == "accepted"


def test_another_email_cannot_accept_an_invitation(orgs, refused, org_with_roles):
    team = org_with_roles
    invitation = invite(orgs, team.owner, team.org_id, "dana@example.com")
    mallory = make_person(email="mallory@example.com")

    with refused(Forbidden, "INVITATION_EMAIL_MISMATCH"):
        orgs.accept_invitation(mallory, invitation["token"])
    assert mallory["id"] not in roles_in(orgs, team.owner, team.org_id)
    # the invitation is still there for the right person
    assert orgs.accept_invitation(make_person(email="dana@example.com"), invitation["token"])["role"] == "standard"


@pytest.mark.parametrize("token", ["no-such-token", "", None])
def test_an_unknown_token_is_not_found(orgs, refused, org_with_roles, token):
    invite(orgs, org_with_roles.owner, org_with_roles.org_id, "dana@example.com")
    with refused(NotFound):
        orgs.accept_invitation(make_person(email="dana@example.com"), token)


def test_an_expired_invitation_cannot_be_accepted(orgs, session, refused, org_with_roles):
    team = org_with_roles
    invitation = invite(orgs, team.owner, team.org_id, "dana@example.com")
    expire(session, invitation)
    dana = make_person(email="dana@example.com")

    with refused(Conflict, "INVITATION_EXPIRED"):
        orgs.accept_invitation(dana, invitation["token"])
    assert dana["id"] not in roles_in(orgs, team.owner, team.org_id)
    assert orgs.list_invitations(team.owner, team.org_id)[0]["status"] == "expired"


def test_a_revoked_invitation_cannot_be_accepted(orgs, refused, org_with_roles):
    team = org_with_roles
    invitation = invite(orgs, team.owner, team.org_id, "dana@example.com")
    orgs.revoke_invitation(team.super_admin, team.org_id, invitation["id"])

    with refused(Conflict, "INVITATION_REVOKED"):
        orgs.accept_invitation(make_person(email="dana@example.com"), invitation["token"])
    assert orgs.list_invitations(team.owner, team.org_id)[0]["status"] == "revoked"


def test_revoking_twice_is_a_no_op(orgs, session, org_with_roles):
    team = org_with_roles
    invitation = invite(orgs, team.owner, team.org_id, "dana@example.com")
    orgs.revoke_invitation(team.owner, team.org_id, invitation["id"])
    first_closed_at = session.get(Invitation, UUID(invitation["id"])).closed_at

    assert orgs.revoke_invitation(team.owner, team.org_id, invitation["id"]) is None
    row = session.get(Invitation, UUID(invitation["id"]))
    assert (row.status, row.closed_at) == ("revoked", first_closed_at)


def test_an_accepted_invitation_cannot_be_revoked(orgs, refused, org_with_roles):
    team = org_with_roles
    invitation = invite(orgs, team.owner, team.org_id, "dana@example.com")
    orgs.accept_invitation(make_person(email="dana@example.com"), invitation["token"])

    with refused(Conflict, "INVITATION_ACCEPTED"):
        orgs.revoke_invitation(team.owner, team.org_id, invitation["id"])
    assert orgs.list_invitations(team.owner, team.org_id)[0]["status"] == "accepted"


def test_revoking_an_unknown_or_another_orgs_invitation_is_not_found(orgs, refused, org_with_roles):
    team = org_with_roles
    other_org = orgs.create_org(team.owner, {"name": "Other"})
    elsewhere = invite(orgs, team.owner, other_org["id"], "dana@example.com")

    for invitation_id in (str(uuid4()), "garbage", elsewhere["id"]):
        with refused(NotFound):
            orgs.revoke_invitation(team.owner, team.org_id, invitation_id)
    assert orgs.list_invitations(team.owner, other_org["id"])[0]["status"] == "pending"


def test_inviting_an_existing_member_conflicts(orgs, refused, org_with_roles):
    team = org_with_roles
    with refused(Conflict, "ALREADY_MEMBER"):
        invite(orgs, team.owner, team.org_id, team.admin["email"].upper())
    emails = [i["email"].lower() for i in orgs.list_invitations(team.owner, team.org_id)]
    assert emails.count(team.admin["email"]) == 1  # only the invitation they joined with


def test_a_second_pending_invitation_for_the_same_email_conflicts(orgs, refused, org_with_roles):
    team = org_with_roles
    first = invite(orgs, team.owner, team.org_id, "dana@example.com")

    with refused(Conflict, "INVITATION_PENDING"):
        invite(orgs, team.super_admin, team.org_id, "DANA@example.com", "admin")
    pending = [i for i in orgs.list_invitations(team.owner, team.org_id) if i["status"] == "pending"]
    assert [i["id"] for i in pending] == [first["id"]]


@pytest.mark.parametrize("end_first_invitation", [
    pytest.param(lambda orgs, session, team, inv: expire(session, inv), id="expired"),
    pytest.param(lambda orgs, session, team, inv: orgs.revoke_invitation(team.owner, team.org_id, inv["id"]),
                 id="revoked"),
])
def test_an_email_can_be_invited_again_once_its_invitation_ended(orgs, session, refused, org_with_roles,
                                                                 end_first_invitation):
    team = org_with_roles
    first = invite(orgs, team.owner, team.org_id, "dana@example.com", "standard")
    end_first_invitation(orgs, session, team, first)

    second = invite(orgs, team.owner, team.org_id, "dana@example.com", "admin")
    dana = make_person(email="dana@example.com")
    with refused(Conflict):
        orgs.accept_invitation(dana, first["token"])
    assert orgs.accept_invitation(dana, second["token"]) == {"org_id": team.org_id, "role": "admin"}


def test_nobody_can_be_invited_as_owner(orgs, refused, org_with_roles):
    team = org_with_roles
    with refused(Conflict, "SECOND_OWNER"):
        invite(orgs, team.owner, team.org_id, "dana@example.com", "owner")
    assert "dana@example.com" not in [i["email"] for i in orgs.list_invitations(team.owner, team.org_id)]


@pytest.mark.parametrize("data, bad_field", [
    ({"email": "not-an-email", "role": "standard"}, "email"),
    ({"email": "dana@example.com", "role": "emperor"}, "role"),
    ({"email": "dana@example.com"}, "role"),
])
def test_an_invitation_with_invalid_fields_is_refused(orgs, refused, org_with_roles, data, bad_field):
    with refused(ValidationFailed) as caught:
        orgs.invite(org_with_roles.owner, org_with_roles.org_id, data)
    assert bad_field in caught.value.details


def test_a_super_admin_can_invite(orgs, org_with_roles):
    team = org_with_roles
    invitation = invite(orgs, team.super_admin, team.org_id, "dana@example.com", "super_admin")
    assert invitation["invited_by"] == team.super_admin["id"]
    assert orgs.accept_invitation(make_person(email="dana@example.com"), invitation["token"])["role"] == "super_admin"


@pytest.mark.parametrize("role", ["admin", "standard"])
def test_admins_and_standard_members_cannot_manage_invitations(orgs, refused, org_with_roles, role):
    team = org_with_roles
    me = team.person(role)
    pending = invite(orgs, team.owner, team.org_id, "pending@example.com")

    with refused(Forbidden):
        invite(orgs, me, team.org_id, "dana@example.com")
    with refused(Forbidden):
        orgs.list_invitations(me, team.org_id)
    with refused(Forbidden):
        orgs.revoke_invitation(me, team.org_id, pending["id"])
    still_pending = [i for i in orgs.list_invitations(team.owner, team.org_id) if i["status"] == "pending"]
    assert [i["email"] for i in still_pending] == ["pending@example.com"]


def test_listing_invitations_shows_everything_but_the_token(orgs, org_with_roles):
    team = org_with_roles
    created = invite(orgs, team.owner, team.org_id, "dana@example.com", "admin")

    listed = [i for i in orgs.list_invitations(team.super_admin, team.org_id) if i["id"] == created["id"]]
    expected = {key: value for key, value in created.items() if key != "token"}
    assert listed == [expected]
    assert not any("token" in key for key in listed[0])


def test_invitations_are_listed_newest_first(orgs, org_with_roles):
    team = org_with_roles
    listed = orgs.list_invitations(team.owner, team.org_id)
    assert [i["role"] for i in listed] == ["standard", "admin", "super_admin"]


def test_accepting_twice_returns_the_same_role_without_a_second_membership(orgs, session, org_with_roles):
    team = org_with_roles
    invitation = invite(orgs, team.owner, team.org_id, "dana@example.com", "admin")
    dana = make_person(email="dana@example.com")

    first = orgs.accept_invitation(dana, invitation["token"])
    second = orgs.accept_invitation(dana, invitation["token"])

    assert first == second == {"org_id": team.org_id, "role": "admin"}
    assert memberships_of(session, team.org_id, dana["id"]) == 1
    assert [e for e in outbox_events(session, "member.joined") if e["user_id"] == dana["id"]] == [
        {"org_id": team.org_id, "user_id": dana["id"], "role": "admin"},
    ]


# -- roles -------------------------------------------------------------------------------------

@pytest.mark.parametrize("manager", ["owner", "super_admin"])
def test_the_owner_and_a_super_admin_can_change_a_members_role(orgs, session, org_with_roles, manager):
    team = org_with_roles
    me = team.person(manager)

    member = orgs.change_role(me, team.org_id, team.standard["id"], {"role": "admin"})

    assert (member["user_id"], member["role"]) == (team.standard["id"], "admin")
    assert roles_in(orgs, team.owner, team.org_id)[team.standard["id"]] == "admin"
    assert outbox_events(session, "member.role_changed") == [{
        "org_id": team.org_id, "user_id": team.standard["id"], "old_role": "standard", "new_role": "admin",
        "changed_by": me["id"],
    }]


@pytest.mark.parametrize("manager", ["owner", "super_admin"])
@pytest.mark.parametrize("target", ["super_admin", "admin", "standard"])
def test_no_role_change_makes_a_second_owner(orgs, session, refused, org_with_roles, manager, target):
    team = org_with_roles
    before = roles_in(orgs, team.owner, team.org_id)

    with refused(Conflict, "SECOND_OWNER"):
        orgs.change_role(team.person(manager), team.org_id, team.person(target)["id"], {"role": "owner"})
    assert roles_in(orgs, team.owner, team.org_id) == before
    assert outbox_events(session, "member.role_changed") == []


def test_a_super_admin_cannot_change_the_owners_role(orgs, refused, org_with_roles):
    team = org_with_roles
    with refused(Forbidden):
        orgs.change_role(team.super_admin, team.org_id, team.owner["id"], {"role": "admin"})
    assert roles_in(orgs, team.owner, team.org_id)[team.owner["id"]] == "owner"


def test_the_owner_cannot_demote_themself(orgs, refused, org_with_roles):
    team = org_with_roles
    with refused(Conflict, "OWNER_REQUIRED"):
        orgs.change_role(team.owner, team.org_id, team.owner["id"], {"role": "super_admin"})
    assert roles_in(orgs, team.owner, team.org_id)[team.owner["id"]] == "owner"


@pytest.mark.parametrize("role", ["admin", "standard"])
def test_admins_and_standard_members_cannot_change_roles(orgs, session, refused, org_with_roles, role):
    team = org_with_roles
    with refused(Forbidden):
        orgs.change_role(team.person(role), team.org_id, team.standard["id"], {"role": "super_admin"})
    assert roles_in(orgs, team.owner, team.org_id)[team.standard["id"]] == "standard"
    assert outbox_events(session, "member.role_changed") == []


def test_an_unchanged_role_writes_no_event(orgs, session, org_with_roles):
    team = org_with_roles
    member = orgs.change_role(team.owner, team.org_id, team.admin["id"], {"role": "admin"})
    assert member["role"] == "admin"
    assert outbox_events(session, "member.role_changed") == []


@pytest.mark.parametrize("user_id", [str(uuid4()), "garbage"])
def test_changing_the_role_of_a_non_member_is_not_found(orgs, refused, org_with_roles, user_id):
    with refused(NotFound):
        orgs.change_role(org_with_roles.owner, org_with_roles.org_id, user_id, {"role": "admin"})


# -- removing members --------------------------------------------------------------------------

@pytest.mark.parametrize("manager", ["owner", "super_admin"])
@pytest.mark.parametrize("target", ["admin", "standard"])
def test_the_owner_and_a_super_admin_can_remove_a_member(orgs, session, refused, org_with_roles, manager, target):
    team = org_with_roles
    me, gone = team.person(manager), team.person(target)

    assert orgs.remove_member(me, team.org_id, gone["id"]) is None

    assert gone["id"] not in roles_in(orgs, team.owner, team.org_id)
    assert outbox_events(session, "member.removed") == [
        {"org_id": team.org_id, "user_id": gone["id"], "role": target, "removed_by": me["id"]},
    ]
    with refused(NotFound):
        orgs.get_org(gone, team.org_id)


def test_a_super_admin_cannot_remove_the_owner(orgs, session, refused, org_with_roles):
    team = org_with_roles
    with refused(Forbidden):
        orgs.remove_member(team.super_admin, team.org_id, team.owner["id"])
    assert roles_in(orgs, team.owner, team.org_id)[team.owner["id"]] == "owner"
    assert outbox_events(session, "member.removed") == []


def test_the_owner_cannot_remove_themself(orgs, session, refused, org_with_roles):
    team = org_with_roles
    with refused(Conflict, "OWNER_REQUIRED"):
        orgs.remove_member(team.owner, team.org_id, team.owner["id"])
    assert roles_in(orgs, team.owner, team.org_id)[team.owner["id"]] == "owner"
    assert outbox_events(session, "member.removed") == []


@pytest.mark.parametrize("role", ["super_admin", "admin", "standard"])
def test_a_member_may_leave(orgs, session, org_with_roles, role):
    team = org_with_roles
    me = team.person(role)

    orgs.remove_member(me, team.org_id, me["id"])

    assert me["id"] not in roles_in(orgs, team.owner, team.org_id)
    assert outbox_events(session, "member.removed") == [
        {"org_id": team.org_id, "user_id": me["id"], "role": role, "removed_by": me["id"]},
    ]


@pytest.mark.parametrize("role", ["admin", "standard"])
def test_admins_and_standard_members_cannot_remove_others(orgs, session, refused, org_with_roles, role):
    team = org_with_roles
    before = roles_in(orgs, team.owner, team.org_id)
    for other in ("owner", "super_admin", "admin", "standard"):
        if other != role:
            with refused(Forbidden):
                orgs.remove_member(team.person(role), team.org_id, team.person(other)["id"])
    assert roles_in(orgs, team.owner, team.org_id) == before
    assert outbox_events(session, "member.removed") == []


@pytest.mark.parametrize("user_id", [str(uuid4()), "garbage"])
def test_removing_an_unknown_member_is_not_found(orgs, refused, org_with_roles, user_id):
    with refused(NotFound):
        orgs.remove_member(org_with_roles.owner, org_with_roles.org_id, user_id)


# -- transferring ownership --------------------------------------------------------------------

@pytest.mark.parametrize("role", ["super_admin", "admin", "standard"])
def test_only_the_owner_can_transfer_ownership(orgs, refused, org_with_roles, role):
    team = org_with_roles
    me = team.person(role)
    with refused(Forbidden):
        orgs.transfer_ownership(me, team.org_id, {"user_id": me["id"]})
    assert orgs.get_org(team.owner, team.org_id)["owner_id"] == team.owner["id"]


@pytest.mark.parametrize("user_id", [str(uuid4()), "garbage"])
def test_ownership_cannot_go_to_a_non_member(orgs, refused, org_with_roles, user_id):
    team = org_with_roles
    with refused(ValidationFailed) as caught:
        orgs.transfer_ownership(team.owner, team.org_id, {"user_id": user_id})
    assert "user_id" in caught.value.details
    assert orgs.get_org(team.owner, team.org_id)["owner_id"] == team.owner["id"]


@pytest.mark.parametrize("spelling", [
    pytest.param(str, id="as-given"),
    # Another spelling of one's own UUID once passed a string comparison and faked a transfer.
    pytest.param(lambda user_id: user_id.upper(), id="upper-case"),
])
def test_ownership_cannot_be_transferred_to_oneself(orgs, session, refused, org_with_roles, spelling):
    team = org_with_roles
    with refused(ValidationFailed) as caught:
        orgs.transfer_ownership(team.owner, team.org_id, {"user_id": spelling(team.owner["id"])})
    assert "user_id" in caught.value.details
    assert roles_in(orgs, team.owner, team.org_id)[team.owner["id"]] == "owner"
    assert outbox_events(session, "member.role_changed") == []


def test_after_a_transfer_there_is_one_owner_and_the_old_owner_is_super_admin(orgs, session, org_with_roles):
    team = org_with_roles
    old, new = team.owner, team.admin

    answer = orgs.transfer_ownership(old, team.org_id, {"user_id": new["id"]})

    assert (answer["owner_id"], answer["my_role"]) == (new["id"], "super_admin")
    assert orgs.get_org(old, team.org_id)["owner_id"] == new["id"]
    roles = roles_in(orgs, old, team.org_id)
    assert list(roles.values()).count("owner") == 1
    assert (roles[new["id"]], roles[old["id"]]) == ("owner", "super_admin")
    assert orgs.authorize(new["id"], org_account(team.org_id), TRANSFER_OWNERSHIP)["role"] == "owner"
    assert orgs.can(old["id"], org_account(team.org_id), TRANSFER_OWNERSHIP) is False
    events = outbox_events(session, "member.role_changed")
    assert sorted(events, key=lambda e: e["new_role"]) == [
        {"org_id": team.org_id, "user_id": new["id"], "old_role": "admin", "new_role": "owner",
         "changed_by": old["id"]},
        {"org_id": team.org_id, "user_id": old["id"], "old_role": "owner", "new_role": "super_admin",
         "changed_by": old["id"]},
    ]


def test_the_new_owner_can_transfer_back(orgs, org_with_roles):
    team = org_with_roles
    orgs.transfer_ownership(team.owner, team.org_id, {"user_id": team.standard["id"]})

    answer = orgs.transfer_ownership(team.standard, team.org_id, {"user_id": team.owner["id"]})

    assert answer["owner_id"] == team.owner["id"]
    roles = roles_in(orgs, team.owner, team.org_id)
    assert (roles[team.owner["id"]], roles[team.standard["id"]]) == ("owner", "super_admin")
    assert list(roles.values()).count("owner") == 1


def test_the_database_refuses_a_second_owner(session, org_with_roles):
    team = org_with_roles
    intruder = make_person()
    session.add(Membership(org_id=UUID(team.org_id), user_id=UUID(intruder["id"]), role="owner",
                           email=intruder["email"], email_key=intruder["email"], name=intruder["name"]))
    with pytest.raises(IntegrityError, match="uq_memberships_one_owner"):
        session.flush()
    session.rollback()
    assert memberships_of(session, team.org_id, intruder["id"]) == 0


# -- an invitation stands on its sender's right to invite ---------------------------------------

def join(orgs, inviter, org_id, person, role):
    orgs.accept_invitation(person, invite(orgs, inviter, org_id, person["email"], role)["token"])


ENDS_THE_RIGHT_TO_INVITE = {
    "removed-by-the-owner": lambda orgs, team, sender: orgs.remove_member(team.owner, team.org_id, sender["id"]),
    "removed-by-a-super-admin": lambda orgs, team, sender: orgs.remove_member(
        add_member(orgs, team.org_id, team.owner, "super_admin"), team.org_id, sender["id"]),
    "left": lambda orgs, team, sender: orgs.remove_member(sender, team.org_id, sender["id"]),
    "demoted-to-admin": lambda orgs, team, sender: orgs.change_role(team.owner, team.org_id, sender["id"],
                                                                    {"role": "admin"}),
    "demoted-to-standard": lambda orgs, team, sender: orgs.change_role(team.owner, team.org_id, sender["id"],
                                                                       {"role": "standard"}),
}


@pytest.mark.parametrize("end_the_right", ENDS_THE_RIGHT_TO_INVITE.values(), ids=ENDS_THE_RIGHT_TO_INVITE.keys())
def test_pending_invitations_end_with_their_senders_right_to_invite(orgs, session, refused, org_with_roles,
                                                                    end_the_right):
    team = org_with_roles
    sender = team.super_admin
    pending = [invite(orgs, sender, team.org_id, f"guest-{n}@example.com", role) for n, role in
               enumerate(["standard", "super_admin"])]
    accepted = invite(orgs, sender, team.org_id, "joined@example.com")
    joined = make_person(email="joined@example.com")
    orgs.accept_invitation(joined, accepted["token"])
    stale = invite(orgs, sender, team.org_id, "stale@example.com")
    expire(session, stale)
    from_the_owner = invite(orgs, team.owner, team.org_id, "owners-guest@example.com")
    # the sender may still invite in another organization: those stay
    elsewhere = orgs.create_org(team.owner, {"name": "Elsewhere"})
    join(orgs, team.owner, elsewhere["id"], sender, "super_admin")
    sent_elsewhere = invite(orgs, sender, elsewhere["id"], "guest-0@example.com")

    end_the_right(orgs, team, sender)

    for invitation in pending:
        row = stored(session, invitation)
        assert (row.status, row.closed_at is not None) == ("revoked", True)
        with refused(Conflict, "INVITATION_REVOKED"):
            orgs.accept_invitation(make_person(email=invitation["email"]), invitation["token"])
    statuses = {i["id"]: i["status"] for i in orgs.list_invitations(team.owner, team.org_id)}
    assert (statuses[accepted["id"]], statuses[stale["id"]], statuses[from_the_owner["id"]]) == (
        "accepted", "expired", "pending")
    assert joined["id"] in roles_in(orgs, team.owner, team.org_id)
    assert stored(session, sent_elsewhere).status == "pending"


def test_a_transfer_of_ownership_leaves_the_old_owner_free_to_invite(orgs, session, org_with_roles):
    team = org_with_roles
    invitation = invite(orgs, team.owner, team.org_id, "guest@example.com")

    orgs.transfer_ownership(team.owner, team.org_id, {"user_id": team.admin["id"]})

    assert stored(session, invitation).status == "pending"
    assert orgs.accept_invitation(make_person(email="guest@example.com"), invitation["token"])["role"] == "standard"


# -- one email, however it is written (NFKC, then casefold) -------------------------------------

SAME_EMAIL = [
    pytest.param("dana@example.com", "Dana@Example.COM", id="case"),
    pytest.param("dana@example.com", "\uff24\uff41\uff4e\uff41@example.com", id="fullwidth"),
    pytest.param("strasse@example.com", "STRA\u1e9eE@example.com", id="sharp-s"),
    pytest.param("kate@example.com", "\u212aate@example.com", id="kelvin-sign"),
]
# Look-alikes that are other addresses: other mailboxes, other people.
OTHER_EMAIL = [
    pytest.param("ann@example.com", "\u0430nn@example.com", id="cyrillic-a"),
    pytest.param("info@example.com", "\u0130nfo@example.com", id="dotted-capital-i"),
    pytest.param("bill@example.com", "bi1l@example.com", id="digit-one"),
]


@pytest.mark.parametrize("invited, signed_in", SAME_EMAIL)
def test_the_invited_email_accepts_however_it_is_written(orgs, org_with_roles, invited, signed_in):
    team = org_with_roles
    invitation = invite(orgs, team.owner, team.org_id, invited, "admin")
    person = make_person(email=signed_in)

    assert orgs.accept_invitation(person, invitation["token"]) == {"org_id": team.org_id, "role": "admin"}
    assert roles_in(orgs, team.owner, team.org_id)[person["id"]] == "admin"


@pytest.mark.parametrize("invited, signed_in", OTHER_EMAIL)
def test_a_look_alike_address_cannot_accept_someone_elses_invitation(orgs, session, refused, org_with_roles,
                                                                     invited, signed_in):
    team = org_with_roles
    invitation = invite(orgs, team.owner, team.org_id, invited)
    impostor = make_person(email=signed_in)

    with refused(Forbidden, "INVITATION_EMAIL_MISMATCH"):
        orgs.accept_invitation(impostor, invitation["token"])
    assert impostor["id"] not in roles_in(orgs, team.owner, team.org_id)
    assert stored(session, invitation).status == "pending"


@pytest.mark.parametrize("first, again", SAME_EMAIL)
def test_the_same_email_written_otherwise_is_already_pending(orgs, refused, org_with_roles, first, again):
    team = org_with_roles
    pending = invite(orgs, team.owner, team.org_id, first)

    with refused(Conflict, "INVITATION_PENDING"):
        invite(orgs, team.super_admin, team.org_id, again, "admin")
    assert [i["id"] for i in orgs.list_invitations(team.owner, team.org_id) if i["status"] == "pending"] == [
        pending["id"]]


@pytest.mark.parametrize("member_email, invited", SAME_EMAIL)
def test_the_same_email_written_otherwise_is_already_a_member(orgs, refused, org_with_roles, member_email,
                                                              invited):
    team = org_with_roles
    add_member(orgs, team.org_id, team.owner, "standard", email=member_email)

    with refused(Conflict, "ALREADY_MEMBER"):
        invite(orgs, team.owner, team.org_id, invited)
    assert invited not in [i["email"] for i in orgs.list_invitations(team.owner, team.org_id)]


@pytest.mark.parametrize("first, look_alike", OTHER_EMAIL)
def test_a_look_alike_address_is_invited_on_its_own(orgs, org_with_roles, first, look_alike):
    team = org_with_roles
    add_member(orgs, team.org_id, team.owner, "standard", email=first)
    other_org = orgs.create_org(team.owner, {"name": "Other"})
    invite(orgs, team.owner, other_org["id"], first)

    # neither the member nor the pending invitation is this address
    assert invite(orgs, team.owner, team.org_id, look_alike)["status"] == "pending"
    assert invite(orgs, team.owner, other_org["id"], look_alike)["status"] == "pending"


def test_the_database_refuses_two_pending_invitations_for_one_email_key(session, orgs, org_with_roles):
    team = org_with_roles
    invite(orgs, team.owner, team.org_id, "dana@example.com")
    session.add(Invitation(org_id=UUID(team.org_id), email="\uff44ana@example.com", email_key="dana@example.com",
                           role="standard", token_hash="0" * 64, invited_by=UUID(team.owner["id"]),
                           expires_at=utc_now() + timedelta(hours=1)))
    with pytest.raises(IntegrityError, match="uq_invitations_one_pending_per_email"):
        session.flush()
    session.rollback()


# -- accept and revoke at once -----------------------------------------------------------------

def outcome_of(call):
    """What a call ended in: "done", a Conflict's code, or any other error (a deadlock) as text."""
    try:
        call()
        return "done"
    except Conflict as error:
        return error.error_code
    except Exception as error:
        return repr(error)


def test_accept_and_revoke_at_once_end_one_way_and_never_deadlock(orgs, session, db_session, org_with_roles):
    """Each call runs on its own session (connection), in a green thread of its own, both started
    together, round after round. Accept once locked the invitation, then the organization; revoke
    locks the organization, then the invitation: each held what the other waited for."""
    team = org_with_roles
    for round_number in range(20):
        guest = make_person()
        invitation = invite(orgs, team.owner, team.org_id, guest["email"])
        accepting, revoking = db_session("orgs"), db_session("orgs")
        calls = {
            "accept": lambda: worker_factory(OrgsService, db=accepting).accept_invitation(guest, invitation["token"]),
            "revoke": lambda: worker_factory(OrgsService, db=revoking).revoke_invitation(
                team.owner, team.org_id, invitation["id"]),
        }
        order = sorted(calls, reverse=round_number % 2 == 1)
        threads = {name: eventlet.spawn(outcome_of, calls[name]) for name in order}
        outcome = {name: thread.wait() for name, thread in threads.items()}
        accepting.close()
        revoking.close()

        assert outcome in ({"accept": "done", "revoke": "INVITATION_ACCEPTED"},
                           {"accept": "INVITATION_REVOKED", "revoke": "done"}), f"round {round_number}: {outcome}"
        joined = outcome["accept"] == "done"
        assert (stored(session, invitation).status, memberships_of(session, team.org_id, guest["id"])) == (
            ("accepted", 1) if joined else ("revoked", 0))


# -- listings ----------------------------------------------------------------------------------

def test_members_are_listed_owner_first_then_by_role_then_by_join_date(orgs):
    first = make_person()
    org_id = orgs.create_org(first, {"name": "Acme"})["id"]
    # joined in the order first, b, c, d, e: the listing must not simply follow it
    b = add_member(orgs, org_id, first, "standard")
    c = add_member(orgs, org_id, first, "admin")
    d = add_member(orgs, org_id, first, "super_admin")
    e = add_member(orgs, org_id, first, "standard")
    orgs.transfer_ownership(first, org_id, {"user_id": e["id"]})

    members = orgs.list_members(b, org_id)

    assert [(m["user_id"], m["role"]) for m in members] == [
        (e["id"], "owner"), (first["id"], "super_admin"), (d["id"], "super_admin"), (c["id"], "admin"),
        (b["id"], "standard"),
    ]
    assert (members[-1]["email"], members[-1]["name"]) == (b["email"], b["name"])
    assert all(parse_time(m["joined_at"]) <= utc_now() for m in members)


def test_my_orgs_list_my_role_in_each_org_and_nothing_else(orgs):
    me, boss = make_person(), make_person()
    mine = orgs.create_org(me, {"name": "Mine"})
    theirs = orgs.create_org(boss, {"name": "Theirs"})
    also_theirs = orgs.create_org(boss, {"name": "Also theirs"})
    orgs.create_org(boss, {"name": "Not mine"})
    orgs.accept_invitation(me, invite(orgs, boss, theirs["id"], me["email"], "admin")["token"])
    orgs.accept_invitation(me, invite(orgs, boss, also_theirs["id"], me["email"], "standard")["token"])

    assert [(o["id"], o["name"], o["my_role"]) for o in orgs.list_my_orgs(me)] == [
        (mine["id"], "Mine", "owner"), (theirs["id"], "Theirs", "admin"),
        (also_theirs["id"], "Also theirs", "standard"),
    ]
    assert orgs.list_my_orgs(me)[0] == {**mine, "my_role": "owner"}
    assert orgs.list_my_orgs(make_person()) == []
