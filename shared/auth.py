"""Users and their credentials: who a request or a WebSocket connection acts as.

Credentials of four kinds, all stored in MongoDB as hashes only:

- **passwords**, for signing in to the web UI (scrypt, salted: people pick guessable ones);
- **API tokens**, for scripts and backends (`Authorization: Bearer`); random, so a SHA-256 of the
  token is enough to look it up and nothing an attacker reads from the database lets them sign in;
- **sessions**, what the UI's cookie holds after signing in, each with its CSRF token;
- **WebSocket tickets**, short-lived and single-use, for a browser whose notifier is on another
  site, where the session cookie is not sent.

Development mode accepts one built-in user, `dev`, whose password and token are printed by
`make run`. Nothing of it is stored, and every session or ticket it opens is marked, so that none
of it works once development mode is off.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import math
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from shared.clock import utcnow
from shared.offload import Busy, Offload
from shared.store.accounts import (
    Accounts,
    AlreadyStored,
    GrantRecord,
    UserRecord,
    UserSummary,
)

DEV_USER = "dev"
DEV_PASSWORD = "dev"
DEV_TOKEN = "tl_dev_insecure_development_token"

#: The cookie that holds a signed-in browser's session secret (HttpOnly).
SESSION_COOKIE = "tasklight_session"
#: The cookie the UI's scripts read the CSRF token from, to send it back in `X-CSRF-Token`.
CSRF_COOKIE = "tasklight_csrf"

#: The window in which `max_failed_logins` wrong passwords for one name block its sign-in.
FAILED_LOGIN_WINDOW = timedelta(minutes=15)

#: Password checks that may wait for a thread, per thread (`password_checks_at_once`); one more
#: is refused at once (`Busy`) instead of queueing.
PASSWORD_CHECKS_WAITING = 8

#: Most tokens remembered at once by one process.
TOKEN_CACHE_SIZE = 10_000

TOKEN_PREFIX = "tl_"
USER_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
#: scrypt cost: ~16 MiB and some tens of milliseconds per check, per OWASP's minimum.
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


class Role(StrEnum):
    """What a user may do: `user` acts on their own tasks; `admin` on everyone's."""

    USER = "user"
    ADMIN = "admin"


@dataclass(frozen=True)
class Principal:
    """The user a request or connection acts as."""

    name: str
    role: Role
    #: The built-in development user, valid only in development mode.
    dev: bool = False

    @property
    def is_admin(self) -> bool:
        """Whether it sees and acts on every user's tasks."""
        return self.role is Role.ADMIN

    @property
    def owner_filter(self) -> str | None:
        """The owner whose tasks it may see, or None for all: the one visibility rule."""
        return None if self.is_admin else self.name

    def may_see(self, owner: str) -> bool:
        """Whether a task of `owner` is visible to it."""
        return self.owner_filter in (None, owner)


@dataclass(frozen=True)
class Session:
    """A signed-in browser: who, and the CSRF token its writes must carry."""

    principal: Principal
    csrf_token: str
    expires_at: datetime


class TooManyFailedLogins(RuntimeError):
    """Too many wrong passwords for this name lately; `retry_after_s` says when to try again."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"too many failed sign-ins; retry in {retry_after_s} s")
        self.retry_after_s = retry_after_s


class UserExists(ValueError):
    """A user of that name exists already."""


class NoSuchUser(LookupError):
    """No user has that name."""


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def credential_digest(secret: str) -> str:
    """How a token or session secret is stored and looked up: its SHA-256, never the secret."""
    return _digest(secret)


def hash_password(password: str) -> str:
    """A salted scrypt hash of a password, with its parameters, for `check_password`."""
    salt = secrets.token_bytes(16)
    key = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${salt.hex()}${key.hex()}"


def check_password(password: str, stored: str) -> bool:
    """Whether `password` matches a `hash_password` hash (in constant time)."""
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        derived = hashlib.scrypt(
            password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32
        )
    except ValueError:
        return False
    return hmac.compare_digest(derived.hex(), key)


def bearer_token(authorization: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None for any other form."""
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def valid_user_name(name: str) -> bool:
    """Whether `name` can be a user name: 1-64 of a-z, 0-9, `.`, `_`, `-`, starting alnum."""
    return bool(USER_NAME.match(name))


class AuthStore:
    """Users, API tokens, sessions and WebSocket tickets: the rules, on the stored `Accounts`."""

    def __init__(
        self,
        accounts: Accounts,
        *,
        dev_mode: bool = False,
        session_ttl_s: int = 8 * 3600,
        ticket_ttl_s: int = 60,
        max_failed_logins: int = 10,
        max_failed_logins_per_address: int = 50,
        password_checks_at_once: int = 2,
        token_cache_s: float = 0,
    ) -> None:
        self.accounts = accounts
        self.dev_mode = dev_mode
        #: Seconds a token's owner is remembered in this process (0: every request asks the
        #: database); a revoked token keeps working here for at most that long.
        self.token_cache_s = token_cache_s
        self._token_cache: dict[str, tuple[Principal, float]] = {}
        #: Look-ups in flight, by token digest: requests with the same token share one.
        self._token_lookups: dict[str, asyncio.Future[Principal | None]] = {}
        self.max_failed_logins = max_failed_logins
        self.max_failed_logins_per_address = max_failed_logins_per_address
        #: Password checks run here, off the event loop and a few at once.
        self.password_checks = Offload(
            password_checks_at_once,
            max_waiting=PASSWORD_CHECKS_WAITING * password_checks_at_once,
            name="password-check",
        )
        self.session_ttl_s = session_ttl_s
        self.ticket_ttl_s = ticket_ttl_s

    # Users and their credentials: the CLI and the API's start-up manage these.

    async def create_user(self, name: str, role: Role, *, password: str | None = None) -> None:
        """A new user; raises `UserExists`, or ValueError for a name that is not allowed."""
        if not valid_user_name(name):
            raise ValueError(
                f"user name {name!r}: use 1-64 of a-z, 0-9, '.', '_', '-', starting with a-z, 0-9"
            )
        if name == DEV_USER:
            raise ValueError(f"{DEV_USER!r} is the built-in development user")
        hashed = None if password is None else hash_password(password)
        try:
            await self.accounts.add_user(UserRecord(name, role.value, hashed))
        except AlreadyStored:
            raise UserExists(name) from None

    async def set_password(self, name: str, password: str) -> None:
        """Replace a user's password; raises `NoSuchUser`."""
        if not await self.accounts.set_password_hash(name, hash_password(password)):
            raise NoSuchUser(name)

    async def issue_token(self, name: str, label: str = "") -> str:
        """A new API token for a user; only its hash is kept, so this is the one time it shows."""
        if await self.accounts.user(name) is None:
            raise NoSuchUser(name)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        await self.accounts.add_token(_digest(token), name, label)
        return token

    async def revoke_tokens(self, name: str) -> int:
        """Revoke every API token of a user; how many there were."""
        return await self.accounts.remove_tokens(name)

    async def list_users(self) -> list[UserSummary]:
        """Every user with their role and number of tokens, by name."""
        return await self.accounts.summaries()

    async def ensure_admin(self, name: str, *, password: str | None, token: str | None) -> bool:
        """Create the first administrator from configuration; False if the user exists.

        `token`, if given, is stored (hashed) as one of its API tokens, so a deployment can hand
        the same secret to the services and to its automation.
        """
        try:
            await self.create_user(name, Role.ADMIN, password=password)
        except UserExists:
            return False
        if token:
            await self.accounts.add_token(_digest(token), name, "configured", keep=True)
        return True

    # Authentication: credentials in, the principal out (or None).

    async def _principal(self, name: str) -> Principal | None:
        roles = await self.accounts.roles([name])
        return Principal(name, Role(roles[name])) if name in roles else None

    def _dev(self) -> Principal:
        return Principal(DEV_USER, Role.USER, dev=True)

    async def by_token(self, token: str) -> Principal | None:
        """The owner of an API token.

        Remembered for `token_cache_s`; when that runs out under load, the requests with the
        same token that arrive meanwhile share one look-up instead of each making their own.
        """
        if self.dev_mode and hmac.compare_digest(token, DEV_TOKEN):
            return self._dev()
        digest = _digest(token)
        cached = self._token_cache.get(digest)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        pending = self._token_lookups.get(digest)
        if pending is not None:
            return await asyncio.shield(pending)
        lookup = asyncio.ensure_future(self._look_up_token(digest))
        self._token_lookups[digest] = lookup
        lookup.add_done_callback(lambda _: self._token_lookups.pop(digest, None))
        return await asyncio.shield(lookup)

    async def _look_up_token(self, digest: str) -> Principal | None:
        user = await self.accounts.token_user(digest)
        principal = None if user is None else await self._principal(user)
        if principal is not None and self.token_cache_s > 0:
            if len(self._token_cache) >= TOKEN_CACHE_SIZE:
                self._token_cache.clear()  # crude, and rare: a cache, not a store
            self._token_cache[digest] = (principal, time.monotonic() + self.token_cache_s)
        return principal

    async def by_password(
        self, name: str, password: str, *, address: str | None = None
    ) -> Principal | None:
        """The user, if the password is theirs; `address` is the client's, when known.

        After `max_failed_logins` wrong passwords for one name, or
        `max_failed_logins_per_address` from one address (whatever the names), within
        `FAILED_LOGIN_WINDOW`, raises `TooManyFailedLogins` until that window ends, right or
        wrong password: guessing is slowed to that many tries per window, per name and per
        address, on every api replica. Each attempt is counted before its password is checked,
        so that guesses sent at once are held to the limit as well as guesses in a row.
        Raises `Busy` when too many password checks are pending in this process.
        """
        limits = {f"name:{name}": self.max_failed_logins}
        if address:
            limits[f"address:{address}"] = self.max_failed_logins_per_address
        counted = {
            key: await self.accounts.count_attempt(key, FAILED_LOGIN_WINDOW) for key in limits
        }
        over = [count for key, count in counted.items() if count.count > limits[key]]
        if over:
            wait_s = max((count.expires_at - utcnow()).total_seconds() for count in over)
            raise TooManyFailedLogins(max(1, math.ceil(wait_s)))
        try:
            principal = await self._check_password(name, password)
        except Busy:
            # Not checked, so not a failure: a user retrying while sign-ins are busy must not
            # lock themselves out.
            for key in limits:
                await self.accounts.take_back_attempt(key)
            raise
        if principal is not None:
            # The password was known: the name's failures are forgiven, the address's are not
            # (one account of one's own must not reset the count of guesses at others).
            await self.accounts.forget_attempts(f"name:{name}")
            if address:
                await self.accounts.take_back_attempt(f"address:{address}")
        return principal

    async def _check_password(self, name: str, password: str) -> Principal | None:
        if name == DEV_USER:
            ok = self.dev_mode and hmac.compare_digest(password, DEV_PASSWORD)
            return self._dev() if ok else None
        user = await self.accounts.user(name)
        if user is None or user.password_hash is None:
            # Spend the same time as a real check, so timing does not tell which names exist.
            await self.password_checks.run(check_password, password, _DUMMY_HASH)
            return None
        if not await self.password_checks.run(check_password, password, user.password_hash):
            return None
        return Principal(name, Role(user.role))

    async def open_session(self, principal: Principal) -> tuple[str, Session]:
        """A new session: the secret for the cookie, and the session."""
        secret = secrets.token_urlsafe(32)
        session = Session(
            principal,
            csrf_token=secrets.token_urlsafe(24),
            expires_at=utcnow() + timedelta(seconds=self.session_ttl_s),
        )
        await self.accounts.add_session(
            GrantRecord(
                _digest(secret),
                principal.name,
                principal.dev,
                session.expires_at,
                csrf=session.csrf_token,
            )
        )
        return secret, session

    async def by_session(self, secret: str) -> Session | None:
        """The live session a cookie's secret opens."""
        grant = await self.accounts.session(_digest(secret))
        if grant is None or grant.expires_at <= utcnow():  # TTL removal lags by a minute
            return None
        principal = await self._granted(grant)
        if principal is None or grant.csrf is None:
            return None
        return Session(principal, csrf_token=grant.csrf, expires_at=grant.expires_at)

    async def close_session(self, secret: str) -> None:
        """Sign out: the session's cookie opens nothing any more."""
        await self.accounts.remove_session(_digest(secret))

    # Checking open connections again, in bulk (the notifier closes those whose credentials
    # went away). Each reads the database, never the token cache.

    async def live_tokens(self, digests: list[str]) -> dict[str, str]:
        """Of these token digests (`credential_digest`), those not revoked → their user."""
        return await self.accounts.live_tokens(digests)

    async def live_sessions(self, digests: list[str]) -> dict[str, str]:
        """Of these session digests, those neither signed out nor expired → their user."""
        return await self.accounts.live_sessions(digests)

    async def roles(self, names: list[str]) -> dict[str, Role]:
        """Of these user names, those that exist → their role."""
        return {name: Role(role) for name, role in (await self.accounts.roles(names)).items()}

    async def issue_ticket(self, principal: Principal) -> tuple[str, datetime]:
        """A single-use WebSocket ticket and when it expires."""
        ticket = secrets.token_urlsafe(32)
        expires_at = utcnow() + timedelta(seconds=self.ticket_ttl_s)
        await self.accounts.add_ticket(
            GrantRecord(_digest(ticket), principal.name, principal.dev, expires_at)
        )
        return ticket, expires_at

    async def redeem_ticket(self, ticket: str) -> Principal | None:
        """The user of a ticket, which is used up by this call."""
        grant = await self.accounts.take_ticket(_digest(ticket))
        if grant is None or grant.expires_at <= utcnow():
            return None
        return await self._granted(grant)

    async def _granted(self, grant: GrantRecord) -> Principal | None:
        """The principal of a session or ticket; a development one only in development mode."""
        if grant.dev:
            return self._dev() if self.dev_mode else None
        return await self._principal(grant.user)


_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))
