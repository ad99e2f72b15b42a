"""What every way of deploying tasklight must get right, shared by the compose and Kubernetes tests.

Each helper reads the services' own code or settings, so a deployment file is checked against what
the services really read and serve, not against a copy of it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any, cast
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import pytest
from starlette.routing import Match
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request

from services.api.app import create_app
from services.api.ui import UiSettings
from services.notifier.app import Notifier
from shared.probes import ProbeServer
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
#: The gateway of docker-compose.yml: one origin for the UI, the API and the WebSocket.
CADDYFILE = ROOT / "deploy" / "gateway" / "Caddyfile"
#: Seconds a command-line check (docker-compose config, caddy adapt) may take.
TOOL_TIMEOUT_S = 60

#: Variables a service reads besides `TASKLIGHT_<field>` of its settings classes, and who reads it.
OTHER_VARIABLES = {
    "MONGODB_URL": "Settings.mongodb_url",
    "AMQP_URL": "Settings.amqp_url",
}
#: Seconds a stopping worker may take beyond `shutdown_grace_s`: the worker's broker waits that
#: much longer for its handlers (`graceful_timeout=shutdown_grace_s + 5` in services/worker/app.py),
#: then it closes its connections.
WORKER_STOP_MARGIN_S = 5.0
#: The services with the setting prefix of their address (`TASKLIGHT_<PREFIX>_HOST`,
#: `TASKLIGHT_<PREFIX>_PORT`).
SERVICE_PREFIXES = {
    "api": "API",
    "worker": "WORKER",
    "notifier": "NOTIFIER",
    "webhooks": "WEBHOOKS",
}


def service_variables() -> frozenset[str]:
    """Every environment variable some tasklight service reads."""
    fields = set(Settings.model_fields) | set(UiSettings.model_fields)
    named = {f"TASKLIGHT_{field.upper()}" for field in fields}
    return frozenset(named | set(OTHER_VARIABLES))


def unknown_variables(names: Iterable[str]) -> list[str]:
    """The names no service reads: typos, or settings that were renamed or removed."""
    known = service_variables()
    return sorted(name for name in names if name not in known)


def settings_from(env: Mapping[str, str]) -> Settings:
    """The settings a service gets from exactly `env` (not from this test's environment)."""
    with mock.patch.dict(os.environ, dict(env), clear=True):
        return Settings()


def ui_settings_from(env: Mapping[str, str]) -> UiSettings:
    """The UI's settings from exactly `env`."""
    with mock.patch.dict(os.environ, dict(env), clear=True):
        return UiSettings()


def worker_stop_s(settings: Settings) -> float:
    """The longest a worker with these settings may take to stop gracefully after SIGTERM."""
    return settings.shutdown_grace_s + WORKER_STOP_MARGIN_S


def metrics_port(name: str, settings: Settings) -> int:
    """The port the service `name` serves /metrics on: the api's and the notifier's own metrics
    ports (users reach their service ports), else the service's port."""
    if name == "api":
        return settings.api_metrics_port
    if name == "notifier":
        return settings.notifier_metrics_port
    return service_port(name, settings)


async def serves_metrics(service: str, path: str) -> bool:
    """Whether the service answers GET `path` on its metrics port."""
    if service in ("api", "notifier"):  # each serves its metrics with the probe server
        status, _, _ = await ProbeServer("127.0.0.1", 0, {})._answer("GET", path)
        return status != HTTPStatus.NOT_FOUND
    return await answers(service, path)


def service_port(name: str, settings: Settings) -> int:
    """The port the service `name` listens on with these settings."""
    port: int = getattr(settings, f"{SERVICE_PREFIXES[name].lower()}_port")
    return port


def mongo_url_problem(url: str, replica_set: str | None = None) -> str | None:
    """Why the services could not follow change streams with this MongoDB URL (None: they can).
    Change streams need a replica set, which the driver discovers only without directConnection."""
    query = parse_qs(urlsplit(url).query)
    named = query.get("replicaSet")
    if not named:
        return f"{url!r} names no replicaSet"
    if replica_set is not None and named != [replica_set]:
        return f"{url!r} names replica set {named[0]!r}, not {replica_set!r}"
    if "directConnection" in query:
        return f"{url!r}: directConnection hides the replica set"
    return None


def interpolate(value: str, env: Mapping[str, str] | None = None) -> str:
    """A compose value with `${NAME}`, `${NAME:-default}` and `${NAME-default}` filled in from
    `env` (by default empty: what `docker compose up` does with nothing set)."""
    env = env or {}

    def fill(match: re.Match[str]) -> str:
        name, colon, default = match.group(1), match.group(2), match.group(3) or ""
        if name in env and (env[name] or not colon):
            return env[name]
        return default

    return re.sub(r"\$\{(\w+)(?:(:?)-([^}]*))?\}", fill, value)


async def answers(service: str, path: str) -> bool:
    """Whether the service `service` answers GET `path` itself (anything but 404), asked of its
    own code: the api's routes, the notifier's handshake hook, the worker's probe server."""
    if service == "api":
        return _api_routes(path)
    if service == "notifier":
        notifier = Notifier(settings_from({}))
        try:
            request = Request(path, Headers())
            response = notifier._process_request(cast(ServerConnection, None), request)
        finally:
            await notifier.store.close()
        # None: the handshake goes on (the WebSocket path); else the plain HTTP answer.
        return response is None or response.status_code != HTTPStatus.NOT_FOUND
    if service in ("worker", "webhooks"):
        # The webhook sender serves the same probe server, with its own metrics.
        status, _, _ = await ProbeServer("127.0.0.1", 0, {})._answer("GET", path)
        return status != HTTPStatus.NOT_FOUND
    raise ValueError(f"no service {service!r}")


def _api_routes(path: str) -> bool:
    app = create_app(settings_from({}))
    scope = {"type": "http", "method": "GET", "path": path, "root_path": ""}
    return any(route.matches(scope)[0] is Match.FULL for route in app.routes)


def required_tool(name: str, package: str) -> str:
    """The path of a command-line tool a test needs: skipped on a laptop without it, a failure
    under CI (which installs it)."""
    path = shutil.which(name)
    if path is None:
        reason = f"{name} is not installed (apt-get install {package})"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@dataclass(frozen=True)
class GatewayRoute:
    """One route of the gateway: the paths it matches (None: every path) and where it proxies."""

    paths: frozenset[str] | None
    upstream: str


@dataclass(frozen=True)
class Gateway:
    """The gateway's configuration as Caddy itself reads it."""

    listen: tuple[str, ...]
    routes: tuple[GatewayRoute, ...]

    def upstream_for(self, path: str) -> str:
        """Where a request for exactly `path` goes: the first route that matches it."""
        for route in self.routes:
            if route.paths is None or path in route.paths:
                return route.upstream
        raise AssertionError(f"the gateway routes {path} nowhere")


def gateway(env: Mapping[str, str] | None = None) -> Gateway:
    """deploy/gateway/Caddyfile adapted by Caddy to its JSON configuration, with `env` for the
    file's `{$NAME:default}` placeholders (by default none: compose's defaults)."""
    done = subprocess.run(
        [required_tool("caddy", "caddy"), "adapt", "--config", str(CADDYFILE)],
        env={"PATH": os.environ.get("PATH", ""), **(env or {})},
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, f"caddy does not accept the Caddyfile:\n{done.stderr}"
    config = json.loads(done.stdout)
    (server,) = config["apps"]["http"]["servers"].values()
    routes = tuple(
        GatewayRoute(_route_paths(route), _upstream(route)) for route in server["routes"]
    )
    return Gateway(tuple(server["listen"]), routes)


def _route_paths(route: dict[str, Any]) -> frozenset[str] | None:
    matchers = route.get("match")
    if not matchers:
        return None
    assert all(set(matcher) == {"path"} for matcher in matchers), f"unexpected match {matchers}"
    return frozenset(path for matcher in matchers for path in matcher["path"])


def _upstream(route: dict[str, Any]) -> str:
    """The one upstream a route (or its subroute) proxies to."""
    for handler in route.get("handle", []):
        if handler["handler"] == "reverse_proxy":
            (upstream,) = handler["upstreams"]
            dial: str = upstream["dial"]
            return dial
        if handler["handler"] == "subroute":
            (inner,) = handler["routes"]
            return _upstream(inner)
    raise AssertionError(f"route {route} proxies nowhere")
