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
            "tasklight: one task per request, each taking one of 100 resources exclusively "
            f"(without, in the same session: {_get(figures, 'reservations', 'tasks_per_s_without')}"
            " tasks/s; a hand-over, from a holder's end to its successor's start, p50 "
            f"{_get(figures, 'reservations', 'handover_gap_ms', 'p50')} ms)",
            "tasklight, with reservations",
            _get(figures, "reservations", "tasks_per_s_with"),
            "tasks/s",
        ),
        (
            "Celery: acks_late, track_started, MongoDB result backend, waiting for results",
            "Celery + MongoDB backend",
            celery_rate(figures),
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
    celery = celery_rate(figures)
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
    lines += ["", *goals(figures), *rounds_lines(figures), *database_lines(figures)]
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


def celery_rate(figures: dict[str, Any]) -> float | None:
    """Celery's median, from the rounds it alternated with tasklight in."""
    rate: float | None = _get(figures, "throughput", "celery", "tasks_per_s")
    return rate


#: The contenders of the alternated rounds, as the tables name them.
CONTENDERS = {
    "single": "tasklight, one task per request",
    "batched": "tasklight, batches of 100",
    "celery": "Celery",
}


def services_ms(spent: dict[str, float]) -> float:
    """CPU per task of tasklight's own services, or of Celery's worker and client."""
    own = ("api", "worker", "notifier", "celery worker", "celery client")
    return sum(ms for part, ms in spent.items() if part in own)


def rounds_lines(figures: dict[str, Any]) -> list[str]:
    """Each contender's runs, medians, CPU per task by part and the idle cores meanwhile."""
    present = [name for name in CONTENDERS if _get(figures, "throughput", name)]
    if not present:
        return []
    lines = [
        "",
        "Alternated rounds (each round: tasklight single, tasklight batched, Celery; medians). "
        "CPU per task by process id; idle cores: what the whole machine left idle during the "
        "runs (/proc/stat); others: cores used by processes not of the run (other work on the "
        "machine, and the shared RabbitMQ).",
        "",
        "| contender | tasks/s (runs) | services CPU ms/task | database CPU ms/task "
        "| load generator or client | idle cores (runs) | others' cores |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in present:
        row = figures["throughput"][name]
        spent = row["cpu_ms_per_task"]
        runs = row.get("runs", [])
        rates = ", ".join(f"{r['tasks_per_s']:.0f}" for r in runs)
        idle = ", ".join(f"{r['idle_cores']:.2f}" for r in runs)
        client = spent.get("load generator", 0.0) if name != "celery" else None
        shown_client = f"{client:.2f}" if client is not None else "(in services)"
        lines.append(
            f"| {CONTENDERS[name]} | {row['tasks_per_s']:.0f} ({rates}) "
            f"| {services_ms(spent):.2f} | {spent.get('database', 0.0):.2f} "
            f"| {shown_client} | {row['idle_cores']:.2f} ({idle}) | {row['others_cores']:.2f} |"
        )
    lines += ["", "CPU ms per task by part (medians):", ""]
    for name in present:
        spent = figures["throughput"][name]["cpu_ms_per_task"]
        parts = sorted(spent.items(), key=lambda item: -item[1])
        lines.append(f"- {CONTENDERS[name]}: " + ", ".join(f"{p} {ms:.2f}" for p, ms in parts))
    return lines


def database_lines(figures: dict[str, Any]) -> list[str]:
    """Database commands and statements per task by kind, counted at the wire."""
    counted = {
        name: per_task
        for name in CONTENDERS
        if (per_task := _get(figures, "throughput", name, "database_per_task"))
    }
    if not counted:
        return []
    kinds = sorted({kind for per_task in counted.values() for kind in per_task})
    lines = [
        "",
        "Database commands / statements per task by kind, counted at the wire by a proxy "
        "(bench/wire.py) in one extra round (a statement: a document inserted, an update or a "
        "delete statement, which may cover many tasks; one for any other command):",
        "",
        "| kind | " + " | ".join(CONTENDERS[name] for name in counted) + " |",
        "| --- |" + " ---: |" * len(counted),
    ]
    for kind in kinds:
        cells = []
        for per_task in counted.values():
            done = per_task.get(kind)
            cells.append(f"{done['commands']:.2f} / {done['statements']:.2f}" if done else "")
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
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
    celery = celery_rate(figures)
    single = _get(figures, "throughput", "tasks_per_s_single")
    batched = _get(figures, "throughput", "tasks_per_s_batched")
    best = max((rate for rate in (single, batched) if rate is not None), default=None)
    isolated = _get(figures, "limits", "mongo", "tasklight_form", "database_cpu_ms_per_task")
    spent = _get(figures, "throughput", "single", "cpu_ms_per_task") or {}
    spent_batched = _get(figures, "throughput", "batched", "cpu_ms_per_task") or {}
    database = spent.get("database")
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
        (
            "one task per request: at least 1.5x Celery",
            single and celery and single / celery,
            1.5,
            "x",
            True,
        ),
        (
            "`POST /tasks:batch`: at least 2x Celery",
            batched and celery and batched / celery,
            2.0,
            "x",
            True,
        ),
        (
            "database CPU per task end to end (one per request) at most 1.3x tasklight's own "
            "writes alone",
            database and isolated and database / isolated,
            1.3,
            "x",
            False,
        ),
        (
            "tasklight's services (api + worker + notifier) at most 2.5 ms CPU per task, one "
            "per request",
            services_ms(spent) or None,
            2.5,
            " ms",
            False,
        ),
        (
            "the same, batches of 100",
            services_ms(spent_batched) or None,
            2.5,
            " ms",
            False,
        ),
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
