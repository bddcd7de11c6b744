"""Exactly once and run ownership on Kubernetes, against the kmock API emulator (tests/k8s_emulator.py):
a launch killed between the creates and the ledger's record is found again by its token label; --force and
--resume touch only the objects of their own run (the objects' run-name annotation, the ledger's mapping).
"""

from __future__ import annotations

import pytest

from k8s_emulator import EmulatorThread
from soraplan.launch import launcher
from soraplan.launch.k8s import RUN_ANNOTATION, TOKEN_LABEL
from soraplan.launch.ledger import Ledger
from soraplan.launch.options import LaunchOptions
from soraplan.planner.config import build_spec
from soraplan.planner.errors import UserError

pytestmark = pytest.mark.k8s


class Killed(BaseException):
    """Stands in for `kill -9` right after the creates, before the ledger's record."""


@pytest.fixture()
def emu(tmp_path, monkeypatch):
    em = EmulatorThread().start()
    monkeypatch.setenv("KUBECONFIG", str(em.kubeconfig(tmp_path / "kubeconfig")))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    yield em
    em.stop()


@pytest.fixture(scope="module")
def spec():
    return build_spec(flags={"gpus": 16, "tp": 2})


def live(em) -> dict[tuple[str, str], dict]:
    def read(km):
        return {(o.raw.get("kind"), name): o.raw for (r, ns, name), o in km.objects.items() if not o.deleted}
    return em.on_loop(read)


def opts(tmp_path, name="a.b", **kw):
    kw.setdefault("ephemeral", True)
    return LaunchOptions(cluster="k8s", name=name, image="img:1", run_root=tmp_path / "runs", **kw)


def test_kill_between_create_and_record_then_resume_finds_the_objects(emu, spec, tmp_path, monkeypatch):
    ledger = tmp_path / "l.sqlite"

    def killed(self, name, job_ids, detail=None):
        raise Killed()

    with monkeypatch.context() as m:
        m.setattr(Ledger, "record_jobs", killed)
        with pytest.raises(Killed):
            launcher.launch_run(spec, opts(tmp_path), ledger, None)
    with Ledger(ledger) as book:
        rec = book.get("a.b")
    assert rec.state == "submitting" and rec.job_ids == [] and rec.submission is not None
    objs = live(emu)
    workload = objs[("JobSet", rec.submission.planned[-1].split("/")[-1])]
    assert workload["metadata"]["labels"][TOKEN_LABEL] == rec.submission.token
    assert workload["metadata"]["annotations"][RUN_ANNOTATION] == "a.b"
    with pytest.raises(UserError, match=r"still submitted"):
        launcher.launch_run(spec, opts(tmp_path, resume=True), ledger, None)
    planned = list(rec.submission.planned)
    with Ledger(ledger) as book:
        rec = book.get("a.b")
    assert rec.job_ids == planned and rec.submission is None    # the found objects, recorded
    assert len(live(emu)) == len(planned)                      # nothing created twice


def test_objects_without_the_workload_are_not_found_and_resume_recreates(emu, spec, tmp_path, monkeypatch):
    ledger = tmp_path / "l.sqlite"
    from soraplan.launch import k8s

    real = k8s.Cluster.create

    def create(self, obj, dry_run=False):
        if obj["kind"] == "JobSet":
            raise Killed()
        return real(self, obj, dry_run)

    with monkeypatch.context() as m:
        m.setattr(k8s.Cluster, "create", create)
        with pytest.raises(Killed):
            launcher.launch_run(spec, opts(tmp_path), ledger, None)
    assert "JobSet" not in [k for k, _ in live(emu)]
    record = launcher.launch_run(spec, opts(tmp_path, resume=True), ledger, None).record
    assert record is not None and record.state == "submitted" and len(record.job_ids) == 3
    assert sorted(k for k, _ in live(emu)) == ["ConfigMap", "JobSet", "NetworkPolicy"]


def test_force_does_not_delete_another_runs_objects(emu, spec, tmp_path):
    """Two runs whose slugs are equal ('a.b', 'a_b') get distinct objects; --force on one leaves the other."""
    ledger = tmp_path / "l.sqlite"
    launcher.launch_run(spec, opts(tmp_path, name="a.b"), ledger, None)
    launcher.launch_run(spec, opts(tmp_path, name="a_b"), ledger, None)
    before = live(emu)
    assert len(before) == 6                                    # ConfigMap, NetworkPolicy, JobSet each
    launcher.launch_run(spec, opts(tmp_path, name="a_b", force=True), ledger, None)
    after = live(emu)
    with Ledger(ledger) as book:
        a_refs = book.get("a.b").job_ids
    for ref in a_refs:
        kind, _, name = ref.split("/")
        assert after[(kind, name)]["metadata"]["labels"][TOKEN_LABEL] == before[(kind, name)]["metadata"]["labels"][TOKEN_LABEL]


def test_an_object_annotated_for_another_run_is_never_deleted(emu, spec, tmp_path):
    ledger = tmp_path / "l.sqlite"
    record = launcher.launch_run(spec, opts(tmp_path, name="owner"), ledger, None).record
    workload = record.job_ids[-1].split("/")[-1]

    def relabel(km):
        for (r, ns, name), o in km.objects.items():
            if name == workload:
                o.patch({"metadata": {"annotations": {RUN_ANNOTATION: "someone-else"}}})
    emu.on_loop(relabel)
    with pytest.raises(UserError, match="belongs to run 'someone-else'; not deleting it"):
        launcher.launch_run(spec, opts(tmp_path / "other", name="owner", force=True), tmp_path / "other.sqlite", None)
    assert ("JobSet", workload) in live(emu)


def test_the_ledger_refuses_an_object_name_held_by_another_run(emu, spec, tmp_path):
    ledger = tmp_path / "l.sqlite"
    with Ledger(ledger) as book:
        book.create("intruder", "k8s", tmp_path, {}, {}, {})
        book.record_jobs("intruder", ["JobSet/default/victim"])
    with pytest.raises(UserError, match="JobSet/default/victim belongs to run 'intruder' in the ledger"):
        launcher.launch_run(spec, opts(tmp_path, name="victim"), ledger, None)
    assert live(emu) == {}
