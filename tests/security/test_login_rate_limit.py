"""The login brute-force limit, in identity on a real PostgreSQL: failures counted per email and per
client address in a sliding window, kept in identity's database so every process sees the same count."""
from datetime import timedelta

import eventlet
import pytest
from nameko.testing.services import worker_factory
from sqlalchemy import func, select, update

from services.identity.models import LoginAttempt
from services.identity.service import IdentityService
from shared.config import settings
from shared.errors import RateLimited, Unauthorized

PASSWORD = "correct horse battery"
PER_EMAIL, PER_IP, WINDOW = 3, 7, 600


@pytest.fixture(autouse=True)
def limits(monkeypatch):
    monkeypatch.setenv("LOGIN_FAILURES_PER_EMAIL", str(PER_EMAIL))
    monkeypatch.setenv("LOGIN_FAILURES_PER_IP", str(PER_IP))
    monkeypatch.setenv("LOGIN_FAILURE_WINDOW_SECONDS", str(WINDOW))
    settings.cache_clear()
    yield
    settings.cache_clear()


@pytest.fixture
def identity(db_session):
    service = worker_factory(IdentityService, db=db_session("identity"))
    for email in ("ann@example.com", "bob@example.com"):
        service.signup({"email": email, "password": PASSWORD, "name": "X", "country": "US"})
    return service


def login(identity, email="ann@example.com", password=PASSWORD, ip="203.0.113.7"):
    return identity.login({"email": email, "password": password}, ip)


def fail(identity, times, email="ann@example.com", ip="203.0.113.7"):
    for _ in range(times):
        with pytest.raises(Unauthorized):
            login(identity, email, "wrong password", ip)


def age_every_attempt(identity, seconds):
    identity.db.execute(update(LoginAttempt).values(
        attempted_at=LoginAttempt.attempted_at - timedelta(seconds=seconds)))
    identity.db.commit()


def test_too_many_failures_for_an_email_are_answered_with_rate_limited_and_a_retry_after(identity):
    fail(identity, PER_EMAIL)
    with pytest.raises(RateLimited) as raised:
        login(identity, password="wrong password")
    assert raised.value.error_code == "RATE_LIMITED"
    assert 0 < raised.value.details["retry_after"] <= WINDOW


def test_the_right_password_during_a_lockout_is_refused_the_same_way(identity):
    fail(identity, PER_EMAIL)
    with pytest.raises(RateLimited) as right:
        login(identity)
    with pytest.raises(RateLimited) as wrong:
        login(identity, password="wrong password")
    assert right.value.message == wrong.value.message and right.value.error_code == wrong.value.error_code


def test_the_lockout_is_per_email_from_any_address_and_other_emails_still_sign_in(identity):
    fail(identity, PER_EMAIL, ip="203.0.113.7")
    with pytest.raises(RateLimited):
        login(identity, ip="198.51.100.1")  # the same email from elsewhere
    assert login(identity, email="bob@example.com")["user"]["email"] == "bob@example.com"


def test_emails_are_counted_whatever_their_case_and_whether_or_not_they_exist(identity):
    fail(identity, PER_EMAIL, email="ANN@example.com")
    with pytest.raises(RateLimited):
        login(identity, email="ann@EXAMPLE.com")
    fail(identity, PER_EMAIL, email="nobody@example.com", ip="198.51.100.2")
    with pytest.raises(RateLimited):  # an unknown email locks the same way: no oracle for who exists
        login(identity, email="nobody@example.com", ip="198.51.100.2")


def test_every_spelling_of_an_email_counts_against_it(identity):
    fail(identity, PER_EMAIL, email="\uff41nn@example.com")  # fullwidth a: the same address (shared.emails)
    with pytest.raises(RateLimited):
        login(identity)


def test_when_the_failures_leave_the_window_the_user_signs_in_again(identity):
    fail(identity, PER_EMAIL)
    with pytest.raises(RateLimited) as raised:
        login(identity)
    age_every_attempt(identity, raised.value.details["retry_after"])
    assert login(identity)["user"]["email"] == "ann@example.com"


def test_the_window_slides_a_failure_at_a_time(identity):
    fail(identity, 1)
    age_every_attempt(identity, WINDOW - 60)  # the first failure has a minute left
    fail(identity, PER_EMAIL - 1)
    with pytest.raises(RateLimited) as raised:
        login(identity)
    assert 1 <= raised.value.details["retry_after"] <= 60
    age_every_attempt(identity, 61)
    fail(identity, 1)  # one failure aged out: room for exactly one more
    with pytest.raises(RateLimited):
        login(identity)


def test_refused_attempts_do_not_extend_the_lockout(identity):
    fail(identity, PER_EMAIL)
    for _ in range(5):
        with pytest.raises(RateLimited):
            login(identity, password="wrong password")
    assert identity.db.scalar(select(func.count()).select_from(LoginAttempt)) == 2 * PER_EMAIL  # email + ip rows


def test_a_success_forgives_the_emails_failures(identity):
    fail(identity, PER_EMAIL - 1)
    login(identity)
    fail(identity, PER_EMAIL - 1)
    assert login(identity)["user"]["email"] == "ann@example.com"


def test_too_many_failures_from_one_address_lock_it_for_every_email(identity):
    emails = [f"guess{i}@example.com" for i in range(PER_IP)]
    for email in emails:
        fail(identity, 1, email=email, ip="192.0.2.9")
    with pytest.raises(RateLimited):
        login(identity, ip="192.0.2.9")
    assert login(identity, ip="192.0.2.10")["user"]["email"] == "ann@example.com"


def test_a_success_does_not_wipe_the_addresss_failures(identity):
    for i in range(PER_IP - 1):
        fail(identity, 1, email=f"guess{i}@example.com", ip="192.0.2.9")
    login(identity, email="bob@example.com", ip="192.0.2.9")  # the guesser's own account
    fail(identity, 1, email="one-more@example.com", ip="192.0.2.9")
    with pytest.raises(RateLimited):
        login(identity, email="bob@example.com", ip="192.0.2.9")


def test_old_attempts_are_purged(identity):
    fail(identity, 2)
    age_every_attempt(identity, WINDOW + 1)
    fail(identity, 1, email="bob@example.com")
    identity.purge_dead_sessions()
    assert identity.db.scalar(select(func.count()).select_from(LoginAttempt)) == 2  # bob's email + ip


def test_the_count_is_shared_by_every_process(identity, db_session):
    """Another identity worker, with its own database session (as in another process), sees the
    failures this one recorded."""
    fail(identity, PER_EMAIL)
    elsewhere = worker_factory(IdentityService, db=db_session("identity"))
    with pytest.raises(RateLimited):
        login(elsewhere, ip="198.51.100.3")


def test_concurrent_guesses_get_no_more_password_checks_than_the_limit(identity, db_session):
    """Each attempt is recorded before it is counted, so guesses sent at once see each other."""
    workers = [worker_factory(IdentityService, db=db_session("identity")) for _ in range(4 * PER_EMAIL)]

    def guess(worker):
        try:
            login(worker, password="wrong password")
        except (Unauthorized, RateLimited) as refusal:
            return type(refusal)

    outcomes = list(eventlet.GreenPool(len(workers)).imap(guess, workers))
    assert outcomes.count(Unauthorized) <= PER_EMAIL
    assert outcomes.count(Unauthorized) + outcomes.count(RateLimited) == len(workers)
