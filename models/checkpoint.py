"""Sharded, atomic, checksummed checkpoints with torch.distributed.checkpoint (DCP).

Layout:  RUN_DIR/checkpoints/step-00000010/   (written as step-00000010.tmp-<nonce>, renamed when done)
           .metadata, __<rank>_0.distcp         DCP shards (every rank writes its own, fsynced)
           meta.json                            step, seed, layout, samples seen, and `files`: the sha256
                                                and size of every shard and of .metadata
           complete                             {"step", "meta_sha256"}: written last, before the rename
Keys are `model.tp<r>pp<s>.<param>` / `opt.tp<r>pp<s>.<param>.<state>`: TP and PP shards get distinct keys,
DP replicas share them (DCP saves a replicated key once), so a checkpoint reloads on the same layout. With
the distributed optimizer (models/zero.py) the optimizer keys are `opt.tp<r>pp<s>.zero<k>of<g>.<state>`:
each of the g dp·cp ranks saves and loads its own flat shard.

Writing (`save`, a collective): DCP writes into the temp directory, each rank hashes (and fsyncs) the files
it wrote, rank 0 writes meta.json and `complete` (fsynced, through soraplan.models.atomic), fsyncs the
directory and renames it in, then fsyncs checkpoints/. Re-saving a step that exists renames the old folder
aside (`step-N.old-<nonce>`), renames the new one in, and only then deletes the old one, so a complete
checkpoint never disappears before its replacement is complete. Pruning keeps the newest `keep_last`
(>= 1) complete checkpoints at or below the step just saved; newer ones (left by a run resumed from an
older step) are kept until that step is saved again.

Reading: rank 0 alone lists the directory (`plan_resume`, which also puts back a `.old-` folder a crash
left aside, and names anything unexpected in one note) and every rank walks the same candidate list
(`load_first`). For each candidate every rank checks what it can see (marker, meta.json and its hash, the
.metadata and its own shards); a rank that cannot see what rank 0 sees stops every rank with one line
(the run directory is not shared); then each rank verifies the sha256 of the shards it owns, then DCP
loads. A checksum or read failure is a corrupt checkpoint: a warning names the file and the next older
complete one is tried (`--resume auto`), or the run stops with one line (`--resume PATH`). Every decision
is taken from gathered results, so all ranks take it together and none waits alone in a collective.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist

from . import atomic

COMPLETE = "complete"
META = "meta.json"
DCP_METADATA = ".metadata"
STEP_RE = re.compile(r"step-(\d{8})")
TMP_RE = re.compile(r"step-(\d{8})\.tmp-(\d+)")
OLD_RE = re.compile(r"step-(\d{8})\.old-(\d+)")
_SHARD_RE = re.compile(r"__(\d+)(?:_\d+\.distcp|\.metadata)")


def ckpt_root(run_dir) -> Path:
    return Path(run_dir) / "checkpoints"


def step_dir(run_dir, step: int) -> Path:
    return ckpt_root(run_dir) / f"step-{step:08d}"


def step_of(path: Path) -> int:
    """The step of a `step-NNNNNNNN` directory."""
    m = STEP_RE.fullmatch(path.name)
    if m is None:
        raise ValueError(f"not a checkpoint name: {path.name}")
    return int(m.group(1))


@dataclass
class Scan:
    """What checkpoints/ holds: complete checkpoints newest first, and names that are not ours."""

    complete: list[Path] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def scan(run_dir) -> Scan:
    """List checkpoints/ without trusting it: only `step-NNNNNNNN` directories with a `complete` marker
    count; temp and set-aside folders are ours and skipped; any other name is reported in `ignored`.

    Args:
        run_dir: the run directory.

    Returns:
        A Scan.
    """
    out = Scan()
    root = ckpt_root(run_dir)
    if not root.is_dir():
        return out
    for p in sorted(root.iterdir()):
        name = p.name
        if STEP_RE.fullmatch(name) and p.is_dir():
            if (p / COMPLETE).is_file():
                out.complete.append(p)
        elif (TMP_RE.fullmatch(name) or OLD_RE.fullmatch(name)) and p.is_dir():
            continue
        else:
            out.ignored.append(name)
    out.complete.sort(key=step_of, reverse=True)
    return out


def complete_checkpoints(run_dir) -> list[Path]:
    """Complete checkpoint dirs, newest first."""
    return scan(run_dir).complete


def recover(run_dir) -> list[str]:
    """Rank 0, holding the run-directory lock: finish what a crash interrupted in checkpoints/.

    A `step-N.old-X` folder whose `step-N` is missing is the previous complete checkpoint of a re-save that
    died between its two renames: it is renamed back. Other `.old-` folders and every `.tmp-` folder are
    leftovers of writes that never completed and are deleted.

    Args:
        run_dir: the run directory.

    Returns:
        One note per folder put back.
    """
    root = ckpt_root(run_dir)
    notes: list[str] = []
    if not root.is_dir():
        return notes
    changed = False
    for p in sorted(root.iterdir()):
        m = OLD_RE.fullmatch(p.name)
        if m and p.is_dir():
            final = root / f"step-{m.group(1)}"
            if not final.exists() and (p / COMPLETE).is_file():
                os.replace(p, final)
                notes.append(f"note: restored checkpoint {final} from {p.name} (a re-save was interrupted)")
            else:
                shutil.rmtree(p, ignore_errors=True)
            changed = True
        elif TMP_RE.fullmatch(p.name) and p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
            changed = True
    if changed:
        atomic.fsync_dir(root)
    return notes


def _local(optimizer):
    """The optimizer holding this rank's state (ZeroRedundancyOptimizer: its local AdamW shard)."""
    return getattr(optimizer, "optim", optimizer)


def _state(model, optimizer, tp_rank: int, pp_rank: int) -> dict:
    tag = f"tp{tp_rank}pp{pp_rank}"
    state = {f"model.{tag}.{n}": p.data for n, p in model.named_parameters()}
    if hasattr(optimizer, "checkpoint_state"):   # the distributed optimizer: this rank's flat shard
        return {**state, **optimizer.checkpoint_state(tag)}
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
    if hasattr(optimizer, "ensure_state"):
        optimizer.ensure_state()
        return
    optimizer = _local(optimizer)
    for group in optimizer.param_groups:
        for p in group["params"]:
            st = optimizer.state[p]
            if not st:
                st["step"] = torch.tensor(0.0)
                st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)


def owner(name: str, world: int) -> int:
    """The rank that hashes (on save) and verifies (on load) file `name`: the DCP writer rank of a shard
    (`__<r>_<i>.distcp`), rank 0 for .metadata and anything else."""
    m = _SHARD_RE.fullmatch(name)
    r = int(m.group(1)) if m else 0
    return r if r < world else 0


def _hash_own_files(directory: Path, rank: int, world: int) -> dict[str, dict]:
    """sha256 and size of the files of `directory` this rank owns, each fsynced."""
    out = {}
    for p in sorted(directory.iterdir()):
        if p.is_file() and p.name not in (META, COMPLETE) and owner(p.name, world) == rank:
            atomic.fsync_file(p)
            out[p.name] = {"sha256": atomic.sha256_file(p), "bytes": p.stat().st_size}
    return out


def _gather(obj: Any) -> list[Any]:
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def save(run_dir, step: int, model, optimizer, meta: dict, tp_rank: int, pp_rank: int, keep_last: int) -> Path:
    """Write a checkpoint of `step` (collective: every rank calls it).

    Args:
        run_dir: the run directory (rank 0 holds its lock).
        step: the number of steps done.
        model, optimizer: this rank's module and optimizer.
        meta: extra fields for meta.json (seed, layout, ...).
        tp_rank, pp_rank: this rank's coordinates (they name its keys).
        keep_last: complete checkpoints kept (>= 1; the one just written is always among them).

    Returns:
        The final directory.
    """
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint import FileSystemWriter

    from .parallel import comm_device

    if keep_last < 1:
        raise ValueError(f"keep_last must be >= 1, got {keep_last}")
    final = step_dir(run_dir, step)
    rank, world = dist.get_rank(), dist.get_world_size()
    nonce = torch.tensor([int(time.time() * 1000) % (2 ** 31)], device=comm_device())
    dist.broadcast(nonce, 0)                     # one temp name for all ranks
    tmp = final.with_name(f"{final.name}.tmp-{int(nonce)}")
    if rank == 0:
        tmp.mkdir(parents=True, exist_ok=True)
    dist.barrier()
    ensure_optimizer_state(optimizer)
    dcp.save(_state(model, optimizer, tp_rank, pp_rank), storage_writer=FileSystemWriter(str(tmp), sync_files=True))
    dist.barrier()
    files: dict[str, dict] = {}
    parts = _gather(_guard(lambda: _hash_own_files(tmp, rank, world)))
    _raise_first(parts, f"checkpoint {final.name}")
    for part in parts:
        files.update(part[1])
    done = (None, None)
    if rank == 0:
        done = _guard(lambda: _finish(run_dir, tmp, final, {**meta, "step": step, "files": files}, keep_last))
    _raise_first(_gather(done), f"checkpoint {final.name}")   # instead of a barrier: rank 0's failure stops all
    return final


def _guard(fn: Callable[[], Any]) -> tuple[str | None, Any]:
    """(None, fn()) or (one-line error, None): a rank's failure travels in the next gather."""
    try:
        return None, fn()
    except Exception as e:  # noqa: BLE001 - reported to every rank by _raise_first
        return " ".join(f"{type(e).__name__}: {e}".split())[:300], None


def _raise_first(parts: list[tuple[str | None, Any]], what: str) -> None:
    for r, (err, _) in enumerate(parts):
        if err:
            raise RuntimeError(f"{what}: rank {r} failed: {err}")


def _finish(run_dir, tmp: Path, final: Path, meta: dict, keep_last: int) -> None:
    """Rank 0: meta.json, the complete marker, the rename in, pruning."""
    import hashlib

    meta_bytes = (json.dumps(meta, indent=1) + "\n").encode()
    atomic.write_bytes(tmp / META, meta_bytes)
    atomic.write_json(tmp / COMPLETE, {"step": meta["step"], "meta_sha256": hashlib.sha256(meta_bytes).hexdigest()})
    _install(tmp, final)
    _prune(run_dir, meta["step"], keep_last)


def _install(tmp: Path, final: Path) -> None:
    """Rename the finished temp directory in; an existing `final` is set aside first and deleted last."""
    root = final.parent
    atomic.fsync_dir(tmp)
    if final.exists():
        aside = final.with_name(f"{final.name}.old-{tmp.name.rsplit('-', 1)[1]}")
        os.replace(final, aside)
        atomic.fsync_dir(root)
        os.replace(tmp, final)
        atomic.fsync_dir(root)
        shutil.rmtree(aside)
    else:
        os.replace(tmp, final)
    atomic.fsync_dir(root)


def _prune(run_dir, step: int, keep_last: int) -> None:
    """Delete complete checkpoints beyond the newest `keep_last` at or below `step`, and stale temp dirs."""
    kept = [p for p in complete_checkpoints(run_dir) if step_of(p) <= step]
    for old in kept[keep_last:]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in ckpt_root(run_dir).iterdir():
        if TMP_RE.fullmatch(stale.name) and stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
    atomic.fsync_dir(ckpt_root(run_dir))


# ---------------------------------------------------------------------------------------------- reading
@dataclass
class ResumePlan:
    """Rank 0's decision, broadcast to every rank: the checkpoints to try in order (newest first), whether
    a failing one falls back to the next, lines to print, and an error that stops every rank.

    `names` are folder names under each rank's own checkpoints/ (--resume auto) or, with `relative` False,
    the --resume PATH as given; `paths(run_dir)` resolves them on the rank that asks."""

    names: list[str] = field(default_factory=list)
    relative: bool = True
    fallback: bool = True
    notes: list[str] = field(default_factory=list)
    error: str | None = None

    def paths(self, run_dir) -> list[str]:
        """The candidates as this rank sees them."""
        return [str(ckpt_root(run_dir) / n) if self.relative else n for n in self.names]


def plan_resume(run_dir, resume: str) -> ResumePlan:
    """Rank 0: which checkpoints to try for `--resume auto | never | PATH` (the directory is listed once,
    here; `recover` has already run).

    Args:
        run_dir: the run directory.
        resume: the --resume value.

    Returns:
        A ResumePlan.
    """
    if resume == "never":
        return ResumePlan()
    if resume == "auto":
        s = scan(run_dir)
        notes = [f"note: ignoring {ckpt_root(run_dir) / name} (not a checkpoint name step-NNNNNNNN)"
                 for name in s.ignored]
        return ResumePlan(names=[p.name for p in s.complete], notes=notes)
    path = Path(resume)
    if not path.exists():
        return ResumePlan(error=f"resume: {resume} does not exist (use auto, never or a checkpoint directory)")
    if not (path / COMPLETE).is_file():
        return ResumePlan(error=f"resume: {path} is not a complete checkpoint (no '{COMPLETE}' marker)")
    return ResumePlan(names=[str(path)], relative=False, fallback=False)


class Corrupt(Exception):
    """A checkpoint file is missing, truncated or does not match its checksum; the message names it."""


def read_manifest(path: Path) -> dict:
    """meta.json of checkpoint `path`, checked against the hash in its `complete` marker.

    Args:
        path: the checkpoint directory.

    Returns:
        The meta dict. Raises Corrupt naming the file when the marker or meta.json is unreadable, torn or
        does not match.
    """
    marker, meta_path = path / COMPLETE, path / META
    try:
        text = marker.read_text().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise Corrupt(f"{marker}: unreadable ({_oserror(e)})") from None
    expected: str | None = None
    if not text.isdigit():                      # a bare step number: written before checksums existed
        try:
            info = json.loads(text)
            expected = str(info["meta_sha256"])
        except (ValueError, KeyError, TypeError):
            raise Corrupt(f"{marker}: not a complete marker (torn or overwritten)") from None
    try:
        data = meta_path.read_bytes()
    except OSError as e:
        raise Corrupt(f"{meta_path}: unreadable ({_oserror(e)})") from None
    if expected is not None:
        import hashlib

        if hashlib.sha256(data).hexdigest() != expected:
            raise Corrupt(f"{meta_path}: sha256 does not match the complete marker")
    try:
        meta = json.loads(data.decode())
    except ValueError:
        raise Corrupt(f"{meta_path}: not valid JSON (torn)") from None
    files = meta.get("files", {}) if isinstance(meta, dict) else None
    if (not isinstance(files, dict) or not isinstance(meta.get("step"), int)
            or not all(isinstance(v, dict) and isinstance(v.get("sha256"), str) and isinstance(v.get("bytes"), int)
                       for v in files.values())):
        raise Corrupt(f"{meta_path}: not a checkpoint manifest (step, files: name -> sha256, bytes)")
    return meta


def _oserror(e: BaseException) -> str:
    if isinstance(e, OSError):
        return e.strerror or errno.errorcode.get(e.errno or 0, type(e).__name__)
    return type(e).__name__


def _my_files(meta: dict, rank: int, world: int) -> list[str]:
    return sorted(n for n in meta.get("files", {}) if owner(n, world) == rank)


def _check_visible(path: Path, rank: int, world: int) -> tuple[dict | None, str | None]:
    """This rank's view of checkpoint `path`: the manifest, and that the files exist with their recorded
    sizes — every file on rank 0 (what it finds wrong is damage), .metadata and its own shards on the
    others (what only they find wrong is a view that differs from rank 0's). Returns (meta, None) or
    (None, reason naming the file)."""
    if not path.is_dir():
        return None, f"{path}: no such directory"
    try:
        meta = read_manifest(path)
    except Corrupt as e:
        return None, str(e)
    files = meta.get("files", {})
    names = set(files) if rank == 0 else set(_my_files(meta, rank, world)) | ({DCP_METADATA} & set(files))
    for name in sorted(names):
        f = path / name
        try:
            size = f.stat().st_size
        except OSError as e:
            return None, f"{f}: {_oserror(e)}"
        if size != files[name]["bytes"]:
            return None, f"{f}: {size} bytes, the manifest says {files[name]['bytes']} (truncated)"
    return meta, None


def _verify_mine(path: Path, meta: dict, rank: int, world: int) -> str | None:
    """sha256 of the files this rank owns against the manifest; the first mismatch, or None."""
    files = meta.get("files", {})
    for name in _my_files(meta, rank, world):
        f = path / name
        try:
            digest = atomic.sha256_file(f)
        except OSError as e:
            return f"{f}: {_oserror(e)}"
        if digest != files[name]["sha256"]:
            return f"{f}: sha256 mismatch (the bytes changed after the checkpoint was written)"
    return None


def _load_state(path: Path, model, optimizer, tp_rank: int, pp_rank: int) -> None:
    import torch.distributed.checkpoint as dcp

    ensure_optimizer_state(optimizer)
    state = _state(model, optimizer, tp_rank, pp_rank)
    dcp.load(state, checkpoint_id=str(path))
    if hasattr(optimizer, "checkpoint_state"):   # its tensors were loaded in place
        return
    names = {id(p): n for n, p in model.named_parameters()}
    tag = f"tp{tp_rank}pp{pp_rank}"
    for group in _local(optimizer).param_groups:   # python-number steps are not updated in place
        for p in group["params"]:
            st = _local(optimizer).state[p]
            k = f"opt.{tag}.{names[id(p)]}.step"
            if k in state and not torch.is_tensor(st.get("step")):
                st["step"] = state[k]


def _reraise_interrupts(e: BaseException) -> None:
    if isinstance(e, (KeyboardInterrupt, SystemExit)):
        raise e


def _why(err: BaseException) -> str:
    """One short line: the innermost error of a DCP CheckpointException (its text is a traceback)."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[-1].strip() if text else ''}"[:200]


def _first(reports: list[Any]) -> tuple[int, Any] | None:
    """(rank, report) of the lowest rank that reported something, or None."""
    for r, rep in enumerate(reports):
        if rep:
            return r, rep
    return None


def load_first(paths: list[str], fallback: bool, model, optimizer, tp_rank: int, pp_rank: int,
               layout: dict | None = None, log: Callable[[str], None] | None = None) -> dict | None:
    """Load the first checkpoint of rank 0's list that every rank can read (collective, same `paths` on
    every rank).

    Args:
        paths: checkpoint directories, newest first (rank 0's `plan_resume`, broadcast).
        fallback: try the next one when a checkpoint is corrupt (--resume auto); False: stop instead.
        model, optimizer: this rank's module and optimizer (loaded in place).
        tp_rank, pp_rank: this rank's coordinates.
        layout: {"tp": .., "pp": ..} of this run; a checkpoint of another layout stops the run.
        log: where rank 0's warnings go (default stderr).

    Returns:
        meta.json of the loaded checkpoint plus "path", or None when every candidate was corrupt.
        Raises UserError (the same line on every rank) when a rank cannot see what rank 0 sees, the layout
        differs, or a --resume PATH checkpoint is corrupt.
    """
    from soraplan.planner.errors import UserError

    rank, world = dist.get_rank(), dist.get_world_size()
    say = log or (lambda s: sys.stderr.write(s + "\n"))

    def corrupt(path: str, why: str) -> None:
        if not fallback:
            raise UserError(f"resume: checkpoint {path} is corrupted or unreadable ({why})")
        if rank == 0:
            say(f"warning: checkpoint {path} is corrupted ({why}); falling back to the previous complete checkpoint")

    for path_s in paths:
        path = Path(path_s)
        meta, reason = _check_visible(path, rank, world)
        views = _gather(reason)
        if views[0]:                                   # rank 0 itself sees a broken checkpoint
            corrupt(path_s, views[0])
            continue
        other = _first(views)
        if other:
            k, why = other
            raise UserError(f"resume: rank {k} cannot read checkpoint {path.name} chosen by rank 0 ({why}); "
                            "the run directory must be the same filesystem on every rank")
        assert meta is not None
        if layout and rank == 0:
            diff = [f"{k} {meta.get(k)} (this run: {v})" for k, v in layout.items() if k in meta and meta[k] != v]
            mismatch = f"resume: checkpoint {path_s} was written with " + ", ".join(diff) if diff else None
        else:
            mismatch = None
        mismatch = _gather(mismatch)[0]
        if mismatch:
            raise UserError(mismatch + "; resume with the same layout or start a new --run-dir")
        if not meta.get("files") and rank == 0:
            say(f"note: checkpoint {path_s} has no checksums (written by an older soraplan); not verified")
        bad = _first(_gather(_verify_mine(path, meta, rank, world)))
        if bad:
            corrupt(path_s, bad[1])
            continue
        err = None
        try:
            _load_state(path, model, optimizer, tp_rank, pp_rank)
        except BaseException as e:  # noqa: BLE001 - DCP's CheckpointException is a BaseException
            _reraise_interrupts(e)
            err = _why(e)
        failed = _first(_gather(err))
        if failed:
            corrupt(path_s, f"rank {failed[0]}: {failed[1]}")
            continue
        return {**meta, "path": path_s}
    return None


def load(path, model, optimizer, tp_rank: int, pp_rank: int) -> dict:
    """Load exactly `path` (--resume PATH) on every rank; any problem is a UserError (one line).

    Args:
        path: the checkpoint directory.
        model, optimizer, tp_rank, pp_rank: as in `load_first`.

    Returns:
        meta.json plus "path".
    """
    from soraplan.planner.errors import UserError

    plan = plan_resume(Path(path).parent.parent, str(path)) if dist.get_rank() == 0 else None
    box = [plan]
    dist.broadcast_object_list(box, 0)
    plan = box[0]
    if plan.error:
        raise UserError(plan.error)
    meta = load_first(plan.paths(""), False, model, optimizer, tp_rank, pp_rank)
    assert meta is not None
    return meta


def load_latest(run_dir, model, optimizer, tp_rank: int, pp_rank: int, log=None) -> dict | None:
    """Newest complete checkpoint of `run_dir` that loads on every rank (rank 0 lists, every rank loads);
    None when there is none or every one is corrupt (each reported in one line).

    Args:
        run_dir: the run directory.
        model, optimizer, tp_rank, pp_rank: as in `load_first`.
        log: where rank 0's notes and warnings go.

    Returns:
        meta.json plus "path", or None.
    """
    plan = plan_resume(run_dir, "auto") if dist.get_rank() == 0 else None
    box = [plan]
    dist.broadcast_object_list(box, 0)
    plan = box[0]
    say = log or (lambda s: sys.stderr.write(s + "\n"))
    if dist.get_rank() == 0:
        for note in plan.notes:
            say(note)
    return load_first(plan.paths(run_dir), True, model, optimizer, tp_rank, pp_rank, log=log)
