"""Validate rendered manifests against the real schemas, offline.

CRDs (JobSet, PyTorchJob, TrainJob): the upstream CRD files in ../shared/k8s-crds/ (read at test time,
never copied into the project). Their `openAPIV3Schema` is made "structural" for jsonschema:

- The API server *prunes* fields a structural schema does not list (unless the node says
  x-kubernetes-preserve-unknown-fields). A pruned field is a silent bug in our renderer (e.g. a typo'd
  `tolerations` would simply vanish), so every object node that lists `properties` and has no
  `additionalProperties`/preserve-unknown gets `additionalProperties: false`: unknown fields FAIL here.
- Nodes with `additionalProperties: {...}` (maps like nodeSelector, pytorchReplicaSpecs) keep it.
- `nullable: true` -> the type also admits null; x-kubernetes-int-or-string without anyOf -> integer|string.
- Top-level `metadata` (the CRD says only `type: object`; the server validates ObjectMeta itself) is
  replaced by a strict ObjectMeta subset with the server's name/label rules.
CEL rules (x-kubernetes-validations) are evaluated with cel-python (celpy) on every value the manifest
has, as the API server does on create; transition rules (those that read `oldSelf`) only apply to updates
and are skipped. Formats (int32, date-time) are not checked.

Core kinds (ConfigMap, Service, Job, NetworkPolicy): kubernetes-validate --strict with its bundled schemas (no network).
"""

from __future__ import annotations

import copy
import functools
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

CRD_DIR = Path(__file__).resolve().parents[1] / ".." / "shared" / "k8s-crds"
CRD_FILES = {
    ("jobset.x-k8s.io/v1alpha2", "JobSet"): "jobset.x-k8s.io_jobsets.yaml",
    ("kubeflow.org/v1", "PyTorchJob"): "kubeflow.org_pytorchjobs.yaml",
    ("trainer.kubeflow.org/v1alpha1", "TrainJob"): "trainer.kubeflow.org_trainjobs.yaml",
}
CORE = {("v1", "ConfigMap"), ("v1", "Service"), ("batch/v1", "Job"), ("networking.k8s.io/v1", "NetworkPolicy")}

_LABEL_KEY = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$"
_LABEL_VALUE = r"^(([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9])?$"
OBJECT_META = {
    "type": "object", "additionalProperties": False, "required": ["name"],
    "properties": {
        "name": {"type": "string", "maxLength": 253,
                 "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"},
        "namespace": {"type": "string", "maxLength": 63, "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "labels": {"type": "object", "propertyNames": {"pattern": _LABEL_KEY},
                   "additionalProperties": {"type": "string", "pattern": _LABEL_VALUE}},
        "annotations": {"type": "object", "propertyNames": {"pattern": _LABEL_KEY},
                        "additionalProperties": {"type": "string"}},
    },
}


def structural(node: Any) -> Any:
    """A deep copy of an OpenAPI v3 CRD schema node with pruning semantics as additionalProperties: false."""
    if isinstance(node, list):
        return [structural(x) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: structural(v) for k, v in node.items()}
    preserve = node.get("x-kubernetes-preserve-unknown-fields") is True
    if "properties" in node and "additionalProperties" not in node and not preserve:
        out["additionalProperties"] = False
    if node.get("type") == "object" and "properties" not in node and "additionalProperties" not in node and not preserve:
        out["additionalProperties"] = False  # a structural object without fields keeps nothing
    if node.get("nullable") is True and "type" in node:
        out["type"] = [node["type"], "null"]
    if node.get("x-kubernetes-int-or-string") and "anyOf" not in node:
        out["type"] = ["integer", "string"]
    return out


@functools.lru_cache(maxsize=None)
def crd_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    path = CRD_DIR / CRD_FILES[(api_version, kind)]
    if not path.is_file():  # a failure, not a skip: manifests must never go unvalidated silently
        import pytest

        pytest.fail(f"CRD schema {path.resolve()} is missing: the upstream CRDs belong in ../shared/k8s-crds/ "
                    "next to the repository (see that directory's README.md)")
    schema = structural(crd_openapi(api_version, kind))
    schema["properties"]["metadata"] = copy.deepcopy(OBJECT_META)
    schema["properties"]["apiVersion"] = {"const": api_version}
    schema["properties"]["kind"] = {"const": kind}
    schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata", "spec"})
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)


@functools.lru_cache(maxsize=None)
def crd_openapi(api_version: str, kind: str) -> dict[str, Any]:
    """The CRD's original schema (CEL rules walk it alongside the object)."""
    crd = yaml.load((CRD_DIR / CRD_FILES[(api_version, kind)]).read_text(),
                    Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    (ver,) = [v for v in crd["spec"]["versions"] if v["name"] == api_version.split("/")[1]]
    return ver["schema"]["openAPIV3Schema"]


@functools.lru_cache(maxsize=None)
def _cel_program(rule: str) -> Any:
    import celpy

    env = celpy.Environment()
    return env.program(env.compile(rule))


def cel_errors(schema: dict[str, Any], value: Any, path: str = "") -> list[str]:
    """Evaluate every non-transition x-kubernetes-validations rule on the values present in `value`."""
    import celpy

    out: list[str] = []
    if value is None or not isinstance(schema, dict):
        return out
    for r in schema.get("x-kubernetes-validations") or []:
        if "oldSelf" in r["rule"]:
            continue  # transition rule: updates only
        try:
            ok = _cel_program(r["rule"]).evaluate({"self": celpy.json_to_cel(value)})
        except Exception as e:  # noqa: BLE001 - a rule we cannot evaluate is a failure, not a pass
            out.append(f"{path or '.'}: CEL rule {r['rule']!r} could not be evaluated ({type(e).__name__}: {e})")
            continue
        if not bool(ok):
            out.append(f"{path or '.'}: {r.get('message') or r['rule']}")
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key in value:
                out += cel_errors(sub, value[key], f"{path}.{key}")
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key, v in value.items():
                out += cel_errors(extra, v, f"{path}.{key}")
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, v in enumerate(value):
            out += cel_errors(schema["items"], v, f"{path}[{i}]")
    return out


def crd_errors(obj: dict[str, Any]) -> list[str]:
    v = crd_validator(obj["apiVersion"], obj["kind"])
    errs = [f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message}" for e in v.iter_errors(obj)]
    return errs or cel_errors(crd_openapi(obj["apiVersion"], obj["kind"]), obj)


def core_errors(obj: dict[str, Any]) -> list[str]:
    import kubernetes_validate

    try:
        kubernetes_validate.validate(obj, kubernetes_validate.latest_version(), strict=True)
    except kubernetes_validate.ValidationError as e:
        return [str(e.message if hasattr(e, "message") else e)]
    # the OpenAPI ObjectMeta has no name/label patterns; the API server checks them: so do we
    meta = jsonschema.Draft4Validator(OBJECT_META)
    out = [f"metadata.{'.'.join(str(p) for p in e.absolute_path)}: {e.message}" for e in meta.iter_errors(obj["metadata"])]
    if obj["kind"] == "Service" and not re.match(r"^[a-z]([-a-z0-9]*[a-z0-9])?$", obj["metadata"].get("name", "")):
        out.append("metadata.name: a Service name must be an RFC 1035 label (start with a letter)")
    return out


def errors(obj: dict[str, Any]) -> list[str]:
    key = (obj.get("apiVersion"), obj.get("kind"))
    if key in CRD_FILES:
        return crd_errors(obj)
    if key in CORE:
        return core_errors(obj)
    return [f"no schema for {key}"]


def assert_valid(objs: list[dict[str, Any]]) -> None:
    for obj in objs:
        errs = errors(obj)
        assert not errs, f"{obj['kind']} {obj['metadata'].get('name')}: " + "; ".join(errs[:5])
