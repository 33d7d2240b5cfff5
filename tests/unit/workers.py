"""Helpers for unit tests that call entrypoints on a worker_factory service."""
import functools


def end_like_workers(service, session, entrypoints):
    """Make each entrypoint end as a real worker does: its session is closed afterwards, so what it
    did not commit is gone (a test then sees only what the entrypoint really committed)."""
    for name in entrypoints:
        entrypoint = getattr(service, name)

        @functools.wraps(entrypoint)
        def call(*args, _entrypoint=entrypoint, **kwargs):
            try:
                return _entrypoint(*args, **kwargs)
            finally:
                session.rollback()

        setattr(service, name, call)
    return service
