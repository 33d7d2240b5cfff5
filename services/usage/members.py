"""Who may read an account's usage, answered inside usage.

A usage read used to cost a call to orgs.authorize on every request: a third of the read's time
and a process more to wait on. usage now keeps a projection of memberships, fed by orgs' events
(member.joined, member.role_changed, member.removed), and checks the permission table
(shared/permissions.py) against it. A membership it has never heard of (older than the projection,
or whose event is still on its way) is asked of orgs, which stays the authority.

A role change or a removal reaches the projection when its event does (milliseconds, or as long as
usage is down); until then reads follow the previous role. Reads only: every change of state is
authorized by orgs itself.
"""
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert

from services.usage.models import UsageMember
from services.usage.reports import parse_rfc3339
from shared.outbox import utc_now
from shared.errors import NotFound
from shared.permissions import check_role, personal_owner_may


def apply_membership(session, event, role):
    """Project one member.* event: `role` is the member's role after it (None: removed). The newest
    event by occurred_at wins, whatever order they arrive in."""
    changed_at = parse_rfc3339(event.get("occurred_at")) or utc_now()
    statement = insert(UsageMember).values(org_id=str(event["org_id"]), user_id=str(event["user_id"]),
                                           role=role, changed_at=changed_at)
    session.execute(statement.on_conflict_do_update(
        index_elements=[UsageMember.org_id, UsageMember.user_id],
        set_={"role": statement.excluded.role, "changed_at": statement.excluded.changed_at},
        where=UsageMember.changed_at < statement.excluded.changed_at))


def known_role(session, org_id, user_id):
    """(known, role): known False when the projection has never heard of the pair."""
    row = session.execute(select(UsageMember.role).where(
        UsageMember.org_id == org_id, UsageMember.user_id == user_id)).first()
    return (False, None) if row is None else (True, row.role)


def authorize_locally(session, actor_id, account, action):
    """True when the projection answers for `account` ({kind, id}, as requested_account makes it):
    nothing raised means allowed; NotFound / Forbidden as orgs.authorize would raise them. False
    when only orgs can say."""
    if account["kind"] == "personal":  # requested_account made it the caller's own licence
        if not personal_owner_may(action):
            raise NotFound("No such account.")
        return True
    known, role = known_role(session, account["id"], actor_id)
    if not known:
        return False
    check_role(role, action)
    return True
