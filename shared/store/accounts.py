"""Users and their credentials as stored: users, API tokens, sessions, WebSocket tickets, and the
counters of failed sign-ins. Every secret is stored as its SHA-256 digest, never itself; what the
digests and roles mean is `shared/auth.py`'s."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pymongo import ASCENDING, ReturnDocument
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import DuplicateKeyError

from shared.clock import utcnow
from shared.store.documents import Doc
from shared.topology import API_TOKENS, FAILED_LOGINS, SESSIONS, USERS, WS_TICKETS


class AlreadyStored(ValueError):
    """A record with that key exists already."""


@dataclass(frozen=True)
class UserRecord:
    """A user: name, role and (for the web UI) a password hash."""

    name: str
    role: str
    password_hash: str | None = None


@dataclass(frozen=True)
class UserSummary:
    """A user as listed: name, role, and how many API tokens it has."""

    name: str
    role: str
    tokens: int


@dataclass(frozen=True)
class GrantRecord:
    """A session or a WebSocket ticket: whose, whether the development user's, until when."""

    digest: str
    user: str
    dev: bool
    expires_at: datetime
    #: A session's CSRF token (tickets have none).
    csrf: str | None = None


@dataclass(frozen=True)
class AttemptCount:
    """Sign-in attempts counted for one name or address in its current window."""

    count: int
    expires_at: datetime


class Accounts:
    """The collections of users and credentials of one database."""

    def __init__(self, db: AsyncDatabase[Doc]) -> None:
        self.users = db[USERS]
        self.tokens = db[API_TOKENS]
        self.sessions = db[SESSIONS]
        self.tickets = db[WS_TICKETS]
        self.failed_logins = db[FAILED_LOGINS]

    # --- users ----------------------------------------------------------------------------

    async def add_user(self, user: UserRecord) -> None:
        """Store a new user; raises `AlreadyStored` if the name is taken."""
        doc: Doc = {"_id": user.name, "role": user.role, "created_at": utcnow()}
        if user.password_hash is not None:
            doc["password"] = user.password_hash
        try:
            await self.users.insert_one(doc)
        except DuplicateKeyError:
            raise AlreadyStored(user.name) from None

    async def set_password_hash(self, name: str, password_hash: str) -> bool:
        """Replace a user's password hash; whether the user exists."""
        result = await self.users.update_one({"_id": name}, {"$set": {"password": password_hash}})
        return result.matched_count > 0

    async def user(self, name: str) -> UserRecord | None:
        """A user with their password hash, or None."""
        doc = await self.users.find_one({"_id": name})
        return None if doc is None else UserRecord(doc["_id"], doc["role"], doc.get("password"))

    async def roles(self, names: list[str]) -> dict[str, str]:
        """Of these user names, those that exist → their role."""
        cursor = self.users.find({"_id": {"$in": names}}, {"role": 1})
        return {doc["_id"]: doc["role"] async for doc in cursor}

    async def summaries(self) -> list[UserSummary]:
        """Every user, by name, with their number of API tokens."""
        tokens: dict[str, int] = {}
        async for token in self.tokens.find({}, {"user": 1}):
            tokens[token["user"]] = tokens.get(token["user"], 0) + 1
        cursor = self.users.find({}, {"role": 1}).sort("_id", ASCENDING)
        return [
            UserSummary(doc["_id"], doc["role"], tokens.get(doc["_id"], 0)) async for doc in cursor
        ]

    # --- API tokens -----------------------------------------------------------------------

    async def add_token(self, digest: str, user: str, label: str, *, keep: bool = False) -> None:
        """Store a token's digest for `user`; with `keep`, a digest stored already stays as it
        is (a configured token given again at every start)."""
        fields = {"user": user, "label": label, "created_at": utcnow()}
        if keep:
            await self.tokens.update_one({"_id": digest}, {"$setOnInsert": fields}, upsert=True)
        else:
            await self.tokens.insert_one({"_id": digest, **fields})

    async def token_user(self, digest: str) -> str | None:
        """Whose token this digest is, or None (revoked, or never issued)."""
        doc = await self.tokens.find_one({"_id": digest}, {"user": 1})
        return None if doc is None else str(doc["user"])

    async def live_tokens(self, digests: list[str]) -> dict[str, str]:
        """Of these token digests, those not revoked → their user."""
        cursor = self.tokens.find({"_id": {"$in": digests}}, {"user": 1})
        return {doc["_id"]: doc["user"] async for doc in cursor}

    async def remove_tokens(self, user: str) -> int:
        """Remove every token of `user`; how many there were."""
        return (await self.tokens.delete_many({"user": user})).deleted_count

    # --- sessions and tickets -------------------------------------------------------------

    async def add_session(self, session: GrantRecord) -> None:
        """Store a signed-in browser's session."""
        await self.sessions.insert_one(_grant_doc(session))

    async def session(self, digest: str) -> GrantRecord | None:
        """The session of this digest, or None (expired ones may linger: check `expires_at`)."""
        doc = await self.sessions.find_one({"_id": digest})
        return None if doc is None else _grant(doc)

    async def remove_session(self, digest: str) -> None:
        """Sign a session out."""
        await self.sessions.delete_one({"_id": digest})

    async def live_sessions(self, digests: list[str]) -> dict[str, str]:
        """Of these session digests, those neither signed out nor expired → their user."""
        query = {"_id": {"$in": digests}, "expires_at": {"$gt": utcnow()}}
        return {doc["_id"]: doc["user"] async for doc in self.sessions.find(query, {"user": 1})}

    async def add_ticket(self, ticket: GrantRecord) -> None:
        """Store a single-use WebSocket ticket."""
        await self.tickets.insert_one(_grant_doc(ticket))

    async def take_ticket(self, digest: str) -> GrantRecord | None:
        """Remove the ticket of this digest and return it; None if there was none (used, or
        never issued). Expired ones may linger: check `expires_at`."""
        doc = await self.tickets.find_one_and_delete({"_id": digest})
        return None if doc is None else _grant(doc)

    # --- failed sign-in counters: one document per name or address, removed by TTL -------

    async def count_attempt(self, key: str, window: timedelta) -> AttemptCount:
        """Count one more attempt for `key` in its window (a new window if none is open)."""
        while True:
            doc: Doc | None = await self.failed_logins.find_one_and_update(
                {"_id": key},
                {"$inc": {"count": 1}, "$setOnInsert": {"expires_at": utcnow() + window}},
                upsert=True,
                return_document=ReturnDocument.AFTER,
            )
            if doc is None:
                # SecantusDB answers an upsert that raced another one on a new key without the
                # document, though it applied it (a third of ten at once did, with every count
                # there after): read it back. Its count is this attempt's or a later one, so a
                # limit judged on it is never looser than the attempts made.
                doc = await self.failed_logins.find_one({"_id": key})
                if doc is None:  # removed meanwhile, its window over: count in a new one
                    continue
            if doc["expires_at"] > utcnow():
                return AttemptCount(doc["count"], doc["expires_at"])
            # Its window is over and the TTL monitor (once a minute) has not removed it yet:
            # remove it (unless another request just did) and count in a new window.
            await self.failed_logins.delete_one({"_id": key, "expires_at": doc["expires_at"]})

    async def take_back_attempt(self, key: str) -> None:
        """Uncount one attempt of `key` (it was not a failure)."""
        await self.failed_logins.update_one(
            {"_id": key, "count": {"$gt": 0}}, {"$inc": {"count": -1}}
        )

    async def forget_attempts(self, key: str) -> None:
        """Forget every attempt of `key`."""
        await self.failed_logins.delete_one({"_id": key})


def _grant_doc(grant: GrantRecord) -> Doc:
    doc: Doc = {
        "_id": grant.digest,
        "user": grant.user,
        "dev": grant.dev,
        "expires_at": grant.expires_at,
    }
    if grant.csrf is not None:
        doc["csrf"] = grant.csrf
    return doc


def _grant(doc: Doc) -> GrantRecord:
    return GrantRecord(
        digest=doc["_id"],
        user=doc["user"],
        dev=bool(doc.get("dev")),
        expires_at=doc["expires_at"],
        csrf=doc.get("csrf"),
    )
