"""Secrets and signatures of the Standard Webhooks specification. Pure.

A secret is `whsec_` and the base64 of 32 random bytes. A delivery is signed as
`v1,<base64 HMAC-SHA256(secret, "<webhook-id>.<webhook-timestamp>.<body>")>`; while an endpoint
rotates its secret, each delivery carries one signature per valid secret, space separated, so a
receiver that still has the old one verifies it as well as one that has the new one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"
#: Random bytes of a new secret (the specification asks for 24 to 64).
SECRET_BYTES = 32


def new_secret() -> str:
    """A new endpoint secret."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def signature(secret: str, msg_id: str, timestamp: int, body: str) -> str:
    """The `v1,<base64>` signature of one delivery attempt with one secret."""
    signed = f"{msg_id}.{timestamp}.{body}".encode()
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(msg_id: str, timestamp: int, body: str, secrets_: list[str]) -> dict[str, str]:
    """The three `webhook-*` headers of an attempt, signed with every secret in `secrets_`."""
    if not secrets_:
        raise ValueError("a delivery needs at least one secret to be signed with")
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(signature(s, msg_id, timestamp, body) for s in secrets_),
    }
