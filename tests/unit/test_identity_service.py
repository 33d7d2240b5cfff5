"""identity through worker_factory, on a real PostgreSQL session (no other service involved)."""
from datetime import datetime, timedelta

import pytest
from nameko.testing.services import worker_factory
from sqlalchemy import select, update

from services.identity.models import AuthSession, Outbox, User
from services.identity.schemas import PhoneNumber
from services.identity.service import BAD_LOGIN, IdentityService
from shared.tokens import hash_token
from shared.errors import Conflict, NotFound, Unauthorized, ValidationFailed
from shared.outbox import utc_now

PASSWORD = "correct horse battery"
INDIAN_PHONE = "+919812345678"


@pytest.fixture
def identity(db_session):
    service = worker_factory(IdentityService, db=db_session("identity"))
    service.billing.get_plan.side_effect = lambda code: (
        {"code": code, "name": "Growth"} if code == "growth_monthly" else None)
    return service


@pytest.fixture
def signup(identity):
    def make(email="ann@example.com", password=PASSWORD, name="Ann", country="US", **extra):
        if country == "IN":
            extra.setdefault("phone", INDIAN_PHONE)  # required there
        return identity.signup({"email": email, "password": password, "name": name, "country": country, **extra})
    return make


def test_signup_returns_a_token_that_authenticates_the_new_user(identity, signup):
    result = signup(country="IN")
    assert result["user"]["email"] == "ann@example.com"
    assert result["user"]["country"] == "IN"
    assert result["pending_plan"] is None
    assert identity.authenticate_session(result["token"])["user"]["id"] == result["user"]["id"]


def test_passwords_are_stored_as_argon2id_hashes_only(identity, signup):
    signup()
    stored = identity.db.scalar(select(User.password_hash))
    assert stored.startswith("$argon2id$")
    assert PASSWORD not in stored


def test_tokens_are_stored_only_as_hashes(identity, signup):
    token = signup()["token"]
    assert identity.db.scalar(select(AuthSession.token_hash)) != token
    assert len(token) >= 40  # 32 random bytes, url-safe


def test_signup_announces_user_signed_up_in_the_same_transaction(identity, signup):
    user = signup(plan="growth_monthly")["user"]
    event = identity.db.scalar(select(Outbox))
    assert event.event_type == "user.signed_up"
    assert event.payload["user_id"] == user["id"]
    assert event.payload["pending_plan_code"] == "growth_monthly"


@pytest.mark.parametrize("other_spelling", ["ann@example.com", "ANN@Example.com", "  Ann@example.COM "])
def test_email_is_unique_whatever_its_case(signup, other_spelling):
    signup(email="Ann@example.com")
    with pytest.raises(Conflict) as raised:
        signup(email=other_spelling)
    assert raised.value.error_code == "EMAIL_TAKEN"


@pytest.mark.parametrize("taken, other_spelling", [
    pytest.param("ann@example.com", "\uff41nn@example.com", id="fullwidth"),
    pytest.param("strasse@example.com", "STRA\u00dfE@example.com", id="sharp-s"),
    pytest.param("kate@example.com", "\u212aate@example.com", id="kelvin-sign"),
])
def test_one_account_per_email_however_it_is_written(identity, signup, taken, other_spelling):
    """orgs lets this user accept invitations sent to any spelling of the address (shared.emails):
    a second account under another spelling could take someone else's."""
    user = signup(email=taken)["user"]
    with pytest.raises(Conflict) as raised:
        signup(email=other_spelling)
    assert raised.value.error_code == "EMAIL_TAKEN"
    assert identity.login({"email": other_spelling, "password": PASSWORD})["user"] == user


def test_a_look_alike_from_another_script_is_another_address(identity, signup):
    ann = signup(email="ann@example.com")["user"]
    other = signup(email="\u0430nn@example.com")["user"]  # Cyrillic a
    assert other["id"] != ann["id"]
    assert identity.login({"email": "ann@example.com", "password": PASSWORD})["user"] == ann


def test_an_email_whose_normal_form_is_too_long_is_refused(identity, signup):
    # U+FDFA is one character, and 18 once NFKC-normalised: 20 of them make a 360-character key
    with pytest.raises(ValidationFailed) as raised:
        signup(email="\ufdfa" * 20 + "@example.com")
    assert "email" in raised.value.details
    assert identity.db.scalar(select(User)) is None


@pytest.mark.parametrize("field, value", [
    ("password", "nine char"), ("email", "not-an-email"), ("country", "GB"), ("name", ""), ("plan", 42),
])
def test_invalid_signups_name_the_bad_field(signup, field, value):
    with pytest.raises(ValidationFailed) as raised:
        signup(**{field: value})
    assert field in raised.value.details


def test_a_ten_character_password_is_enough(signup):
    assert signup(password="0123456789")["token"]


def test_the_plan_picked_before_signup_is_kept_and_can_be_dismissed(identity, signup):
    result = signup(plan="growth_monthly")
    assert result["pending_plan"] == {"code": "growth_monthly", "name": "Growth"}
    user_id = result["user"]["id"]
    assert identity.get_profile(user_id)["pending_plan"] == {"code": "growth_monthly", "name": "Growth"}
    identity.dismiss_pending_plan(user_id)
    assert identity.get_profile(user_id)["pending_plan"] is None


def test_an_unknown_plan_code_is_refused_and_no_user_is_created(identity, signup):
    with pytest.raises(ValidationFailed) as raised:
        signup(plan="platinum_forever")
    assert raised.value.details == {"plan": ["Unknown plan code."]}
    assert identity.db.scalar(select(User)) is None


def test_login_is_case_insensitive_on_email_and_issues_a_fresh_token(identity, signup):
    first = signup(email="Ann@example.com")["token"]
    second = identity.login({"email": "ann@EXAMPLE.com", "password": PASSWORD})["token"]
    assert second != first
    assert identity.authenticate_session(second)["user"]["email"] == "Ann@example.com"


def test_unknown_email_and_wrong_password_get_the_same_answer(identity, signup):
    signup()
    answers = []
    for attempt in ({"email": "nobody@example.com", "password": PASSWORD},
                    {"email": "ann@example.com", "password": "wrong password!"}):
        with pytest.raises(Unauthorized) as raised:
            identity.login(attempt)
        answers.append(raised.value.to_dict())
    assert answers[0] == answers[1] == {"code": "BAD_CREDENTIALS", "message": BAD_LOGIN, "details": {}}


def test_logout_revokes_that_token_at_once_but_not_other_sessions(identity, signup):
    token = signup()["token"]
    other = identity.login({"email": "ann@example.com", "password": PASSWORD})["token"]
    identity.logout(token)
    with pytest.raises(Unauthorized):
        identity.authenticate_session(token)
    assert identity.authenticate_session(other)["user"]["email"] == "ann@example.com"
    identity.logout(token)  # twice is harmless


def test_authenticate_session_tells_when_the_session_ends(identity, signup):
    result = signup()
    session = identity.authenticate_session(result["token"])
    assert session["user"] == result["user"]
    stored = identity.db.scalar(select(AuthSession.expires_at))
    assert datetime.fromisoformat(session["expires_at"]) == stored
    assert session["expires_at"].endswith("Z")


@pytest.mark.parametrize("dead", ["revoked", "expired", "forged"])
def test_authenticate_session_refuses_revoked_expired_and_forged_tokens(identity, signup, dead):
    token = signup()["token"]
    if dead == "revoked":
        identity.logout(token)
    elif dead == "expired":
        identity.db.execute(update(AuthSession).values(expires_at=utc_now() - timedelta(seconds=1)))
        identity.db.commit()
    else:
        token = "forged"
    with pytest.raises(Unauthorized):
        identity.authenticate_session(token)


def test_logout_announces_session_revoked_with_the_hash_only_once(identity, signup):
    result = signup()
    identity.logout(result["token"])
    identity.logout(result["token"])  # already revoked: nothing new to announce
    identity.logout("never-issued")
    events = identity.db.scalars(select(Outbox).where(Outbox.event_type == "session.revoked")).all()
    [event] = events
    assert event.payload["token_hash"] == hash_token(result["token"])
    assert event.payload["user_id"] == result["user"]["id"]
    assert result["token"] not in str(event.payload)


def test_expired_tokens_are_refused(identity, signup):
    token = signup()["token"]
    identity.db.execute(update(AuthSession).values(expires_at=utc_now() - timedelta(seconds=1)))
    identity.db.commit()
    with pytest.raises(Unauthorized):
        identity.authenticate_session(token)


@pytest.mark.parametrize("forged", ["", "x", "a" * 43, "Bearer abc", None])
def test_forged_tokens_are_refused(identity, signup, forged):
    signup()
    with pytest.raises(Unauthorized):
        identity.authenticate_session(forged)


def test_sessions_dead_for_over_a_day_are_purged(identity, signup):
    stale = signup()["token"]
    live = identity.login({"email": "ann@example.com", "password": PASSWORD})["token"]
    identity.db.execute(update(AuthSession).where(AuthSession.token_hash == hash_token(stale))
                        .values(expires_at=utc_now() - timedelta(days=2)))
    identity.db.commit()
    identity.purge_dead_sessions()
    assert identity.db.scalars(select(AuthSession.token_hash)).all() == [hash_token(live)]


def test_profiles_are_found_by_user_id(identity, signup):
    ann = signup()["user"]
    signup(email="bob@example.com", name="Bob")
    assert identity.get_profile(ann["id"])["user"] == ann
    with pytest.raises(NotFound):
        identity.get_profile("not-a-uuid")


# -- phone numbers and PATCH /me ------------------------------------------------------------------

def test_a_phone_given_at_signup_is_kept_in_e164(identity, signup):
    user = signup(country="IN", phone=" +91 98123-45678 ")["user"]
    assert user["phone"] == "+919812345678"
    assert identity.get_user(user["id"]) == user
    assert identity.db.scalar(select(User.phone)) == "+919812345678"


def test_an_india_signup_without_a_phone_is_refused_and_no_user_is_created(identity):
    for without_phone in ({}, {"phone": None}):
        with pytest.raises(ValidationFailed) as raised:
            identity.signup({"email": "ravi@example.in", "password": PASSWORD, "name": "Ravi", "country": "IN",
                             **without_phone})
        assert list(raised.value.details) == ["phone"]
    assert identity.db.scalar(select(User)) is None


def test_a_us_signup_needs_no_phone(signup):
    assert signup(country="US")["user"]["phone"] is None


@pytest.mark.parametrize("phone, error", [
    ("9812345678", "international"),  # national: which country's?
    ("phone please", "international"),
    ("+91 98123", "invalid_number"),  # too short for India
    ("+1 555 0100", "invalid_number"),  # too short
    ("+91 98123 4567a", "invalid_number"),
    ("+", "invalid_number"),
    (919812345678, "invalid"),  # not text
])
def test_a_phone_that_is_not_a_valid_international_number_is_refused_saying_why(signup, phone, error):
    with pytest.raises(ValidationFailed) as raised:
        signup(country="IN", phone=phone)
    assert raised.value.details == {"phone": [PhoneNumber().error_messages[error]]}


def test_update_me_changes_name_and_phone(identity, signup):
    ann = signup()["user"]
    updated = identity.update_me(ann["id"], {"name": " Ann B. ", "phone": "+1 201 555 0123"})
    assert updated == {"user": {**ann, "name": "Ann B.", "phone": "+12015550123"}}
    assert identity.get_user(ann["id"]) == updated["user"]
    assert identity.update_me(ann["id"], {"name": "Ann"})["user"]["phone"] == "+12015550123"  # untouched
    announced = identity.db.scalars(select(Outbox).where(Outbox.event_type == "user.updated")).all()
    assert [event.payload["user_id"] for event in announced] == [ann["id"], ann["id"]]  # gateways drop caches


def test_update_me_may_remove_a_phone_only_where_none_is_needed(identity, signup):
    ann = signup(country="US", phone="+12015550123")["user"]
    assert identity.update_me(ann["id"], {"phone": None})["user"]["phone"] is None

    ravi = signup(email="ravi@example.in", country="IN")["user"]
    with pytest.raises(ValidationFailed) as raised:
        identity.update_me(ravi["id"], {"phone": None})
    assert list(raised.value.details) == ["phone"]
    assert identity.get_user(ravi["id"])["phone"] == INDIAN_PHONE


@pytest.mark.parametrize("body, field", [
    ({}, "_schema"),  # nothing to change
    ({"phone": "98123 45678"}, "phone"),
    ({"name": ""}, "name"),
    ({"country": "IN"}, "country"),  # the country picks the gateway: not changed here
])
def test_update_me_refuses_what_it_cannot_apply(identity, signup, body, field):
    ann = signup()["user"]
    with pytest.raises(ValidationFailed) as raised:
        identity.update_me(ann["id"], body)
    assert field in raised.value.details
    assert identity.get_user(ann["id"]) == ann


def test_the_signed_in_user_carries_the_phone(identity, signup):
    signed_up = signup(country="IN")
    assert identity.authenticate_session(signed_up["token"])["user"]["phone"] == INDIAN_PHONE


def test_an_unknown_user_is_not_found(identity):
    for user_id in ("not-a-uuid", "6f1c1a56-8f0e-4d59-9d3a-5ad1b1f0c001"):
        with pytest.raises(NotFound):
            identity.get_user(user_id)
        with pytest.raises(NotFound):
            identity.update_me(user_id, {"name": "Nobody"})
