"""shared.db.advisory_lock, on a real PostgreSQL: one holder at a time, across the holder's commits."""
import eventlet
import pytest

from shared.db import LockBusy, advisory_lock

KEY = "tests.advisory_lock"


@pytest.fixture
def sessions(db_session):
    return db_session("billing"), db_session("billing")


def test_a_second_holder_waits_its_limit_then_is_refused_while_the_first_commits_on(sessions):
    first, second = sessions
    with advisory_lock(first, KEY, wait_seconds=1):
        first.commit()  # the holder's own transactions come and go; the lock stays
        with pytest.raises(LockBusy):
            with advisory_lock(second, KEY, wait_seconds=0.2):
                pytest.fail("the block ran without the lock")
    with advisory_lock(second, KEY, wait_seconds=0.2):
        pass  # released when the first block ended


def test_the_lock_is_released_when_the_block_raises(sessions):
    first, second = sessions
    with pytest.raises(RuntimeError):
        with advisory_lock(first, KEY, wait_seconds=1):
            raise RuntimeError("the purchase failed")
    with advisory_lock(second, KEY, wait_seconds=0.2):
        pass


def test_a_waiter_gets_the_lock_once_the_holder_is_done(sessions):
    first, second = sessions
    order = []

    def hold():
        with advisory_lock(first, KEY, wait_seconds=1):
            order.append("first in")
            eventlet.sleep(0.3)
            order.append("first out")

    holder = eventlet.spawn(hold)
    eventlet.sleep(0.1)
    with advisory_lock(second, KEY, wait_seconds=2):
        order.append("second in")
    holder.wait()
    assert order == ["first in", "first out", "second in"]


def test_other_keys_do_not_wait(sessions):
    first, second = sessions
    with advisory_lock(first, KEY, wait_seconds=1):
        with advisory_lock(second, KEY + ".other", wait_seconds=0.2):
            pass
