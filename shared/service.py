"""Small pieces every nameko service class uses."""
from nameko.rpc import rpc
from sqlalchemy import text

from shared.errors import EXPECTED_ERRORS


def api_rpc(fn):
    """An RPC entrypoint whose AppErrors are expected outcomes (sent to the caller, not logged as crashes)."""
    return rpc(expected_exceptions=EXPECTED_ERRORS)(fn)


class HealthMixin:
    """`health()` RPC: answers "ok" when the service, and its database if it has one, respond."""

    @rpc
    def health(self):
        database = getattr(self, "db", None)
        if database is not None:
            database.execute(text("SELECT 1"))
        return "ok"
