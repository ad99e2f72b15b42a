"""The one JSON rule: what a body, a frame or a task's free JSON may hold."""

from __future__ import annotations

import pytest

from services.notifier.protocol import PingMessage, ProtocolError, parse
from shared.jsonlimits import (
    KEY_NUL,
    LONE_SURROGATE,
    MAX_DEPTH,
    MAX_DOCUMENT_DEPTH,
    TOO_DEEP,
    JsonRefused,
    loads,
    violations,
)


def nested(levels: int, inner: str = "1") -> str:
    """A JSON object nesting `levels` objects deep."""
    return '{"a":' * levels + inner + "}" * levels


def nested_value(levels: int) -> object:
    value: object = 1
    for _ in range(levels):
        value = {"a": value}
    return value


def test_a_document_at_the_depth_limit_is_taken_one_deeper_is_refused_for_its_depth() -> None:
    assert loads(nested(MAX_DOCUMENT_DEPTH)) is not None
    with pytest.raises(JsonRefused) as refused:
        loads(nested(MAX_DOCUMENT_DEPTH + 1))
    assert refused.value.too_deep


@pytest.mark.parametrize("levels", [1000, 100_000])
def test_a_document_deeper_than_the_parser_can_go_is_refused_for_its_depth(levels: int) -> None:
    """Python's parser recurses per level; past its limit it is still "too deep", never a
    RecursionError that would become a 500 or a dropped connection."""
    with pytest.raises(JsonRefused) as refused:
        loads("[" * levels + "]" * levels)
    assert refused.value.too_deep


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (b'{"x": NaN}', "NaN is not JSON"),
        (b'{"x": Infinity}', "Infinity is not JSON"),
        (b'{"x": -Infinity}', "-Infinity is not JSON"),
        # Beyond a double's range: Python would read these as Infinity
        (b'{"x": 1e400}', "1e400 is out of range"),
        (b'{"x": [1, -2.5E+999]}', "-2.5E+999 is out of range"),
        (b'{"x": ' + b"1" * 5000 + b"}", "an integer is out of range"),
        (b'{"x": "\xff"}', "not UTF-8"),
        (b'{"x": "\\ud800"}', "lone UTF-16 surrogate"),
        (b'{"\\udfff": 1}', "lone UTF-16 surrogate"),
        (b'{"x": [1, "a\\udc00b"]}', "lone UTF-16 surrogate"),
        (b'{"x": ', "not JSON"),
    ],
)
def test_what_is_not_json_text_is_refused_saying_why(text: bytes, says: str) -> None:
    with pytest.raises(JsonRefused) as refused:
        loads(text)
    assert says in str(refused.value)
    assert not refused.value.too_deep
    str(refused.value).encode("utf-8")  # the reason itself can be sent back


def test_numbers_at_the_ends_of_a_doubles_range_are_numbers() -> None:
    assert loads(b"[1.7976931348623157e308, -1e308, 1e-400, 123456789012345678901234567890]") == [
        1.7976931348623157e308,
        -1e308,
        0.0,  # below the smallest double: it reads as zero, a finite number
        123456789012345678901234567890,
    ]


def test_paired_surrogates_and_nul_in_text_are_text() -> None:
    assert loads(b'{"x": "\\ud83d\\ude00 a\\u0000b"}') == {"x": "\U0001f600 a\x00b"}


def test_free_json_may_nest_to_its_own_limit_and_no_deeper() -> None:
    assert violations(nested_value(MAX_DEPTH), ["args"]) == []
    (error,) = violations(nested_value(MAX_DEPTH + 1), ["args"])
    assert error["type"] == TOO_DEEP
    assert error["loc"] == ["args", *["a"] * MAX_DEPTH]


def test_what_bson_cannot_store_is_found_with_its_location() -> None:
    value = {
        "ok": [1, True, 2**63 - 1, "a\x00b", None, 1.5],
        "a\x00b": 1,
        "deep": [{"n": -(2**63) - 1}],
        "f": float("nan"),
        "\ud800": "x",
    }
    found = {(tuple(e["loc"]), e["type"]) for e in violations(value, ["metadata"])}
    assert found == {
        (("metadata", "a\x00b"), KEY_NUL),
        (("metadata", "deep", 0, "n"), "json_int_too_large"),
        (("metadata", "f"), "json_not_finite"),
        # Shown escaped: the location itself goes back to the client as text.
        (("metadata", "\\ud800"), LONE_SURROGATE),
    }
    assert violations(None, ["metadata"]) == []


def test_a_websocket_frame_nested_too_deep_is_a_protocol_error_not_a_crash() -> None:
    for frame in (
        '{"type": "ping", "id": ' + nested(MAX_DOCUMENT_DEPTH) + "}",
        "[" * 100_000 + "]" * 100_000,
    ):
        with pytest.raises(ProtocolError) as refused:
            parse(frame)
        assert refused.value.problem_type == "urn:tasklight:problem:malformed-message"
        assert "nested deeper" in refused.value.detail
    assert parse('{"type": "ping", "id": "p1"}') == PingMessage(type="ping", id="p1")


def test_a_websocket_frame_with_nan_an_overflow_or_a_lone_surrogate_is_a_protocol_error() -> None:
    for frame in (
        '{"type": "ping", "id": NaN}',
        '{"type": "ping", "id": 1e400}',
        '{"type": "ping", "id": "\\ud800"}',
    ):
        with pytest.raises(ProtocolError):
            parse(frame)
