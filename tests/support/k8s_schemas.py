"""Schema checks of Kubernetes manifests, offline: built-in kinds against the OpenAPI schemas that
the `kubernetes-validate` package ships, KEDA's custom resources against the openAPIV3Schema of
their CRDs, vendored under tests/data/keda/.

Both checks are strict, as `kubectl apply` is with server-side field validation: an unknown
(misspelled) field is an error, not silently dropped. What a schema cannot say (KEDA's CEL rules,
`x-kubernetes-validations`) is not checked here.
"""

from __future__ import annotations

import copy
import importlib.resources
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from referencing import Registry, Resource

from tests.support.deployment import ROOT

#: The oldest Kubernetes release the manifests are meant for; its schemas are the strictest test.
KUBERNETES_VERSION = "1.30"
#: The vendored KEDA CRDs, one file per kind.
CRD_DIR = ROOT / "tests" / "data" / "keda"
#: The custom resource groups checked against vendored CRDs.
CRD_GROUPS = frozenset({"keda.sh"})
#: Where kubernetes-validate's shared definitions say they live; CRD metadata refers to them.
DEFINITIONS_ID = "https://kubernetes.io/api/_definitions.json"
OBJECT_META = f"{DEFINITIONS_ID}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"

Manifest = dict[str, Any]


def schema_errors(manifest: Manifest) -> list[str]:
    """What is wrong with `manifest` by its kind's schema; empty when it is valid."""
    group = str(manifest.get("apiVersion", "")).rpartition("/")[0]
    if group in CRD_GROUPS:
        validator = _crd_validator(str(manifest["apiVersion"]), str(manifest["kind"]))
        return [_describe(error) for error in validator.iter_errors(manifest)]
    try:
        kubernetes_validate.validate(manifest, KUBERNETES_VERSION, strict=True)
    except jsonschema.ValidationError as error:  # kubernetes-validate's error subclasses it
        return [_describe(error)]
    return []


def _describe(error: jsonschema.ValidationError) -> str:
    where = ".".join(str(part) for part in error.absolute_path) or "(top)"
    return f"{where}: {error.message}"


@cache
def _crd_validator(api_version: str, kind: str) -> jsonschema.Draft202012Validator:
    """A validator for one kind and version of a vendored CRD."""
    group, _, version = api_version.partition("/")
    for path in sorted(CRD_DIR.glob("*.yaml")):
        crd = _load_crd(path)
        spec = crd["spec"]
        if spec["group"] != group or spec["names"]["kind"] != kind:
            continue
        for served in spec["versions"]:
            if served["name"] == version:
                schema = strict_json_schema(served["schema"]["openAPIV3Schema"])
                schema["properties"]["metadata"] = {"$ref": OBJECT_META}
                schema["properties"]["apiVersion"]["const"] = api_version
                schema["properties"]["kind"]["const"] = kind
                schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind"})
                return jsonschema.Draft202012Validator(schema, registry=_definitions())
        raise LookupError(f"{path.name} does not serve {api_version}")
    raise LookupError(f"no CRD under {CRD_DIR} defines {kind} in {group}")


def _load_crd(path: Path) -> Manifest:
    documents = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
    assert len(documents) == 1, f"{path} holds {len(documents)} documents"
    crd: Manifest = documents[0]
    assert crd.get("kind") == "CustomResourceDefinition", f"{path} is not a CRD"
    return crd


def strict_json_schema(openapi: dict[str, Any]) -> dict[str, Any]:
    """A CRD's structural schema as JSON Schema that refuses what the API server would refuse
    with strict field validation: unknown fields (unless the schema keeps them), and values that
    are neither integer nor string where it says `x-kubernetes-int-or-string`."""
    schema = copy.deepcopy(openapi)
    _tighten(schema)
    return schema


def _tighten(node: Any) -> None:
    if isinstance(node, list):
        for item in node:
            _tighten(item)
        return
    if not isinstance(node, dict):
        return
    if node.get("x-kubernetes-int-or-string"):
        node.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    keeps_unknown = node.get("x-kubernetes-preserve-unknown-fields", False)
    if "properties" in node and "additionalProperties" not in node and not keeps_unknown:
        node["additionalProperties"] = False
    for value in node.values():
        _tighten(value)


@cache
def _definitions() -> Registry[Any]:
    """kubernetes-validate's strict shared definitions (ObjectMeta and the rest), as a registry."""
    folder = importlib.resources.files("kubernetes_validate") / "kubernetes-json-schema"
    path = folder / f"v{KUBERNETES_VERSION}.0-local-strict" / "_definitions.json"
    contents = json.loads(path.read_text(encoding="utf-8"))
    assert contents.get("$id") == DEFINITIONS_ID, "kubernetes-validate moved its definitions"
    registry: Registry[Any] = Registry().with_resource(
        DEFINITIONS_ID, Resource.from_contents(contents)
    )
    return registry
