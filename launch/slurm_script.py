"""The sbatch script and the `soraplan train` command line (pure: Spec + Plan + LaunchOptions -> text).

`render_sbatch` fills `templates/sbatch.sh.tmpl`; `soraplan launch --dry-run` prints it and users may submit it
by hand. The submitit path (launch/slurm.py) uses the same `Allocation`, `train_argv` and `job_env`, so both
carry the same directives (the only difference: the script traps `B:USR2` in the batch shell and requeues
itself, submitit's per-task wrapper does that on `USR2`; see docs/slurm.md).

Quoting: every value that reaches the shell body goes through `shlex.quote`; values that land in `#SBATCH`
lines (which sbatch parses itself, not the shell) are checked against SAFE_DIRECTIVE (planner/names.py: fullmatch
and a length limit) and rejected otherwise; text in comment lines (the spec's display name) goes through
`names.comment_text`, so no newline or control character ever starts a line of its own.
"""

from __future__ import annotations

import re
import shlex
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from soraplan.planner.errors import UserError

from .allocation import Allocation, allocate, port_shell_expr
from soraplan.planner.names import NameRule, check_run_name, comment_text, matches, shown
from .nccl_profiles import job_env

FINISHED_MARKER = "done"                  # written by `soraplan train` (models/trainer.py) when it reached --steps
SAFE_DIRECTIVE = NameRule(re.compile(r"[A-Za-z0-9._/+,=@:~-]+"), 4096,
                          "allowed: letters, digits and . _ / + , = @ : ~ -; at most 4096 characters")
ENV_NAME = NameRule(re.compile(r"[A-Za-z_][A-Za-z0-9_]*"), 1024, "environment variable name")
HEREDOC = "SORAPLAN_SPEC_EOF"


def check_directive(field: str, value: str) -> str:
    """A value written into an `#SBATCH` line: no spaces, quotes, `$`, backticks, `%` or newlines."""
    if not matches(SAFE_DIRECTIVE, value):
        raise UserError(f"{field}: {shown(value)} has characters not allowed in an #SBATCH line "
                        f"({SAFE_DIRECTIVE.words})")
    return value


def spec_yaml(spec: Any) -> str:
    text = yaml.safe_dump(spec.model_dump(mode="json"), sort_keys=False)
    if any(line.strip() == HEREDOC for line in text.splitlines()):
        raise UserError(f"spec: contains the line {HEREDOC!r}, which would end the script's heredoc")
    return text


def train_argv(opts: Any, run_dir: Path) -> list[str]:
    """`python -m soraplan train` with the run's spec file, run directory and resume policy."""
    argv = [opts.python, "-m", "soraplan", "train", "--config", str(run_dir / "spec.yaml"),
            "--run-dir", str(run_dir), "--resume", "auto"]
    return argv + opts.train_flags() + list(opts.train_args)


def env_for(opts: Any) -> dict[str, str]:
    env = job_env(opts.nccl_profile, opts.debug, opts.env)
    for k in env:
        if not matches(ENV_NAME, k):
            raise UserError(f"launch.env: {shown(k)} is not a valid environment variable name")
    return env


def directives(alloc: Allocation, opts: Any) -> dict[str, str]:
    """The #SBATCH values both paths share (the script and submitit's parameters)."""
    d = {"job-name": check_run_name(opts.name), "nodes": str(alloc.nodes), "ntasks-per-node": str(alloc.tasks_per_node),
         "gpus-per-node": str(alloc.gpus_per_node), "cpus-per-task": str(alloc.cpus_per_task)}
    if alloc.mem_gib is not None:
        d["mem"] = f"{alloc.mem_gib}G"
    for key in ("partition", "account", "qos"):
        value = getattr(opts, key)
        if value:
            d[key] = check_directive(f"launch.{key}", value)
    d["time"] = alloc.time_str
    return d


DEBUG_BLOCK = """
# --debug bundle: environment, allocation, GPUs and network of every node into $RUN_DIR/debug/$SLURM_JOB_ID/
DEBUG_DIR="$RUN_DIR/debug/$SLURM_JOB_ID"
mkdir -p "$DEBUG_DIR"
scontrol show job "$SLURM_JOB_ID" > "$DEBUG_DIR/job.txt" 2>&1 || true
srun --nodes="$SLURM_JOB_NUM_NODES" --ntasks="$SLURM_JOB_NUM_NODES" --ntasks-per-node=1 --kill-on-bad-exit=0 bash -c \\
  'h=$(hostname); { env | sort; nvidia-smi topo -m; ip -br addr; } > "$0/node-$SLURM_NODEID-$h.txt" 2>&1' "$DEBUG_DIR" || true
"""


def render_sbatch(spec: Any, plan: dict[str, Any], opts: Any) -> str:
    alloc = allocate(spec, opts)
    run_dir = opts.run_dir
    check_directive("launch.run_root (run directory)", str(run_dir))
    d = directives(alloc, opts)
    optional = "".join(f"#SBATCH --{k}={d[k]}\n" for k in ("mem", "partition", "account", "qos") if k in d)
    env = env_for(opts)
    exports = "\n".join(f"export {k}={shlex.quote(v)}" for k, v in env.items())
    argv = train_argv(opts, run_dir)
    summary = (f"{comment_text(spec.name)}, world {alloc.world} = tp {spec.parallel.tp} x pp {spec.parallel.pp} x cp "
               f"{spec.parallel.cp} x dp {spec.parallel.dp} on {alloc.nodes} node(s) x {alloc.tasks_per_node} GPU(s)")
    values = {
        "summary": summary, "job_name": d["job-name"], "nodes": d["nodes"], "tasks_per_node": d["ntasks-per-node"],
        "gpus_per_node": d["gpus-per-node"], "cpus_per_task": d["cpus-per-task"], "optional_directives": optional,
        "time": d["time"], "run_dir": str(run_dir), "run_dir_q": shlex.quote(str(run_dir)),
        "grace_s": str(alloc.grace_s), "max_retries": str(opts.max_retries), "nccl_profile": comment_text(opts.nccl_profile),
        "debug_note": " + the --debug bundle" if opts.debug else "", "env_exports": exports,
        "spec_yaml": spec_yaml(spec), "finished_marker": shlex.quote(FINISHED_MARKER),
        "port_expr": port_shell_expr(), "debug_block": DEBUG_BLOCK if opts.debug else "",
        "train_command": " ".join(shlex.quote(a) for a in argv),
    }
    text = resources.files("soraplan.templates").joinpath("sbatch.sh.tmpl").read_text()
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    assert "{{" not in text, "unfilled placeholder in sbatch.sh.tmpl"
    return text
