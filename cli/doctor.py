"""`soraplan doctor`: what this machine has and lacks for each command, one line per check with its fix.

Checks: Python, the optional extras (torch, megatron-core, submitit, kubernetes, plotly, diffusers) with their
versions, the GPU (nvidia-smi) and the CUDA build of torch, the Slurm client and whether a controller answers
(`scontrol ping`), the Kubernetes context and whether its API answers, Chromium (report screenshots).
Fast: versions come from package metadata (nothing heavy is imported) and every network or cluster call has
a timeout of about two seconds. `--check NAME` (repeatable) makes those checks required: exit 1 if one fails.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Check:
    """One line of `soraplan doctor`."""

    name: str
    ok: bool
    detail: str
    fix: str = ""       # the command (or step) that fixes it; empty when ok

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _run(argv: list[str], timeout_s: float = TIMEOUT_S) -> tuple[int | None, str]:
    """(exit code, stdout+stderr); exit code None when the command is absent or timed out."""
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, "timed out" if isinstance(e, subprocess.TimeoutExpired) else str(e)
    return r.returncode, (r.stdout + r.stderr).strip()


def check_python() -> Check:
    v = platform.python_version()
    ok = sys.version_info >= (3, 11)
    return Check("python", ok, f"{v} ({sys.executable})", "" if ok else "install Python 3.11 or newer")


# distribution -> (the extra that installs it, what needs it)
EXTRAS = {"torch": ("train", "train, validate, profile"), "megatron-core": ("train", "train, validate"),
          "submitit": ("slurm", "launch --cluster slurm"), "kubernetes": ("k8s", "launch --cluster k8s"),
          "plotly": ("report", "report"), "diffusers": ("unet", "profile --preset")}


def check_package(dist: str) -> Check:
    from importlib.metadata import PackageNotFoundError, version

    extra, needed_by = EXTRAS[dist]
    try:
        return Check(dist, True, f"{version(dist)} (for {needed_by})")
    except PackageNotFoundError:
        return Check(dist, False, f"not installed (needed by {needed_by})", f"pip install 'soraplan[{extra}]'")


def _torch_cuda() -> str | None:
    """The CUDA version torch was built with, read from torch/version.py without importing torch."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "version.py"
    m = re.search(r"^cuda\b[^=\n]*=\s*['\"]?([\w.]+)", path.read_text() if path.is_file() else "", re.M)
    return None if m is None or m.group(1) == "None" else m.group(1)


def check_gpu() -> Check:
    cuda = _torch_cuda()
    built = f"torch built for CUDA {cuda}" if cuda else "torch has no CUDA build (or is absent)"
    if shutil.which("nvidia-smi") is None:
        return Check("gpu", False, f"no nvidia-smi (no NVIDIA driver); {built}",
                     "install the NVIDIA driver; planning commands need no GPU")
    code, out = _run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"])
    if code != 0 or not out:
        return Check("gpu", False, f"nvidia-smi failed: {out[:120]}; {built}", "check the NVIDIA driver (nvidia-smi)")
    gpus = [line.strip() for line in out.splitlines() if line.strip()]
    ok = cuda is not None
    return Check("gpu", ok, f"{len(gpus)} x {gpus[0]}; {built}",
                 "" if ok else "pip install torch with CUDA (pip install 'soraplan[train]' -c .ci/constraints.txt)")


def check_slurm() -> Check:
    missing = [b for b in ("sbatch", "squeue", "scontrol") if shutil.which(b) is None]
    if missing:
        return Check("slurm", False, f"no Slurm client ({', '.join(missing)} not on PATH)",
                     "apt-get install slurm-client (and set SLURM_CONF), or use --cluster k8s")
    code, out = _run(["scontrol", "ping"])
    up = code == 0 and "UP" in out
    lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
    said = (lines[0] if up else lines[-1])[:100] if lines else "no answer"
    return Check("slurm", up, f"client present; controller {'answers' if up else 'does not answer'} "
                              f"(scontrol ping: {said})",
                 "" if up else "start slurmctld or point SLURM_CONF at the cluster's slurm.conf")


def _kube_context() -> tuple[str, str, str] | None:
    """(kubeconfig path, current context, API server URL) from $KUBECONFIG or ~/.kube/config."""
    import yaml

    path = (os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")).split(os.pathsep)[0]
    try:
        doc = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    ctx_name = doc.get("current-context", "")
    ctx: dict[str, Any] = next((c.get("context", {}) for c in doc.get("contexts") or []
                                if c.get("name") == ctx_name), {})
    cluster: dict[str, Any] = next((c.get("cluster", {}) for c in doc.get("clusters") or []
                                    if c.get("name") == ctx.get("cluster")), {})
    return path, ctx_name, str(cluster.get("server", ""))


def _answers(url: str) -> str | None:
    """The HTTP status of GET url/version (any status means the API answers); None when nothing answers."""
    import ssl
    import urllib.error
    import urllib.request

    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE      # reachability only; no credentials are sent
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/version", timeout=TIMEOUT_S, context=ctx) as r:
            return str(r.status)
    except urllib.error.HTTPError as e:
        return str(e.code)
    except (OSError, ValueError):
        return None


def check_k8s() -> Check:
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        ctx_name, server = "in-cluster service account", f"https://{host}:{port}"
    else:
        found = _kube_context()
        if found is None:
            return Check("k8s", False, "no kubeconfig ($KUBECONFIG or ~/.kube/config) and not inside a pod",
                         "set KUBECONFIG (e.g. kubectl config view --raw > ~/.kube/config), or use --cluster slurm")
        path, ctx_name, server = found
        if not server:
            return Check("k8s", False, f"{path}: no current context with a server",
                         "kubectl config use-context NAME")
    status = _answers(server)
    if status is None:
        return Check("k8s", False, f"context {ctx_name}: API {server} does not answer",
                     "check the network/VPN to the cluster, or kubectl config use-context NAME")
    return Check("k8s", True, f"context {ctx_name}: API {server} answers (HTTP {status})")


def check_chromium() -> Check:
    found = next((p for p in (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome")) if p), None)
    if found is None:
        return Check("chromium", False, "no chromium on PATH (only for report screenshots/browser tests)",
                     "apt-get install chromium")
    return Check("chromium", True, found)


def _package_check(dist: str) -> Callable[[], Check]:
    return lambda: check_package(dist)


CHECKS: dict[str, Callable[[], Check]] = {
    "python": check_python,
    **{d: _package_check(d) for d in EXTRAS},
    "gpu": check_gpu, "slurm": check_slurm, "k8s": check_k8s, "chromium": check_chromium,
}


def doctor(check: Annotated[Optional[list[str]], typer.Option("--check", help=f"require this check to pass "
                                                              f"(repeatable): {', '.join(CHECKS)}")] = None,
           json_out: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False) -> None:
    """What this machine has for each command, one line per check with the command that fixes it.

    Exit 1 when a check named with --check fails (e.g. soraplan doctor --check slurm --check torch).
    """
    from .common import fail, print_json

    required = list(check or [])
    unknown = [c for c in required if c not in CHECKS]
    if unknown:
        fail(f"--check: unknown check {unknown[0]!r}; known: {', '.join(CHECKS)}")
    results = [fn() for fn in CHECKS.values()]
    failed = [r.name for r in results if r.name in required and not r.ok]
    if json_out:
        print_json({"checks": [r.to_json() for r in results], "required": required, "failed": failed,
                    "ok": not failed})
    else:
        from .doctor_view import render

        render(results, required)
    if failed:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command("doctor")(doctor)
