"""The inbox dedupes redeliveries; event payloads are checked against their schemas before they are staged."""
import pytest
from sqlalchemy import select

from services.orgs.models import Inbox, Outbox
from shared.events import InvalidEvent
from shared.inbox import first_delivery
from shared.outbox import add_event


def test_a_message_id_is_handled_once(db_session):
    session = db_session("orgs")
    assert first_delivery(session, Inbox, "evt-1") is True
    assert first_delivery(session, Inbox, "evt-1") is False
    assert first_delivery(session, Inbox, "evt-2") is True
    session.commit()
    assert first_delivery(session, Inbox, "evt-1") is False


def test_a_rolled_back_handler_forgets_the_id_so_the_redelivery_is_handled(db_session):
    session = db_session("orgs")
    assert first_delivery(session, Inbox, "evt-1") is True
    session.rollback()  # the handler failed: neither its state nor the inbox row committed
    assert first_delivery(session, Inbox, "evt-1") is True


def test_events_are_staged_with_an_id_and_time_and_only_commit_with_the_state(db_session):
    session = db_session("orgs")
    event_id = add_event(session, Outbox, "member.joined", {"org_id": "o1", "user_id": "u1", "role": "admin"})
    session.rollback()
    assert session.scalar(select(Outbox)) is None
    event_id = add_event(session, Outbox, "member.joined", {"org_id": "o1", "user_id": "u1", "role": "admin"})
    session.commit()
    row = session.scalar(select(Outbox))
    assert row.payload["event_id"] == event_id == str(row.id)
    assert row.payload["occurred_at"].endswith("Z")


@pytest.mark.parametrize("event_type, data", [
    ("member.joined", {"org_id": "o1", "user_id": "u1", "role": "emperor"}),
    ("member.joined", {"org_id": "o1"}),
    ("no.such_event", {}),
])
def test_a_payload_its_schema_refuses_is_never_staged(db_session, event_type, data):
    session = db_session("orgs")
    with pytest.raises(InvalidEvent):
        add_event(session, Outbox, event_type, data)
    assert list(session.new) == []

