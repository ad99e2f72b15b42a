"""docs/screenshots.txt: the visible text of each screenshot in docs/, normalised so that it is
the same on every run, with each image's SHA-256. tests/e2e/test_screenshots.py writes it with
the screenshots (`make screenshots`) and otherwise fails when the UI's text no longer matches
it; tests/unit/test_screenshots_digest.py checks that the images are the ones it records."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: The committed screenshots' visible text (see the module).
DIGEST = ROOT / "docs" / "screenshots.txt"
DIGEST_HEADER = """\
# The visible text of each screenshot in docs/, with ids, times, durations and numbers
# normalised, and the image's SHA-256: written by `make screenshots`
# (tests/e2e/test_screenshots.py), which fails when the UI's text no longer matches this.
"""
#: A scene's section: "=== <file> sha256=<hex>", then its text.
SECTION = re.compile(r"^=== (\S+) sha256=([0-9a-f]{64})\n(.*?)(?=^=== |\Z)", re.M | re.S)
_NORMALISED = [
    # A task id, or its last 12 digits; a worker's name ("test-worker-<12 hex>")
    (re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"), "<id>"),
    (re.compile(r"\b[0-9a-f]{12}\b"), "<id>"),
    # Durations and countdowns: "850 ms", "4.2 s", "3 min 05 s", "1 h 02 min"
    (re.compile(r"\b\d+(?:\.\d+)? (?:ms|s|min|h)\b(?: \d+ (?:s|min)\b)?"), "<duration>"),
    # Times: "Dec 3, 02:10:23 PM"
    (re.compile(r"\b(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\b"), "<month>"),
    (re.compile(r"\b[AP]M\b"), "<am/pm>"),
    # Every other number: counts, progress, versions
    (re.compile(r"\d+"), "#"),
]


def normalised(text: str) -> str:
    """A scene's visible text, with what changes from run to run replaced (see _NORMALISED)."""
    for pattern, replacement in _NORMALISED:
        text = pattern.sub(replacement, text)
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line) + "\n"


def read_digest(path: Path = DIGEST) -> dict[str, tuple[str, str]]:
    """The recorded scenes: file name → (SHA-256 of the image, normalised text)."""
    if not path.exists():
        return {}
    return {name: (sha, text) for name, sha, text in SECTION.findall(path.read_text())}


def write_digest(scenes: dict[str, tuple[str, str]], path: Path = DIGEST) -> None:
    """Write the scenes (file name → (SHA-256, normalised text)) in file-name order."""
    sections = [f"=== {name} sha256={sha}\n{text}" for name, (sha, text) in sorted(scenes.items())]
    path.write_text(DIGEST_HEADER + "".join(sections))
