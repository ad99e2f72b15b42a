"""The launcher (`make run`): how long it lets each service stop, and ports already taken."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.stack import (
    EmbeddedMongo,
    PortTaken,
    free_port,
    port_taken,
    stop_stack,
    stop_timeout_s,
)
from shared.settings import Settings
from tests.support.deployment import worker_stop_s


@pytest.mark.parametrize("grace_s", [0.0, 1.0, 20.0, 60.0])
@pytest.mark.parametrize("name", ["worker", "worker-2"])
def test_the_launcher_lets_a_worker_outlast_its_own_graceful_stop(
    grace_s: float, name: str
) -> None:
    """Killed before its grace and its broker's margin are over, a worker's running tasks
    would wait for the janitor and start again from zero."""
    settings = Settings(shutdown_grace_s=grace_s)
    assert stop_timeout_s(name, settings) > worker_stop_s(settings)


def test_stopping_says_what_it_waits_for_and_lets_a_slow_worker_finish() -> None:
    # A "worker" that takes 1.5 s to stop after SIGTERM, as a handing-back one does.
    slow = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *_: (time.sleep(1.5), sys.exit(0)))\n"
            "print('ready', flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
    )
    assert slow.stdout is not None
    assert slow.stdout.readline() == b"ready\n"
    said: list[str] = []
    started = time.monotonic()
    stop_stack({"worker": slow}, Settings(shutdown_grace_s=0), said.append)
    assert slow.returncode == 0, "killed instead of let stop"
    assert time.monotonic() - started >= 1.4
    assert said, "nothing said"
    assert "waiting up to 10 s for worker" in said[0], said


def test_a_port_something_listens_on_is_taken_and_the_database_will_not_start_there(
    tmp_path: Path,
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert port_taken("127.0.0.1", port)
        with pytest.raises(PortTaken, match=f"port {port} is already in use"):
            EmbeddedMongo(tmp_path / "db", port=port).start()
    assert not port_taken("127.0.0.1", port)


def test_free_ports_are_below_the_ephemeral_range_bindable_and_never_handed_out_twice() -> None:
    # An outgoing connection takes its local port from the ephemeral range: a port drawn there
    # could be taken between the draw and the server's bind.
    low, _high = (
        int(p) for p in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    )
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
    assert all(port < low for port in ports)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[0]))
