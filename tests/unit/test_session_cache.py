"""gateway_http's session cache (gateway_http/sessions.py), on clocks the tests move by hand."""
from datetime import datetime, timezone

import pytest

from gateway_http.sessions import CACHE_SECONDS, SessionCache
from shared.errors import Unauthorized
from shared.tokens import hash_token

ANN = {"id": "u1", "email": "ann@example.com", "name": "Ann", "country": "US", "created_at": "2026-01-01T00:00:00Z"}
START = 1_800_000_000.0  # the wall clock's epoch seconds when a test starts


class Clocks:
    """A monotonic clock and a wall clock that move together, only when told to."""

    def __init__(self):
        self.elapsed = 0.0

    def monotonic(self):
        return 1000.0 + self.elapsed

    def wall(self):
        return START + self.elapsed

    def advance(self, seconds):
        self.elapsed += seconds


def rfc3339_at(epoch_seconds):
    return datetime.fromtimestamp(epoch_seconds, timezone.utc).isoformat().replace("+00:00", "Z")


class FakeIdentity:
    """identity.authenticate_session: counts its calls; every session ends `session_seconds` after START."""

    def __init__(self, clocks, session_seconds=24 * 3600):
        self.clocks = clocks
        self.calls = 0
        self.ends_at = START + session_seconds
        self.revoked = set()
        self.during_call = None  # run while "identity" is answering (a concurrent logout, say)

    def authenticate_session(self, token):
        self.calls += 1
        if token in self.revoked or token == "forged" or self.clocks.wall() >= self.ends_at:
            raise Unauthorized("Your session is invalid or has expired; sign in again.", code="INVALID_TOKEN")
        answer = {"user": {**ANN, "id": f"user-of-{token}"}, "expires_at": rfc3339_at(self.ends_at)}
        if self.during_call:
            self.during_call()
        return answer


@pytest.fixture
def clocks():
    return Clocks()


def make_cache(clocks, **options):
    return SessionCache(clock=clocks.monotonic, wall_clock=clocks.wall, **options)


def test_a_second_request_with_the_same_token_does_not_ask_identity(clocks):
    cache, identity = make_cache(clocks), FakeIdentity(clocks)
    assert cache.user_for("t1", identity.authenticate_session)["id"] == "user-of-t1"
    assert cache.user_for("t1", identity.authenticate_session)["id"] == "user-of-t1"
    assert identity.calls == 1


def test_entries_are_keyed_by_the_tokens_hash_never_the_token(clocks):
    cache, identity = make_cache(clocks), FakeIdentity(clocks)
    cache.user_for("secret-token", identity.authenticate_session)
    assert list(cache._entries) == [hash_token("secret-token")]


def test_an_entry_lives_at_most_cache_seconds(clocks):
    cache, identity = make_cache(clocks), FakeIdentity(clocks)
    cache.user_for("t1", identity.authenticate_session)
    clocks.advance(CACHE_SECONDS - 0.5)
    cache.user_for("t1", identity.authenticate_session)
    assert identity.calls == 1
    clocks.advance(1)
    cache.user_for("t1", identity.authenticate_session)
    assert identity.calls == 2


def test_an_entry_never_outlives_its_session(clocks):
    cache, identity = make_cache(clocks), FakeIdentity(clocks, session_seconds=5)
    cache.user_for("t1", identity.authenticate_session)
    clocks.advance(4.5)
    cache.user_for("t1", identity.authenticate_session)
    assert identity.calls == 1
    clocks.advance(1)  # the session has ended, well within CACHE_SECONDS: identity must be asked
    with pytest.raises(Unauthorized):
        cache.user_for("t1", identity.authenticate_session)
    assert identity.calls == 2


def test_a_session_already_over_by_our_clock_is_not_stored(clocks):
    """identity's clock and ours disagree slightly: it said live, ours says over."""
    cache = make_cache(clocks)
    answer = {"user": ANN, "expires_at": rfc3339_at(START - 1)}
    assert cache.user_for("t1", lambda token: answer) == ANN
    assert len(cache) == 0


def test_refusals_are_not_cached(clocks):
    cache, identity = make_cache(clocks), FakeIdentity(clocks)
    for _ in range(2):
        with pytest.raises(Unauthorized):
            cache.user_for("forged", identity.authenticate_session)
    assert identity.calls == 2 and len(cache) == 0


def test_eviction_makes_the_next_request_ask_identity(clocks):
    cache, identity = make_cache(clocks), FakeIdentity(clocks)
    cache.user_for("t1", identity.authenticate_session)
    cache.user_for("t2", identity.authenticate_session)
    identity.revoked.add("t1")
    cache.evict(hash_token("t1"))
    with pytest.raises(Unauthorized):
        cache.user_for("t1", identity.authenticate_session)
    cache.user_for("t2", identity.authenticate_session)  # other sessions stay cached
    assert identity.calls == 3


def test_forget_drops_a_token_by_its_hash(clocks):
    cache, identity = make_cache(clocks), FakeIdentity(clocks)
    cache.user_for("t1", identity.authenticate_session)
    cache.forget("t1")
    assert len(cache) == 0


def test_evicting_an_unknown_hash_is_harmless(clocks):
    make_cache(clocks).evict("0" * 64)


def test_the_cache_holds_at_most_max_entries_dropping_the_least_recently_used(clocks):
    cache, identity = make_cache(clocks, max_entries=3), FakeIdentity(clocks)
    for token in ("t1", "t2", "t3"):
        cache.user_for(token, identity.authenticate_session)
    cache.user_for("t1", identity.authenticate_session)  # t1 used again: t2 is now the oldest
    cache.user_for("t4", identity.authenticate_session)
    assert len(cache) == 3
    assert set(cache._entries) == {hash_token(t) for t in ("t1", "t3", "t4")}
    calls = identity.calls
    cache.user_for("t2", identity.authenticate_session)
    assert identity.calls == calls + 1


def test_a_logout_while_identity_answers_is_not_undone_by_storing_its_answer(clocks):
    """identity said "live", then the token was revoked (and its eviction found nothing to drop)
    before the answer was stored: storing it would serve a revoked token for CACHE_SECONDS."""
    cache, identity = make_cache(clocks), FakeIdentity(clocks)

    def logout_meanwhile():
        identity.revoked.add("t1")
        cache.evict(hash_token("t1"))

    identity.during_call = logout_meanwhile
    assert cache.user_for("t1", identity.authenticate_session)["id"] == "user-of-t1"  # it was live when asked
    identity.during_call = None
    assert len(cache) == 0
    with pytest.raises(Unauthorized):
        cache.user_for("t1", identity.authenticate_session)


def test_without_a_revocation_meanwhile_the_answer_is_stored(clocks):
    cache, identity = make_cache(clocks), FakeIdentity(clocks)
    cache.user_for("t0", identity.authenticate_session)
    cache.evict(hash_token("t0"))  # a revocation before the miss started does not void it
    cache.user_for("t1", identity.authenticate_session)
    assert hash_token("t1") in cache._entries


def test_evicting_a_user_drops_every_session_of_theirs_and_no_other(clocks):
    cache, identity = make_cache(clocks), FakeIdentity(clocks)
    users = {"t1": "ann", "t2": "ann", "t3": "bob"}  # two sessions of Ann's, one of Bob's

    def authenticate(token):
        return {**identity.authenticate_session(token), "user": {**ANN, "id": users[token]}}

    for token in users:
        cache.user_for(token, authenticate)

    cache.evict_user("ann")

    assert len(cache) == 1
    cache.user_for("t3", authenticate)
    assert identity.calls == 3  # bob's session was still cached; ann's two are asked again below
    cache.user_for("t1", authenticate)
    cache.user_for("t2", authenticate)
    assert identity.calls == 5


def test_a_user_eviction_while_identity_answers_is_not_undone_by_storing_its_answer(clocks):
    cache, identity = make_cache(clocks), FakeIdentity(clocks)
    identity.during_call = lambda: cache.evict_user("user-of-t1")
    cache.user_for("t1", identity.authenticate_session)
    assert len(cache) == 0  # the answer may predate the change: not stored
