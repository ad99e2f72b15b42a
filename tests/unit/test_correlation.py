"""The API's correlation id: the caller's when sensible, a fresh one otherwise."""

from __future__ import annotations

from services.api.observability import correlation_id


def test_the_callers_correlation_id_is_kept() -> None:
    assert correlation_id({b"x-correlation-id": b"order-42/retry.1"}) == "order-42/retry.1"


def test_an_x_request_id_is_taken_when_there_is_no_correlation_id() -> None:
    assert correlation_id({b"x-request-id": b"req-7"}) == "req-7"
    both = {b"x-correlation-id": b"corr-1", b"x-request-id": b"req-7"}
    assert correlation_id(both) == "corr-1"


def test_an_id_that_is_too_long_or_odd_is_replaced_by_a_new_one() -> None:
    for bad in (b"x" * 129, b"has space", b"new\nline", b"", b"\xff\xfe"):
        made = correlation_id({b"x-correlation-id": bad})
        assert made != bad.decode("latin-1")
        assert len(made) == 32
        assert int(made, 16) >= 0


def test_each_request_without_one_gets_its_own() -> None:
    assert correlation_id({}) != correlation_id({})
