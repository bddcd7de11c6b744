"""The training loop behind `soraplan train`: one Spec -> model, data, AdamW, logs, checkpoints.

Runs single-process, under torchrun or under srun (see models/parallel.py). Per step (all ranks):
  reseed dropout streams from (seed, step, dp rank) -> micro-batches (data + noise from per-step
  generators) -> backward -> TP/SP + DP gradient reduction -> AdamW -> JSON log line (rank 0).
Everything random is a function of (seed, step, rank), and checkpoints hold model + optimizer state,
so a run stopped and resumed from a checkpoint reproduces the uninterrupted loss curve exactly (CPU).

Run directory:
  log.jsonl      one JSON object per step (loss, step_time_s, samples_per_s, tokens_per_s,
                 tflops_per_gpu, mfu; FLOPs from soraplan.planner.flops)
  status.json    {"state": "running" | "finished" | "preempted" | "failed", "step", "steps", ...}
  done           written when the run reached --steps: a finished run is never restarted
  checkpoints/   see models/checkpoint.py
Exit codes: 0 finished (or already finished), 75 stopped by SIGTERM/SIGUSR2 after saving a checkpoint
(requeue and resume), 2 bad input, 1 anything else.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

EXIT_FINISHED, EXIT_PREEMPTED = 0, 75
SIGNAL_AT_STEP_ENV = "SORAPLAN_TRAIN_SIGNAL_AT_STEP"   # tests: deliver SIGTERM to this process at step N


def tiny_spec(spec):
    """The same layout (tp, pp, cp, dp, attention kind, adaLN, conditioning) at seconds-per-step size:
    2 layers (or pp*vpp), 4 heads of 16 (hidden 64; tp heads when tp > 4), 16 frames at 64x64 (32 tokens, 16 for images), 8 text tokens of 32,
    fp32 on CPU."""
    from soraplan.planner.spec import Spec

    import torch

    d = spec.model_dump()
    p, m, v, k = d["parallel"], d["model"], d["video"], d["kernels"]
    heads = p["tp"] * max(1, 4 // p["tp"])                  # 4 heads (hidden 64) up to tp=4, tp heads beyond
    m.update(layers=max(2, p["pp"] * p["vpp"]), heads=heads, hidden=16 * heads, ffn_hidden=64 * heads,
             name=f"{m['name']}-tiny", num_classes=min(m["num_classes"], 10), long_skip=False, tokens_in_sequence=0)
    image = v["frames"] == 1
    v.update(frames=1 if image else 16, height=64, width=64, vae_stride_t=1 if image else 4, vae_stride_s=8,
             causal_first_frame=False, patch_t=1 if image else 2, patch_h=2, patch_w=2, tokens=None,
             text_tokens=8 if m["cross_attn"] else 0, text_dim=32)
    v["latent_channels"] = min(v["latent_channels"], 4)
    if m["attention"].startswith("window"):
        grid = (1 if image else 2, 4, 4)
        m["attention"] = "window:" + ",".join(str(min(int(w), g)) for w, g in zip(m["attention"][7:].split(","), grid))
    if m["attention"] == "spatial-temporal" and image:
        m["attention"] = "full"
    if not torch.cuda.is_available():
        k.update(param_dtype="fp32", activation_dtype="fp32")
    d["name"] = f"{d['name']}-tiny"
    return Spec.model_validate(d)


@dataclass
class TrainArgs:
    steps: int = 100
    run_dir: str = "runs/train"
    resume: str = "auto"            # auto | never | PATH
    save_every: int = 50
    keep_last: int = 3
    log_every: int = 10
    data: str | None = None
    seed: int = 1234
    objective: str = "flow"
    lr: float = 1e-4


class _Stop:
    requested = False
    signum = 0

    @classmethod
    def handler(cls, signum, frame):
        cls.requested, cls.signum = True, signum


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj) + "\n")
    os.replace(tmp, path)


def check_layout(spec, world: int) -> None:
    from soraplan.planner.errors import UserError

    p = spec.parallel
    if p.vpp > 1:
        raise UserError(f"parallel.vpp: interleaved pipeline stages are planned analytically only (got vpp={p.vpp}); "
                        "training runs megatron's non-interleaved 1F1B schedule")
    if p.cp > 1 and (spec.model.attention_kind != "full" or spec.kernels.attention_kernel != "flash" or p.pp > 1):
        raise UserError(f"parallel.cp: context parallelism (cp={p.cp}) trains full attention with the flash kernel and "
                        "pp=1 only; other layouts are planned analytically")
    if world != p.world:
        raise UserError(f"parallel: the spec needs {p.world} processes (tp {p.tp} x pp {p.pp} x cp {p.cp} x dp {p.dp}) "
                        f"but {world} were launched; e.g. torchrun --nproc-per-node {p.world} -m soraplan train ...")


def run(spec, args: TrainArgs, out=None) -> int:
    """Train; returns the process exit code (see the module docstring)."""
    import torch
    import torch.distributed as dist
    from megatron.core import parallel_state as ps

    from soraplan.planner.errors import UserError
    from soraplan.planner.flops import flops

    from . import checkpoint as ckpt
    from .build import build_model
    from .data import Loader, ShardDataset, step_generator
    from .loss import diffusion_inputs, drop_labels, model_kwargs, training_loss
    from .pipeline import pipeline_step
    from .parallel import comm_device, dist_env, initialize
    from .shims import seed_model_parallel_rng
    from .train_loop import finalize_grads

    if args.objective not in ("flow", "eps"):
        raise UserError(f"objective: 'flow' or 'eps', got {args.objective!r}")
    if args.resume not in ("auto", "never") and not Path(args.resume).exists():
        raise UserError(f"resume: {args.resume} does not exist (use auto, never or a checkpoint directory)")
    world = dist_env().world
    check_layout(spec, world)
    initialize(spec)
    rank = dist.get_rank()
    cdev = comm_device()
    tp_rank, pp_rank = ps.get_tensor_model_parallel_rank(), ps.get_pipeline_model_parallel_rank()
    dp_rank, dp_size = ps.get_data_parallel_rank(), ps.get_data_parallel_world_size()
    cp_rank, cp_size = ps.get_context_parallel_rank(), ps.get_context_parallel_world_size()
    run_dir = Path(args.run_dir)
    say = (lambda s: print(s, file=out or sys.stdout, flush=True)) if rank == 0 else (lambda s: None)

    done = run_dir / "done"
    if args.resume == "auto" and done.exists():
        info = json.loads(done.read_text() or "{}")
        if int(info.get("steps", 0)) >= args.steps:
            say(f"soraplan train: {run_dir} already finished at step {info.get('step')} (done marker); nothing to do")
            return EXIT_FINISHED
    if args.resume == "never" and ckpt.complete_checkpoints(run_dir):
        raise UserError(f"resume: {run_dir} already holds checkpoints; use --resume auto to continue or a new --run-dir")
    if rank == 0:
        run_dir.mkdir(parents=True, exist_ok=True)
        if done.exists():
            done.unlink()
    dist.barrier()

    dataset = ShardDataset(args.data, spec) if args.data else None
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = build_model(spec, device=device, dtype=torch.float32, seed=args.seed)   # fp32 master weights
    model.train()
    if dp_size > 1 and spec.parallel.distributed_optimizer:
        # ZeRO-1: AdamW state sharded over the DP group, updated params broadcast by their owner
        from torch.distributed.optim import ZeroRedundancyOptimizer

        optimizer = ZeroRedundancyOptimizer(model.parameters(), optimizer_class=torch.optim.AdamW,
                                            process_group=ps.get_data_parallel_group(), lr=args.lr, weight_decay=0.0)
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(spec.kernels.activation_dtype)

    start = 0
    if args.resume == "auto":
        found = ckpt.complete_checkpoints(run_dir)
        meta = ckpt.load_latest(run_dir, model, optimizer, tp_rank, pp_rank, log=say) if found else None
        if found and meta is None:
            raise UserError(f"resume: no checkpoint in {ckpt.ckpt_root(run_dir)} could be loaded (all corrupted); use --resume never to start over")
    elif args.resume != "never":
        meta = ckpt.load(args.resume, model, optimizer, tp_rank, pp_rank)
    else:
        meta = None
    if meta:
        start = int(meta["step"])
        if int(meta.get("seed", args.seed)) != args.seed:
            say(f"warning: checkpoint seed {meta.get('seed')} != --seed {args.seed}; the data order changes")
        say(f"soraplan train: resumed from step {start} ({meta.get('path', '')})")

    loader = Loader(spec, args.seed, dp_rank, dp_size, spec.parallel.micro_batch, dataset)
    microbatches = spec.parallel.microbatches
    global_batch = spec.parallel.global_batch_size
    f = flops(spec)
    peak = spec.hardware.spec.peak_tflops
    log_path = run_dir / "log.jsonl"
    status = run_dir / "status.json"
    say(f"soraplan train: {spec.name} | {world} processes (tp {spec.parallel.tp}, pp {spec.parallel.pp}, cp {cp_size}, dp {dp_size}) | {device} | "
        f"global batch {global_batch} | steps {start}->{args.steps}")
    say(f"soraplan train: logs -> {log_path}, checkpoints -> {ckpt.ckpt_root(run_dir)}, status -> {status}")
    if dp_size > 1:
        say("soraplan train: optimizer: " + ("AdamW state sharded over DP (ZeroRedundancyOptimizer, --distributed-optimizer)"
                                             if spec.parallel.distributed_optimizer else "AdamW replicated over DP"))

    _Stop.requested = False
    old = {s: signal.signal(s, _Stop.handler) for s in (signal.SIGTERM, signal.SIGUSR2)}
    signal_at = int(os.environ.get(SIGNAL_AT_STEP_ENV, "-1"))
    meta_base = {"seed": args.seed, "tp": spec.parallel.tp, "pp": spec.parallel.pp, "dp": dp_size,
                 "spec_name": spec.name, "objective": args.objective}

    def save(step: int) -> None:
        path = ckpt.save(run_dir, step, model, optimizer, {**meta_base, "samples": step * global_batch},
                         tp_rank, pp_rank, args.keep_last)
        say(f"soraplan train: checkpoint {path}")

    if rank == 0:
        _write_json(status, {"state": "running", "step": start, "steps": args.steps, "pid": os.getpid()})
    log = open(log_path, "a") if rank == 0 else None
    code = EXIT_FINISHED
    step = start
    last_saved = start if meta else -1
    try:
        while step < args.steps:
            if step == signal_at:
                os.kill(os.getpid(), signal.SIGTERM)
            t0 = time.perf_counter()
            seed_model_parallel_rng((args.seed * 1_000_003 + step * 7 + dp_rank + 131 * cp_rank) % (2 ** 31))
            optimizer.zero_grad(set_to_none=True)
            total = torch.zeros((), device=cdev)
            if spec.parallel.pp > 1:      # megatron's 1F1B schedule over the pipeline stages
                items = []
                for micro in range(microbatches):
                    batch = {k: v.to(device) for k, v in loader.batch(step, micro, microbatches).items()}
                    g = step_generator(args.seed, step, dp_rank * microbatches + micro, 1)
                    x_t, ts, target = diffusion_inputs(batch, args.objective, g)
                    if model.class_cond:
                        batch = drop_labels(batch, spec.model.num_classes, g)
                    items.append(({"latents": x_t, "timesteps": ts, **model_kwargs(batch)}, target))
                total = pipeline_step(model, spec, items, amp_dtype, device)
            for micro in range(microbatches if spec.parallel.pp == 1 else 0):
                batch = {k: v.to(device) for k, v in loader.batch(step, micro, microbatches).items()}
                g = step_generator(args.seed, step, dp_rank * microbatches + micro, 1)
                with torch.autocast(device_type=device, dtype=amp_dtype, enabled=amp_dtype is not None):
                    loss = training_loss(model, batch, args.objective, generator=g) / microbatches
                (loss / cp_size).backward()        # CP: gradients are summed over the CP ranks
                total += loss.detach().float().to(cdev)
            finalize_grads(model, spec)
            optimizer.step()
            if dp_size > 1:
                dist.all_reduce(total, group=ps.get_data_parallel_group())
                total /= dp_size
            stop = torch.tensor([1 if _Stop.requested else 0], device=cdev)
            dist.all_reduce(stop, op=dist.ReduceOp.MAX)
            dt = time.perf_counter() - t0
            step += 1
            if rank == 0:
                sps = global_batch / dt
                tflops = f.train * sps / world / 1e12
                rec = {"step": step, "loss": float(total), "step_time_s": dt, "samples_per_s": sps,
                       "tokens_per_s": sps * spec.seq_len, "tflops_per_gpu": tflops, "mfu": tflops / peak,
                       "peak_tflops": peak, "global_batch": global_batch, "time": time.time()}
                log.write(json.dumps(rec) + "\n")
                log.flush()
                if step % args.log_every == 0 or step == args.steps or step == start + 1:
                    _human(rec, args.steps, out)
            if args.save_every > 0 and step % args.save_every == 0:
                save(step)
                last_saved = step
            if stop.item():
                if last_saved != step:
                    save(step)
                say(f"soraplan train: stopped by signal at step {step}; checkpoint saved, exit {EXIT_PREEMPTED} (resume with --resume auto)")
                code = EXIT_PREEMPTED
                break
        if code == EXIT_FINISHED:
            if last_saved != step:
                save(step)
            if rank == 0:
                _write_json(done, {"step": step, "steps": args.steps, "time": time.time()})
            say(f"soraplan train: finished {step} steps; done marker {done}")
    except BaseException:
        if rank == 0:
            _write_json(status, {"state": "failed", "step": step, "steps": args.steps})
        raise
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if log:
            log.close()
    if rank == 0:
        _write_json(status, {"state": "finished" if code == EXIT_FINISHED else "preempted", "step": step,
                             "steps": args.steps, "exit_code": code})
    return code


def _human(rec: dict, steps: int, out=None) -> None:
    from rich.console import Console

    Console(file=out or sys.stdout, highlight=False, soft_wrap=True).print(
        f"[bold]step {rec['step']}/{steps}[/] loss [cyan]{rec['loss']:.5f}[/]  {rec['step_time_s']:.3f} s/step  "
        f"{rec['samples_per_s']:.2f} samples/s  {rec['tokens_per_s']:.0f} tok/s  "
        f"{rec['tflops_per_gpu']:.4f} TFLOP/s/GPU  MFU {100 * rec['mfu']:.3f}%")
