"""Task ids: UUIDv7 (RFC 9562), so ids sort by creation time and index well."""

from __future__ import annotations

import os
import re
import time
import uuid

_UUID_TEXT = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def new_task_id() -> str:
    """A new UUIDv7 as canonical lower-case text."""
    unix_ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (unix_ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76  # version
    value |= (rand >> 68) << 64  # 12 random bits (rand_a)
    value |= 0b10 << 62  # variant
    value |= rand & ((1 << 62) - 1)  # 62 random bits (rand_b)
    return str(uuid.UUID(int=value))


def task_id_floor(unix_ms: int) -> str:
    """The smallest id of a task created at `unix_ms` or later: ids compare as creation times."""
    return str(uuid.UUID(int=(unix_ms & ((1 << 48) - 1)) << 80))


def is_task_id(text: str) -> bool:
    """Whether `text` is a well-formed id (any UUID in canonical lower-case form)."""
    return bool(_UUID_TEXT.match(text))
