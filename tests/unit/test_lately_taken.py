"""The hint of where new tasks will meet others: remembered for a while, bounded in size."""

from __future__ import annotations

from shared.reservations import LatelyTaken


def test_a_resource_found_taken_is_remembered_until_its_time_has_passed() -> None:
    hint = LatelyTaken(ttl_s=5.0)
    hint.taken(["vm:a"], now=100.0)
    assert hint.any_of(["vm:b", "vm:a"], now=104.9)
    assert not hint.any_of(["vm:a"], now=105.0)
    assert not hint.any_of(["vm:b"], now=100.0)


def test_finding_it_taken_again_extends_the_time() -> None:
    hint = LatelyTaken(ttl_s=5.0)
    hint.taken(["vm:a"], now=100.0)
    hint.taken(["vm:a"], now=104.0)
    assert hint.any_of(["vm:a"], now=108.0)


def test_it_keeps_at_most_its_size_forgetting_the_longest_untouched_first() -> None:
    hint = LatelyTaken(ttl_s=5.0, size=2)
    hint.taken(["vm:a"], now=100.0)
    hint.taken(["vm:b"], now=100.0)
    hint.taken(["vm:a"], now=101.0)
    hint.taken(["vm:c"], now=101.0)
    assert hint.any_of(["vm:a"], now=101.0)
    assert hint.any_of(["vm:c"], now=101.0)
    assert not hint.any_of(["vm:b"], now=101.0)
