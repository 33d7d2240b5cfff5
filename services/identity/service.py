"""identity: users, password hashes and sessions (bearer tokens)."""
import hashlib
import math
import secrets
from datetime import timedelta

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from eventlet import tpool
from nameko.rpc import RpcProxy
from nameko.timer import timer
from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from services.identity.models import AuthSession, LoginAttempt, Outbox, User
from services.identity.schemas import PHONE_NEEDED, LoginInput, SignupInput, UpdateMeInput
from shared.config import settings
from shared.db import Database, parse_uuid
from shared.emails import email_key
from shared.errors import Conflict, NotFound, RateLimited, Unauthorized, ValidationFailed
from shared.events import COUNTRIES_NEEDING_PHONE
from shared.outbox import OutboxRelay, add_event, rfc3339, utc_now
from shared.schemas import load_or_raise
from shared.service import HealthMixin, api_rpc
from shared.tokens import hash_token, new_token

# argon2id with argon2-cffi's defaults (RFC 9106 "low memory": 64 MiB, 3 passes, 4 lanes).
password_hasher = PasswordHasher()
# Verified against when the email is unknown, so both failures cost the same time.
_DUMMY_HASH = password_hasher.hash(secrets.token_urlsafe(16))

BAD_LOGIN = "The email or password is incorrect."
TOO_MANY_LOGINS = "Too many failed sign-ins; wait a while before trying again."


def normalize_email(email):
    return email.strip()


def email_subject(email):
    """The brute-force counter's key for an email (every spelling of one address counts together): a
    digest, so typed-in secrets are not kept."""
    return "email:" + hashlib.sha256(email_key(email).encode()).hexdigest()


def user_dict(user):
    return {
        "id": str(user.id),
        "email": user.email,
        "name": user.name,
        "country": user.country,
        "phone": user.phone,
        "created_at": rfc3339(user.created_at),
    }


def pending_plan_dict(user):
    if not user.pending_plan_code:
        return None
    return {"code": user.pending_plan_code, "name": user.pending_plan_name}


class IdentityService(HealthMixin):
    name = "identity"

    db = Database()
    outbox = OutboxRelay(Outbox)
    billing = RpcProxy("billing")

    @api_rpc
    def signup(self, data):
        """Create a user and sign them in. Raises ValidationFailed (422), Conflict EMAIL_TAKEN (409)."""
        data = load_or_raise(SignupInput(), data)
        email = normalize_email(data["email"])
        if self._find_by_email(email) is not None:
            raise Conflict("An account with this email already exists.", code="EMAIL_TAKEN")

        pending_plan_name = None
        if data["plan"]:
            plan = self.billing.get_plan(data["plan"])
            if plan is None:
                raise ValidationFailed(details={"plan": ["Unknown plan code."]})
            pending_plan_name = plan["name"]

        password_hash = tpool.execute(password_hasher.hash, data["password"])
        user = User(
            email=email,
            email_key=email_key(email),
            name=data["name"],
            country=data["country"],
            phone=data["phone"],
            password_hash=password_hash,
            pending_plan_code=data["plan"],
            pending_plan_name=pending_plan_name,
        )
        self.db.add(user)
        try:
            self.db.flush()
        except IntegrityError:  # a concurrent signup took the email between our check and insert
            self.db.rollback()
            raise Conflict("An account with this email already exists.", code="EMAIL_TAKEN") from None
        token = self._start_session(user)
        add_event(self.db, Outbox, "user.signed_up", {
            "user_id": str(user.id), "email": user.email, "name": user.name,
            "country": user.country, "pending_plan_code": user.pending_plan_code,
        })
        self.db.commit()
        return {"token": token, "user": user_dict(user), "pending_plan": pending_plan_dict(user)}

    @api_rpc
    def login(self, data, client_ip=None):
        """Exchange email and password for a new token. Raises Unauthorized with one message for any
        mismatch, and RateLimited (429, details.retry_after in seconds) while the email, or the client
        address, has too many recent failures (settings: LOGIN_FAILURES_PER_EMAIL, _PER_IP, _WINDOW_SECONDS).
        A locked-out attempt is refused before the password is looked at: a right one tells nothing."""
        data = load_or_raise(LoginInput(), data)
        email = normalize_email(data["email"])
        attempt = self._start_attempt(email, client_ip)
        user = self._find_by_email(email)
        if not self._password_matches(user, data["password"]):
            raise Unauthorized(BAD_LOGIN, code="BAD_CREDENTIALS")  # the attempt's rows stay: failures
        # Signed in: the email's failures are forgiven; the address's stay (one's own account must not
        # wipe the count of guesses at others').
        self.db.execute(delete(LoginAttempt).where(
            or_(LoginAttempt.id.in_(attempt), LoginAttempt.subject == email_subject(email))))
        if password_hasher.check_needs_rehash(user.password_hash):
            user.password_hash = tpool.execute(password_hasher.hash, data["password"])
        token = self._start_session(user)
        self.db.commit()
        return {"token": token, "user": user_dict(user)}

    @api_rpc
    def logout(self, token):
        """Revoke the session of `token` at once. Idempotent. The first revocation announces
        session.revoked, so gateways that cached the token drop it."""
        token_hash = hash_token(token)
        revoked = self.db.execute(
            update(AuthSession)
            .where(AuthSession.token_hash == token_hash, AuthSession.revoked_at.is_(None))
            .values(revoked_at=utc_now())
            .returning(AuthSession.user_id)
        ).first()
        if revoked is not None:
            add_event(self.db, Outbox, "session.revoked",
                      {"token_hash": token_hash, "user_id": str(revoked.user_id)})
        self.db.commit()

    @api_rpc
    def authenticate_session(self, token):
        """`{user, expires_at}` for a live token: the user it belongs to, and when the session ends
        (RFC 3339), so a caller that caches the answer keeps it no longer than that. Raises
        Unauthorized for unknown, expired or revoked tokens."""
        user, expires_at = self._live_session(token)
        return {"user": user_dict(user), "expires_at": rfc3339(expires_at)}

    @api_rpc
    def get_profile(self, user_id):
        """`{user, pending_plan}` for GET /me."""
        user = self._get(user_id)
        return {"user": user_dict(user), "pending_plan": pending_plan_dict(user)}

    @api_rpc
    def get_user(self, user_id):
        """The user (id, email, name, country, phone, created_at); NotFound if there is none."""
        return user_dict(self._get(user_id))

    @api_rpc
    def update_me(self, user_id, data):
        """PATCH /me: change the user's name and/or phone; `{user}` as it is now. Raises
        ValidationFailed (422), also for removing the phone of a user in a country that needs one."""
        data = load_or_raise(UpdateMeInput(), data)
        user = self._get(user_id)
        if "phone" in data and data["phone"] is None and user.country in COUNTRIES_NEEDING_PHONE:
            raise ValidationFailed(details={"phone": [PHONE_NEEDED]})
        for field, value in data.items():
            setattr(user, field, value)
        add_event(self.db, Outbox, "user.updated", {"user_id": str(user.id)})
        self.db.commit()
        return {"user": user_dict(user)}

    @api_rpc
    def dismiss_pending_plan(self, user_id):
        user = self._get(user_id)
        user.pending_plan_code = None
        user.pending_plan_name = None
        self.db.commit()

    @timer(interval=3600)
    def purge_dead_sessions(self):
        """Sessions expired or revoked over a day ago, and login failures out of the window, are of
        no use to anyone."""
        cutoff = utc_now() - timedelta(days=1)
        self.db.execute(delete(AuthSession).where(
            (AuthSession.expires_at < cutoff) | (AuthSession.revoked_at < cutoff)
        ))
        self.db.execute(delete(LoginAttempt).where(
            LoginAttempt.attempted_at < func.now() - timedelta(seconds=settings().login_failure_window_seconds)))
        self.db.commit()

    def _live_session(self, token):
        row = self.db.execute(
            select(User, AuthSession.expires_at)
            .join(AuthSession, AuthSession.user_id == User.id)
            .where(
                AuthSession.token_hash == hash_token(token or ""),
                AuthSession.revoked_at.is_(None),
                AuthSession.expires_at > func.now(),
            )
        ).one_or_none()
        if row is None:
            raise Unauthorized("Your session is invalid or has expired; sign in again.", code="INVALID_TOKEN")
        return row

    def _find_by_email(self, email):
        return self.db.scalars(select(User).where(User.email_key == email_key(email))).first()

    def _get(self, user_id):
        user_uuid = parse_uuid(user_id)
        user = self.db.get(User, user_uuid) if user_uuid else None
        if user is None:
            raise NotFound("No such user.")
        return user

    def _password_matches(self, user, password):
        stored = user.password_hash if user is not None else _DUMMY_HASH
        try:
            tpool.execute(password_hasher.verify, stored, password)
        except (VerificationError, InvalidHashError):
            return False
        return user is not None

    def _start_attempt(self, email, client_ip):
        """Record a login attempt against its email and address, then refuse it if either already has
        its limit of failures in the window. Recording before counting makes concurrent guesses see
        each other, so at most the limit of them get a password checked. Returns the rows' ids."""
        limits = {email_subject(email): settings().login_failures_per_email}
        if client_ip:
            limits[f"ip:{client_ip}"] = settings().login_failures_per_ip
        attempt = self.db.scalars(insert(LoginAttempt).returning(LoginAttempt.id),
                                  [{"subject": subject} for subject in limits]).all()
        self.db.commit()
        window = timedelta(seconds=settings().login_failure_window_seconds)
        now = self.db.scalar(select(func.now()))
        for subject, limit in limits.items():
            newest_first = self.db.scalars(
                select(LoginAttempt.attempted_at)
                .where(LoginAttempt.subject == subject, LoginAttempt.attempted_at > now - window,
                       LoginAttempt.id.not_in(attempt))
                .order_by(LoginAttempt.attempted_at.desc()).limit(limit)
            ).all()
            if len(newest_first) >= limit:
                # A refused attempt is not a failure: it does not extend the lockout.
                self.db.execute(delete(LoginAttempt).where(LoginAttempt.id.in_(attempt)))
                self.db.commit()
                # Open again once the limit-th newest failure leaves the window.
                wait = (newest_first[limit - 1] + window - now).total_seconds()
                raise RateLimited(TOO_MANY_LOGINS, details={"retry_after": max(1, math.ceil(wait))})
        return attempt

    def _start_session(self, user):
        token = new_token()
        self.db.add(AuthSession(
            user_id=user.id,
            token_hash=hash_token(token),
            expires_at=utc_now() + timedelta(seconds=settings().token_ttl_seconds),
        ))
        return token
