"""A RabbitMQ cluster of three nodes on this machine, for the fault tests.

Each node is Debian's `rabbitmq-server`, run as the `rabbitmq` user (when the tests run as root),
with a name, AMQP port, distribution port and data directory of its own, all sharing one Erlang
cookie. All boot at once; then the others stop their app and, one after the other,
`rabbitmqctl join_cluster` the first and start again. No plugins are enabled.

The nodes listen on 127.0.0.1 only, on ports of their own (5681-5683, distribution 25681-25683 by
default): the machine's own node, `rabbit@localhost` on 5672, is never touched.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Where Debian keeps the real scripts (`/usr/sbin/rabbitmq-server` is a wrapper that switches
#: user and redirects the output to /var/log, which a test's nodes must not share).
DEBIAN_SCRIPTS = Path("/usr/lib/rabbitmq/bin")
NODE_PREFIX = "tasklight-cluster-"
#: Seconds a node gets to boot, or a CLI command to answer.
BOOT_TIMEOUT_S = 120
#: What every node is configured with: its own listener alone (the machine's config file, which
#: binds 5672, is not read); peers that stop answering given up after 10 s rather than 60 (until
#: a silent node is given up, declarations anywhere in the cluster wait for it, and with them
#: every client reconnecting elsewhere); and partitions healed by restarting the losing side
#: (`autoheal`: a node that was paused never saw itself in a minority, so `pause_minority`
#: would leave it partitioned until restarted by hand).
NODE_CONFIG = """\
listeners.tcp.default = 127.0.0.1:{amqp_port}
cluster_partition_handling = autoheal
net_ticktime = {net_ticktime_s}
loopback_users.guest = true
"""
#: Seconds without a word after which the nodes give up a peer (RabbitMQ's default: 60).
NET_TICKTIME_S = 10


def scripts_dir() -> Path | None:
    """The directory of `rabbitmq-server` and `rabbitmqctl`, or None without RabbitMQ."""
    if (DEBIAN_SCRIPTS / "rabbitmq-server").exists():
        return DEBIAN_SCRIPTS
    found = shutil.which("rabbitmq-server")
    return Path(found).resolve().parent if found else None


def port_taken(port: int) -> bool:
    """Whether something listens on 127.0.0.1:`port`."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class Node:
    """One node of the cluster."""

    number: int
    amqp_port: int
    dist_port: int
    directory: Path
    #: The `rabbitmq-server` script; the node's Erlang VM is its child.
    process: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        """The Erlang node name, e.g. `tasklight-cluster-1@localhost`."""
        return f"{NODE_PREFIX}{self.number}@localhost"

    @property
    def url(self) -> str:
        """The node's AMQP address."""
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    @property
    def vm_pid(self) -> int | None:
        """The pid of the node's Erlang VM (`beam.smp`), None if it does not run."""
        if self.process is None or self.process.poll() is not None:
            return None
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            pids = [int(pid) for pid in children.read_text().split()]
        except OSError:
            return None
        for pid in pids:
            try:
                if "beam" in Path(f"/proc/{pid}/comm").read_text():
                    return pid
            except OSError:
                continue
        return None


@dataclass
class RabbitCluster:
    """Three (or `size`) RabbitMQ nodes forming one cluster; `start()` it, `stop()` it."""

    directory: Path
    size: int = 3
    amqp_port: int = 5681
    dist_port: int = 25681
    scripts: Path = field(default_factory=lambda: scripts_dir() or DEBIAN_SCRIPTS)
    nodes: list[Node] = field(init=False)
    #: Seconds the last `start()` took, from the first process to a cluster of all nodes.
    started_in_s: float = 0.0

    def __post_init__(self) -> None:
        self.nodes = [
            Node(
                number,
                self.amqp_port + number - 1,
                self.dist_port + number - 1,
                self.directory / f"node-{number}",
            )
            for number in range(1, self.size + 1)
        ]
        self._cookie = secrets.token_hex(16)
        self._user = _node_user()

    @property
    def amqp_url(self) -> str:
        """Every node's address, comma separated, as `AMQP_URL` takes them."""
        return ",".join(node.url for node in self.nodes)

    def node(self, name: str) -> Node:
        """The node called `name`."""
        return next(node for node in self.nodes if node.name == name)

    # -- starting and stopping -----------------------------------------------------------------

    def start(self) -> float:
        """Start every node and form the cluster; the seconds it took."""
        for node in self.nodes:
            for port in (node.amqp_port, node.dist_port):
                if port_taken(port):
                    raise RuntimeError(
                        f"port {port} is taken: another test session's cluster, or a node "
                        "left behind (see tests/support/cluster.py for the ports)"
                    )
        started = time.monotonic()
        self._prepare()
        first, *others = self.nodes
        for node in self.nodes:
            self._spawn(node)
        self.await_startup(first)
        # The joiners stop at once, but join one after the other: two nodes joining at the same
        # moment can fail to start mnesia.
        with ThreadPoolExecutor(len(others) or 1) as pool:
            list(pool.map(self._stop_app, others))
        for node in others:
            self.ctl(node, "join_cluster", first.name)
            self.ctl(node, "start_app")
            self.await_startup(node)
        self.started_in_s = time.monotonic() - started
        return self.started_in_s

    def _prepare(self) -> None:
        if self.directory.exists():
            shutil.rmtree(self.directory)
        self.directory.mkdir(parents=True)
        cookie = self.directory / ".erlang.cookie"
        cookie.write_text(self._cookie)
        cookie.chmod(0o400)
        (self.directory / "enabled_plugins").write_text("[].\n")
        (self.directory / "rabbitmq-env.conf").write_text("")
        for node in self.nodes:
            node.directory.mkdir()
            (node.directory / "rabbitmq.conf").write_text(
                NODE_CONFIG.format(amqp_port=node.amqp_port, net_ticktime_s=NET_TICKTIME_S)
            )
        if self._user is not None:
            uid, gid = self._user
            for path in [self.directory, *self.directory.rglob("*")]:
                os.chown(path, uid, gid)

    def _env(self, node: Node | None = None) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            # The cookie is read from $HOME: the cluster's own, not the machine node's.
            "HOME": str(self.directory),
            "LANG": "C.UTF-8",
            "LC_ALL": "C.UTF-8",
            "RABBITMQ_CONF_ENV_FILE": str(self.directory / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.directory / "enabled_plugins"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }
        if node is not None:
            env |= {
                "RABBITMQ_NODENAME": node.name,
                "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
                "RABBITMQ_NODE_PORT": str(node.amqp_port),
                "RABBITMQ_DIST_PORT": str(node.dist_port),
                "RABBITMQ_MNESIA_BASE": str(node.directory / "mnesia"),
                "RABBITMQ_LOG_BASE": str(node.directory / "log"),
                "RABBITMQ_CONFIG_FILE": str(node.directory / "rabbitmq.conf"),
                # Distribution on the loopback interface only.
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": (
                    "-kernel inet_dist_use_interface {127,0,0,1}"
                ),
            }
        return env

    def _popen_user(self) -> dict[str, Any]:
        if self._user is None:
            return {}
        uid, gid = self._user
        return {"user": uid, "group": gid, "extra_groups": []}

    def _spawn(self, node: Node) -> None:
        env = self._env(node)
        out = (node.directory / "server.log").open("ab")
        node.process = subprocess.Popen(
            [str(self.scripts / "rabbitmq-server")],
            env=env,
            cwd=self.directory,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            **self._popen_user(),
        )
        out.close()

    def _stop_app(self, node: Node) -> None:
        self.await_startup(node)
        self.ctl(node, "stop_app")

    def _until_serving(self, node: Node) -> None:
        # A node opens its AMQP listener last, once it has booted (and rejoined its cluster):
        # watching the port costs nothing, where each CLI command starts an Erlang VM.
        deadline = time.monotonic() + BOOT_TIMEOUT_S
        while not port_taken(node.amqp_port):
            if node.process is not None and node.process.poll() is not None:
                raise RuntimeError(f"{node.name} exited; see {node.directory}/server.log")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{node.name} did not start within {BOOT_TIMEOUT_S} s")
            time.sleep(0.1)

    def await_startup(self, node: Node) -> None:
        """Wait until `node` has booted RabbitMQ and serves AMQP."""
        self._until_serving(node)

    def stop(self) -> None:
        """Kill every node and remove the cluster's files (its data is of no further use)."""
        for node in self.nodes:
            self.kill(node)
        shutil.rmtree(self.directory, ignore_errors=True)

    # -- faults ----------------------------------------------------------------------------------

    def kill(self, node: Node) -> None:
        """SIGKILL the node's VM, as a crash or the OOM killer would; wait until it is gone."""
        pid = node.vm_pid
        if pid is not None:
            os.kill(pid, signal.SIGKILL)
        if node.process is not None:
            # The script exits once its VM has.
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.process.wait(30)
            if node.process.poll() is None:
                node.process.kill()
                node.process.wait()
        node.process = None

    def pause(self, node: Node) -> None:
        """SIGSTOP the node's VM: it keeps its sockets open but answers nothing."""
        os.kill(self._running_pid(node), signal.SIGSTOP)

    def resume(self, node: Node) -> None:
        """SIGCONT a paused node."""
        os.kill(self._running_pid(node), signal.SIGCONT)

    def restart(self, node: Node) -> None:
        """Start a killed node again on its own data; it rejoins the cluster by itself."""
        assert node.process is None, f"{node.name} still runs"
        self._spawn(node)
        self.await_startup(node)

    def _running_pid(self, node: Node) -> int:
        pid = node.vm_pid
        if pid is None:
            raise RuntimeError(f"{node.name} does not run")
        return pid

    # -- asking the cluster ---------------------------------------------------------------------

    def ctl(self, node: Node, *args: str, timeout_s: float = BOOT_TIMEOUT_S) -> str:
        """Run `rabbitmqctl -n NODE ARGS`; its output. Raises if it fails."""
        return self._cli("rabbitmqctl", node, *args, timeout_s=timeout_s)

    def _cli(self, tool: str, node: Node, *args: str, timeout_s: float) -> str:
        done = subprocess.run(
            [str(self.scripts / tool), "-n", node.name, *args],
            env=self._env(),
            cwd=self.directory,
            capture_output=True,
            timeout=timeout_s,
            check=False,
            **self._popen_user(),
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{tool} -n {node.name} {' '.join(args)} failed ({done.returncode}):"
                f" {done.stderr.decode(errors='replace')}{done.stdout.decode(errors='replace')}"
            )
        output: str = done.stdout.decode()
        return output

    def queues(self, asking: Node | None = None) -> list[dict[str, Any]]:
        """Every queue with its type, leader, members and online members (`list_queues`)."""
        node = asking or self.any_running()
        out = self.ctl(
            node,
            "list_queues",
            "name",
            "type",
            "leader",
            "members",
            "online",
            "--formatter",
            "json",
            "--quiet",
            timeout_s=60,
        )
        found: list[dict[str, Any]] = json.loads(out)
        return found

    def queue(self, name: str, asking: Node | None = None) -> dict[str, Any]:
        """One queue's entry of `queues()`."""
        for entry in self.queues(asking):
            if entry["name"] == name:
                return entry
        raise LookupError(f"no queue {name!r} in the cluster")

    def leader(self, queue: str, asking: Node | None = None) -> Node:
        """The node that leads quorum queue `queue` now."""
        return self.node(self.queue(queue, asking)["leader"])

    def running_nodes(self, asking: Node | None = None) -> set[str]:
        """The node names the cluster counts as running, as `asking` sees it."""
        node = asking or self.any_running()
        status = json.loads(
            self.ctl(node, "cluster_status", "--formatter", "json", "--quiet", timeout_s=60)
        )
        return set(status["running_nodes"])

    def any_running(self, but: Node | None = None) -> Node:
        """A node whose VM runs, other than `but`."""
        for node in self.nodes:
            if node is not but and node.vm_pid is not None:
                return node
        raise RuntimeError("no node of the cluster runs")


def _node_user() -> tuple[int, int] | None:
    """The `rabbitmq` user's ids when the tests run as root (nodes never run as root)."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("rabbitmq")
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid


def cluster_directory() -> Path:
    """Where a session's cluster keeps its files: under /tmp, where the `rabbitmq` user can
    reach it (pytest's own temporary directories are private to the user running the tests)."""
    return Path("/tmp") / f"tasklight-cluster-{os.getpid()}"
