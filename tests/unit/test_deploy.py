"""The compose file and the images: what `docker compose up` relies on, checked without Docker.

The rules every deployment shares (real settings, probed paths, the worker's stop time) live in
tests/support/deployment.py; tests/unit/test_k8s.py holds the Kubernetes manifests to the same ones.
"""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest
import yaml

from shared.settings import Settings
from tests.support.deployment import (
    CADDYFILE,
    ROOT,
    SERVICE_PREFIXES,
    TOOL_TIMEOUT_S,
    answers,
    gateway,
    interpolate,
    mongo_url_problem,
    required_tool,
    service_port,
    settings_from,
    ui_settings_from,
    unknown_variables,
    worker_stop_s,
)

COMPOSE_FILE = ROOT / "docker-compose.yml"
APP_SERVICES = ("api", "worker", "notifier", "webhooks")
BACKENDS = ("rabbitmq", "mongo")
GATEWAY = "gateway"
#: Compose's units of a duration such as `stop_grace_period: 1m30s`, in seconds.
DURATION_UNITS_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 0.000001}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """The compose file as parsed YAML (anchors and merge keys resolved)."""
    loaded = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict), "docker-compose.yml is not a mapping"
    return loaded


def service(compose: dict[str, Any], name: str) -> dict[str, Any]:
    """One service's definition; fails the test when the service is missing."""
    services = compose.get("services") or {}
    assert name in services, f"docker-compose.yml has no service {name!r}"
    definition = services[name]
    assert isinstance(definition, dict)
    return definition


def environment(definition: dict[str, Any]) -> dict[str, str]:
    """A service's environment, whether written as a mapping or as a list of `KEY=value`, as
    written (`${NAME:-default}` left in)."""
    raw = definition.get("environment") or {}
    if isinstance(raw, list):
        return dict(str(item).partition("=")[::2] for item in raw)
    return {str(key): str(value) for key, value in raw.items()}


def service_settings(compose: dict[str, Any], name: str) -> Settings:
    """The settings an app service starts with when nothing is set around compose."""
    env = {key: interpolate(value) for key, value in environment(service(compose, name)).items()}
    return settings_from(env)


def published_ports(definition: dict[str, Any]) -> list[tuple[int, int]]:
    """A service's published ports as (host port, container port)."""
    published = []
    for mapping in definition.get("ports", []):
        *host, container = str(mapping).split(":")
        published.append((int(host[-1]) if host else int(container), int(container)))
    return published


def duration_s(value: str) -> float:
    """A compose duration (`30s`, `1m30s`) in seconds."""
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|m|s)", value)
    assert "".join(n + u for n, u in parts) == value, f"not a duration: {value!r}"
    return sum(float(number) * DURATION_UNITS_S[unit] for number, unit in parts)


@pytest.mark.parametrize("name", [*APP_SERVICES, *BACKENDS, GATEWAY])
def test_every_service_has_a_healthcheck(compose: dict[str, Any], name: str) -> None:
    """Given any service, its health check is a real command, not absent or disabled."""
    check = service(compose, name).get("healthcheck")
    assert check, f"{name} has no healthcheck"
    assert not check.get("disable", False), f"{name} disables its healthcheck"
    test = check.get("test")
    assert isinstance(test, list), f"{name}: write the healthcheck test as a list"
    assert test[0] in {"CMD", "CMD-SHELL"}, f"{name}: healthcheck test starts with {test[0]!r}"
    assert len(test) > 1, f"{name}: healthcheck runs nothing"


@pytest.mark.parametrize("name", APP_SERVICES)
@pytest.mark.parametrize("backend", BACKENDS)
def test_app_services_start_only_after_their_backends_are_healthy(
    compose: dict[str, Any], name: str, backend: str
) -> None:
    """Given an app service, it waits for RabbitMQ and MongoDB to be healthy, not only started."""
    depends_on = service(compose, name).get("depends_on")
    assert isinstance(depends_on, dict), f"{name}: depends_on must be a mapping with conditions"
    assert backend in depends_on, f"{name} does not depend on {backend}"
    assert depends_on[backend].get("condition") == "service_healthy"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_services_start_only_after_the_database_is_migrated(
    compose: dict[str, Any], name: str
) -> None:
    """Given an app service, it waits for the one-shot migrate to have succeeded."""
    depends_on = service(compose, name)["depends_on"]
    assert depends_on["migrate"]["condition"] == "service_completed_successfully"
    migrate = service(compose, "migrate")
    assert migrate["command"] == ["tasklight-server", "migrate"]
    assert migrate["depends_on"]["mongo"]["condition"] == "service_healthy"


def test_the_worker_runs_two_replicas(compose: dict[str, Any]) -> None:
    """Two workers side by side show that a task runs on exactly one of them."""
    assert service(compose, "worker").get("deploy", {}).get("replicas") == 2


def test_mongo_runs_a_replica_set_that_it_initiates_and_the_apps_join(
    compose: dict[str, Any],
) -> None:
    """Change streams need a replica set: started, initiated, and named in every app's URL."""
    mongo = service(compose, "mongo")
    command = mongo.get("command")
    words = command.split() if isinstance(command, str) else [str(word) for word in command or []]
    assert "--replSet" in words, "mongod runs without --replSet: change streams would not work"
    replica_set = words[words.index("--replSet") + 1]
    initiate = " ".join(mongo["healthcheck"]["test"])
    assert "rs.initiate(" in initiate, "nothing runs rs.initiate()"
    assert f'_id: "{replica_set}"' in initiate, f"rs.initiate() does not name {replica_set!r}"
    for name in APP_SERVICES:
        url = environment(service(compose, name)).get("MONGODB_URL", "")
        assert mongo_url_problem(url, replica_set) is None, f"{name}: {mongo_url_problem(url)}"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_environment_names_only_real_settings(compose: dict[str, Any], name: str) -> None:
    """Given an app service, every variable it sets is one that a service reads (no typos)."""
    assert unknown_variables(environment(service(compose, name))) == []


@pytest.mark.parametrize("name", APP_SERVICES)
async def test_app_services_listen_where_their_healthcheck_points(
    compose: dict[str, Any], name: str
) -> None:
    """Given an app service, it binds all interfaces, on the port it exposes to the other
    containers, and its healthcheck asks that port for a path the service answers."""
    definition = service(compose, name)
    env = environment(definition)
    prefix = SERVICE_PREFIXES[name]
    assert env.get(f"TASKLIGHT_{prefix}_HOST") == "0.0.0.0", f"{name} listens only inside itself"
    port = service_port(name, service_settings(compose, name))
    exposed = [int(str(item).split("/")[0]) for item in definition.get("expose", [])]
    assert port in exposed, f"{name} listens on {port}, exposes {exposed}"
    probe = " ".join(definition["healthcheck"]["test"])
    found = re.search(rf"http://127\.0\.0\.1:{port}(/[\w/]*)", probe)
    assert found is not None, f"{name}'s healthcheck does not probe port {port}"
    assert await answers(name, found.group(1)), f"{name} does not answer {found.group(1)}"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_only_the_gateway_is_published(compose: dict[str, Any], name: str) -> None:
    """Given an app service, no port of it is published: browsers come in through the gateway."""
    assert published_ports(service(compose, name)) == [], f"{name} is published beside the gateway"


def test_the_gateway_sends_ws_to_the_notifier_and_everything_else_to_the_api(
    compose: dict[str, Any],
) -> None:
    """The gateway publishes the port it listens on, and Caddy routes exactly /ws to the
    notifier's port and every other path to the api's."""
    definition = service(compose, GATEWAY)
    mounts = [str(volume).split(":") for volume in definition.get("volumes", [])]
    assert [f"./{CADDYFILE.relative_to(ROOT)}", "/etc/caddy/Caddyfile", "ro"] in mounts
    routes = gateway()
    ((_, container_port),) = published_ports(definition)
    assert routes.listen == (f":{container_port}",)
    notifier_port = service_port("notifier", service_settings(compose, "notifier"))
    api_port = service_port("api", service_settings(compose, "api"))
    assert routes.upstream_for("/ws") == f"notifier:{notifier_port}"
    for path in ("/", "/api/v1/tasks", "/static/tasklight.js", "/ws/other", "/healthz"):
        assert routes.upstream_for(path) == f"api:{api_port}", path
    depends_on = definition.get("depends_on", {})
    assert all(depends_on[name]["condition"] == "service_healthy" for name in ("api", "notifier"))


def test_pages_open_the_websocket_on_the_gateway_origin_which_the_notifier_accepts(
    compose: dict[str, Any],
) -> None:
    """The api tells pages the path /ws (their own origin); the notifier's Origin allow-list
    holds the gateway's origin under both local names."""
    api_env = {k: interpolate(v) for k, v in environment(service(compose, "api")).items()}
    assert ui_settings_from(api_env).notifier_public_url == "/ws"
    ((host_port, _),) = published_ports(service(compose, GATEWAY))
    origins = service_settings(compose, "notifier").origins()
    for host in ("localhost", "127.0.0.1"):
        assert f"http://{host}:{host_port}" in origins, f"the notifier refuses pages of {host}"


def test_a_stopping_worker_gets_more_time_than_its_grace_before_it_is_killed(
    compose: dict[str, Any],
) -> None:
    """The worker's stop_grace_period outlasts its own graceful stop (see
    tests/support/deployment.py)."""
    grace = str(service(compose, "worker").get("stop_grace_period", "10s"))  # compose's default
    assert duration_s(grace) > worker_stop_s(service_settings(compose, "worker"))


@pytest.mark.parametrize("name", APP_SERVICES)
def test_each_app_image_is_built_from_a_dockerfile_that_exists(
    compose: dict[str, Any], name: str
) -> None:
    """Given an app service, its Dockerfile exists, copies what exists, and drops root."""
    build = service(compose, name).get("build")
    assert isinstance(build, dict), f"{name}: build must name its context and dockerfile"
    context = (COMPOSE_FILE.parent / build.get("context", ".")).resolve()
    dockerfile = context / build.get("dockerfile", "Dockerfile")
    assert dockerfile.is_file(), f"{name}: {dockerfile} does not exist"
    text = dockerfile.read_text(encoding="utf-8")
    for sources in re.findall(r"^COPY (?!--from)(.+?) \S+$", text, re.MULTILINE):
        for source in sources.split():
            assert (context / source).exists(), f"{dockerfile.name} copies missing {source}"
    users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert users, f"{dockerfile.name} runs as root"
    assert users[-1] not in {"root", "0"}, f"{dockerfile.name} runs as root"
    assert f'"services.{name}"' in text, f"{dockerfile.name} does not run services.{name}"


def test_docker_compose_config_accepts_the_file() -> None:
    """`docker-compose config` validates the file as Docker itself would read it."""
    binary = required_tool("docker-compose", "docker-compose")
    done = subprocess.run(
        [binary, "--file", str(COMPOSE_FILE), "config", "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=TOOL_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, f"docker-compose config failed:\n{done.stderr}{done.stdout}"
