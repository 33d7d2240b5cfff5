"""The outbox on a real broker: state and event commit together; a crash in between loses nothing."""
from unittest import mock

from nameko.testing.services import entrypoint_hook
from sqlalchemy import select

from services.orgs.models import Outbox
from services.orgs.service import OrgsService
from shared.outbox import relay_pending

ANN = {"id": "6f1c1a56-8f0e-4d59-9d3a-5ad1b1f0c001", "email": "ann@example.com", "name": "Ann", "country": "US"}


def wait_until(predicate, timeout=10):
    import eventlet
    with eventlet.Timeout(timeout):
        while not predicate():
            eventlet.sleep(0.05)


def outbox_rows(db_session):
    session = db_session("orgs")
    try:
        return session.scalars(select(Outbox).order_by(Outbox.created_at)).all()
    finally:
        session.close()


def test_committed_events_reach_subscribers_and_are_marked_sent(container_factory, service_config,
                                                                event_listener, db_session):
    received = event_listener(("orgs", "org.created"), ("orgs", "member.joined"))
    container = container_factory(OrgsService, service_config)
    container.start()

    with entrypoint_hook(container, "create_org") as create_org:
        org = create_org(ANN, {"name": "Acme"})

    wait_until(lambda: len(received) == 2)
    assert {event_type for event_type, _ in received} == {"org.created", "member.joined"}
    assert dict(received)["org.created"]["org_id"] == org["id"]
    wait_until(lambda: all(row.sent_at for row in outbox_rows(db_session)))


def test_a_crash_between_commit_and_publish_loses_no_event(container_factory, service_config,
                                                           event_listener, db_session):
    received = event_listener(("orgs", "org.created"))

    # First life of the service: the state commits, then the process dies before its relay runs.
    with mock.patch("shared.outbox.relay_pending", return_value=0):
        first = container_factory(OrgsService, service_config)
        first.start()
        with entrypoint_hook(first, "create_org") as create_org:
            org = create_org(ANN, {"name": "Acme"})
        first.kill()
    unsent = [row for row in outbox_rows(db_session) if row.sent_at is None]
    assert {row.event_type for row in unsent} == {"org.created", "member.joined"}
    assert received == []

    # Its replacement finds the unsent rows and publishes them, each once.
    second = container_factory(OrgsService, service_config)
    second.start()
    wait_until(lambda: len(received) == 1)
    assert received[0][1]["org_id"] == org["id"]
    wait_until(lambda: all(row.sent_at for row in outbox_rows(db_session)))


def test_a_failed_publish_leaves_the_event_unsent_for_the_next_pass(db_session):
    from shared import db
    from shared.outbox import add_event

    session = db_session("orgs")
    add_event(session, Outbox, "org.created",
              {"org_id": "o1", "name": "Acme", "country": "US", "owner_id": ANN["id"]})
    session.commit()
    factory = db.make_session_factory("orgs")

    broker_down = mock.Mock(side_effect=ConnectionError("broker down"))
    assert relay_pending(factory, Outbox, broker_down) == 0
    row = outbox_rows(db_session)[0]
    assert (row.sent_at, row.attempts) == (None, 1)
    assert "broker down" in row.last_error

    published = mock.Mock()
    assert relay_pending(factory, Outbox, published) == 1
    published.assert_called_once_with("org.created", row.payload)
    assert relay_pending(factory, Outbox, published) == 0  # nothing is published twice


def test_a_relay_is_woken_by_the_commit_not_by_its_poll(container_factory, service_config, db_session):
    container = container_factory(OrgsService, service_config)
    relay = next(dep for dep in container.dependencies if dep.attr_name == "outbox")
    relay.poll_interval = 60  # after its first pass at start, only a wake-up can publish in time
    container.start()
    with entrypoint_hook(container, "create_org") as create_org:
        create_org(ANN, {"name": "Acme"})
    wait_until(lambda: all(row.sent_at for row in outbox_rows(db_session)), timeout=5)
