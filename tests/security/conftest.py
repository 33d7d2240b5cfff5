"""The security suite drives the session's stack (tests/conftest.py) with the e2e suite's clients."""
from tests.e2e.conftest import anonymous, sign_up, team  # noqa: F401  (fixtures, reused as they are)
