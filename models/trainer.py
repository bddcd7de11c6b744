"""The training loop behind `soraplan train`: one Spec -> model, data, AdamW, logs, checkpoints.

Runs single-process, under torchrun or under srun (see models/parallel.py). `Trainer(spec, args).run()`:
  setup    check the arguments and the layout, join the process group, check the run directory, build
           the model, AdamW and the data loader;
  resume   load the latest complete checkpoint (--resume auto), a given one, or none (--resume never);
  step     (every rank) reseed dropout streams from (seed, step, dp rank, cp rank) -> micro-batches (data
           and noise from per-step generators) -> backward (through megatron's 1F1B schedule when pp > 1)
           -> TP/SP gradient sync -> the dp·cp gradient all-reduce and AdamW, or with --distributed-optimizer
           the flat-buffer distributed optimizer (models/zero.py: reduce-scatter, sharded AdamW, all-gather);
  log      one JSON line per step (rank 0), a human line every --log-every steps;
  save     a checkpoint every --save-every steps, at the end and when a stop signal arrives.
Everything random is a function of (seed, step, rank), and checkpoints hold model + optimizer state,
so a run stopped and resumed from a checkpoint reproduces the uninterrupted loss curve exactly (CPU).

Run directory (rank 0 decides everything about it once and broadcasts the decision, so every rank takes
the same branch: the lock, the done marker, which checkpoint to resume):
  .lock          flock held by rank 0 for the whole run: a second trainer refuses (models/run_lock.py)
  log.jsonl      one JSON object per step (loss, step_time_s, samples_per_s, tokens_per_s,
                 tflops_per_gpu, mfu; FLOPs from soraplan.planner.flops); cut back to the resumed step
                 before training, so each step appears once
  status.json    {"state": "running" | "finished" | "preempted" | "failed", "step", "steps", ...}
  done           written when the run reached --steps: a finished run is never restarted
  checkpoints/   see models/checkpoint.py
status.json, done and the log cut are written through soraplan.models.atomic (temp, fsync, rename, fsync of
the directory); the log is fsynced before each checkpoint is renamed in.
Exit codes: 0 finished (or already finished), 75 stopped by SIGTERM/SIGUSR2 after saving a checkpoint
(requeue and resume), 2 bad input, 1 anything else.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TextIO

from . import atomic

EXIT_FINISHED, EXIT_PREEMPTED = 0, 75
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR2)
SIGNAL_AT_STEP_ENV = "SORAPLAN_TRAIN_SIGNAL_AT_STEP"   # tests: deliver SIGTERM to this process at step N


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
    """Set by SIGTERM / SIGUSR2; the loop finishes its step, saves and exits with EXIT_PREEMPTED."""

    requested = False
    signum = 0

    @classmethod
    def handler(cls, signum, frame):
        cls.requested, cls.signum = True, signum


def _read_done(path: Path) -> tuple[dict | None, str | None]:
    """The done marker: (its content, None), (None, None) when absent, (None, why) when unreadable or torn."""
    if not path.exists():
        return None, None
    try:
        info = atomic.read_json(path)
        if not isinstance(info, dict):
            raise ValueError("not a JSON object")
        int(info.get("steps", 0))
        return info, None
    except (OSError, ValueError, TypeError) as e:
        return None, f"{type(e).__name__}: {str(e).splitlines()[0][:80] if str(e) else ''}"


def trim_log(path: Path, step: int) -> list[str]:
    """Keep the records of steps 1..`step` of log.jsonl, each once (the last line of a step counts),
    and replace the file atomically; torn or foreign lines are dropped.

    Args:
        path: log.jsonl.
        step: the step the run continues from (0 for a fresh start).

    Returns:
        Notes to print (lines dropped because they were not JSON records).
    """
    if not path.exists():
        return []
    kept: dict[int, str] = {}
    bad = 0
    for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
            s = int(rec["step"])
        except (ValueError, KeyError, TypeError):
            bad += 1
            continue
        if 1 <= s <= step:
            kept[s] = line
    atomic.write_text(path, "".join(kept[s] + "\n" for s in sorted(kept)))
    return [f"note: dropped {bad} unreadable line(s) from {path}"] if bad else []


def check_args(a: TrainArgs) -> None:
    """Refuse run options the trainer cannot honour (UserError naming the flag and the rule); pure, so the
    CLI calls it before importing torch and every rank gets the same answer.

    Args:
        a: the run options.
    """
    from soraplan.planner.errors import UserError

    if a.objective not in ("flow", "eps"):
        raise UserError(f"objective: 'flow' or 'eps', got {a.objective!r}")
    if a.steps < 1:
        raise UserError(f"steps: at least 1, got {a.steps}")
    if a.keep_last < 1:
        raise UserError(f"keep-last: at least 1 (the checkpoint just written is always kept), got {a.keep_last}")
    if a.log_every < 1:
        raise UserError(f"log-every: at least 1 (a human line every N steps), got {a.log_every}")
    if a.save_every < 0:
        raise UserError(f"save-every: 0 (only at the end and on a signal) or more, got {a.save_every}")
    if not math.isfinite(a.lr) or a.lr <= 0:
        raise UserError(f"lr: a finite number > 0, got {a.lr}")


def check_layout(spec, world: int) -> None:
    """Refuse layouts the trainer cannot run (UserError naming the field), before any process group exists."""
    from soraplan.planner.errors import UserError

    from soraplan.planner.trainable import train_refusal

    p = spec.parallel
    reason = train_refusal(spec)          # the rule `plan` and `launch` apply too
    if reason:
        raise UserError(reason)
    if world != p.world:
        raise UserError(f"parallel: the spec needs {p.world} processes (tp {p.tp} x pp {p.pp} x cp {p.cp} x dp {p.dp}) "
                        f"but {world} were launched; e.g. torchrun --nproc-per-node {p.world} -m soraplan train ...")


class Trainer:
    """One training run of `spec` with `args`; `run()` returns the process exit code (module docstring).

    Args:
        spec: the validated Spec (already shrunk for --tiny).
        args: the run options.
        out: where rank 0's human lines go (default: sys.stdout at the time of writing).
    """

    def __init__(self, spec, args: TrainArgs, out: TextIO | None = None) -> None:
        self.spec, self.args, self.out = spec, args, out
        self.run_dir = Path(args.run_dir)
        self.done_path = self.run_dir / "done"
        self.log_path = self.run_dir / "log.jsonl"
        self.status_path = self.run_dir / "status.json"
        self.start = 0
        self.resumed = False
        self.last_saved = -1
        self.log_file: TextIO | None = None
        self.lock: Any = None          # rank 0: the run directory's RunLock while the run lasts

    # ------------------------------------------------------------------ the run
    def run(self) -> int:
        """setup -> resume -> steps until --steps or a stop signal; returns the exit code. The run
        directory's lock is held from setup to the end and released on the way out."""
        try:
            if not self.setup():
                return EXIT_FINISHED
            self.resume()
            self.announce()
            return self.train()
        finally:
            if self.lock is not None:
                self.lock.release()
                self.lock = None

    def say(self, line: str) -> None:
        """One human line from rank 0."""
        if self.rank == 0:
            print(line, file=self.out or sys.stdout, flush=True)

    # ------------------------------------------------------------------ setup
    def setup(self) -> bool:
        """Check the arguments and the layout, join the process group, lock and check the run directory,
        build the model, optimizer and data. Returns False when the run directory holds a finished run."""
        self._check_args()
        self._join()
        self._claim_run_dir()
        if self._finished_before():
            return False
        self._build()
        return True

    def _check_args(self) -> None:
        """The run options alone (the same answer on every rank, before any collective)."""
        check_args(self.args)

    def _join(self) -> None:
        """torch.distributed + megatron parallel state for the spec's layout; this process's ranks."""
        import torch.distributed as dist
        from megatron.core import parallel_state as ps

        from .parallel import comm_device, dist_env, initialize

        self.world = dist_env().world
        check_layout(self.spec, self.world)
        initialize(self.spec)
        self.rank = dist.get_rank()
        self.comm_device = comm_device()
        self.tp_rank, self.pp_rank = ps.get_tensor_model_parallel_rank(), ps.get_pipeline_model_parallel_rank()
        self.dp_rank, self.dp_size = ps.get_data_parallel_rank(), ps.get_data_parallel_world_size()
        self.cp_rank, self.cp_size = ps.get_context_parallel_rank(), ps.get_context_parallel_world_size()

    def _decide(self, decide: Callable[[], Any]) -> Any:
        """`decide()` on rank 0, its result on every rank (so every rank takes the same branch). When
        `decide` raises on rank 0, every rank raises too (the same UserError line, or a RuntimeError naming
        rank 0's error) instead of waiting for a broadcast that never comes."""
        import torch.distributed as dist

        from soraplan.planner.errors import UserError

        box: list[Any] = [None]
        failure: BaseException | None = None
        if self.rank == 0:
            try:
                box = [("ok", decide())]
            except Exception as e:  # noqa: BLE001 - re-raised below, after the other ranks are told
                failure = e
                box = [("user" if isinstance(e, UserError) else "crash", " ".join(f"{type(e).__name__}: {e}".split())[:300])]
        dist.broadcast_object_list(box, 0)
        kind, value = box[0]
        if failure is not None:
            raise failure
        if kind == "user":
            raise UserError(value.split(": ", 1)[1])
        if kind == "crash":
            raise RuntimeError(f"rank 0 failed while deciding for every rank: {value}")
        return value

    def _claim_run_dir(self) -> None:
        """Rank 0 creates the run directory and takes its lock (models/run_lock.py), writing a fresh token
        into the lock file; every other rank reads the token back, which proves it sees the same directory.
        Any failure stops every rank with the same line (UserError), before the first checkpoint read."""
        import torch.distributed as dist

        from soraplan.planner.errors import UserError

        from .run_lock import RunDirBusy, RunLock, read_token

        def lock() -> tuple[str | None, str, bool]:
            token = f"{os.getpid()}-{os.urandom(8).hex()}"
            try:
                self.run_dir.mkdir(parents=True, exist_ok=True)
                self.lock = RunLock(self.run_dir, token).acquire()
            except RunDirBusy as e:
                return str(e), token, True
            except OSError as e:
                return f"run-dir: cannot create or lock {self.run_dir} ({e.strerror or e})", token, True
            return None, token, self.lock.supported

        err, token, supported = self._decide(lock)
        if err:
            raise UserError(err)
        if not supported:
            self.say(f"warning: the filesystem of {self.run_dir} does not support file locks; a second trainer "
                     "on this run directory would not be refused")
        seen = self.rank == 0 or read_token(self.run_dir) == token
        views: list[Any] = [None] * self.world
        dist.all_gather_object(views, (seen, os.path.abspath(self.run_dir)))
        blind = [r for r, (ok, _) in enumerate(views) if not ok]
        if blind:
            k = blind[0]
            raise UserError(f"run-dir: rank {k} does not see the run directory rank 0 locked (rank 0: {views[0][1]}, "
                            f"rank {k}: {views[k][1]}, where .lock differs); put --run-dir on a filesystem every node "
                            "mounts at the same path")

    def _finished_before(self) -> bool:
        """Rank 0 reads the run directory once and decides for every rank: finish the last interrupted
        checkpoint write (`checkpoint.recover`), say the run is already finished (--resume auto and a done
        marker for at least --steps), refuse --resume never over existing checkpoints, drop a stale done."""
        from soraplan.planner.errors import UserError

        from . import checkpoint as ckpt

        def inspect() -> dict[str, Any]:
            notes = ckpt.recover(self.run_dir)
            done, why = _read_done(self.done_path)
            if why:
                notes.append(f"note: ignoring the unreadable done marker {self.done_path} ({why})")
            if self.args.resume == "auto" and done and int(done.get("steps", 0)) >= self.args.steps:
                return {"notes": notes, "finished": done.get("step")}
            if self.args.resume == "never" and ckpt.complete_checkpoints(self.run_dir):
                return {"notes": notes, "error": f"resume: {self.run_dir} already holds checkpoints; "
                                                 "use --resume auto to continue or a new --run-dir"}
            if self.done_path.exists():
                self.done_path.unlink()
                atomic.fsync_dir(self.run_dir)
            return {"notes": notes}

        verdict = self._decide(inspect)
        for note in verdict["notes"]:
            self.say(note)
        if verdict.get("error"):
            raise UserError(verdict["error"])
        if "finished" in verdict:
            self.say(f"soraplan train: {self.run_dir} already finished at step {verdict['finished']} (done marker); "
                     "nothing to do")
            return True
        return False

    def _build(self) -> None:
        """Data set, model (fp32 master weights), AdamW (sharded over dp·cp with --distributed-optimizer), loader."""
        import torch
        from soraplan.planner.flops import flops

        from .build import build_model
        from .data import Loader, ShardDataset

        spec, a = self.spec, self.args
        dataset = ShardDataset(a.data, spec) if a.data else None
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = build_model(spec, device=self.device, dtype=torch.float32, seed=a.seed)
        self.model.train()
        # Megatron's distributed optimizer (flat buffers, AdamW state sharded over the dp·cp ranks) or AdamW
        from .zero import build_optimizer

        self.optimizer, self.sharded = build_optimizer(self.model, spec, a.lr)
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(spec.kernels.activation_dtype)
        self.microbatches = spec.parallel.microbatches
        self.global_batch = spec.parallel.global_batch_size
        self.loader = Loader(spec, a.seed, self.dp_rank, self.dp_size, spec.parallel.micro_batch, dataset)
        self.flops = flops(spec)

    # ------------------------------------------------------------------ resume
    def resume(self) -> int:
        """Load model + optimizer state per --resume; returns the step to continue from (0 for a fresh run).

        Rank 0 alone lists the checkpoints and broadcasts the list; every rank then walks that list
        together (`checkpoint.load_first`), so all of them resume the same step or stop with the same line.
        """
        from soraplan.planner.errors import UserError

        from . import checkpoint as ckpt

        a = self.args
        plan = self._decide(lambda: ckpt.plan_resume(self.run_dir, a.resume))
        for note in plan.notes:
            self.say(note)
        if plan.error:
            raise UserError(plan.error)
        meta = None
        if plan.names:
            layout = {"tp": self.spec.parallel.tp, "pp": self.spec.parallel.pp, "vpp": self.spec.parallel.vpp}
            layout["distributed_optimizer"] = self.sharded
            if self.sharded:                  # one optimizer shard per dp·cp rank: the same sharding to resume
                layout.update(dp=self.dp_size, cp=self.cp_size)
            meta = ckpt.load_first(plan.paths(self.run_dir), plan.fallback, self.model, self.optimizer, self.tp_rank, self.pp_rank,
                                   layout=layout, log=self.say)
            if meta is None:
                raise UserError(f"resume: no checkpoint in {ckpt.ckpt_root(self.run_dir)} could be loaded (all corrupted); "
                                "start over in a new --run-dir")
        if meta:
            self.start, self.resumed = int(meta["step"]), True
            if int(meta.get("seed", a.seed)) != a.seed:
                self.say(f"warning: checkpoint seed {meta.get('seed')} != --seed {a.seed}; the data order changes")
            self.say(f"soraplan train: resumed from step {self.start} ({meta.get('path', '')})")
        return self.start

    def announce(self) -> None:
        """The header lines: model and layout, where logs, checkpoints and status go, the optimizer under DP."""
        from . import checkpoint as ckpt

        p = self.spec.parallel
        pp = f"pp {p.pp}" + (f" x vpp {p.vpp}" if p.vpp > 1 else "")
        self.say(f"soraplan train: {self.spec.name} | {self.world} processes (tp {p.tp}, {pp}, cp {self.cp_size}, "
                 f"dp {self.dp_size}) | {self.device} | global batch {self.global_batch} | steps {self.start}->{self.args.steps}")
        self.say(f"soraplan train: logs -> {self.log_path}, checkpoints -> {ckpt.ckpt_root(self.run_dir)}, "
                 f"status -> {self.status_path}")
        if self.dp_size * self.cp_size > 1:
            self.say("soraplan train: optimizer: " + (f"AdamW state sharded over DP·CP ({self.dp_size * self.cp_size} ranks, "
                                                      "flat-buffer distributed optimizer, --distributed-optimizer)"
                                                      if self.sharded else "AdamW replicated over DP·CP"))

    # ------------------------------------------------------------------ the loop
    def train(self) -> int:
        """Steps from the resumed step to --steps; checkpoints, logs, status and the done marker on the way.

        A stop signal (SIGTERM, SIGUSR2) ends the run after the current step with a checkpoint and
        EXIT_PREEMPTED; an exception marks status.json "failed" and propagates.
        """
        a = self.args
        for note in self._decide(self._trim_log):   # each step once: records past the resumed step are re-run
            self.say(note)
        _Stop.requested = False
        old_handlers = {s: signal.signal(s, _Stop.handler) for s in STOP_SIGNALS}
        signal_at = int(os.environ.get(SIGNAL_AT_STEP_ENV, "-1"))
        self.write_status("running", self.start, pid=os.getpid())
        self.log_file = open(self.log_path, "a") if self.rank == 0 else None
        self.last_saved = self.start if self.resumed else -1
        code, step = EXIT_FINISHED, self.start
        try:
            while step < a.steps:
                if step == signal_at:
                    os.kill(os.getpid(), signal.SIGTERM)
                t0 = time.perf_counter()
                loss = self.step(step)
                stop = self.maybe_stop()
                dt = time.perf_counter() - t0
                step += 1
                self.log(step, loss, dt)
                if a.save_every > 0 and step % a.save_every == 0:
                    self.save(step)
                if stop:
                    self.preempt(step)
                    code = EXIT_PREEMPTED
                    break
            if code == EXIT_FINISHED:
                self.finish(step)
        except BaseException:
            self.write_status("failed", step)
            raise
        finally:
            for s, h in old_handlers.items():
                signal.signal(s, h)
            if self.log_file:
                self.log_file.flush()
                os.fsync(self.log_file.fileno())
                self.log_file.close()
                self.log_file = None
        self.write_status("finished" if code == EXIT_FINISHED else "preempted", step, exit_code=code)
        return code

    def _trim_log(self) -> list[str]:
        """Rank 0: cut log.jsonl back to the step the run starts from; an unusable path is a UserError."""
        from soraplan.planner.errors import UserError

        try:
            return trim_log(self.log_path, self.start)
        except OSError as e:
            raise UserError(f"run-dir: cannot rewrite {self.log_path} ({e.strerror or e})") from None

    def step(self, step: int):
        """One optimizer step (0-based `step`) on every rank; returns the mean loss over the global batch
        (a tensor on the communication device)."""
        import torch.distributed as dist
        from megatron.core import parallel_state as ps

        from .shims import seed_model_parallel_rng
        from .train_loop import finalize_grads

        seed_model_parallel_rng((self.args.seed * 1_000_003 + step * 7 + self.dp_rank + 131 * self.cp_rank) % (2 ** 31))
        self.optimizer.zero_grad(set_to_none=True)
        if self.spec.parallel.pp > 1:
            total = self._pipeline_micro_batches(step)
        else:
            total = self._accumulate_micro_batches(step)
        finalize_grads(self.model, self.spec, data_parallel=not self.sharded)
        self.optimizer.step()
        if self.dp_size > 1:
            dist.all_reduce(total, group=ps.get_data_parallel_group())
            total /= self.dp_size
        return total

    def _micro_batch(self, step: int, micro: int):
        """Micro-batch `micro` of this step on this DP rank, and the generator of its noise and timesteps."""
        from .data import step_generator

        batch = {k: v.to(self.device) for k, v in self.loader.batch(step, micro, self.microbatches).items()}
        return batch, step_generator(self.args.seed, step, self.dp_rank * self.microbatches + micro, 1)

    def _accumulate_micro_batches(self, step: int):
        """pp = 1: forward + backward of every micro-batch, gradients accumulated."""
        import torch

        from .loss import training_loss

        total = torch.zeros((), device=self.comm_device)
        amp = self.amp_dtype
        for micro in range(self.microbatches):
            batch, g = self._micro_batch(step, micro)
            with torch.autocast(device_type=self.device, dtype=amp, enabled=amp is not None):
                loss = training_loss(self.model, batch, self.args.objective, generator=g) / self.microbatches
            (loss / self.cp_size).backward()        # CP: gradients are summed over the CP ranks
            total += loss.detach().float().to(self.comm_device)
        return total

    def _pipeline_micro_batches(self, step: int):
        """pp > 1: every micro-batch through megatron's 1F1B schedule over the pipeline stages (interleaved
        over the rank's model chunks when vpp > 1)."""
        from .loss import diffusion_inputs, drop_labels, model_kwargs
        from .pipeline import pipeline_step

        items = []
        for micro in range(self.microbatches):
            batch, g = self._micro_batch(step, micro)
            x_t, ts, target = diffusion_inputs(batch, self.args.objective, g)
            if self.model.class_cond:
                batch = drop_labels(batch, self.spec.model.num_classes, g)
            items.append(({"latents": x_t, "timesteps": ts, **model_kwargs(batch)}, target))
        return pipeline_step(self.model, self.spec, items, self.amp_dtype, self.device)

    def maybe_stop(self) -> bool:
        """Whether any rank received a stop signal (all ranks agree, so all of them save and exit)."""
        import torch
        import torch.distributed as dist

        stop = torch.tensor([1 if _Stop.requested else 0], device=self.comm_device)
        dist.all_reduce(stop, op=dist.ReduceOp.MAX)
        return bool(stop.item())

    # ------------------------------------------------------------------ outputs
    def log(self, step: int, loss, dt: float) -> None:
        """Rank 0: the JSON line of the step just done (1-based `step`) and, every --log-every steps (and at
        the first and the last), the human line."""
        if self.log_file is None:      # open on rank 0 only
            return
        peak = self.spec.hardware.spec.peak_tflops
        sps = self.global_batch / dt
        tflops = self.flops.train * sps / self.world / 1e12
        rec = {"step": step, "loss": float(loss), "step_time_s": dt, "samples_per_s": sps,
               "tokens_per_s": sps * self.spec.seq_len, "tflops_per_gpu": tflops, "mfu": tflops / peak,
               "peak_tflops": peak, "global_batch": self.global_batch, "time": time.time()}
        self.log_file.write(json.dumps(rec) + "\n")
        self.log_file.flush()
        if step % self.args.log_every == 0 or step == self.args.steps or step == self.start + 1:
            _human(rec, self.args.steps, self.out)

    def save(self, step: int) -> None:
        """A checkpoint of model + optimizer after `step` steps (every rank writes its shard)."""
        from . import checkpoint as ckpt

        if self.log_file is not None:   # the log up to this step is durable before the checkpoint is
            self.log_file.flush()
            os.fsync(self.log_file.fileno())
        p = self.spec.parallel
        meta = {"seed": self.args.seed, "tp": p.tp, "pp": p.pp, "vpp": p.vpp, "dp": self.dp_size, "cp": self.cp_size,
                "distributed_optimizer": self.sharded, "spec_name": self.spec.name,
                "objective": self.args.objective, "samples": step * self.global_batch}
        path = ckpt.save(self.run_dir, step, self.model, self.optimizer, meta, self.tp_rank, self.pp_rank,
                         self.args.keep_last)
        self.say(f"soraplan train: checkpoint {path}")
        self.last_saved = step

    def preempt(self, step: int) -> None:
        """A stop signal arrived: checkpoint the step just done (unless just saved) and say how to resume."""
        if self.last_saved != step:
            self.save(step)
        self.say(f"soraplan train: stopped by signal at step {step}; checkpoint saved, exit {EXIT_PREEMPTED} "
                 "(resume with --resume auto)")

    def finish(self, step: int) -> None:
        """--steps reached: the final checkpoint (unless just saved) and the done marker."""
        if self.last_saved != step:
            self.save(step)
        if self.rank == 0:
            atomic.write_json(self.done_path, {"step": step, "steps": self.args.steps, "time": time.time()})
        self.say(f"soraplan train: finished {step} steps; done marker {self.done_path}")


    def write_status(self, state: str, step: int, **extra: Any) -> None:
        """Rank 0: status.json = {"state", "step", "steps", **extra}, replaced atomically."""
        if self.rank == 0:
            atomic.write_json(self.status_path, {"state": state, "step": step, "steps": self.args.steps, **extra})


def _human(rec: dict[str, Any], steps: int, out: TextIO | None = None) -> None:
    """One human log line: bold/coloured on a terminal, plain text otherwise (log files carry no colour codes)."""
    f = out or sys.stdout
    step, loss = f"step {rec['step']}/{steps}", f"{rec['loss']:.5f}"
    rest = (f"  {rec['step_time_s']:.3f} s/step  {rec['samples_per_s']:.2f} samples/s  {rec['tokens_per_s']:.0f} tok/s  "
            f"{rec['tflops_per_gpu']:.4f} TFLOP/s/GPU  MFU {100 * rec['mfu']:.3f}%")
    isatty = getattr(f, "isatty", None)
    if not (callable(isatty) and isatty()):
        print(f"{step} loss {loss}{rest}", file=f, flush=True)
        return
    from rich.console import Console

    Console(file=f, highlight=False, soft_wrap=True).print(f"[bold]{step}[/] loss [cyan]{loss}[/]{rest}")
