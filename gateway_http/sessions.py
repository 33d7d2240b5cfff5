"""gateway_http's cache of signed-in sessions, so most authenticated requests need no identity hop.

An entry maps the SHA-256 of a bearer token (never the token: a heap dump yields nothing usable) to
the user identity answered for it. It is dropped after CACHE_SECONDS, or when the session ends if
that is sooner, or as soon as this process hears the token was revoked:

- identity's logout announces session.revoked; every gateway_http process hears it (a BROADCAST
  handler in service.py) and evicts the hash;
- the logout route evicts its own entry before answering, so that process refuses the token at
  once, without waiting for the event's round trip through the outbox and the broker.

Other processes refuse a revoked token once the event arrives (well under a second normally). If
it never arrives (the broadcast queue is not durable: a process cut off from the broker misses what
was said meanwhile), CACHE_SECONDS bounds how long a revoked token still works there. Refusals are
never cached: a bad token asks identity every time.
"""
import threading
import time
from datetime import datetime

from cachetools import TLRUCache
from nameko.extensions import DependencyProvider

from shared.tokens import hash_token

# The longest a revocation whose event was lost can go unnoticed, and how stale a cached user may be.
CACHE_SECONDS = 30
# Bounds memory (an entry is a few hundred bytes: ~a few MB at most); past it the least recently
# used session is dropped and simply asks identity again next time.
CACHE_MAX_ENTRIES = 10_000


class SessionCache:
    """user_for(token, authenticate_session) -> the user dict, from the cache or from identity."""

    def __init__(self, max_entries=CACHE_MAX_ENTRIES, cache_seconds=CACHE_SECONDS,
                 clock=time.monotonic, wall_clock=time.time):
        self.cache_seconds = cache_seconds
        self._wall_clock = wall_clock
        # Each entry is (user, drop_at on `clock`): TLRUCache expires every entry at its own time.
        self._entries = TLRUCache(max_entries, ttu=lambda _hash, entry, _now: entry[1], timer=clock)
        # Race guard: counts evictions. A miss notes it before asking identity and stores the answer
        # only if it has not moved. Otherwise a logout could land between identity's answer ("live")
        # and our store: the eviction would find nothing to drop, and the revoked token would then be
        # stored and served for up to CACHE_SECONDS. Any revocation, of any token, voids the stores in
        # flight: a rare extra identity call for them, and no per-token bookkeeping to expire.
        self._revocations = 0
        # Workers are green threads and nothing below yields, but a lock keeps check-and-store
        # atomic should it ever run on real threads; it costs nothing measurable.
        self._lock = threading.Lock()

    def __len__(self):
        with self._lock:
            self._entries.expire()
            return len(self._entries)

    def user_for(self, token, authenticate_session):
        """The user of `token`; `authenticate_session(token)` (identity's RPC) is asked on a miss and
        its Unauthorized passes through uncached."""
        token_hash = hash_token(token)
        with self._lock:
            entry = self._entries.get(token_hash)
            revocations_before = self._revocations
        if entry is not None:
            return entry[0]
        session = authenticate_session(token)
        self._store(token_hash, session, revocations_before)
        return session["user"]

    def forget(self, token):
        """Drop `token` (this process's logout route, once identity has revoked it)."""
        self.evict(hash_token(token))

    def evict(self, token_hash):
        """Drop the session of `token_hash` (session.revoked), cached or not, and void stores in flight."""
        with self._lock:
            self._revocations += 1
            self._entries.pop(token_hash, None)

    def evict_user(self, user_id):
        """Drop every cached session of `user_id` (user.updated: their name or phone changed), and
        void stores in flight, as a revocation does."""
        with self._lock:
            self._revocations += 1
            for token_hash in [key for key, (user, _) in self._entries.items() if user["id"] == user_id]:
                self._entries.pop(token_hash, None)

    def _store(self, token_hash, session, revocations_before):
        ends_in = _parse_rfc3339(session["expires_at"]) - self._wall_clock()
        keep_for = min(self.cache_seconds, ends_in)
        with self._lock:
            if self._revocations != revocations_before or keep_for <= 0:
                return
            # TLRUCache's own timer: drop_at and its expiry checks read the same clock.
            self._entries[token_hash] = (session["user"], self._entries.timer() + keep_for)


def _parse_rfc3339(text):
    """Seconds since the epoch. (The session's end is identity's wall-clock time; the hosts' clocks
    are assumed synchronised, as the 24 h sessions' expiry already assumes.)"""
    return datetime.fromisoformat(text).timestamp()


class Sessions(DependencyProvider):
    """One SessionCache per gateway_http process, shared by all its workers."""

    def setup(self):
        self.cache = SessionCache()

    def get_dependency(self, worker_ctx):
        return self.cache
