"""`python -m services.stack` (what `make run` calls): the whole system on its embedded defaults.

Starts SecantusDB (unless `MONGODB_URL` is set), checks RabbitMQ at `AMQP_URL`, starts the api,
worker, notifier and webhook sender processes, prints where to open them, and stops everything
on Ctrl-C.
`--replicas N` (what `make scale-demo` calls) starts N of each, side by side on the same database
and queues: they need no coordination of their own beyond what RabbitMQ and MongoDB do.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from urllib.parse import urlparse

from shared.auth import DEV_PASSWORD, DEV_TOKEN, DEV_USER
from shared.migrate import migrate
from shared.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
#: Port of the embedded database when `make run` starts it.
EMBEDDED_MONGO_PORT = int(os.environ.get("TASKLIGHT_EMBEDDED_MONGO_PORT", "27017"))


#: The kernel's range of ephemeral ports: where outgoing connections get their local port.
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
#: The lowest port `free_port` hands out: above RabbitMQ's distribution ports (AMQP's + 20000,
#: 25672 and the test cluster's 25681-25683), which are fixed and may not be bound yet.
_LOWEST_PORT = 26000
#: Ports `free_port` handed out in this process: a server may not have bound its port yet.
_handed_out: set[int] = set()


def _ephemeral_floor() -> int:
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now, for a server about to start.

    Not one the kernel would pick (port 0): those are ephemeral ports, and any outgoing
    connection made between this look and the server's bind may take the same one as its local
    port (a test's server then failed with "address already in use"). So the port is drawn
    below the ephemeral range, and never twice in one process."""
    floor = _ephemeral_floor()
    draw = random.SystemRandom()
    for _ in range(100 if floor > _LOWEST_PORT else 0):
        port = draw.randrange(_LOWEST_PORT, floor)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    with socket.socket() as sock:  # no room below the ephemeral ports: the kernel's choice
        sock.bind(("127.0.0.1", 0))
        chosen: int = sock.getsockname()[1]
        return chosen


def wait_for_port(
    host: str, port: int, timeout_s: float, process: subprocess.Popen[bytes] | None = None
) -> None:
    """Return once `host:port` accepts connections; raise after `timeout_s` or if `process` dies."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listened on {host}:{port} within {timeout_s} s")


def reachable(url: str, default_port: int) -> bool:
    """Whether the host of `url` accepts TCP connections on its port."""
    parsed = urlparse(url)
    try:
        with socket.create_connection(
            (parsed.hostname or "127.0.0.1", parsed.port or default_port), timeout=2
        ):
            return True
    except OSError:
        return False


class PortTaken(RuntimeError):
    """The port a server is to listen on is in use already."""


class EmbeddedMongo:
    """A SecantusDB server process: a real MongoDB wire-protocol server with change streams."""

    def __init__(
        self, data_dir: Path, port: int | None = None, log_path: Path | None = None
    ) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.log_path = log_path or data_dir.parent / f"secantus-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Connection string for clients."""
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def start(self, timeout_s: float = 30.0) -> None:
        """Start the server and wait until it listens; raises `PortTaken` if another process
        listens on its port already (it would answer in the server's stead)."""
        if port_taken("127.0.0.1", self.port):
            raise PortTaken(
                f"port {self.port} is already in use by another process; set "
                "TASKLIGHT_EMBEDDED_MONGO_PORT to a free port, or MONGODB_URL to use that server"
            )
        executable = shutil.which(
            "secantusd-py", path=str(Path(sys.executable).parent)
        ) or shutil.which("secantusd-py")
        if executable is None:
            raise RuntimeError(
                "secantusd-py not found: install the project with its 'embedded' extra"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        # --sync-on-commit: without it, acknowledged writes are lost on a crash.
        self.process = subprocess.Popen(
            [
                executable,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--storage-path",
                str(self.data_dir),
                "--sync-on-commit",
                "--log-level",
                "WARNING",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_for_port("127.0.0.1", self.port, timeout_s, self.process)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """Kill the server at once, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


SERVICES = ("api", "worker", "notifier", "webhooks")


def start_service(
    name: str, env: dict[str, str], log_dir: Path | None = None, log_name: str | None = None
) -> subprocess.Popen[bytes]:
    """Start `python -m services.<name>` with `env`; output to `log_dir/<log_name or name>.log`."""
    out = None if log_dir is None else (log_dir / f"{log_name or name}.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", f"services.{name}"],
        env=env,
        cwd=ROOT,
        stdout=out,
        stderr=subprocess.STDOUT if out else None,
    )


#: Replica i (from 0) of the api and of the notifier listens on the configured port + i * this.
REPLICA_PORT_STRIDE = 10
DEFAULT_API_METRICS_PORT: int = Settings.model_fields["api_metrics_port"].default
DEFAULT_NOTIFIER_METRICS_PORT: int = Settings.model_fields["notifier_metrics_port"].default


def replica_ports(settings: Settings, replicas: int) -> list[tuple[int, int]]:
    """(api port, notifier port) of each of `replicas` replicas, from the configured ports up."""
    return [
        (
            settings.api_port + i * REPLICA_PORT_STRIDE,
            settings.notifier_port + i * REPLICA_PORT_STRIDE,
        )
        for i in range(replicas)
    ]


def replica_name(service: str, number: int, replicas: int) -> str:
    """A process's name: the service's, with the replica's number (from 1) when there are more."""
    return f"{service}-{number}" if replicas > 1 else service


def start_replicas(
    env: dict[str, str],
    ports: Sequence[tuple[int, int]],
    log_dir: Path | None = None,
    services: Sequence[str] = SERVICES,
) -> dict[str, subprocess.Popen[bytes]]:
    """Start an api, a worker, a notifier and a webhook sender per (api port, notifier port) in
    `ports` (or only the named `services` of each), all on
    the database and broker of `env`; the processes by name (`api`, or `api-1`, `api-2`, ...).

    Each api sends its pages to the notifier of its own replica, and every notifier accepts pages
    of every api (unless `TASKLIGHT_ALLOWED_ORIGINS` says otherwise). With more than one
    replica, a worker named in `env` gets its replica's number appended, so that names stay
    unique, and each worker's probes get a port of their own.
    """
    origins = env.get("TASKLIGHT_ALLOWED_ORIGINS") or ",".join(
        f"http://{host}:{api_port}" for api_port, _ in ports for host in ("127.0.0.1", "localhost")
    )
    worker_name = env.get("TASKLIGHT_WORKER_NAME")
    processes: dict[str, subprocess.Popen[bytes]] = {}
    for number, (api_port, notifier_port) in enumerate(ports, 1):
        replica_env = {
            **env,
            "TASKLIGHT_API_PORT": str(api_port),
            "TASKLIGHT_NOTIFIER_PORT": str(notifier_port),
            "TASKLIGHT_ALLOWED_ORIGINS": origins,
        }
        if len(ports) > 1:
            if worker_name:
                replica_env["TASKLIGHT_WORKER_NAME"] = f"{worker_name}-{number}"
            # Each worker's probes need a port of their own: the configured one plus the
            # stride, or else any free one (0).
            probes = int(env.get("TASKLIGHT_WORKER_PORT") or 0)
            probe_port = probes + (number - 1) * REPLICA_PORT_STRIDE if probes else 0
            replica_env["TASKLIGHT_WORKER_PORT"] = str(probe_port)
            # And each api's metrics port likewise.
            metrics = int(env.get("TASKLIGHT_API_METRICS_PORT") or DEFAULT_API_METRICS_PORT)
            metrics_port = metrics + (number - 1) * REPLICA_PORT_STRIDE if metrics else 0
            replica_env["TASKLIGHT_API_METRICS_PORT"] = str(metrics_port)
            # And each notifier's.
            pushes = int(
                env.get("TASKLIGHT_NOTIFIER_METRICS_PORT") or DEFAULT_NOTIFIER_METRICS_PORT
            )
            push_port = pushes + (number - 1) * REPLICA_PORT_STRIDE if pushes else 0
            replica_env["TASKLIGHT_NOTIFIER_METRICS_PORT"] = str(push_port)
            # And each webhook sender's probes likewise.
            senders = int(env.get("TASKLIGHT_WEBHOOKS_PORT") or 0)
            sender_port = senders + (number - 1) * REPLICA_PORT_STRIDE if senders else 0
            replica_env["TASKLIGHT_WEBHOOKS_PORT"] = str(sender_port)
        for name in services:
            process_name = replica_name(name, number, len(ports))
            processes[process_name] = start_service(name, replica_env, log_dir, process_name)
    return processes


#: Seconds a stopping worker may take beyond `shutdown_grace_s`: its broker connection waits that
#: much longer for handlers (`graceful_timeout` in services/worker/app.py) before it closes.
WORKER_STOP_MARGIN_S = 5.0
#: Seconds the launcher waits beyond that before it kills a worker (a slow machine).
WORKER_KILL_SLACK_S = 5.0
#: Seconds the launcher gives any other service to stop.
SERVICE_STOP_S = 10.0


def stop_timeout_s(name: str, settings: Settings) -> float:
    """Seconds the launcher lets the process `name` (`api`, `worker`, `worker-2`, ...) stop
    after SIGTERM before it kills it. A worker gets more than its own grace and its broker's
    margin, so that its running tasks finish or are handed back, never killed."""
    if name.split("-", 1)[0] == "worker":
        return settings.shutdown_grace_s + WORKER_STOP_MARGIN_S + WORKER_KILL_SLACK_S
    return SERVICE_STOP_S


def stop_stack(
    processes: dict[str, subprocess.Popen[bytes]],
    settings: Settings,
    say: Callable[[str], None] = print,
) -> None:
    """SIGTERM every process, say what it waits for, and wait for each up to its
    `stop_timeout_s`; kill (and say so) one that outstays it."""
    running = {name: p for name, p in processes.items() if p.poll() is None}
    for process in running.values():
        process.terminate()
    workers = sorted(n for n in running if n.split("-", 1)[0] == "worker")
    if workers:
        say(
            f"stopping: waiting up to {stop_timeout_s(workers[0], settings):.0f} s for "
            f"{', '.join(workers)} to finish running tasks (grace "
            f"{settings.shutdown_grace_s:g} s) or hand them back to the queue"
        )
    started = time.monotonic()
    for name, process in running.items():
        left_s = max(0.0, started + stop_timeout_s(name, settings) - time.monotonic())
        try:
            process.wait(left_s)
        except subprocess.TimeoutExpired:
            say(f"{name} did not stop within {stop_timeout_s(name, settings):.0f} s; killing it")
            process.kill()
            process.wait()


def port_taken(host: str, port: int) -> bool:
    """Whether something listens on `host:port` already (binding it fails)."""
    with socket.socket() as sock:
        # Lingering connections of a server that just stopped do not count as taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def taken_ports(wanted: Sequence[tuple[str, str, int]]) -> list[str]:
    """Which of (what, host, port) cannot be listened on, each as a line saying so."""
    return [
        f"{what}: {host}:{port} is already in use by another process"
        for what, host, port in wanted
        if port_taken(host, port)
    ]


def stop_processes(processes: Iterable[subprocess.Popen[bytes]], timeout_s: float = 15.0) -> None:
    """SIGTERM every process that runs, then wait for each; SIGKILL one that outstays
    `timeout_s`."""
    processes = list(processes)
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def addresses(settings: Settings, ports: Sequence[tuple[int, int]]) -> str:
    """What `main` prints once everything listens: where to open each replica."""
    if len(ports) == 1:
        api_port, notifier_port = ports[0]
        return (
            "\ntasklight is running.\n"
            f"  web UI and REST API  http://{settings.api_host}:{api_port}/\n"
            f"  OpenAPI              http://{settings.api_host}:{api_port}/docs\n"
            f"  WebSocket push       ws://{settings.notifier_host}:{notifier_port}/ws\n"
            "Ctrl-C stops everything.\n"
        )
    lines = [f"\ntasklight is running: {len(ports)} of each service, one database, one broker."]
    for number, (api_port, notifier_port) in enumerate(ports, 1):
        lines += [
            f"  replica {number}",
            f"    web UI and REST API  http://{settings.api_host}:{api_port}/",
            f"    WebSocket push       ws://{settings.notifier_host}:{notifier_port}/ws",
        ]
    lines += [
        "  Any api takes any request (sessions and tokens live in MongoDB), any worker runs any",
        "  task (one queue), and every notifier pushes every change (each follows the change",
        "  stream). A task's page shows which worker ran it.",
        "Ctrl-C stops everything.\n",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the stack until Ctrl-C; the exit status says whether it ran."""
    parser = argparse.ArgumentParser(prog="python -m services.stack", description=__doc__)
    parser.add_argument(
        "--replicas", type=int, default=1, help="how many of each service to run (default 1)"
    )
    replicas: int = parser.parse_args(argv).replicas
    if replicas < 1:
        parser.error("--replicas must be at least 1")
    # `make run` is for trying tasklight out: development mode, with its built-in user, and log
    # lines for people rather than collectors, unless the environment says otherwise.
    os.environ.setdefault("TASKLIGHT_DEV_MODE", "true")
    os.environ.setdefault("TASKLIGHT_BUILTIN_TASKS", "true")
    os.environ.setdefault("TASKLIGHT_LOG_FORMAT", "text")
    # Trying webhooks out means a receiver on this machine: allowed here, never by default.
    os.environ.setdefault("TASKLIGHT_WEBHOOK_ALLOW_LOOPBACK", "true")
    settings = Settings()
    env = dict(os.environ)
    mongo: EmbeddedMongo | None = None
    if "MONGODB_URL" not in os.environ:
        mongo = EmbeddedMongo(ROOT / ".data" / "secantus", port=EMBEDDED_MONGO_PORT)
        print(
            f"starting the embedded database (SecantusDB) on 127.0.0.1:{mongo.port}"
            " (data in .data/secantus)"
        )
        try:
            mongo.start()
        except PortTaken as exc:
            print(f"cannot start the embedded database: {exc}")
            return 1
        except Exception as exc:
            print(f"could not start the embedded database: {exc} (see {mongo.log_path})")
            return 1
        env["MONGODB_URL"] = mongo.url
    if not any(reachable(address, 5672) for address in settings.amqp_addresses()):
        print(
            f"RabbitMQ is not reachable at {settings.amqp_url}.\n"
            "Start one with `rabbitmq-server -detached` (Debian's rabbitmq-server package), or\n"
            "`docker run -d -p 5672:5672 rabbitmq:4-management`, or point AMQP_URL at yours."
        )
        if mongo:
            mongo.stop()
        return 1
    try:
        done = asyncio.run(migrate(Settings(mongodb_url=env["MONGODB_URL"]) if mongo else settings))
    except Exception as exc:
        print(f"could not migrate the database: {exc}")
        if mongo:
            mongo.stop()
        return 1
    print("database migrated: " + ("; ".join(done) if done else "up to date"))
    ports = replica_ports(settings, replicas)
    taken = taken_ports(
        [("api", settings.api_host, api_port) for api_port, _ in ports]
        + [("notifier", settings.notifier_host, notifier_port) for _, notifier_port in ports]
    )
    if taken:
        hint = "set TASKLIGHT_API_PORT and TASKLIGHT_NOTIFIER_PORT to free ports"
        print("\n".join(["cannot start:", *taken, hint]))
        if mongo:
            mongo.stop()
        return 1
    processes = start_replicas(env, ports)
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        for number, (api_port, notifier_port) in enumerate(ports, 1):
            api = processes[replica_name("api", number, replicas)]
            wait_for_port(settings.api_host, api_port, 30, api)
            notifier = processes[replica_name("notifier", number, replicas)]
            wait_for_port(settings.notifier_host, notifier_port, 30, notifier)
        if settings.dev_mode:
            print(
                "\nDEVELOPMENT MODE (TASKLIGHT_DEV_MODE=true): the built-in user is accepted.\n"
                f"  sign in as           {DEV_USER} / {DEV_PASSWORD}\n"
                f"  API token            {DEV_TOKEN}\n"
                "  e.g. curl -H 'Authorization: Bearer <token>' .../api/v1/tasks\n"
                "Never run a deployment like this: create users with `tasklight-server users`.",
            )
        print(addresses(settings, ports), flush=True)
        while not stopping:
            dead = [n for n, p in processes.items() if p.poll() is not None]
            if dead:
                print(f"service {', '.join(dead)} exited; stopping the others")
                return 1
            time.sleep(0.2)
        return 0
    except Exception as exc:
        print(f"start-up failed: {exc}")
        return 1
    finally:
        stop_stack(processes, settings)
        if mongo:
            mongo.stop()
        print("stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
