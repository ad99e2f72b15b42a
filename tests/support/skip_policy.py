"""A skipped test fails the run: a layer that did not run has not passed.

Tests skip when something they need is missing (a browser, a tool, a backend; each skip names
the command that installs it). `make test` must never report a pass for a run that left a
layer out, so any skip turns the exit status into a failure, with the skips listed.
`TASKLIGHT_ALLOW_SKIPS=1` is the explicit opt-out: skips are accepted, and said loudly.
"""

from __future__ import annotations

import os

import pytest

ALLOW_SKIPS = "TASKLIGHT_ALLOW_SKIPS"
#: This run's skipped tests (one run per process).
_SKIPPED: list[pytest.TestReport] = []


def skips_allowed() -> bool:
    """Whether the opt-out is set."""
    return os.environ.get(ALLOW_SKIPS) == "1"


def pytest_configure(config: pytest.Config) -> None:
    """Start the run's list of skips."""
    _SKIPPED.clear()


def pytest_report_header(config: pytest.Config) -> str | None:
    """Say at the top when skips will be accepted."""
    if skips_allowed():
        return f"!!! {ALLOW_SKIPS}=1: skipped tests are accepted; this run may not test everything"
    return None


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Remember each skipped test (an expected failure is not a skip)."""
    if report.skipped and not hasattr(report, "wasxfail"):
        _SKIPPED.append(report)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A run with skips fails, unless they are allowed."""
    if _SKIPPED and not skips_allowed() and exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """List the skips and what they mean for the run."""
    skipped = list(_SKIPPED)
    if not skipped:
        return
    write = terminalreporter.write_line
    allowed = skips_allowed()
    terminalreporter.section(
        "SKIPPED TESTS ACCEPTED" if allowed else "SKIPPED TESTS FAIL THIS RUN", sep="!", red=True
    )
    for report in skipped:
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        write(f"{report.nodeid}: {reason.removeprefix('Skipped: ')}")
    count = f"{len(skipped)} test{'' if len(skipped) == 1 else 's'} did not run"
    if allowed:
        write(f"{count}, accepted ({ALLOW_SKIPS}=1).")
    else:
        write(
            f"{count}: install what they name and run again, or set {ALLOW_SKIPS}=1 to "
            "accept skips knowingly."
        )
