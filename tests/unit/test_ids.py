"""Task ids are UUIDv7: version 7, RFC variant, and ordered by creation time."""

from __future__ import annotations

import time
import uuid

from shared.ids import is_task_id, new_task_id


def test_a_new_id_is_a_version_7_uuid_with_the_rfc_variant() -> None:
    value = uuid.UUID(new_task_id())
    assert value.version == 7
    assert value.variant == uuid.RFC_4122


def test_ids_made_a_millisecond_apart_sort_in_creation_order() -> None:
    ids = []
    for _ in range(5):
        ids.append(new_task_id())
        time.sleep(0.002)
    assert ids == sorted(ids)


def test_only_canonical_lower_case_uuids_are_task_ids() -> None:
    assert is_task_id(new_task_id())
    assert not is_task_id("xyz")
    assert not is_task_id(new_task_id().upper())
    assert not is_task_id("../" + new_task_id())
