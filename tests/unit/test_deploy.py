"""The compose file and the images: what `docker compose up` relies on, checked without Docker."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
APP_SERVICES = ("api", "worker", "notifier")
BACKENDS = ("rabbitmq", "mongo")
#: The services that answer HTTP, and the prefix of their settings (`TASKLIGHT_<PREFIX>_HOST`).
HTTP_SERVICES = (("api", "API"), ("notifier", "NOTIFIER"))
#: Environment variables the services read besides `TASKLIGHT_<field>`.
URL_VARIABLES = {"MONGODB_URL", "AMQP_URL"}
COMPOSE_CONFIG_TIMEOUT_S = 60


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
    """A service's environment, whether written as a mapping or as a list of `KEY=value`."""
    raw = definition.get("environment") or {}
    if isinstance(raw, list):
        return dict(str(item).partition("=")[::2] for item in raw)
    return {str(key): str(value) for key, value in raw.items()}


@pytest.mark.parametrize("name", APP_SERVICES + BACKENDS)
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
        query = parse_qs(urlsplit(url).query)
        assert query.get("replicaSet") == [replica_set], f"{name}: MONGODB_URL is {url!r}"
        assert "directConnection" not in query, f"{name}: directConnection hides the replica set"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_app_environment_names_only_real_settings(compose: dict[str, Any], name: str) -> None:
    """Given an app service, every variable it sets is one that `Settings` reads (no typos)."""
    fields = set(Settings.model_fields)
    for variable in environment(service(compose, name)):
        if variable in URL_VARIABLES:
            continue
        assert variable.startswith("TASKLIGHT_"), f"{name}: {variable} is not a tasklight setting"
        field = variable.removeprefix("TASKLIGHT_").lower()
        assert field in fields, f"{name}: {variable} names no field of Settings"


@pytest.mark.parametrize(("name", "prefix"), HTTP_SERVICES)
def test_http_services_listen_where_their_port_and_healthcheck_point(
    compose: dict[str, Any], name: str, prefix: str
) -> None:
    """Given an HTTP service, it binds all interfaces on the port compose publishes and probes."""
    definition = service(compose, name)
    env = environment(definition)
    assert env.get(f"TASKLIGHT_{prefix}_HOST") == "0.0.0.0", f"{name} listens only inside itself"
    port = env.get(f"TASKLIGHT_{prefix}_PORT", str(Settings.model_fields[f"{name}_port"].default))
    published = [str(mapping).rsplit(":", 1)[-1] for mapping in definition.get("ports", [])]
    assert port in published, f"{name} listens on {port}, compose publishes {published}"
    probe = " ".join(definition["healthcheck"]["test"])
    assert f"127.0.0.1:{port}/" in probe, f"{name}'s healthcheck does not probe port {port}"


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
    binary = shutil.which("docker-compose")
    if binary is None:
        reason = "docker-compose is not installed (apt-get install docker-compose)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    done = subprocess.run(
        [binary, "--file", str(COMPOSE_FILE), "config", "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=COMPOSE_CONFIG_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, f"docker-compose config failed:\n{done.stderr}{done.stdout}"
