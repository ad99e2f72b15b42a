"""deploy/k8s/: every manifest valid by its schema, and true to what the services read and serve.

No cluster and no network: the schemas are the ones kubernetes-validate ships and KEDA's vendored
CRDs (tests/support/k8s_schemas.py); the services' own code and settings say which paths, ports and
variables are real (tests/support/deployment.py).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.settings import Settings
from shared.topology import Topology
from tests.support.deployment import (
    ROOT,
    SERVICE_PREFIXES,
    answers,
    metrics_port,
    mongo_url_problem,
    serves_metrics,
    service_port,
    settings_from,
    ui_settings_from,
    unknown_variables,
    worker_stop_s,
)
from tests.support.k8s_schemas import schema_errors

K8S_DIR = ROOT / "deploy" / "k8s"
KUSTOMIZATION = K8S_DIR / "kustomization.yaml"
#: Not applied with the rest: it holds placeholders (docs/deploy.md: how to create the real one).
EXAMPLE_SECRET = K8S_DIR / "secret.example.yaml"
#: The app's Deployments by service.
DEPLOYMENTS = {
    "api": "tasklight-api",
    "worker": "tasklight-worker",
    "notifier": "tasklight-notifier",
    "webhooks": "tasklight-webhooks",
}
PROBES = ("startupProbe", "livenessProbe", "readinessProbe")

Manifest = dict[str, Any]


def load(path: Path) -> list[Manifest]:
    """The non-empty YAML documents of one file."""
    documents = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
    assert all(isinstance(doc, dict) for doc in documents), f"{path.name}: not all mappings"
    return documents


def manifest_files() -> list[Path]:
    """Every manifest file, the example Secret included; the kustomization itself is not one."""
    return sorted(path for path in K8S_DIR.glob("*.yaml") if path != KUSTOMIZATION)


def all_manifests() -> Iterator[tuple[str, Manifest]]:
    for path in manifest_files():
        for doc in load(path):
            yield f"{path.name}:{doc.get('kind')}/{doc.get('metadata', {}).get('name')}", doc


MANIFESTS = dict(all_manifests())


def find(kind: str, name: str) -> Manifest:
    """The one manifest of this kind and name; fails the test when there is none."""
    for doc in MANIFESTS.values():
        if doc.get("kind") == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"deploy/k8s has no {kind} {name!r}")


def of_kind(kind: str) -> list[Manifest]:
    return [doc for doc in MANIFESTS.values() if doc.get("kind") == kind]


def container(service: str) -> dict[str, Any]:
    """The service's container in its Deployment (the one running `services.<service>`)."""
    containers = find("Deployment", DEPLOYMENTS[service])["spec"]["template"]["spec"]["containers"]
    named = [c for c in containers if c["name"] == service]
    assert len(named) == 1, f"{DEPLOYMENTS[service]} has no container named {service!r}"
    found: dict[str, Any] = named[0]
    return found


def environment(service: str) -> dict[str, str]:
    """The container's environment as the pod gets it: the ConfigMaps of `envFrom`, then `env`,
    whose references resolve against the ConfigMaps and the example Secret."""
    spec = container(service)
    env: dict[str, str] = {}
    for source in spec.get("envFrom", []):
        assert "configMapRef" in source, f"{service}: envFrom only from ConfigMaps (secrets by key)"
        env.update(find("ConfigMap", source["configMapRef"]["name"])["data"])
    for variable in spec.get("env", []):
        env[variable["name"]] = resolve(variable)
    return env


def resolve(variable: dict[str, Any]) -> str:
    """One `env` entry's value; a reference must name a key that exists."""
    if "value" in variable:
        return str(variable["value"])
    source = variable["valueFrom"]
    if "secretKeyRef" in source:
        ref = source["secretKeyRef"]
        data = find("Secret", ref["name"])["stringData"]
    elif "configMapKeyRef" in source:
        ref = source["configMapKeyRef"]
        data = find("ConfigMap", ref["name"])["data"]
    else:
        raise AssertionError(f"{variable['name']}: unexpected source {sorted(source)}")
    assert ref["key"] in data, f"{variable['name']}: {ref['name']} has no key {ref['key']!r}"
    return str(data[ref["key"]])


def service_settings(service: str) -> Settings:
    """The settings the service's container starts with."""
    return settings_from(environment(service))


def port_number(service: str, port: int | str) -> int:
    """A probe's or Service's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    ports = {p["name"]: p["containerPort"] for p in container(service).get("ports", [])}
    assert port in ports, f"{service}: no container port named {port!r}"
    number: int = ports[port]
    return number


# --- schemas -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MANIFESTS))
def test_every_manifest_is_valid_by_its_schema(name: str) -> None:
    """Given any manifest, Kubernetes' (or KEDA's) schema accepts it with strict field checks."""
    assert schema_errors(MANIFESTS[name]) == []


def _set(path: str, value: Any) -> Callable[[Manifest], None]:
    *parents, last = path.split(".")

    def change(doc: Manifest) -> None:
        node: Any = doc
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value

    return change


CONTAINER = "spec.template.spec.containers.0"
BROKEN = {
    "misspelled probe": ("Deployment", "tasklight-api", _set(f"{CONTAINER}.readinesProbe", {})),
    "replicas as text": ("Deployment", "tasklight-api", _set("spec.replicas", "2")),
    "port as a list": ("Service", "tasklight-api", _set("spec.ports.0.port", [8000])),
    "misspelled label key": ("Ingress", "tasklight", _set("metadata.lables", {})),
    "unknown pathType field": (
        "Ingress",
        "tasklight",
        _set("spec.rules.0.http.paths.0.pathtype", "Exact"),
    ),
    "misspelled KEDA field": ("ScaledObject", "tasklight-worker", _set("spec.minReplicas", 1)),
    "KEDA count as text": ("ScaledObject", "tasklight-worker", _set("spec.maxReplicaCount", "9")),
    "KEDA trigger metadata not text": (
        "ScaledObject",
        "tasklight-worker",
        _set("spec.triggers.0.metadata.value", 8),
    ),
    "misspelled KEDA auth field": (
        "TriggerAuthentication",
        "tasklight-rabbitmq",
        _set("spec.secretTargetRef.0.paramater", "host"),
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_the_schema_check_refuses_a_misspelled_field_or_a_wrong_type(case: str) -> None:
    """Given a valid manifest with one field misspelled or of the wrong type, the check fails."""
    kind, name, breaks = BROKEN[case]
    broken = copy.deepcopy(find(kind, name))
    breaks(broken)
    assert schema_errors(broken), f"{case}: the schema check accepted it"


def test_the_kustomization_lists_every_manifest_but_the_example_secret() -> None:
    """`kubectl apply -k` applies them all, and never the Secret with placeholders."""
    (kustomization,) = load(KUSTOMIZATION)
    listed = set(kustomization["resources"])
    assert all((K8S_DIR / name).is_file() for name in listed), f"missing files in {listed}"
    expected = {path.name for path in manifest_files()} - {EXAMPLE_SECRET.name}
    assert listed == expected
    images = {image["name"] for image in kustomization.get("images", [])}
    used = {container(service)["image"].split(":")[0] for service in DEPLOYMENTS}
    assert used <= images, f"images without a tag in the kustomization: {used - images}"


# --- what the services read and serve --------------------------------------------------------


@pytest.mark.parametrize("service", sorted(DEPLOYMENTS))
def test_every_variable_a_deployment_sets_is_one_a_service_reads(service: str) -> None:
    """Given a Deployment, every variable (its own and its ConfigMaps') is a real setting."""
    assert unknown_variables(environment(service)) == []


def test_the_config_map_and_the_example_secret_hold_only_real_settings() -> None:
    """Their keys reach the services as variables; KEDA's management URL is the one exception."""
    config = find("ConfigMap", "tasklight-config")["data"]
    secret = find("Secret", "tasklight-secrets")["stringData"]
    assert unknown_variables(config) == []
    assert unknown_variables(secret) == ["RABBITMQ_MANAGEMENT_URL"]


@pytest.mark.parametrize("service", sorted(DEPLOYMENTS))
def test_each_service_listens_on_all_interfaces_at_its_container_port(service: str) -> None:
    """Given a Deployment, the service binds 0.0.0.0 on the port its container declares."""
    env = environment(service)
    prefix = SERVICE_PREFIXES[service]
    assert env.get(f"TASKLIGHT_{prefix}_HOST") == "0.0.0.0", f"{service} listens only inside"
    assert port_number(service, "http") == service_port(service, service_settings(service))


@pytest.mark.parametrize("service", sorted(DEPLOYMENTS))
async def test_every_probe_asks_a_path_the_service_answers_on_its_port(service: str) -> None:
    """Given a Deployment, its startup, liveness and readiness probes are HTTP GETs of paths the
    service's code answers, on the port it listens on."""
    spec = container(service)
    port = service_port(service, service_settings(service))
    for kind in PROBES:
        assert kind in spec, f"{service} has no {kind}"
        probe = spec[kind]["httpGet"]
        assert port_number(service, probe["port"]) == port, f"{service} {kind}: wrong port"
        assert await answers(service, probe["path"]), f"{service} does not answer {probe['path']}"


@pytest.mark.parametrize("service", ["api", "worker"])
def test_readiness_checks_the_backends_where_the_service_has_such_a_check(service: str) -> None:
    """The api and the worker say /readyz (database and broker answer), not merely /healthz."""
    assert container(service)["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container(service)["livenessProbe"]["httpGet"]["path"] == "/healthz"


@pytest.mark.parametrize("service", sorted(DEPLOYMENTS))
def test_every_container_requests_and_limits_cpu_and_memory(service: str) -> None:
    """Given a Deployment, the scheduler knows what it needs and how much it may take."""
    resources = container(service).get("resources", {})
    for bound in ("requests", "limits"):
        assert set(resources.get(bound, {})) >= {"cpu", "memory"}, f"{service}: {bound}"


@pytest.mark.parametrize("service", sorted(DEPLOYMENTS))
async def test_metrics_are_scraped_where_the_service_serves_them(service: str) -> None:
    """Given a Deployment, Prometheus' annotations name the service's port and its /metrics."""
    annotations = find("Deployment", DEPLOYMENTS[service])["spec"]["template"]["metadata"].get(
        "annotations", {}
    )
    assert annotations.get("prometheus.io/scrape") == "true", f"{service} is not scraped"
    port = int(annotations["prometheus.io/port"])
    assert port == metrics_port(service, service_settings(service))
    assert await serves_metrics(service, annotations["prometheus.io/path"])


def test_a_stopping_worker_gets_more_time_than_its_grace_before_it_is_killed() -> None:
    """The pod's terminationGracePeriodSeconds outlasts the worker's own graceful stop, so running
    tasks finish or are handed back rather than killed."""
    pod = find("Deployment", "tasklight-worker")["spec"]["template"]["spec"]
    grace_s = pod.get("terminationGracePeriodSeconds", 30)  # Kubernetes' default
    assert grace_s > worker_stop_s(service_settings("worker"))


def test_the_services_route_to_their_pods_and_ports() -> None:
    """Given the api's and the notifier's Service, each selects its Deployment's pods and sends
    traffic to the port the service listens on."""
    for service in ("api", "notifier"):
        definition = find("Service", DEPLOYMENTS[service])
        labels = find("Deployment", DEPLOYMENTS[service])["spec"]["template"]["metadata"]["labels"]
        selector = definition["spec"]["selector"]
        assert selector.items() <= labels.items(), f"{service}: the Service selects no pod"
        (port,) = definition["spec"]["ports"]
        target = port_number(service, port.get("targetPort", port["port"]))
        assert target == service_port(service, service_settings(service))


# --- one origin --------------------------------------------------------------------------------


def backend_of(path: str, path_type: str) -> str:
    """The Service the Ingress sends `path` (of that pathType) to."""
    (ingress,) = of_kind("Ingress")
    for rule in ingress["spec"]["rules"]:
        for entry in rule["http"]["paths"]:
            if entry["path"] == path and entry["pathType"] == path_type:
                name: str = entry["backend"]["service"]["name"]
                return name
    raise AssertionError(f"the Ingress has no {path_type} rule for {path}")


async def test_the_ingress_sends_ws_to_the_notifier_and_everything_else_to_the_api() -> None:
    """One origin: exactly /ws goes to the notifier (which serves its WebSocket there), every
    other path to the api."""
    assert backend_of("/ws", "Exact") == DEPLOYMENTS["notifier"]
    assert backend_of("/", "Prefix") == DEPLOYMENTS["api"]
    assert await answers("notifier", "/ws")


def test_pages_open_the_websocket_on_their_own_origin() -> None:
    """The api tells pages a path, /ws, which the Ingress routes to the notifier."""
    public_url = ui_settings_from(environment("api")).notifier_public_url
    assert public_url == "/ws"


def test_the_notifier_accepts_pages_from_every_host_the_ingress_serves() -> None:
    """Given the Ingress's hosts, each one's origin is in the notifier's Origin allow-list."""
    (ingress,) = of_kind("Ingress")
    tls_hosts = {host for entry in ingress["spec"].get("tls", []) for host in entry["hosts"]}
    origins = service_settings("notifier").origins()
    for rule in ingress["spec"]["rules"]:
        scheme = "https" if rule["host"] in tls_hosts else "http"
        assert f"{scheme}://{rule['host']}" in origins, f"{rule['host']} is refused"


# --- KEDA ----------------------------------------------------------------------------------------


def test_keda_scales_the_worker_deployment_on_its_tasks_queue() -> None:
    """The ScaledObject targets the worker Deployment and watches the queue the workers consume
    (`<namespace>.tasks` with the workers' namespace), one worker's concurrency per replica."""
    (scaled,) = of_kind("ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == DEPLOYMENTS["worker"]
    assert scaled["spec"].get("minReplicaCount", 0) >= 1, "the janitor needs a worker"
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "rabbitmq"
    settings = service_settings("worker")
    metadata = trigger["metadata"]
    assert metadata["queueName"] == Topology(settings.namespace).tasks_queue
    assert metadata["mode"] == "QueueLength"
    assert float(metadata["value"]) == settings.worker_concurrency


def test_keda_reaches_rabbitmq_through_the_secret() -> None:
    """The trigger's authentication names a TriggerAuthentication whose host is a Secret key
    that exists, a management API URL as the trigger's protocol needs."""
    (scaled,) = of_kind("ScaledObject")
    (trigger,) = scaled["spec"]["triggers"]
    auth = find("TriggerAuthentication", trigger["authenticationRef"]["name"])
    (host,) = [ref for ref in auth["spec"]["secretTargetRef"] if ref["parameter"] == "host"]
    secret = find("Secret", host["name"])["stringData"]
    assert host["key"] in secret
    assert trigger["metadata"]["protocol"] == "http"
    assert secret[host["key"]].startswith("http://")


def test_the_worker_deployment_leaves_its_replica_count_to_keda() -> None:
    """A fixed `replicas` would be reset by every `kubectl apply`, fighting the autoscaler."""
    assert "replicas" not in find("Deployment", "tasklight-worker")["spec"]


def test_the_example_secret_joins_the_mongodb_replica_set() -> None:
    """Change streams need a replica set: the URL names one and does not connect directly."""
    url = find("Secret", "tasklight-secrets")["stringData"]["MONGODB_URL"]
    assert mongo_url_problem(url) is None


def test_a_job_migrates_the_database_the_services_use() -> None:
    """The services refuse an unmigrated database: a Job runs the migrate step on it."""
    job = find("Job", "tasklight-migrate")
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["tasklight-server", "migrate"]
    url = {e["name"]: e for e in container["env"]}["MONGODB_URL"]
    api = find("Deployment", "tasklight-api")["spec"]["template"]["spec"]["containers"][0]
    assert url == {e["name"]: e for e in api["env"]}["MONGODB_URL"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"
