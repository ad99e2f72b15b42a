"""The task type `reports.render`: gather a report's figures section by section, render it, and
store the document. Name this module in `TASKLIGHT_TASK_MODULES` (api and workers alike).

The handler imports neither the broker nor the database: it gets validated arguments and a
context, reports progress, stops at checkpoints when canceled, and returns a JSON result.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from acme_reports.render import Section, figures_for, to_csv, to_html
from shared.tasks import (
    Flash,
    FlashLevel,
    Outcome,
    OutcomeHooks,
    Registry,
    RetryPolicy,
    Task,
    TaskContext,
    TaskFailed,
    TaskState,
    TaskType,
)

NAME = "reports.render"


class ReportArgs(BaseModel):
    """What to render; the api refuses anything else with a 422 naming the field."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=200, description="The report's title.")
    sections: list[str] = Field(
        min_length=1, max_length=50, description="Section headings, in order; one query each."
    )
    format: Literal["html", "csv"] = Field(default="html", description="The document's format.")
    section_s: float = Field(
        default=0.5, ge=0, le=60, description="Seconds one section's query takes (simulated)."
    )


def reports_dir() -> Path:
    """Where documents are stored: `ACME_REPORTS_DIR`, else a folder in the temporary directory.
    (A real deployment would upload to object storage the web app can read.)"""
    configured = os.environ.get("ACME_REPORTS_DIR")
    return Path(configured) if configured else Path(tempfile.gettempdir()) / "acme-reports"


async def gather(heading: str, section_s: float) -> Section:
    """One section's figures (a stand-in for a slow query against a reporting database)."""
    await asyncio.sleep(section_s)
    return figures_for(heading)


def store(name: str, document: str) -> Path:
    """Write the document where the web app finds it; blocking, so run it in a thread."""
    folder = reports_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(document, encoding="utf-8")
    return path


async def render_report(args: ReportArgs, ctx: TaskContext) -> dict[str, Any]:
    """Gather each section (one progress step each), render the document, store it."""
    # The suffix follows the count: "1/1 section", "2/3 sections".
    unit = "section" if len(args.sections) == 1 else "sections"
    gathering = await ctx.report(
        "Gathering figures", "reports.gather", total=len(args.sections), suffix=unit
    )
    sections = []
    for heading in args.sections:
        await ctx.checkpoint()  # a cancel stops the report here, before the next query
        sections.append(await gather(heading, args.section_s))
        await gathering.advance()
    await gathering.finish()

    writing = await ctx.report("Rendering and storing", "reports.store", total=1)
    await ctx.checkpoint()
    document = (to_html if args.format == "html" else to_csv)(args.title, sections)
    name = f"{ctx.task_id}.{args.format}"
    try:
        # Blocking file I/O (or CPU-heavy rendering) goes to a thread: the worker's event loop
        # also runs its other tasks, heartbeats and cancel requests.
        await asyncio.to_thread(store, name, document)
    except PermissionError as exc:
        # Retrying cannot help; the message is shown to the user as it is.
        raise TaskFailed(f"the report could not be stored: {exc.strerror}") from exc
    await writing.advance()
    await writing.finish()
    return {
        "file": name,
        "format": args.format,
        "sections": len(sections),
        "bytes": len(document.encode()),
        "sha256": hashlib.sha256(document.encode()).hexdigest(),
    }


def register(registry: Registry) -> None:
    """Add this package's task types (called by tasklight for `TASKLIGHT_TASK_MODULES`)."""
    registry.add(
        TaskType(
            NAME,
            "Render a report",
            "Gathers each section's figures, renders the report as HTML or CSV and stores it.",
            ReportArgs,
            render_report,
            # A storage hiccup (any other OSError) is worth two more tries, 2 s and 4 s later.
            retry=RetryPolicy(max_attempts=3, base_s=2.0, retry_on=(OSError,)),
            # Rendering again is harmless (same input, same document): run it elsewhere if its
            # worker dies.
            on_worker_lost="requeue",
        )
    )


def register_outcomes(hooks: OutcomeHooks) -> None:
    """Where the waiting page goes when a report is done (the api calls this; workers never)."""

    @hooks.on_ready(NAME)
    def report_ready(task: Task) -> Outcome | None:
        if task.state is not TaskState.COMPLETED:
            return None  # the task's `ui` hints (or the defaults) say what went wrong
        sections = task.result["sections"] if isinstance(task.result, dict) else 0
        counted = f"{sections} section" if sections == 1 else f"{sections} sections"
        return Outcome(
            ready=True,
            state=task.state,
            next_url=f"/tasks/{task.id}",
            flash=Flash(
                level=FlashLevel.SUCCESS,
                message=f"Report “{task.args['title']}” is ready ({counted}).",
            ),
        )
