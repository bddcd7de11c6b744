"""The rendered pod command under the real torchrun (CPU, gloo), with a stand-in `soraplan train`.

Two "pods" (node ranks 0 and 1, one process each) run the JobSet pod's script with the manifest's
environment; the store host's DNS name is replaced by 127.0.0.1. They form one group through the
explicit `is_host` rendezvous. A single pod then gets SIGTERM: with the shutdown timeout the manifest sets,
torchrun waits for the trainer's checkpoint; with a 1 s timeout it kills the trainer mid-save.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from soraplan.launch.k8s_profiles import Profile
from soraplan.launch.k8s_render import render_objects
from soraplan.launch.options import LaunchOptions
from soraplan.planner.config import build_spec

pytestmark = [pytest.mark.k8s, pytest.mark.megatron]   # spawns torchrun

FAKE_TRAIN = '''
import os, signal, sys, time
from pathlib import Path
out = Path(os.environ["FAKE_OUT"])
rank = os.environ["RANK"]

def on_term(signum, frame):   # the trainer's stop: finish the step, write a checkpoint, exit 75
    time.sleep(3)
    (out / f"saved-{rank}").write_text("ok")
    sys.exit(75)

signal.signal(signal.SIGTERM, on_term)
import torch.distributed as dist
dist.init_process_group("gloo")
(out / f"rank-{dist.get_rank()}-of-{dist.get_world_size()}").write_text(" ".join(sys.argv[1:]))
dist.barrier()
if os.environ.get("FAKE_WAIT"):
    (out / "ready").write_text("1")
    time.sleep(120)
dist.destroy_process_group()
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pod(tmp_path: Path, nodes: int):
    spec = build_spec(flags={"gpus": 8 * nodes, "tp": 2, "name": "tr"})
    opts = LaunchOptions(cluster="k8s", name="tr", image="img:1", ephemeral=True)
    js = render_objects(spec, opts, Profile())[-1]
    c = js["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]["containers"][0]
    fake = tmp_path / "fake"
    (fake / "soraplan").mkdir(parents=True, exist_ok=True)
    (fake / "soraplan" / "__init__.py").write_text("")
    (fake / "soraplan" / "__main__.py").write_text(FAKE_TRAIN)
    return c["command"][2], {e["name"]: e["value"] for e in c["env"] if "value" in e}, fake


def _env(base, fake, out, rank, port, **extra):
    env = dict(base)
    env.update({"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "PYTHONPATH": str(fake), "FAKE_OUT": str(out),
                "MASTER_ADDR": "127.0.0.1", "PET_MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port),
                "PET_MASTER_PORT": str(port), "NODE_RANK": str(rank), "PET_NODE_RANK": str(rank),
                "PET_NPROC_PER_NODE": "1", "OMP_NUM_THREADS": "1", **extra})
    return env


def test_two_pods_form_one_group_with_an_explicit_host(tmp_path):
    script, base, fake = _pod(tmp_path, 2)
    out = tmp_path / "out"
    out.mkdir()
    port = _free_port()
    procs = [subprocess.Popen(["/bin/sh", "-c", script], env=_env(base, fake, out, r, port), cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT) for r in (1, 0)]
    logs = [p.communicate(timeout=240)[0].decode(errors="replace") for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    assert sorted(x.name for x in out.iterdir()) == ["rank-0-of-2", "rank-1-of-2"]
    assert "--run-dir /checkpoints/tr" in (out / "rank-0-of-2").read_text()


@pytest.mark.parametrize("manifest_timeout", [True, False])
def test_sigterm_waits_for_the_checkpoint_only_with_the_manifest_timeout(tmp_path, manifest_timeout):
    script, base, fake = _pod(tmp_path, 1)
    assert int(base["PET_SHUTDOWN_TIMEOUT"]) > 3 + 1
    out = tmp_path / "out"
    out.mkdir()
    extra = {"FAKE_WAIT": "1"}
    if not manifest_timeout:
        extra |= {"PET_SHUTDOWN_TIMEOUT": "1", "TORCH_ELASTIC_SHUTDOWN_TIMEOUT": "1"}
    p = subprocess.Popen(["/bin/sh", "-c", script], env=_env(base, fake, out, 0, _free_port(), **extra), cwd=tmp_path,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while not (out / "ready").exists():
        assert p.poll() is None and time.monotonic() < deadline, p.stdout.read().decode(errors="replace") if p.stdout else ""
        time.sleep(0.5)
    os.kill(p.pid, signal.SIGTERM)   # what the kubelet sends the container's PID 1 (exec: torchrun)
    log = p.communicate(timeout=120)[0].decode(errors="replace")
    assert p.returncode != 0
    assert (out / "saved-0").exists() == manifest_timeout, log
