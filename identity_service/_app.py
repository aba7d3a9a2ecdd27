"""The reference identity service: login, refresh rotation with reuse detection, logout,
logout everywhere, password change, permission change, admin block/unblock/delete, JWKS with key
rotation and key revocation. Every state change that must reach the services is published
through the Revocast producer before the endpoint answers, and committed to the store together
with the revocation it owes (:mod:`identity_service._outbox`): a crash between the commit and
the publisher's return, or a publisher that raised, leaves the revocation pending in the store,
published before the restarted app serves or by the retry thread. An endpoint whose commit
succeeded and whose publication failed answers 503, saying the change is made and its
revocation is retried.

A refused login gets one answer whatever the reason: an unknown or deleted name, a wrong
password, a blocked account even with its right password. That answer is 401 ``invalid
credentials``, at the same hash cost, and it counts against the throttle. Only a login that
returns tokens is refunded. The reason goes to the ``identity_service`` logger (WARNING; the
password never does). /login does not say that an account is blocked: the answer would confirm a
guessed password, which may be in use elsewhere. The operator who blocked the account tells
its owner. A holder of one of its live access tokens gets 401 ``account not active`` here.

No ``from __future__ import annotations`` here: FastAPI must see the real ``Annotated``
dependency types of the routes defined inside :func:`create_app`."""

import hmac
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import jwt
from fastapi import Depends, FastAPI, Header, HTTPException, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, Field
from starlette.concurrency import run_in_threadpool

from identity_service._body_limit import BodyLimit
from identity_service._hash_slots import HashSlot, HashSlots, NoHashSlot
from identity_service._keys import ALGORITHM, KeyRing
from identity_service._outbox import RevocationOutbox, RevocationPublisher
from identity_service._passwords import PasswordHasher
from identity_service._revocations import Pending, Revocation, watermark_after
from identity_service._settings import IdentitySettings
from identity_service._store import Store, User
from identity_service._throttle import Charge, LoginThrottle, TooManyFailures, client_key
from revocation_events import SettingsError

__all__ = ["RevocationPublisher", "create_app", "watermark_after"]

_log = logging.getLogger("identity_service")


def _utf8(value: str) -> str:
    # JSON may carry a lone surrogate ("\ud800"), which no hash or database can encode.
    try:
        value.encode()
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no lone surrogates)") from None
    return value


Text = AfterValidator(_utf8)


class Credentials(BaseModel):
    username: Annotated[str, Field(min_length=1, max_length=128), Text]
    password: Annotated[str, Field(min_length=1, max_length=1024), Text]


class RefreshRequest(BaseModel):
    refresh_token: Annotated[str, Field(min_length=1, max_length=512), Text]


class PasswordChange(BaseModel):
    old_password: Annotated[str, Field(min_length=1, max_length=1024), Text]
    new_password: Annotated[str, Field(min_length=8, max_length=1024), Text]


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: str = "Bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int


def _unauthorized(description: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        detail=description,
        headers={
            "WWW-Authenticate": f'Bearer error="invalid_token", error_description="{description}"'
        },
    )


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 without the ``input`` of each error: it would echo passwords back."""
    assert isinstance(exc, RequestValidationError)
    errors = [{k: v for k, v in e.items() if k != "input"} for e in exc.errors()]
    return JSONResponse({"detail": jsonable_encoder(errors)}, status_code=422)


def create_app(
    settings: IdentitySettings,
    publisher: RevocationPublisher,
    *,
    clock: Callable[[], float] = time.time,
    users: dict[str, str] | None = None,
    hasher: PasswordHasher | None = None,
) -> FastAPI:
    """Build the app. ``users`` seeds ``username -> password`` (demo and tests) for the
    names the database does not hold yet. ``hasher`` replaces the scrypt of ``settings``
    (a test double); it runs ``settings.max_concurrent_hashes`` hashes at a time.

    Before it returns, publishes the revocations a previous process committed and did not
    publish (it died in between, or its publisher raised), oldest first; those that fail again
    are logged and retried every ``settings.revocation_retry_interval`` seconds by a thread the
    app's lifespan runs while it is served.

    Raises :class:`SettingsError` if access tokens would outlive the revocations published for
    them: :class:`producer.Publisher` stamps each one ``expires_at = now +
    max_token_lifetime``, and services forget it then."""
    lifetime = getattr(getattr(publisher, "settings", None), "max_token_lifetime", None)
    if isinstance(lifetime, int | float) and settings.access_token_ttl > lifetime:
        raise SettingsError(
            f"access_token_ttl ({settings.access_token_ttl:g} s) exceeds the publisher's "
            f"max_token_lifetime ({lifetime:g} s): revoked tokens would be accepted again"
        )
    store = Store(settings.db_path, clock=clock)
    outbox = RevocationOutbox(store, publisher, interval=settings.revocation_retry_interval)
    outbox.publish_all()
    keys = KeyRing(store, clock)
    hashing = HashSlots(
        settings.scrypt if hasher is None else hasher,
        limit=settings.max_concurrent_hashes,
        wait=settings.hash_slot_wait,
    )
    with hashing.take() as seeding:
        # Only new names: a restart keeps changed passwords, versions and blocks.
        seeds = {
            name: seeding.hash(password)
            for name, password in (users or {}).items()
            if store.user(name) is None
        }
        # Hashed once: verified for an unknown username, so it costs what a known one costs.
        no_user_hash = seeding.hash(secrets.token_urlsafe(16))
    for name, password_hash in seeds.items():
        store.add_user(name, password_hash)
    throttle = LoginThrottle(
        per_user=settings.login_failures_per_user,
        per_client=settings.login_failures_per_client,
        window=settings.login_failure_window,
        max_keys=settings.login_throttle_max_keys,
        clock=clock,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        outbox.start()
        try:
            yield
        finally:
            await run_in_threadpool(outbox.close)

    app = FastAPI(title="Revocast reference identity service", lifespan=lifespan)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_middleware(BodyLimit)
    app.state.store = store
    app.state.keys = keys
    app.state.login_throttle = throttle
    app.state.hash_slots = hashing
    app.state.outbox = outbox

    def publish(owed: Pending, done: str) -> None:
        """Publish what the request committed; 503 saying ``done`` if the publisher raised (the
        revocation stays pending and is retried: the change itself is not undone)."""
        try:
            outbox.publish(owed)
        except Exception as exc:
            _log.warning(
                "%s, but publishing its %s revocation failed; retried every %g s",
                done,
                owed.revocation.kind,
                settings.revocation_retry_interval,
                exc_info=True,
            )
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                detail=f"{done}; its revocation is not published yet and will be retried",
            ) from exc

    def issue(user: User, sid: str) -> TokenPair | None:
        """Tokens for ``user`` as read (None if its password, block or session changed since).

        ``iat`` is read before the store commits the session, so a password change or
        logout-everywhere that commits after it publishes a watermark strictly above it
        (:func:`watermark_after`), and one that committed before makes this return None."""
        now = clock()
        claims = {
            "iss": settings.issuer,
            "aud": settings.audience,
            "sub": user.username,
            "jti": uuid.uuid4().hex,
            "sid": sid,
            # Unrounded (NumericDate may be non-integer, RFC 7519 §2): whole seconds or rounded
            # milliseconds would put tokens minted just before a watermark above it, or just
            # after it below it. The SDK compares iat < issued_before as floats.
            "iat": now,
            "exp": int(now) + int(settings.access_token_ttl),
            "ver": user.version,
        }
        refresh = secrets.token_urlsafe(32)
        expires_at = now + settings.refresh_token_ttl
        if not store.add_refresh_token(
            refresh, sid, user.username, expires_at, password_hash=user.password_hash
        ):
            return None
        return TokenPair(
            access_token=keys.sign(claims),
            refresh_token=refresh,
            expires_in=int(settings.access_token_ttl),
        )

    def bearer_claims(authorization: Annotated[str | None, Header()] = None) -> dict[str, Any]:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise _unauthorized("missing bearer token")
        token = authorization[7:].strip()
        try:
            header = jwt.get_unverified_header(token)
            key = keys.public_keys().get(str(header.get("kid")))
            if key is None:
                raise _unauthorized("unknown signing key")
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=settings.audience,
                issuer=settings.issuer,
                options={"require": ["exp", "iat", "sub", "sid", "jti"]},
            )
        except jwt.InvalidTokenError as exc:
            raise _unauthorized("invalid token") from exc
        # The services refuse a blocked subject's tokens; so does the service that issued them.
        user = store.user(claims["sub"]) if isinstance(claims["sub"], str) else None
        if user is None or user.blocked:
            raise _unauthorized("account not active")
        # Nor does it take a token whose session ended: a logged-out token, or one from before
        # a logout everywhere or password change (those end every session of the subject),
        # must not log out, change the password or end sessions again here.
        if not isinstance(claims["sid"], str) or not store.session_live(
            claims["sid"], user.username
        ):
            raise _unauthorized("session ended")
        return claims

    def admin(authorization: Annotated[str | None, Header()] = None) -> None:
        # Bytes: compare_digest raises TypeError for a str with non-ASCII characters.
        expected = f"Bearer {settings.admin_token}".encode()
        if authorization is None or not secrets.compare_digest(authorization.encode(), expected):
            raise HTTPException(status.HTTP_403_FORBIDDEN, detail="admin token required")

    Claims = Annotated[dict[str, Any], Depends(bearer_claims)]

    def charge_attempt(username: str, request: Request) -> Charge:
        """A password check against ``username``, counted as failed until refunded; 429 when
        the name or the client has too many failures."""
        try:
            return throttle.charge(
                username, client_key(request.client.host if request.client else None)
            )
        except TooManyFailures as exc:
            raise HTTPException(
                status.HTTP_429_TOO_MANY_REQUESTS,
                detail="too many failed logins; try again later",
                headers={"Retry-After": str(exc.retry_after)},
            ) from None

    def hash_slot(charge: Charge) -> HashSlot:
        """A slot to hash in, taken before the store is read so that a refusal says nothing
        about the name; 503 if none frees in time, and the charge is refunded: no password
        was checked."""
        try:
            return hashing.take()
        except NoHashSlot as exc:
            throttle.refund(charge)
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                detail="too many logins in progress; try again shortly",
                headers={"Retry-After": str(exc.retry_after)},
            ) from None

    # A name that is no account's is often a password typed into the wrong field: the log
    # gets a keyed fingerprint of it (repeats correlate within this process), never the text.
    unknown_name_key = secrets.token_bytes(32)

    def refused(
        body: Credentials, request: Request, reason: str, *, known: bool = True
    ) -> HTTPException:
        """The one answer to every failed password check at /login; only the log tells why.

        One level for every reason: a log line emitted for some reasons and filtered out for
        others would cost them different time."""
        name = (
            repr(body.username)  # repr: a name with a newline cannot forge a log line
            if known
            else "#" + hmac.new(unknown_name_key, body.username.encode(), "sha256").hexdigest()[:12]
        )
        _log.warning(
            "login refused: %s (username %s, client %s)",
            reason,
            name,
            request.client.host if request.client else None,
        )
        return HTTPException(status.HTTP_401_UNAUTHORIZED, detail="invalid credentials")

    @app.post("/login")
    def login(body: Credentials, request: Request) -> TokenPair:
        # Before the store is read: known and unknown names are throttled alike, unhashed.
        charge = charge_attempt(body.username, request)
        with hash_slot(charge) as hasher:
            user = store.user(body.username)
            # Hash even for unknown users so timing does not reveal which usernames exist.
            stored = user.password_hash if user else no_user_hash
            right = hasher.verify(body.password, stored)
            # A hash older than the current cost (cheaper, until its user logs in again) must
            # not make a failure quicker than an unknown name's: hash the candidate at the
            # current cost whether it was right or not, and store it if it was.
            rehashed = hasher.hash(body.password) if hashing.needs_rehash(stored) else None
        # Every refusal below is the same 401, and keeps its throttle charge: only a login
        # that returns tokens is refunded. A blocked account's right password refunded, or
        # answered "blocked", would confirm the guess (and the password may be reused
        # elsewhere); its owner learns of the block from the operator, not from this answer.
        if user is None:
            raise refused(body, request, "no such user", known=False)
        if not right:
            blocked = ", account blocked" if user.blocked else ""
            raise refused(body, request, f"wrong password{blocked}")
        if user.blocked:
            raise refused(body, request, "account blocked, right password")
        tokens = issue(user, uuid.uuid4().hex)
        if tokens is None:
            raise refused(body, request, "password changed, blocked or deleted during the login")
        throttle.refund(charge)
        if rehashed is not None:
            # After issue(): it checks the hash it read is still stored. A change since then
            # keeps the new password (compare-and-set), and this hash waits for the next login.
            store.rehash_password(user.username, user.password_hash, rehashed)
        return tokens

    @app.post("/token/refresh")
    def refresh(body: RefreshRequest) -> TokenPair:
        token = store.use_refresh_token(body.refresh_token)
        if token is None or token.family_revoked:
            raise _unauthorized("refresh token invalid")
        if token.used:
            # Reuse of a rotated refresh token means it was stolen: the same transaction ended
            # the whole session and owes its revocation, so every service refuses its access
            # tokens too (now, or once the retry gets through).
            assert token.revocation is not None
            publish(token.revocation, "refresh token reuse detected; session revoked")
            raise _unauthorized("refresh token reuse detected; session revoked")
        if token.expires_at <= clock():
            raise _unauthorized("refresh token expired")
        user = store.user(token.username)
        if user is None or user.blocked:
            raise _unauthorized("account not active")
        tokens = issue(user, token.family)
        if tokens is None:
            raise _unauthorized("refresh token invalid")
        return tokens

    @app.post("/logout", status_code=204)
    def logout(claims: Claims) -> None:
        revocation = Revocation.session(claims["sid"], sub=claims["sub"], reason="logout")
        publish(store.revoke_family(claims["sid"], revocation=revocation), "logged out")

    @app.post("/logout-everywhere", status_code=204)
    def logout_everywhere(claims: Claims) -> None:
        revocation = Revocation.subject(claims["sub"], reason="logout_everywhere")
        owed = store.revoke_families_of(claims["sub"], revocation=revocation)
        assert owed is not None
        publish(owed, "logged out everywhere")

    @app.post("/password", status_code=204)
    def change_password(body: PasswordChange, claims: Claims, request: Request) -> None:
        # The old password is guessed here as at /login (by whoever holds a stolen access
        # token): the same counters.
        charge = charge_attempt(claims["sub"], request)
        with hash_slot(charge) as hasher:
            user = store.user(claims["sub"])
            if user is None or not hasher.verify(body.old_password, user.password_hash):
                raise HTTPException(status.HTTP_403_FORBIDDEN, detail="wrong password")
            throttle.refund(charge)
            new_hash = hasher.hash(body.new_password)
        # The new password, the end of the sessions and the watermark commit together. If the
        # publisher then fails, the password stays changed: the watermark is durable and is
        # published by the retry (or the next start) with the time of this commit, so the old
        # password's tokens are revoked all the same. Restoring the old password (as when the
        # watermark lived only in this call) would give back a password its owner may be
        # changing because it leaked, while the user is told the change is made.
        revocation = Revocation.subject(user.username, reason="password_change")
        publish(
            store.change_password(user.username, new_hash, revocation=revocation),
            "password changed",
        )

    @app.post("/admin/users/{username}/permissions", dependencies=[Depends(admin)])
    def change_permissions(username: str) -> dict[str, int]:
        owed = store.bump_version(username, reason="permissions_changed")
        if owed is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such user")
        publish(owed, "version raised")
        assert owed.revocation.min_version is not None
        return {"version": owed.revocation.min_version}

    @app.post("/admin/users/{username}/block", status_code=204, dependencies=[Depends(admin)])
    def block(username: str) -> None:
        # Published as the store holds it after the publication: see RevocationOutbox.publish_block.
        owed = store.set_blocked(username, True)
        if owed is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such user")
        store.revoke_families_of(username)
        publish(owed, "blocked")

    @app.post("/admin/users/{username}/unblock", status_code=204, dependencies=[Depends(admin)])
    def unblock(username: str) -> None:
        owed = store.set_blocked(username, False)
        if owed is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such user")
        publish(owed, "unblocked")

    @app.delete("/admin/users/{username}", status_code=204, dependencies=[Depends(admin)])
    def delete_user(username: str) -> None:
        if store.user(username) is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such user")
        # Published first, not through the store's pending revocations: if that fails or the
        # process dies, the account stays, so the admin's retry publishes it (deleting first
        # would answer that retry 404 with the tokens still accepted). The
        # event refuses the name's tokens whatever their iat, so one minted in between is
        # refused too, and its refresh token goes with the account.
        publisher.delete_subject(username, reason="account_deleted")
        store.delete_user(username)

    @app.post("/admin/keys/rotate", dependencies=[Depends(admin)])
    def rotate_key() -> dict[str, str]:
        return {"kid": keys.rotate()}

    @app.post("/admin/keys/{kid}/revoke", status_code=204, dependencies=[Depends(admin)])
    def revoke_key(kid: str) -> None:
        owed = keys.revoke(kid, reason="key_compromised")
        if owed is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, detail="no such key")
        publish(owed, "key revoked")

    @app.get("/.well-known/jwks.json")
    def jwks() -> dict[str, Any]:
        return keys.jwks()

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
