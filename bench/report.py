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


def rows(figures: dict[str, Any]) -> list[tuple[str, float | None, str]]:
    """(what, tasks or messages per second, note) for the throughput table and chart."""
    return [
        (
            "tasklight: HTTP submit → run → pushed over WebSocket, one task per request",
            _get(figures, "throughput", "tasks_per_s_single"),
            "tasks/s",
        ),
        (
            "tasklight: the same, 100 tasks per `POST /tasks:batch`",
            _get(figures, "throughput", "tasks_per_s_batched"),
            "tasks/s",
        ),
        (
            "Celery: acks_late, track_started, MongoDB result backend, waiting for results",
            _get(figures, "peer_celery", "tasks_per_s"),
            "tasks/s",
        ),
        (
            "limit: RabbitMQ publish (confirms) + consume (ack), quorum queue",
            _get(figures, "limits", "amqp", "end_to_end", "messages_per_s"),
            "messages/s",
        ),
        (
            "limit: SecantusDB, a task's 3 writes in bulk across tasks",
            _get(figures, "limits", "mongo", "bulk", "tasks_per_s"),
            "tasks/s",
        ),
        (
            "limit: SecantusDB, a task's 3 writes one by one, 16 writers",
            _get(figures, "limits", "mongo", "single", "tasks_per_s"),
            "tasks/s",
        ),
    ]


#: The chart's labels of `rows`, in the same order.
SHORT_LABELS = (
    "tasklight, one task per request",
    "tasklight, batches of 100",
    "Celery + MongoDB backend",
    "limit: RabbitMQ (messages)",
    "limit: SecantusDB, bulk",
    "limit: SecantusDB, single writes",
)


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
    for what, rate, unit in rows(figures):
        ratio = f"{rate / celery:.2f}" if rate and celery and unit == "tasks/s" else ""
        shown = f"{rate:,.0f} {unit}" if rate is not None else "not measured"
        lines.append(f"| {what} | {shown} | {ratio} |")
    slowest = min(
        (r for _, r, _ in rows(figures)[3:] if r is not None),
        default=None,
    )
    single = _get(figures, "throughput", "tasks_per_s_single")
    if slowest and single:
        lines += ["", f"tasklight reaches {single / slowest:.0%} of the slowest raw part's rate."]
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
            f"one task in {small.get('all_ms')} ms (p50 {small.get('p50_ms')} ms).",
        ]
    return "\n".join(lines) + "\n"


def chart(figures: dict[str, Any], path: Path) -> None:
    """A horizontal bar chart of the throughput rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [
        (short, rate)
        for short, (_, rate, _) in zip(SHORT_LABELS, rows(figures), strict=True)
        if rate is not None
    ]
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
