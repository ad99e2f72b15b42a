"""The benchmark report: bench/results/latest.json as a Markdown table and a PNG chart.

`python -m bench` writes both after its runs; `python -m bench.report` writes them again from the
JSON alone. Every figure is the median of the runs its benchmark made, all in the same session
on the same machine.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(__file__).resolve().parent / "results"
LATEST = RESULTS_DIR / "latest.json"


def _get(figures: dict[str, Any], *path: str) -> Any:
    value: Any = figures
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def rows(figures: dict[str, Any]) -> list[tuple[str, str, float | None, str]]:
    """(what, the chart's short label, tasks or messages per second, unit) for the throughput
    table and chart."""
    return [
        (
            "tasklight: HTTP submit → run → pushed over WebSocket, one task per request",
            "tasklight, one task per request",
            _get(figures, "throughput", "tasks_per_s_single"),
            "tasks/s",
        ),
        (
            "tasklight: the same, 100 tasks per `POST /tasks:batch`",
            "tasklight, batches of 100",
            _get(figures, "throughput", "tasks_per_s_batched"),
            "tasks/s",
        ),
        (
            "Celery: acks_late, track_started, MongoDB result backend, waiting for results",
            "Celery + MongoDB backend",
            _get(figures, "peer_celery", "tasks_per_s"),
            "tasks/s",
        ),
        (
            "limit: RabbitMQ publish (confirms) + consume (ack), quorum queue",
            "limit: RabbitMQ (messages)",
            _get(figures, "limits", "amqp", "end_to_end", "messages_per_s"),
            "messages/s",
        ),
        (
            "limit: SecantusDB, a task's 3 writes in bulk across tasks",
            "limit: SecantusDB, bulk",
            _get(figures, "limits", "mongo", "bulk", "tasks_per_s"),
            "tasks/s",
        ),
        (
            "limit: SecantusDB, a task's 3 writes, one update_many per batch and change",
            "limit: SecantusDB, update_many",
            _get(figures, "limits", "mongo", "grouped", "tasks_per_s"),
            "tasks/s",
        ),
        (
            "limit: SecantusDB, tasklight's own 3 writes, documents and indexes, 100 per statement",
            "limit: SecantusDB, tasklight's form",
            _get(figures, "limits", "mongo", "tasklight_form", "tasks_per_s"),
            "tasks/s",
        ),
        (
            "limit: SecantusDB, a task's 3 writes one by one, 16 writers",
            "limit: SecantusDB, single writes",
            _get(figures, "limits", "mongo", "single", "tasks_per_s"),
            "tasks/s",
        ),
    ]


def markdown(figures: dict[str, Any]) -> str:
    """The report as Markdown."""
    cpus = _get(figures, "throughput", "machine", "cpus") or _get(
        figures, "limits", "machine", "cpus"
    )
    celery = _get(figures, "peer_celery", "tasks_per_s")
    lines = [
        f"Measured on {cpus} cores, one session, medians of 3 runs "
        f"({_get(figures, 'throughput', 'measured_at') or 'unknown time'}).",
        "",
        "| what | rate | ratio to Celery |",
        "| --- | ---: | ---: |",
    ]
    for what, _, rate, unit in rows(figures):
        ratio = f"{rate / celery:.2f}" if rate and celery and unit == "tasks/s" else ""
        shown = f"{rate:,.0f} {unit}" if rate is not None else "not measured"
        lines.append(f"| {what} | {shown} | {ratio} |")
    lines += ["", *goals(figures), *cpu_lines(figures)]
    latency = _get(figures, "throughput", "latency") or {}
    if latency:
        lines += [
            "",
            "| load (share of peak) | rate | push p50 | push p99 | submit→running p50 | p99 |",
            "| --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for share, lat in latency.items():
            lines.append(
                f"| {share} | {lat['rate_done_per_s']}/s | {lat['push_p50_ms']} ms "
                f"| {lat['push_p99_ms']} ms | {lat['submit_to_running_p50_ms']} ms "
                f"| {lat['submit_to_running_p99_ms']} ms |"
            )
    fanout = _get(figures, "notifier_fanout")
    if isinstance(fanout, dict):
        big = fanout.get("fanout_one_change") or {}
        small = fanout.get("fanout_one_change_1000_subscribers") or {}
        lines += [
            "",
            f"Notifier fan-out, one process: {fanout.get('connections')} idle subscribers at "
            f"{fanout.get('kib_per_connection')} KiB each; one change reaches all of them in "
            f"{big.get('all_ms')} ms (p50 {big.get('p50_ms')} ms), and 1,000 subscribers of "
            f"one task in {small.get('all_ms')} ms (p99 {small.get('p99_ms')} ms).",
        ]
    slow = _get(figures, "notifier_slow_readers")
    if isinstance(slow, dict):
        lines += [
            "",
            f"Slow readers: {slow.get('slow_readers')} connections that do not read, flooded "
            f"with {slow.get('tasks')} tasks of {slow.get('task_bytes')} bytes, grew the "
            f"notifier's memory by {slow.get('rss_growth_mib')} MiB (bound "
            f"{slow.get('rss_growth_bound_mib')} MiB) and were closed "
            f"{slow.get('closed_after_s')} s after the flood.",
        ]
    return "\n".join(lines) + "\n"


def cpu_lines(figures: dict[str, Any]) -> list[str]:
    """Where the CPU of a task went, part by part, in the throughput runs."""
    lines: list[str] = []
    for label, what in (("single", "one task per request"), ("batched", "batches of 100")):
        spent = _get(figures, "throughput", f"cpu_ms_per_task_{label}")
        rate = _get(figures, "throughput", f"tasks_per_s_{label}")
        if not spent or not rate:
            continue
        if not lines:
            lines = ["", "CPU time per task, by part (ms; in brackets, the share of one core):", ""]
        parts = sorted(spent.items(), key=lambda item: -item[1])
        shown = ", ".join(f"{part} {ms:.2f} ({ms * rate / 1000:.0%})" for part, ms in parts)
        lines.append(f"- {what}: {shown}.")
    return lines


def slowest_part(figures: dict[str, Any]) -> float | None:
    """The rate of the slower raw part: the broker, or the database in its fastest form (what
    the machine allows; one-by-one writes are a design's choice, not the part's limit)."""
    broker = _get(figures, "limits", "amqp", "end_to_end", "messages_per_s")
    database = max(
        (
            rate
            for form in ("bulk", "grouped")
            if (rate := _get(figures, "limits", "mongo", form, "tasks_per_s")) is not None
        ),
        default=None,
    )
    parts = [rate for rate in (broker, database) if rate is not None]
    return min(parts) if parts else None


def goals(figures: dict[str, Any]) -> list[str]:
    """The performance goals against the figures, each said plainly: met or not."""
    celery = _get(figures, "peer_celery", "tasks_per_s")
    best = max(
        (
            rate
            for key in ("tasks_per_s_single", "tasks_per_s_batched")
            if (rate := _get(figures, "throughput", key)) is not None
        ),
        default=None,
    )
    slowest = slowest_part(figures)
    p99 = _get(figures, "throughput", "latency", "90%", "push_p99_ms")
    kib = _get(figures, "notifier_fanout", "kib_per_connection")
    fanout_all = _get(figures, "notifier_fanout", "fanout_one_change", "all_ms")
    fanout_1000 = _get(figures, "notifier_fanout", "fanout_one_change_1000_subscribers", "p99_ms")
    growth = _get(figures, "notifier_slow_readers", "rss_growth_mib")
    growth_bound = _get(figures, "notifier_slow_readers", "rss_growth_bound_mib") or 0.0
    recovery_s = _get(figures, "recovery", "median_s")
    # (goal, measured, bound, unit, whether the measure must reach the bound or stay under it)
    checks = [
        ("throughput at least 3 times Celery's", best and celery and best / celery, 3.0, "x", True),
        (
            "throughput at least 50 % of the slowest raw part",
            best and slowest and best / slowest,
            0.5,
            "",
            True,
        ),
        ("push p99 under 50 ms at 90 % of peak", p99, 50.0, " ms", False),
        ("10,000 subscribers under 40 KiB each", kib, 40.0, " KiB", False),
        (
            "one change to 1,000 subscribers of a task, p99 under 20 ms",
            fanout_1000,
            20.0,
            " ms",
            False,
        ),
        (
            "one change to all 10,000 `scope: all` subscribers under 200 ms",
            fanout_all,
            200.0,
            " ms",
            False,
        ),
        (
            "slow-reader attack: notifier memory growth within its bound",
            growth,
            growth_bound,
            " MiB",
            False,
        ),
        ("a SIGKILLed worker's last task requeued within 6 s", recovery_s, 6.0, " s", False),
    ]
    lines = ["| goal | measured | met |", "| --- | ---: | --- |"]
    for what, value, bound, unit, at_least in checks:
        if not value:
            lines.append(f"| {what} | not measured | |")
            continue
        met = value >= bound if at_least else value < bound
        shown = f"{value:.0%}" if unit == "" else f"{value:.2f}{unit}"
        lines.append(f"| {what} | {shown} | {'yes' if met else 'no'} |")
    return lines


def chart(figures: dict[str, Any], path: Path) -> None:
    """A horizontal bar chart of the throughput rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [(short, rate) for _, short, rate, _ in rows(figures) if rate is not None]
    labels = [short for short, _ in measured]
    values = [rate for _, rate in measured]
    colours = ["#4f46e5" if w.startswith("tasklight") else "#9ca3af" for w, _ in measured]
    fig, ax = plt.subplots(figsize=(10, 0.55 * len(values) + 1.2))
    ax.barh(labels[::-1], values[::-1], color=colours[::-1])
    for y, value in enumerate(values[::-1]):
        ax.text(value, y, f" {value:,.0f}", va="center", fontsize=9)
    ax.set_xlabel("per second (tasks; messages for RabbitMQ)")
    ax.set_xscale("log")
    ax.set_title("tasklight, Celery and the raw parts, same machine, same run")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(figures: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """Write latest.md and latest.png from the figures (by default, latest.json)."""
    if figures is None:
        figures = json.loads(LATEST.read_text())
    md, png = RESULTS_DIR / "latest.md", RESULTS_DIR / "latest.png"
    md.write_text(markdown(figures))
    chart(figures, png)
    return md, png


if __name__ == "__main__":
    for written in write():
        print(written)
