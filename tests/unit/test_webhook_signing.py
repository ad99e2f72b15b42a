"""Signatures that any Standard Webhooks library verifies (checked with the `standardwebhooks`
package, not our own code), one per secret during a rotation."""

from __future__ import annotations

import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from shared.webhooks.signing import SECRET_PREFIX, headers, new_secret

BODY = '{"type":"task.completed","data":{"id":"x"}}'


def test_a_delivery_signed_with_a_secret_verifies_with_that_secret_only() -> None:
    secret = new_secret()
    assert secret.startswith(SECRET_PREFIX)
    signed = headers("msg_1", int(time.time()), BODY, [secret])
    assert Webhook(secret).verify(BODY, signed) == {"type": "task.completed", "data": {"id": "x"}}
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, signed)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace("x", "y"), signed)


def test_during_a_rotation_both_secrets_verify_the_same_delivery() -> None:
    old, new = new_secret(), new_secret()
    signed = headers("msg_2", int(time.time()), BODY, [new, old])
    assert len(signed["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(BODY, signed)
    Webhook(new).verify(BODY, signed)


def test_a_delivery_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="secret"):
        headers("msg_3", 0, BODY, [])
