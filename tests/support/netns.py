"""A network namespace on this machine, joined to the host by a veth pair, for a process that a
test cuts off from the network and later lets back on.

`NetworkNamespace.create()` makes the namespace (`ip netns add`), a veth pair with one end in it,
and addresses on a private /30 (host end .1, namespace end .2); `cut()` takes the host end down
(`ip link set ... down`), as a pulled cable would: nothing is closed, packets just stop, and new
connections fail; `restore()` brings it up again. A process runs inside with `command()`
(`ip netns exec`). The host's servers listen on its loopback, which a namespace cannot reach:
`relay()` puts a TCP relay (tests/support/relay.py) for one of them on the host end's address.

It needs root and iproute2; `unavailable()` says why not, for the tests to skip (or fail in CI).
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.relay import TcpRelay

ROOT = Path(__file__).resolve().parents[2]
#: The private range the /30s are taken from, one per namespace.
SUBNETS = ipaddress.IPv4Network("10.231.0.0/16")
#: Seconds an `ip` command may take.
IP_TIMEOUT_S = 30


def unavailable() -> str | None:
    """Why this machine cannot make network namespaces, or None if it can."""
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2): cannot make a network namespace"
    if os.geteuid() != 0:
        return "not root: cannot make a network namespace"
    probe = f"tasklight-probe-{os.getpid()}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, check=False)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.decode(errors='replace').strip()}"
    subprocess.run(["ip", "netns", "delete", probe], capture_output=True, check=False)
    return None


def ip(*args: str) -> str:
    """Run `ip ARGS`; its output. Raises if it fails."""
    done = subprocess.run(
        ["ip", *args], capture_output=True, timeout=IP_TIMEOUT_S, check=False, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout


def free_subnet() -> ipaddress.IPv4Network:
    """A /30 of `SUBNETS` that no interface of the host uses, starting from one the process id
    picks (so that sessions side by side start apart)."""
    used = [
        ipaddress.IPv4Interface(word).network
        for line in ip("-4", "-o", "addr", "show").splitlines()
        for before, word in zip(line.split(), line.split()[1:], strict=False)
        if before == "inet"
    ]
    candidates: list[ipaddress.IPv4Network] = list(SUBNETS.subnets(new_prefix=30))
    start = os.getpid() % len(candidates)
    for offset in range(len(candidates)):
        subnet = candidates[(start + offset) % len(candidates)]
        if not any(subnet.overlaps(network) for network in used):
            return subnet
    raise RuntimeError(f"no free /30 left in {SUBNETS}")


@dataclass
class NetworkNamespace:
    """One namespace and its veth pair; `create()` it, `delete()` it."""

    name: str
    subnet: ipaddress.IPv4Network = field(default_factory=free_subnet)
    relays: list[TcpRelay] = field(default_factory=list)

    @property
    def host_end(self) -> str:
        """The veth end on the host (interface names are at most 15 characters)."""
        return f"tlh{os.getpid() % 100000}{self.name[-3:]}"[:15]

    @property
    def inner_end(self) -> str:
        """The veth end inside the namespace."""
        return f"tln{os.getpid() % 100000}{self.name[-3:]}"[:15]

    @property
    def host_address(self) -> str:
        """The host end's address: what a process inside reaches the host at."""
        return str(self.subnet.network_address + 1)

    @property
    def inner_address(self) -> str:
        """The namespace end's address."""
        return str(self.subnet.network_address + 2)

    def create(self) -> NetworkNamespace:
        """Make the namespace, the veth pair and their addresses, all up."""
        ip("netns", "add", self.name)
        try:
            ip("link", "add", self.host_end, "type", "veth", "peer", "name", self.inner_end)
            ip("link", "set", self.inner_end, "netns", self.name)
            ip("addr", "add", f"{self.host_address}/30", "dev", self.host_end)
            ip("link", "set", self.host_end, "up")
            inside = ("netns", "exec", self.name, "ip")
            ip(*inside, "addr", "add", f"{self.inner_address}/30", "dev", self.inner_end)
            ip(*inside, "link", "set", self.inner_end, "up")
            ip(*inside, "link", "set", "lo", "up")
        except BaseException:
            self._remove()
            raise
        return self

    async def relay(self, target_host: str, target_port: int) -> TcpRelay:
        """A relay on the host end's address to a server of the host; stopped by `delete`."""
        relay = await TcpRelay(target_host, target_port, listen_host=self.host_address).start()
        self.relays.append(relay)
        return relay

    def cut(self) -> None:
        """Take the link down: packets stop both ways, and nothing is closed."""
        ip("link", "set", self.host_end, "down")

    def restore(self) -> None:
        """Bring the link up again."""
        ip("link", "set", self.host_end, "up")

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def start_service(
        self, name: str, env: dict[str, str], log_dir: Path
    ) -> subprocess.Popen[bytes]:
        """`python -m services.<name>` inside the namespace, output to `log_dir/<name>.log`
        (`ip netns exec` runs it in place of itself, so the pid is the service's)."""
        out = (log_dir / f"{name}.log").open("ab")
        try:
            return subprocess.Popen(
                self.command([sys.executable, "-m", f"services.{name}"]),
                env=env,
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        finally:
            out.close()

    def run(self, argv: Sequence[str], timeout_s: float = 30) -> str:
        """Run `argv` inside the namespace; its output. Raises if it fails."""
        done = subprocess.run(
            self.command(argv), capture_output=True, timeout=timeout_s, check=False, text=True
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} in {self.name} failed: {done.stderr.strip()}")
        return done.stdout

    async def delete(self) -> None:
        """Stop the relays and remove the namespace (which removes the veth pair with it)."""
        for relay in self.relays:
            await relay.stop()
        self.relays.clear()
        self._remove()

    def _remove(self) -> None:
        subprocess.run(["ip", "netns", "delete", self.name], capture_output=True, check=False)
        subprocess.run(["ip", "link", "delete", self.host_end], capture_output=True, check=False)
