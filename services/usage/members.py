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
from sqlalchemy.dialects.postgresql import insert

from services.usage.models import UsageMember
from services.usage.reports import parse_rfc3339
from shared.outbox import utc_now
from shared.permissions import check_personal, check_role


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


def authorize_locally(kind, projection, action):
    """True when usage can answer: nothing raised means allowed, NotFound / Forbidden as
    orgs.authorize would raise them. False when only orgs can say. `projection` is the row of
    services/usage/reads.ACCOUNT_AND_ROLE (member_known, role); a personal account is the caller's
    own (shared.permissions.requested_account made it so)."""
    if kind == "personal":
        check_personal(action)
        return True
    if not projection.member_known:
        return False
    check_role(projection.role, action)
    return True
