"""What `soraplan launch --cluster k8s` asks the cluster before it creates anything.

- The checkpoint claim (`--pvc`): it must exist, and every pod of the run must be able to mount it at once:
  ReadWriteMany, or a single-node run (ReadWriteOnce / ReadWriteOncePod). A ReadWriteOnce claim on a
  multi-node run would leave every pod but the first in Multi-Attach, holding quota forever. When the
  credentials may not read claims, one warning line says so and the launch goes on (docs/k8s.md).
- The TrainJob CRD (`--kind trainjob`): soraplan's volumes, placement and security settings travel in
  `spec.runtimePatches`, which only recent Kubeflow Trainer releases serve; an older CRD prunes the field
  silently and every pod would run without its spec and checkpoints. The CRD's schema is read through the
  apiextensions API; when it cannot be read, a server-side dry run of the TrainJob shows whether the field
  survives.
"""

from __future__ import annotations

import sys
from typing import Any

from soraplan.planner.errors import UserError

TRAINJOB_CRD = "trainjobs.trainer.kubeflow.org"
SHARED_MODES = {"ReadWriteMany"}
ONE_NODE_MODES = {"ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"}


def _warn(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr)


def claim_modes(pvc: dict[str, Any]) -> list[str]:
    """The claim's access modes: the bound volume's (status) when bound, else the requested ones."""
    return list((pvc.get("status") or {}).get("accessModes") or (pvc.get("spec") or {}).get("accessModes") or [])


def check_claim_modes(claim: str, modes: list[str], nodes: int) -> None:
    """Refuse a claim that the run's pods cannot all mount (one line, exit 2)."""
    ok = SHARED_MODES if nodes > 1 else ONE_NODE_MODES
    if not set(modes) & ok:
        shown = ", ".join(modes) or "none"
        if nodes > 1:
            raise UserError(f"--pvc {claim}: access modes {shown}: a {nodes}-node run needs ReadWriteMany (every pod "
                            "mounts the claim at once; ReadWriteOnce leaves the other pods in Multi-Attach)")
        raise UserError(f"--pvc {claim}: access modes {shown}: the pod cannot write to it")


def check_claim(cluster: Any, ns: str, claim: str, nodes: int) -> None:
    """Read the PersistentVolumeClaim and check its access modes against the node count."""
    from kubernetes.client.exceptions import ApiException

    try:
        pvc = cluster.api_client.sanitize_for_serialization(cluster.core.read_namespaced_persistent_volume_claim(claim, ns))
    except ApiException as e:
        if e.status == 404:
            raise UserError(f"--pvc {claim}: no PersistentVolumeClaim {claim!r} in namespace {ns!r} (create it first; "
                            f"{'ReadWriteMany' if nodes > 1 else 'any access mode'})") from None
        if e.status in (401, 403):
            _warn(f"--pvc {claim}: cannot read the claim ({e.status}); its access mode is unchecked: a multi-node run "
                  "needs ReadWriteMany")
            return
        raise
    check_claim_modes(claim, claim_modes(pvc), nodes)


def crd_has_runtime_patches(crd: dict[str, Any], version: str = "v1alpha1") -> bool:
    """Whether the TrainJob CRD's schema of `version` lists spec.runtimePatches."""
    for v in (crd.get("spec") or {}).get("versions") or []:
        if v.get("name") == version:
            spec = (((v.get("schema") or {}).get("openAPIV3Schema") or {}).get("properties") or {}).get("spec") or {}
            return "runtimePatches" in (spec.get("properties") or {})
    return False


def check_trainjob(cluster: Any, workload: dict[str, Any]) -> None:
    """Refuse --kind trainjob where the installed Trainer does not serve spec.runtimePatches."""
    from kubernetes.client.exceptions import ApiException

    refuse = UserError(f"--kind trainjob: the cluster's TrainJob CRD has no spec.runtimePatches (a Kubeflow Trainer "
                       "release before runtimePatches); the API server would drop soraplan's volumes and placement "
                       "silently: upgrade Kubeflow Trainer, or use --kind jobset")
    try:
        crd = cluster.custom.get_cluster_custom_object("apiextensions.k8s.io", "v1", "customresourcedefinitions",
                                                       TRAINJOB_CRD)
    except ApiException as e:
        if e.status not in (401, 403, 404):
            raise
        crd = None
    if crd is not None:
        if not crd_has_runtime_patches(crd):
            raise refuse
        return
    try:  # the CRD is not readable: ask the server what it keeps of a TrainJob (dryRun=All stores nothing)
        echoed = cluster.create(workload, dry_run=True)
    except ApiException:
        return  # the real create reports this error in its own words
    if "runtimePatches" not in (echoed.get("spec") or {}):
        raise refuse


def before_create(cluster: Any, objs: list[dict[str, Any]], claim: str | None, nodes: int) -> None:
    """Every check above that applies to this run (called by launch/k8s.submit)."""
    workload = objs[-1]
    if claim:
        check_claim(cluster, workload["metadata"]["namespace"], claim, nodes)
    if workload["kind"] == "TrainJob":
        check_trainjob(cluster, workload)
