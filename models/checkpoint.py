"""Sharded, atomic checkpoints with torch.distributed.checkpoint (DCP).

Layout:  RUN_DIR/checkpoints/step-00000010/   (written as step-00000010.tmp-<nonce>, renamed when done)
           .metadata, __<rank>_0.distcp         DCP shards (every rank writes its own)
           meta.json                            step, seed, layout, samples seen
           complete                             marker: written last, before the rename
Keys are `tp<r>.<param>` / `opt.tp<r>.<param>.<state>`: TP shards get distinct keys, DP replicas share
them (DCP saves a replicated key once), so the checkpoint reloads on the same (tp, pp) layout.
`latest_complete()` ignores temp dirs and dirs without the marker; `load_latest()` falls back to the
previous complete checkpoint when one is corrupted, saying so in one line.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

COMPLETE = "complete"


def ckpt_root(run_dir) -> Path:
    return Path(run_dir) / "checkpoints"


def step_dir(run_dir, step: int) -> Path:
    return ckpt_root(run_dir) / f"step-{step:08d}"


def complete_checkpoints(run_dir) -> list[Path]:
    """Complete checkpoint dirs, newest first."""
    root = ckpt_root(run_dir)
    if not root.is_dir():
        return []
    out = [p for p in root.iterdir() if p.is_dir() and p.name.startswith("step-") and ".tmp" not in p.name
           and (p / COMPLETE).exists()]
    return sorted(out, key=lambda p: int(p.name.split("-")[1]), reverse=True)


def _local(optimizer):
    """The optimizer holding this rank's state (ZeroRedundancyOptimizer: its local AdamW shard)."""
    return getattr(optimizer, "optim", optimizer)


def _state(model, optimizer, tp_rank: int, pp_rank: int) -> dict:
    tag = f"tp{tp_rank}pp{pp_rank}"
    state = {f"model.{tag}.{n}": p.data for n, p in model.named_parameters()}
    optimizer = _local(optimizer)   # ZeRO: each DP rank saves (and loads) the state of the params it owns
    names = {id(p): n for n, p in model.named_parameters()}
    for group in optimizer.param_groups:
        for p in group["params"]:
            st = optimizer.state.get(p, {})
            for k in ("exp_avg", "exp_avg_sq", "step"):
                if k in st:
                    v = st[k]
                    state[f"opt.{tag}.{names[id(p)]}.{k}"] = v if torch.is_tensor(v) else torch.tensor(float(v))
    return state


def ensure_optimizer_state(optimizer) -> None:
    """Materialise AdamW state (zeros) so a fresh optimizer has the keys a checkpoint loads into."""
    optimizer = _local(optimizer)
    for group in optimizer.param_groups:
        for p in group["params"]:
            st = optimizer.state[p]
            if not st:
                st["step"] = torch.tensor(0.0)
                st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)


def save(run_dir, step: int, model, optimizer, meta: dict, tp_rank: int, pp_rank: int, keep_last: int) -> Path:
    """Collective: every rank calls it. Returns the final directory."""
    import torch.distributed.checkpoint as dcp

    final = step_dir(run_dir, step)
    rank = dist.get_rank()
    from .parallel import comm_device

    nonce = torch.tensor([int(time.time() * 1000) % (2 ** 31)], device=comm_device())
    dist.broadcast(nonce, 0)                     # one temp name for all ranks
    tmp = final.with_name(f"{final.name}.tmp-{int(nonce)}")
    if rank == 0:
        tmp.mkdir(parents=True, exist_ok=True)
    dist.barrier()
    ensure_optimizer_state(optimizer)
    dcp.save(_state(model, optimizer, tp_rank, pp_rank), checkpoint_id=str(tmp))
    dist.barrier()
    if rank == 0:
        (tmp / "meta.json").write_text(json.dumps({**meta, "step": step}, indent=1))
        (tmp / COMPLETE).write_text(f"{step}\n")
        if final.exists():                       # a re-save of the same step replaces the old one
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in complete_checkpoints(run_dir)[keep_last:]:
            shutil.rmtree(old, ignore_errors=True)
        for stale in ckpt_root(run_dir).glob("step-*.tmp-*"):
            if stale != tmp:
                shutil.rmtree(stale, ignore_errors=True)
    dist.barrier()
    return final


def _load_one(path: Path, model, optimizer, tp_rank: int, pp_rank: int) -> dict:
    import torch.distributed.checkpoint as dcp

    ensure_optimizer_state(optimizer)
    state = _state(model, optimizer, tp_rank, pp_rank)
    dcp.load(state, checkpoint_id=str(path))
    names = {id(p): n for n, p in model.named_parameters()}
    tag = f"tp{tp_rank}pp{pp_rank}"
    for group in _local(optimizer).param_groups:   # python-number steps are not updated in place
        for p in group["params"]:
            st = _local(optimizer).state[p]
            k = f"opt.{tag}.{names[id(p)]}.step"
            if k in state and not torch.is_tensor(st.get("step")):
                st["step"] = state[k]
    return {**json.loads((path / "meta.json").read_text()), "path": str(path)}


def _reraise_interrupts(e: BaseException) -> None:
    if isinstance(e, (KeyboardInterrupt, SystemExit)):
        raise e


def _agree(ok: bool) -> bool:
    from .parallel import comm_device

    flag = torch.tensor([1 if ok else 0], device=comm_device())
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def _why(err: BaseException) -> str:
    """One short line: the innermost error of a DCP CheckpointException (its text is a traceback)."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[-1].strip() if text else ''}"[:200]


def load(path, model, optimizer, tp_rank: int, pp_rank: int) -> dict:
    """Load exactly `path` (--resume PATH): a missing marker or a read error is an error."""
    from soraplan.planner.errors import UserError

    path = Path(path)
    if not (path / COMPLETE).exists():
        raise UserError(f"resume: {path} is not a complete checkpoint (no '{COMPLETE}' marker)")
    err = None
    try:
        meta = _load_one(path, model, optimizer, tp_rank, pp_rank)
    except BaseException as e:  # noqa: BLE001 - DCP's CheckpointException is a BaseException
        _reraise_interrupts(e)
        err, meta = e, {}
    if not _agree(err is None):
        raise UserError(f"resume: checkpoint {path} is corrupted or unreadable ({_why(err) if err else 'unreadable on another rank'})")
    return meta


def load_latest(run_dir, model, optimizer, tp_rank: int, pp_rank: int, log=None) -> dict | None:
    """Newest complete checkpoint that loads on every rank; None when there is none. Corrupted ones are
    reported (one line each) and skipped."""
    log = log or (lambda s: sys.stderr.write(s + "\n"))
    # every rank must try the same list: rank 0 decides it
    cands = [str(p) for p in complete_checkpoints(run_dir)]
    box = [cands]
    dist.broadcast_object_list(box, 0)
    for path in map(Path, box[0]):
        err = None
        try:
            meta = _load_one(path, model, optimizer, tp_rank, pp_rank)
        except BaseException as e:  # noqa: BLE001 - DCP's CheckpointException is a BaseException
            _reraise_interrupts(e)
            err, meta = e, None
        if _agree(err is None):
            return meta
        if dist.get_rank() == 0 or err is not None:
            why = _why(err) if err else "unreadable on another rank"
            log(f"warning: checkpoint {path} is corrupted ({why[:200]}); falling back to the previous complete checkpoint")
    return None
