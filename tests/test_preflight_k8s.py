"""The Kubernetes preflight of `soraplan launch --cluster k8s` against kmock's emulator (tests/k8s_emulator.py).

The emulator answers a bare 404 for what it does not serve, so these tests add the replies a cluster would
give (namespaces, a CRD, GPU nodes, and NotFound Status objects naming what is missing); a fresh emulator
(nothing readable) lets every launch through, which the other emulator tests rely on.
"""

from __future__ import annotations

import re

import pytest
from typer.testing import CliRunner

from k8s_emulator import EmulatorThread
from soraplan.cli import app

pytestmark = pytest.mark.k8s


@pytest.fixture()
def cluster(tmp_path, monkeypatch):
    """An emulator holding namespaces default and team-a, the PyTorchJob CRD and two nodes of 8 GPUs."""
    em = EmulatorThread().start()
    kubeconfig = em.kubeconfig(tmp_path / "kubeconfig")
    monkeypatch.chdir(tmp_path)                    # run directories go under ./runs
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    monkeypatch.setenv("SORAPLAN_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    em.on_loop(_answers)
    yield em
    em.stop()


def _answers(km) -> None:
    """Replies of a cluster with namespaces default and team-a, the PyTorchJob CRD and two nodes of 8 GPUs.

    (Reactions rather than stored objects: the emulator cannot parse the cluster-scoped /api/v1/namespaces paths.)
    """
    import kmock

    def ns(name):
        return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}, "status": {"phase": "Active"}}

    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": "pytorchjobs.kubeflow.org"},
           "spec": {"group": "kubeflow.org", "names": {"kind": "PyTorchJob", "plural": "pytorchjobs"},
                    "scope": "Namespaced", "versions": [{"name": "v1", "served": True, "storage": True}]}}
    node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "gpu"},
            "status": {"allocatable": {"cpu": "64", "nvidia.com/gpu": "8"}, "capacity": {"nvidia.com/gpu": "8"}}}
    for name in ("default", "team-a"):
        km[f"get /api/v1/namespaces/{name}"] << ns(name)
    km["get /api/v1/namespaces/nope"] << kmock.KubernetesError(
        status=404, reason="NotFound", message='namespaces "nope" not found',
        details={"name": "nope", "kind": "namespaces"})
    crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    km[f"get {crds}/pytorchjobs.kubeflow.org"] << crd
    km[f"get {crds}/jobsets.jobset.x-k8s.io"] << kmock.KubernetesError(
        status=404, reason="NotFound", message='customresourcedefinitions.apiextensions.k8s.io "jobsets.jobset.x-k8s.io" '
        'not found', details={"name": "jobsets.jobset.x-k8s.io", "group": "apiextensions.k8s.io",
                              "kind": "customresourcedefinitions"})
    km[re.compile(r"^/api/v1/nodes$")] << {"apiVersion": "v1", "kind": "NodeList", "metadata": {}, "items": [node, node]}


def launch(*extra, kind="pytorchjob", gpus="16"):
    r = CliRunner().invoke(app, ["launch", "--cluster", "k8s", "--ephemeral", "--image", "registry.example/train:1", "--gpus", gpus,
                                 "--tp", "2", "--kind", kind, "--name", "pre", *extra])
    return r.exit_code, r.output


def test_a_job_the_cluster_can_run_is_submitted(cluster):
    code, out = launch()
    assert code == 0, out


def test_missing_namespace_is_refused(cluster):
    code, out = launch("--namespace", "nope")
    assert code == 2 and "namespace 'nope' does not exist" in out and "--no-preflight" in out, out


def test_missing_crd_is_refused_with_what_installs_it(cluster):
    code, out = launch(kind="jobset")
    assert code == 2, out
    assert "the JobSet CRD (jobsets.jobset.x-k8s.io) is not installed" in out and "install JobSet" in out


def test_too_few_gpu_nodes_is_refused(cluster):
    code, out = launch(gpus="24")
    assert code == 2, out
    assert "needs 3 nodes with 8 nvidia.com/gpu each; the cluster has 2" in out
    code, out = launch("--gpus-per-node", "16", gpus="16")
    assert code == 2 and "needs 1 node with 16 nvidia.com/gpu each; the cluster has 0" in out, out


def test_no_preflight_skips_the_check(cluster):
    code, out = launch("--namespace", "nope", "--no-preflight")
    assert code == 0, out


def test_nothing_readable_lets_the_job_through(tmp_path, monkeypatch):
    em = EmulatorThread().start()
    try:
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("KUBECONFIG", str(em.kubeconfig(tmp_path / "kubeconfig")))
        monkeypatch.setenv("SORAPLAN_STATE_DIR", str(tmp_path / "state"))
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        code, out = launch(kind="jobset", gpus="64")
        assert code == 0, out
    finally:
        em.stop()
