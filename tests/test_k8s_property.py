"""Property: every valid layout renders schema-valid manifests for every kind (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import k8s_schemas
from soraplan.launch.k8s_names import DNS_LABEL_MAX, pod_hostnames
from soraplan.launch.k8s_profiles import Profile
from soraplan.launch.k8s_render import layout_from_spec, render_objects
from soraplan.launch.options import LaunchOptions
from soraplan.planner.config import build_spec
from soraplan.planner.errors import UserError
from soraplan.planner.estimate import estimate
from soraplan.planner.hardware import GPUS

pytestmark = pytest.mark.k8s

run_names = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z", fullmatch=True)
layouts = st.fixed_dictionaries({
    "tp": st.sampled_from([1, 2, 4, 8]), "pp": st.sampled_from([1, 2, 4]), "cp": st.sampled_from([1, 2]),
    "dp": st.integers(1, 40), "micro_batch": st.integers(1, 4), "gpu": st.sampled_from(sorted(GPUS)),
})
launch = st.fixed_dictionaries({
    "kind": st.sampled_from(["jobset", "pytorchjob", "trainjob", "indexed-job"]),
    "rdma": st.sampled_from(["none", "host-network", "device"]),
    "queue": st.none() | st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?\Z", fullmatch=True),
    "pvc": st.none() | st.just("ckpt"),
    "gpus_per_node": st.none() | st.sampled_from([1, 2, 4, 8]),
    "max_retries": st.integers(0, 10), "debug": st.booleans(), "tiny": st.booleans(),
    "pod_security": st.sampled_from(["privileged", "baseline", "restricted"]),
})


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layout=layouts, lo=launch, name=run_names)
def test_random_valid_layouts_render_schema_valid(layout, lo, name):
    spec = build_spec(flags=dict(layout))
    plan = estimate(spec, compare=False).to_json()
    opts = LaunchOptions(cluster="k8s", name=name, image="img:1", ephemeral=lo["pvc"] is None, **lo)
    world = spec.parallel.world
    per_node = lo["gpus_per_node"] or plan["hardware"]["gpus_per_node"]
    if lo["rdma"] == "host-network" and (lo["kind"] == "trainjob" or lo["pod_security"] != "privileged"):
        with pytest.raises(UserError):
            render_objects(spec, opts, Profile())
        return
    if world > per_node and world % per_node:
        with pytest.raises(UserError, match="GPUs per node"):
            render_objects(spec, opts, Profile())
        return
    objs = render_objects(spec, opts, Profile())
    k8s_schemas.assert_valid(objs)
    lay = layout_from_spec(spec, lo["gpus_per_node"])
    assert lay.nodes * lay.gpus_per_node == world
    name_k8s = objs[-1]["metadata"]["name"]
    assert max(len(h) for h in pod_hostnames(name_k8s, lo["kind"], lay.nodes)) <= DNS_LABEL_MAX
    assert name_k8s[0].isalpha()  # RFC 1035: Services and TrainJobs


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(args=st.lists(st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=20),
                     max_size=4))
def test_any_train_args_reach_torchrun_literally(args, tmp_path):
    """Whatever --train-arg holds ($(...), quotes, newlines, unicode) arrives as that exact argv, runs nothing."""
    import json
    import stat
    import subprocess
    import sys

    from soraplan.launch.k8s_render import command_script, make_context

    spec = build_spec(flags={"gpus": 16, "tp": 2})
    opts = LaunchOptions(cluster="k8s", name="prop", image="img:1", ephemeral=True, train_args=tuple(args))
    script = command_script(make_context(spec, opts, Profile()))
    stub = tmp_path / "torchrun"
    stub.write_text(f"#!{sys.executable}\nimport json, sys\nsys.stdout.buffer.write(json.dumps(sys.argv[1:]).encode())\n")
    stub.chmod(stub.stat().st_mode | stat.S_IEXEC)
    p = subprocess.run(["/bin/sh", "-c", script], env={"PATH": f"{tmp_path}:/usr/bin:/bin", "LC_ALL": "C.UTF-8",
                                                       "JOB_COMPLETION_INDEX": "0"},
                       capture_output=True, cwd=tmp_path, timeout=30)
    assert p.returncode == 0, p.stderr
    argv = json.loads(p.stdout)
    assert argv[len(argv) - len(args):] == args
    assert sorted(x.name for x in tmp_path.iterdir()) == ["torchrun"]
