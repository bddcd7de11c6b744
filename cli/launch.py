"""`soraplan launch --cluster slurm|k8s`: run `soraplan train` with the Spec's layout on a cluster.

Parses the flags into a Spec and LaunchOptions (launch/options.build_options), calls
launch/launcher.launch_run (plan, render, ledger policy, submit) and renders its result.
"""

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .common import fail, literal, print_json, spec_from_flags, with_spec_options

L, S, K8 = "Launch", "Slurm", "Kubernetes"


def _o(*names: str, help: str, panel: str = L, **kw: Any) -> Any:
    return typer.Option(*names, help=help, rich_help_panel=panel, show_default=False, **kw)


@with_spec_options
def launch(
    cluster: Annotated[str, _o("--cluster", help="slurm | k8s")] = "slurm",
    dry_run: Annotated[bool, _o("--dry-run", help="print the exact sbatch script / YAML and submit nothing")] = False,
    resume: Annotated[bool, _o("--resume", help="continue an existing run (resubmit; training resumes from its checkpoint)")] = False,
    force: Annotated[bool, _o("--force", help="start an existing run name anew")] = False,
    debug: Annotated[bool, _o("--debug", help="debug bundle: NCCL_DEBUG=INFO, TORCH_DISTRIBUTED_DEBUG=DETAIL, env dump")] = False,
    steps: Annotated[Optional[int], _o("--steps", help="training steps")] = None,
    tiny: Annotated[bool, _o("--tiny", help="shrink the model for smoke tests (keeps the layout)")] = False,
    save_every: Annotated[Optional[int], _o("--save-every", help="checkpoint every N steps")] = None,
    train_arg: Annotated[Optional[list[str]], _o("--train-arg", help="extra argument for soraplan train (repeatable)")] = None,
    run_root: Annotated[Optional[Path], _o("--run-root", help="directory holding run directories (./runs)")] = None,
    ledger: Annotated[Optional[Path], _o("--ledger", help="ledger SQLite file")] = None,
    partition: Annotated[Optional[str], _o("--partition", help="Slurm partition", panel=S)] = None,
    account: Annotated[Optional[str], _o("--account", help="Slurm account", panel=S)] = None,
    qos: Annotated[Optional[str], _o("--qos", help="Slurm QOS", panel=S)] = None,
    time_min: Annotated[Optional[int], _o("--time-min", help="time limit in minutes (Slurm: 60; k8s: activeDeadlineSeconds, none by default)", panel=S)] = None,
    mem_gib: Annotated[Optional[int], _o("--mem-gib", help="memory per node in GiB", panel=S)] = None,
    cpus_per_task: Annotated[Optional[int], _o("--cpus-per-task", help="CPUs per task (8)", panel=S)] = None,
    gpus_per_node: Annotated[Optional[int], _o("--gpus-per-node", help="GPUs per node (GPU table)", panel=S)] = None,
    max_retries: Annotated[Optional[int], _o("--max-retries", help="requeues after preemption/time limit (3)", panel=S)] = None,
    nccl_profile: Annotated[Optional[str], _o("--nccl-profile", help="NCCL settings profile", panel=S)] = None,
    python: Annotated[Optional[str], _o("--python", help="python on the nodes (python3)", panel=S)] = None,
    image: Annotated[Optional[str], _o("--image", help="container image", panel=K8)] = None,
    kind: Annotated[Optional[str], _o("--kind", help="jobset | pytorchjob | trainjob | indexed-job", panel=K8)] = None,
    namespace: Annotated[Optional[str], _o("--namespace", help="namespace (default)", panel=K8)] = None,
    profile: Annotated[Optional[Path], _o("--profile", help="cluster profile YAML", panel=K8)] = None,
    server_dry_run: Annotated[bool, _o("--server-dry-run", help="dryRun=All on the cluster", panel=K8)] = False,
    queue: Annotated[Optional[str], _o("--queue", help="Kueue LocalQueue (suspend: true)", panel=K8)] = None,
    rdma: Annotated[Optional[str], _o("--rdma", help="none | host-network | device", panel=K8)] = None,
    pvc: Annotated[Optional[str], _o("--pvc", help="checkpoint PersistentVolumeClaim", panel=K8)] = None,
    output_dir: Annotated[Optional[Path], _o("--output-dir", help="--dry-run: write one YAML file per object here", panel=K8)] = None,
    no_preflight: Annotated[bool, _o("--no-preflight", help="submit without checking the request against the cluster")] = False,
    ephemeral: Annotated[bool, _o("--ephemeral", help="multi-node without --pvc: checkpoints die with the pods", panel=K8)] = False,
    pod_security: Annotated[Optional[str], _o("--pod-security", help="privileged | baseline | restricted (no IPC_LOCK, no hostNetwork)", panel=K8)] = None,
    json_out: Annotated[bool, _o("--json", help="print the run record as JSON")] = False,
    spec_flags: Any = None,
) -> None:
    """Launch `soraplan train` with the spec's layout on Slurm or Kubernetes."""
    from soraplan.launch.launcher import launch_run
    from soraplan.launch.options import build_options

    if output_dir is not None and output_dir.exists() and not output_dir.is_dir():
        fail(f"--output-dir: {output_dir} exists and is not a directory")
    spec, extras = spec_from_flags(spec_flags)
    if not isinstance(extras.get("launch") or {}, dict):
        fail("launch: the YAML's launch section must be a mapping")
    cli = dict(cluster=cluster, dry_run=dry_run, resume=resume, force=force, debug=debug, steps=steps, tiny=tiny,
               save_every=save_every, train_args=tuple(train_arg or ()), run_root=run_root, partition=partition,
               account=account, qos=qos, time_min=time_min, mem_gib=mem_gib, cpus_per_task=cpus_per_task,
               gpus_per_node=gpus_per_node, max_retries=max_retries, nccl_profile=nccl_profile, python=python,
               image=image, kind=kind, namespace=namespace, profile=profile, server_dry_run=server_dry_run,
               queue=queue, rdma=rdma, pvc=pvc, output_dir=output_dir, ephemeral=ephemeral, pod_security=pod_security)
    opts = build_options(spec.name, extras.get("launch"), cli, spec_flags.get("name"))
    result = launch_run(spec, opts, ledger, preflight=not no_preflight)
    if result.kind == "dry-run-files":
        for path in result.paths:
            typer.echo(str(path))
    elif result.kind == "dry-run" and result.text:
        typer.echo(result.text, nl=not result.text.endswith("\n"))
    elif result.record is not None:
        record = result.record
        if json_out:
            print_json({"name": record.name, "backend": record.backend, "run_dir": str(record.run_dir),
                        "state": record.state, "job_ids": record.job_ids})
        else:
            from .table_view import console

            console().print(literal(f"run {record.name}: {record.state} on {record.backend} (jobs: "
                            f"{', '.join(record.job_ids) or '-'}); run dir {record.run_dir}"), markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.command("launch")(launch)
