"""The one rule for URLs a page follows that a user or a task gave (`/login?next=`, a task's
`ui.next_url`, an on-ready hook's `next_url`): a path on this site, or nothing.

A browser reads a URL the way the WHATWG URL standard says, not the way it is written: it first
strips leading and trailing C0 controls and spaces, and removes every tab, CR and LF anywhere;
then, relative to an `http(s)` page, `//host` and `/\\host` (a backslash counts as a slash)
name another site. So `"/\\t/evil.example"` is `//evil.example`. The rule normalises first and
judges the result, and what it returns is the normalised path, which a browser reads the same.

`static/ui/local-path.js` is the same rule for the browser; tests/data/local_paths.json holds the
cases both must agree on (tests/unit/test_local_path.py, tests/e2e/test_redirects.py).
"""

from __future__ import annotations

import re

#: What the URL parser strips from both ends (C0 controls and space) ...
_ENDS = re.compile(r"\A[\x00-\x20]+|[\x00-\x20]+\Z")
#: ... and removes anywhere (ASCII tab and newlines).
_TAB_OR_NEWLINE = re.compile(r"[\t\n\r]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def normalised(url: str) -> str:
    """`url` as the WHATWG URL parser sees it before parsing."""
    return _TAB_OR_NEWLINE.sub("", _ENDS.sub("", url))


def local_path(url: str | None) -> str | None:
    """The path on this site `url` names, normalised, or None if a browser would leave the
    site for it (another host, a `javascript:` or any other scheme)."""
    if url is None:
        return None
    path = normalised(url)
    # A path-absolute URL: one slash, then anything but a second slash or a backslash. Other
    # control characters are left in place by the parser, and kept out of headers here.
    if not path.startswith("/") or path[1:2] in ("/", "\\"):
        return None
    if _CONTROL.search(path):
        return None
    return path


def is_local_path(url: str | None) -> bool:
    """Whether `url` is a path on this site: the only kind of URL a page follows."""
    return local_path(url) is not None
