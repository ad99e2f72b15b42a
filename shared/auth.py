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

import hashlib
import hmac
import math
import re
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from pymongo import ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from shared.clock import utcnow
from shared.offload import Busy, Offload
from shared.topology import API_TOKENS, FAILED_LOGINS, SESSIONS, USERS, WS_TICKETS

Doc = dict[str, Any]

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
    """Users, API tokens, sessions and WebSocket tickets in one MongoDB database."""

    def __init__(
        self,
        db: AsyncDatabase[Doc],
        *,
        dev_mode: bool = False,
        session_ttl_s: int = 8 * 3600,
        ticket_ttl_s: int = 60,
        max_failed_logins: int = 10,
        max_failed_logins_per_address: int = 50,
        password_checks_at_once: int = 2,
        token_cache_s: float = 0,
    ) -> None:
        self.dev_mode = dev_mode
        #: Seconds a token's owner is remembered in this process (0: every request asks the
        #: database); a revoked token keeps working here for at most that long.
        self.token_cache_s = token_cache_s
        self._token_cache: dict[str, tuple[Principal, float]] = {}
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
        self.users = db[USERS]
        self.tokens = db[API_TOKENS]
        self.sessions = db[SESSIONS]
        self.tickets = db[WS_TICKETS]
        self.failed_logins = db[FAILED_LOGINS]

    # Users and their credentials: the CLI and the API's start-up manage these.

    async def create_user(self, name: str, role: Role, *, password: str | None = None) -> None:
        """A new user; raises `UserExists`, or ValueError for a name that is not allowed."""
        if not valid_user_name(name):
            raise ValueError(
                f"user name {name!r}: use 1-64 of a-z, 0-9, '.', '_', '-', starting with a-z, 0-9"
            )
        if name == DEV_USER:
            raise ValueError(f"{DEV_USER!r} is the built-in development user")
        doc: Doc = {"_id": name, "role": role.value, "created_at": utcnow()}
        if password is not None:
            doc["password"] = hash_password(password)
        try:
            await self.users.insert_one(doc)
        except DuplicateKeyError:
            raise UserExists(name) from None

    async def set_password(self, name: str, password: str) -> None:
        """Replace a user's password; raises `NoSuchUser`."""
        result = await self.users.update_one(
            {"_id": name}, {"$set": {"password": hash_password(password)}}
        )
        if result.matched_count == 0:
            raise NoSuchUser(name)

    async def issue_token(self, name: str, label: str = "") -> str:
        """A new API token for a user; only its hash is kept, so this is the one time it shows."""
        if await self.users.count_documents({"_id": name}, limit=1) == 0:
            raise NoSuchUser(name)
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        await self.tokens.insert_one(
            {"_id": _digest(token), "user": name, "label": label, "created_at": utcnow()}
        )
        return token

    async def revoke_tokens(self, name: str) -> int:
        """Revoke every API token of a user; how many there were."""
        return (await self.tokens.delete_many({"user": name})).deleted_count

    async def list_users(self) -> list[Doc]:
        """Every user with their role and number of tokens, by name."""
        counts: dict[str, int] = {}
        async for token in self.tokens.find({}, {"user": 1}):
            counts[token["user"]] = counts.get(token["user"], 0) + 1
        return [
            {"name": doc["_id"], "role": doc["role"], "tokens": counts.get(doc["_id"], 0)}
            async for doc in self.users.find({}).sort("_id", 1)
        ]

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
            await self.tokens.update_one(
                {"_id": _digest(token)},
                {"$setOnInsert": {"user": name, "label": "configured", "created_at": utcnow()}},
                upsert=True,
            )
        return True

    # Authentication: credentials in, the principal out (or None).

    async def _principal(self, name: str) -> Principal | None:
        doc = await self.users.find_one({"_id": name}, {"role": 1})
        return None if doc is None else Principal(name, Role(doc["role"]))

    def _dev(self) -> Principal:
        return Principal(DEV_USER, Role.USER, dev=True)

    async def by_token(self, token: str) -> Principal | None:
        """The owner of an API token."""
        if self.dev_mode and hmac.compare_digest(token, DEV_TOKEN):
            return self._dev()
        digest = _digest(token)
        cached = self._token_cache.get(digest)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        doc = await self.tokens.find_one({"_id": digest}, {"user": 1})
        principal = None if doc is None else await self._principal(doc["user"])
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
        counted = {key: await self._count_attempt(key) for key in limits}
        over = [doc for key, doc in counted.items() if doc["count"] > limits[key]]
        if over:
            wait_s = max((doc["expires_at"] - utcnow()).total_seconds() for doc in over)
            raise TooManyFailedLogins(max(1, math.ceil(wait_s)))
        try:
            principal = await self._check_password(name, password)
        except Busy:
            # Not checked, so not a failure: a user retrying while sign-ins are busy must not
            # lock themselves out.
            for key in limits:
                await self._take_back_attempt(key)
            raise
        if principal is not None:
            # The password was known: the name's failures are forgiven, the address's are not
            # (one account of one's own must not reset the count of guesses at others).
            await self._forget_attempts(f"name:{name}")
            if address:
                await self._take_back_attempt(f"address:{address}")
        return principal

    # The failed sign-in counters: one document per name or address, removed (TTL index) when
    # its window ends. Each query in a method of its own.

    async def _count_attempt(self, key: str) -> Doc:
        """Count one more attempt for `key` in its window (a new window if none is open); the
        counter after it, with `count` and `expires_at`."""
        while True:
            doc: Doc | None = await self.failed_logins.find_one_and_update(
                {"_id": key},
                {
                    "$inc": {"count": 1},
                    "$setOnInsert": {"expires_at": utcnow() + FAILED_LOGIN_WINDOW},
                },
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
            assert doc is not None  # an upsert returns the document
            if doc["expires_at"] > utcnow():
                return doc
            # Its window is over and the TTL monitor (once a minute) has not removed it yet:
            # remove it (unless another request just did) and count in a new window.
            await self.failed_logins.delete_one({"_id": key, "expires_at": doc["expires_at"]})

    async def _take_back_attempt(self, key: str) -> None:
        """Uncount one attempt of `key` (it was not a failure)."""
        await self.failed_logins.update_one(
            {"_id": key, "count": {"$gt": 0}}, {"$inc": {"count": -1}}
        )

    async def _forget_attempts(self, key: str) -> None:
        """Forget every attempt of `key`."""
        await self.failed_logins.delete_one({"_id": key})

    async def _check_password(self, name: str, password: str) -> Principal | None:
        if name == DEV_USER:
            ok = self.dev_mode and hmac.compare_digest(password, DEV_PASSWORD)
            return self._dev() if ok else None
        doc = await self.users.find_one({"_id": name})
        if doc is None or "password" not in doc:
            # Spend the same time as a real check, so timing does not tell which names exist.
            await self.password_checks.run(check_password, password, _DUMMY_HASH)
            return None
        if not await self.password_checks.run(check_password, password, doc["password"]):
            return None
        return Principal(name, Role(doc["role"]))

    async def open_session(self, principal: Principal) -> tuple[str, Session]:
        """A new session: the secret for the cookie, and the session."""
        secret = secrets.token_urlsafe(32)
        session = Session(
            principal,
            csrf_token=secrets.token_urlsafe(24),
            expires_at=utcnow() + timedelta(seconds=self.session_ttl_s),
        )
        await self.sessions.insert_one(
            {
                "_id": _digest(secret),
                "user": principal.name,
                "dev": principal.dev,
                "csrf": session.csrf_token,
                "expires_at": session.expires_at,
            }
        )
        return secret, session

    async def by_session(self, secret: str) -> Session | None:
        """The live session a cookie's secret opens."""
        doc = await self.sessions.find_one({"_id": _digest(secret)})
        if doc is None or doc["expires_at"] <= utcnow():  # TTL removal lags by a minute
            return None
        principal = await self._marked(doc)
        if principal is None:
            return None
        return Session(principal, csrf_token=doc["csrf"], expires_at=doc["expires_at"])

    async def close_session(self, secret: str) -> None:
        """Sign out: the session's cookie opens nothing any more."""
        await self.sessions.delete_one({"_id": _digest(secret)})

    async def issue_ticket(self, principal: Principal) -> tuple[str, datetime]:
        """A single-use WebSocket ticket and when it expires."""
        ticket = secrets.token_urlsafe(32)
        expires_at = utcnow() + timedelta(seconds=self.ticket_ttl_s)
        await self.tickets.insert_one(
            {
                "_id": _digest(ticket),
                "user": principal.name,
                "dev": principal.dev,
                "expires_at": expires_at,
            }
        )
        return ticket, expires_at

    async def redeem_ticket(self, ticket: str) -> Principal | None:
        """The user of a ticket, which is used up by this call."""
        doc = await self.tickets.find_one_and_delete({"_id": _digest(ticket)})
        if doc is None or doc["expires_at"] <= utcnow():
            return None
        return await self._marked(doc)

    async def _marked(self, doc: Doc) -> Principal | None:
        """The principal of a session or ticket; a development one only in development mode."""
        if doc.get("dev"):
            return self._dev() if self.dev_mode else None
        return await self._principal(doc["user"])


_DUMMY_HASH = hash_password(secrets.token_urlsafe(16))
