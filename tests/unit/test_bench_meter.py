"""The benchmark's meter (bench/meter.py): CPU by the exact processes a run started, idle cores."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.meter import Meter, Reading, Ticks, idle_cores, with_descendants

#: Spins for `argv[1]` seconds of its own CPU, says so, then waits to be killed (a process that
#: is gone can no longer be read, so it stays).
SPINNER = (
    "import sys, time\n"
    "end = time.process_time() + float(sys.argv[1])\n"
    "while time.process_time() < end: pass\n"
    "print('spun', flush=True)\n"
    "time.sleep(120)\n"
)
#: Starts a spinner as its child, passes on its line, then waits.
PARENT = (
    "import subprocess, sys, time\n"
    f"child = subprocess.Popen([sys.executable, '-c', {SPINNER!r}, sys.argv[1]])\n"
    "time.sleep(120)\n"
)


def _spin(code: str, cpu_s: float, *marks: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code, str(cpu_s), *marks], stdout=subprocess.PIPE, text=True
    )


def test_a_part_is_its_process_and_descendants_and_never_a_look_alike() -> None:
    """Given a started process whose child does the work, and a process of someone else's whose
    command line names a service, when the run is metered, then the part counts its child's
    CPU and none of the look-alike's."""
    ours = _spin(PARENT, 0.3)
    theirs = _spin(SPINNER, 1.5, "-m", "services.worker")
    try:
        meter = Meter({"worker": [ours.pid]})
        meter.start()
        assert ours.stdout is not None
        assert theirs.stdout is not None
        assert ours.stdout.readline() == "spun\n"
        assert theirs.stdout.readline() == "spun\n"
        reading = meter.stop()
    finally:
        for process in (ours, theirs):
            for pid in with_descendants([process.pid]) - {process.pid}:
                subprocess.run(["kill", str(pid)], check=False)
            process.kill()
            process.wait()
    assert 0.25 <= reading.cpu_s["worker"] < 1.0


def test_alone_counts_a_process_without_its_children() -> None:
    """The benchmark's own process is the load generator; its children are the other parts."""
    ours = _spin(PARENT, 0.3)
    try:
        meter = Meter({}, {"load generator": ours.pid})
        meter.start()
        assert ours.stdout is not None
        assert ours.stdout.readline() == "spun\n"
        reading = meter.stop()
    finally:
        for pid in with_descendants([ours.pid]) - {ours.pid}:
            subprocess.run(["kill", str(pid)], check=False)
        ours.kill()
        ours.wait()
    assert reading.cpu_s["load generator"] < 0.2


def _fake_proc(root: Path, parents: dict[int, int], cpu: str) -> Path:
    for pid, parent in parents.items():
        (root / str(pid) / "task" / str(pid)).mkdir(parents=True)
        (root / str(pid) / "stat").write_text(f"{pid} (python -m x) S {parent} 1 1 0")
        (root / str(pid) / "task" / str(pid) / "schedstat").write_text("0 0 0\n")
    (root / "stat").write_text(f"cpu  {cpu}\ncpu0 1 2 3\n")
    return root


def test_descendants_are_followed_down_every_generation(tmp_path: Path) -> None:
    proc = _fake_proc(tmp_path, {10: 1, 11: 10, 12: 11, 13: 10, 20: 1}, "1 0 1 2 0 0 0 0 0 0")
    assert with_descendants([10], proc) == {10, 11, 12, 13}
    assert with_descendants([12, 20], proc) == {12, 20}


def test_idle_cores_are_idle_and_iowait_time_over_the_window(tmp_path: Path) -> None:
    # user nice system idle iowait irq softirq steal guest guest_nice
    before = Ticks.read(_fake_proc(tmp_path, {}, "100 0 50 300 50 0 0 0 7 0"))
    assert before == Ticks(idle=350, total=500)
    after = Ticks(idle=350 + 60, total=500 + 200)
    assert idle_cores(before, after, cpus=2) == 0.6
    assert idle_cores(before, before, cpus=2) == 0.0


def test_others_cores_are_what_the_machine_spent_beyond_the_parts() -> None:
    reading = Reading(cpu_s={"api": 1.0, "database": 2.0}, wall_s=2.0, idle_cores=0.25, cpus=2)
    assert reading.others_cores == 0.25
    assert reading.figures(1000)["cpu_ms_per_task"] == {"api": 1.0, "database": 2.0}
