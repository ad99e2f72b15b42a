"""The example task package `examples/reports` (acme_reports), its handler called directly, as a
team would test its own: an in-memory context, no broker, no database."""

from __future__ import annotations

import hashlib
import importlib
import sys
from pathlib import Path
from typing import Any

import pytest

from shared.clock import utcnow
from shared.errors import TaskCanceled, TaskFailed
from shared.lifecycle import TaskState
from shared.registry import load_registry
from shared.task import Task
from shared.tasks import MemoryContext
from shared.waiting_page import OutcomeHooks

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "examples" / "reports"
# What PYTHONPATH=examples/reports does for the services.
sys.path.insert(0, str(EXAMPLE_DIR))
tasks: Any = importlib.import_module("acme_reports.tasks")


@pytest.fixture(autouse=True)
def reports_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Documents go to the test's own folder."""
    monkeypatch.setenv("ACME_REPORTS_DIR", str(tmp_path))
    return tmp_path


def stored(folder: Path) -> list[str]:
    """The names of the documents in `folder`."""
    return sorted(path.name for path in folder.iterdir())


def args(**overrides: Any) -> Any:
    fields = {"title": "Q3 sales", "sections": ["North", "South", "West"], "section_s": 0}
    return tasks.ReportArgs.model_validate({**fields, **overrides})


async def test_a_report_takes_one_progress_step_per_section_then_stores_the_document(
    reports_dir: Path,
) -> None:
    ctx = MemoryContext()

    result = await tasks.render_report(args(), ctx)

    gathering, storing = ctx.reports
    assert (gathering.code, gathering.done, gathering.total, gathering.finished) == (
        "reports.gather",
        3,
        3,
        True,
    )
    assert (storing.done, storing.total, storing.finished) == (1, 1, True)
    document = (reports_dir / "task-1.html").read_bytes()
    assert result == {
        "file": "task-1.html",
        "format": "html",
        "sections": 3,
        "bytes": len(document),
        "sha256": hashlib.sha256(document).hexdigest(),
    }
    assert b"<h1>Q3 sales</h1>" in document
    assert document.count(b"<h2>") == 3


async def test_a_csv_report_has_a_line_per_row_of_each_section(reports_dir: Path) -> None:
    await tasks.render_report(args(format="csv", sections=["North", "South"]), MemoryContext())

    lines = (reports_dir / "task-1.csv").read_text().splitlines()
    assert lines[0] == "report,section,label,amount"
    assert len(lines) == 1 + 2 * 3
    assert lines[1].startswith("Q3 sales,North,North 1,")


async def test_a_cancel_stops_before_the_next_section_and_stores_nothing(
    reports_dir: Path,
) -> None:
    ctx = MemoryContext(cancel_after=1)

    with pytest.raises(TaskCanceled):
        await tasks.render_report(args(), ctx)

    assert ctx.reports[0].done == 1
    assert stored(reports_dir) == []


async def test_a_storage_that_refuses_fails_the_task_with_a_message_for_the_user(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(name: str, document: str) -> Path:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tasks, "store", refuse)

    with pytest.raises(TaskFailed) as failed:
        await tasks.render_report(args(), MemoryContext())

    assert failed.value.message == "the report could not be stored: Permission denied"


def test_the_arguments_refuse_a_report_without_sections_and_unknown_fields() -> None:
    with pytest.raises(ValueError, match="sections"):
        args(sections=[])
    with pytest.raises(ValueError, match="Extra inputs"):
        args(pages=3)


def test_naming_the_module_in_task_modules_adds_the_type_with_its_retry_policy() -> None:
    registry = load_registry("acme_reports.tasks")

    report = registry.get("reports.render")
    assert report.retry is not None
    assert report.retry.retries(OSError())
    assert report.on_worker_lost == "requeue"
    assert report.schema()["required"] == ["title", "sections"]


@pytest.mark.parametrize(("headings", "suffix"), [(["North"], "section"), (["N", "S"], "sections")])
async def test_the_progress_counts_sections_in_the_form_the_number_takes(
    headings: list[str], suffix: str
) -> None:
    ctx = MemoryContext()

    await tasks.render_report(args(sections=headings), ctx)

    assert ctx.reports[0].suffix == suffix  # "1/1 section", "2/2 sections"


@pytest.mark.parametrize(("count", "said"), [(1, "(1 section)"), (2, "(2 sections)")])
async def test_the_ready_message_counts_sections_in_the_form_the_number_takes(
    count: int, said: str
) -> None:
    hooks = OutcomeHooks()
    tasks.register_outcomes(hooks)
    at = utcnow()
    task = Task(
        id="task-1",
        name=tasks.NAME,
        state=TaskState.COMPLETED,
        created_at=at,
        updated_at=at,
        owner="dev",
        args={"title": "Q3 sales"},
        result={"sections": count},
        version=5,
    )

    outcome = await hooks.outcome(task)

    assert outcome.flash is not None
    assert outcome.flash.message == f"Report “Q3 sales” is ready {said}."
