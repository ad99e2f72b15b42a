"""The benchmark's wire counter (bench/wire.py): commands and statements of OP_MSG messages."""

from __future__ import annotations

import struct
from typing import Any

import bson

from bench.wire import Counts, command_of


def op_msg(body: dict[str, Any], sequences: dict[str, list[dict[str, Any]]] | None = None) -> bytes:
    """An OP_MSG as a driver sends it: a body section, then document sequences."""
    sections = b"\x00" + bson.encode(body)
    for identifier, documents in (sequences or {}).items():
        payload = identifier.encode() + b"\0" + b"".join(bson.encode(d) for d in documents)
        sections += b"\x01" + struct.pack("<i", 4 + len(payload)) + payload
    message = struct.pack("<I", 0) + sections
    return struct.pack("<iiii", 16 + len(message), 7, 0, 2013) + message


def test_a_write_counts_the_documents_of_its_sequence() -> None:
    message = op_msg({"insert": "tasks", "$db": "x"}, {"documents": [{"a": 1}, {"a": 2}, {}]})
    assert command_of(message) == ("insert", 3)


def test_a_write_whose_statements_are_in_its_body_counts_them_there() -> None:
    updates = [{"q": {"_id": 1}, "u": {"$set": {"a": 1}}}, {"q": {}, "u": {}, "multi": True}]
    assert command_of(op_msg({"update": "tasks", "updates": updates, "$db": "x"})) == ("update", 2)


def test_any_other_command_is_one_statement() -> None:
    assert command_of(op_msg({"find": "tasks", "filter": {}, "$db": "x"})) == ("find", 1)
    assert command_of(op_msg({"getMore": 5, "collection": "tasks", "$db": "x"})) == ("getMore", 1)


def test_counts_per_task_by_kind_most_frequent_first() -> None:
    counts = Counts()
    for name, statements in (("update", 100), ("insert", 100), ("update", 100), ("find", 1)):
        counts.add(name, statements)
    assert counts.per_task(100) == {
        "update": {"commands": 0.02, "statements": 2.0},
        "insert": {"commands": 0.01, "statements": 1.0},
        "find": {"commands": 0.01, "statements": 0.01},
    }
