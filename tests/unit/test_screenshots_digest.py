"""The screenshots in docs/ are the ones docs/screenshots.txt records (taken together by `make
screenshots`), and its normalising keeps what the UI says while dropping what changes from run
to run (tests/e2e/test_screenshots.py compares each run's text with it)."""

from __future__ import annotations

import hashlib

from tests.support.screenshots import DIGEST, normalised, read_digest


def test_every_screenshot_is_the_one_the_digest_records() -> None:
    recorded = read_digest()
    images = {path.name: path for path in DIGEST.parent.glob("screenshot-*.png")}
    assert images, "no screenshots in docs/"
    assert sorted(recorded) == sorted(images), "retake them with `make screenshots`"
    changed = [
        name
        for name, path in images.items()
        if hashlib.sha256(path.read_bytes()).hexdigest() != recorded[name][0]
    ]
    assert changed == [], "images changed without their text: retake them with make screenshots"


def test_two_runs_of_one_scene_read_the_same_and_a_new_wording_does_not() -> None:
    first = """Count Running
    test.count · 01a23c70-7899-7f9d-9f84-3d7e571ea453
    Created Dec 3, 03:05:33 PM
    Duration 850 ms
    test-worker-a48a8cd952bd alive took it 2.8 s ago, holds it under a lease
    5/60 rounds · Running
    next run after 3 min 05 s
    """
    second = """Count Running
    test.count · 01a2b001-0c00-7aaa-8bbb-0123456789ab
    Created Jan 14, 11:59:01 AM
    Duration 1 h 02 min
    test-worker-0f1e2d3c4b5a alive took it 310 ms ago, holds it under a lease
    17/60 rounds · Running
    next run after 532 ms
    """
    assert normalised(first) == normalised(second)
    assert normalised(first) != normalised(first.replace("under a lease", "with a heartbeat"))
