"""`python -m bench [NAME ...]`: run the named benchmarks (all by default), print and save figures.

A benchmark is a module `bench.<name>` with `RESULTS` (the file under bench/results/ it writes
to, without `.json`) and `async def run() -> dict` returning its figures. Figures of several
benchmarks that share a results file are merged into it, each under its own name.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
import time
from pathlib import Path
from typing import Any

#: Every benchmark, in the order `python -m bench` runs them.
BENCHMARKS = (
    "limits",
    "throughput",
    "reservations",
    "notifier_latency",
    "notifier_fanout",
    "notifier_slow_readers",
    "recovery",
)
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    """Run benchmarks; the exit status says whether all of them ran."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", choices=[[], *BENCHMARKS], metavar="NAME")
    names = parser.parse_args(argv).names or list(BENCHMARKS)
    failed = []
    for name in names:
        module = importlib.import_module(f"bench.{name}")
        print(f"== {name}", flush=True)
        started = time.monotonic()
        try:
            figures: dict[str, Any] = asyncio.run(module.run())
        except Exception as exc:
            print(f"{name} failed: {exc!r}", file=sys.stderr)
            failed.append(name)
            continue
        figures["elapsed_s"] = round(time.monotonic() - started, 1)
        path = save(module.RESULTS, name, figures)
        print(json.dumps(figures, indent=2))
        print(f"-> {path}", flush=True)
    from bench import report

    for written in report.write():
        print(f"-> {written}")
    return 1 if failed else 0


def save(results: str, name: str, figures: dict[str, Any]) -> Path:
    """Merge one benchmark's figures into bench/results/<results>.json."""
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{results}.json"
    existing: dict[str, Any] = {}
    if path.exists():
        try:
            existing = json.loads(path.read_text())
        except ValueError:
            existing = {}
    existing[name] = figures
    path.write_text(json.dumps(existing, indent=2) + "\n")
    return path


if __name__ == "__main__":
    sys.exit(main())
