"""Communication per rank, predicted from the Spec: bytes by collective kind and process group for one
micro-batch's forward and backward on one rank (pp = 1), the same table `soraplan validate` measures by
wrapping torch.distributed (`soraplan.validation.comm_count`).

Bytes per call are what the rank contributes (all_reduce, isend: the tensor; all_gather_into_tensor: its
input shard; reduce_scatter_tensor and all_to_all_single: their whole input) or receives (irecv).
Notation: s = S/cp tokens per CP rank, b micro-batch, h hidden, B activation bytes, t tp, c cp, L layers,
X = s·b·h·B (one [s, b, h] tensor), k = s·b·(h/t)·B (one of q, k, v on this rank), sub = sub-blocks per
layer (self-attention, cross-attention, MLP).

TP group (t > 1)
  with SP  all_gather_into_tensor: per sub-block the column input forward, its re-gather for the weight
           gradient and the row output's gradient backward (3, + 1 forward again with full recompute) of
           X/t each, + the final layer's gather and the scatter's backward (2 X/t);
           reduce_scatter_tensor: per sub-block the row output forward and the column input gradient
           backward (2, + 1 with full recompute) of X each;
           all_reduce: the adaLN modulation's gradient [b, 6h] per layer (copy to the TP region) and
           the text K/V projection's input gradient [T, b, h] per layer (replicated input)
  without  all_reduce: per sub-block the row output forward and the column input gradient backward (2,
           + 1 with full recompute) of X, + the text K/V input gradient per layer
CP group (c > 1), per layer whose self-attention crosses CP ranks (p2p / all-gather: full attention; a2a:
every layer); the exchange runs again in a recomputed forward (full recompute, or selective: the core)
  p2p         isend = irecv: forward (c-1) K/V chunks (2k), backward (c-1) K/V and c dK/dV chunks
  all-gather  all_gather_into_tensor 2k (K and V), backward reduce_scatter_tensor 2ck
  a2a         all_to_all_single: q, k, v and the output, forward and backward: 8k
  every variant: the final layer's all_gather_into_tensor X and its gradient's reduce_scatter_tensor c X
DP-CP group (the dp·cp ranks that hold the same parameters; Megatron's data-parallel group with context
parallel, also at cp = 1), per optimizer step (`dp_comm_bytes`), N parameters on this rank, g = dp·cp:
  distributed optimizer  reduce_scatter_tensor of the flat gradient buffer, padded to g·ceil(N/g) elements
                         (grad dtype), all_gather_into_tensor of this rank's ceil(N/g) updated parameters
                         (param dtype)   (models/zero.py)
  without                all_reduce of the N gradients (grad dtype)   (models/train_loop.py)
and before it, under sequence parallelism, the TP all_reduce of the gradients of the parameters
replicated inside the TP region that see only a sequence shard (`sp_grad_bytes`): per layer the
RowParallel biases (one h per sub-block) and, with adaLN none, the affine norms (2h each).

The volume formulas (`tp_volumes`, `cp_volumes`, `dp_volumes`) take numpy arrays of layouts as well as
Python scalars (`xp`: numpy or ScalarOps, as in planner/memory.py): `comm_bytes` evaluates them for one
Spec, and the step model (planner/step.py) turns the same volumes into link time with `wire_factor` (what a
ring algorithm puts on each rank's link per byte counted here), so only the bandwidth is an assumption.
PP group (pp > 1), per step on pipeline rank r (`pp_comm_bytes`; every other entry is per micro-batch)
  isend = irecv: each of the m micro-batches crosses every boundary of the rank's vpp model chunks, forward
           (the chunk's output) and backward (its input's gradient), except before the first virtual stage
           and after the last: m (2 vpp - [r = 0] - [r = pp-1]) P, P = s·b·h/(t with SP)·4 (the schedule
           exchanges fp32: `models.pipeline.configure`)
  all_reduce: the gradients of the conditioning embedders every stage holds (fp32, the trainer's master
           weights), summed over the stages, + the step's mean loss (one fp32 scalar)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .cp import A2A, ALL_GATHER, CP_COMMS, P2P
from .memory import optimizer_shard
from .scalar_ops import ScalarOps
from .spec import DTYPE_BYTES, Spec


@dataclass(frozen=True)
class CommConstants:
    """The layout-independent part of the volumes."""

    hidden: int
    act_bytes: int
    sub_blocks: int          # sub-blocks per layer: 3 with cross-attention, else 2
    text_tokens: int         # text tokens of the cross-attention K/V input (0 without cross-attention)
    adaln: bool              # adaLN modulation (its [b, 6h] gradient is all-reduced over TP under SP)
    grad_bytes: int
    param_bytes: int


def comm_constants(spec: Spec) -> CommConstants:
    m, k = spec.model, spec.kernels
    return CommConstants(m.hidden, k.act_bytes, 3 if m.cross_attn else 2, spec.video.text_tokens if m.cross_attn else 0,
                         m.adaln != "none", DTYPE_BYTES[k.grad_dtype], DTYPE_BYTES[k.param_dtype])


def tp_volumes(xp: Any, k: CommConstants, tp: Any, tokens: Any, micro_batch: Any, layers: Any, sp: Any,
               n_full: Any) -> dict[str, Any]:
    """TP bytes one rank contributes per micro-batch (forward + backward), by collective kind.

    Args:
        xp: numpy or ScalarOps.
        k: comm_constants(spec).
        tp: tensor-parallel size.
        tokens: tokens per CP rank (s = S/cp).
        micro_batch: samples per micro-batch.
        layers: layers on this pipeline stage.
        sp: sequence parallelism on.
        n_full: layers whose forward runs again (full recompute).
    Returns:
        {"all_gather_into_tensor", "reduce_scatter_tensor", "all_reduce"}: bytes (0 when tp = 1).
    """
    on = xp.where(tp > 1, 1, 0)
    x = tokens * micro_batch * k.hidden * k.act_bytes
    text = layers * k.text_tokens * micro_batch * k.hidden * k.act_bytes
    adaln = layers * 6 * k.hidden * micro_batch * k.act_bytes if k.adaln else 0
    ag = (layers * k.sub_blocks * 3 + n_full * k.sub_blocks + 2) * x / tp
    rs = (layers * k.sub_blocks * 2 + n_full * k.sub_blocks) * x
    return {"all_gather_into_tensor": on * xp.where(sp, ag, 0), "reduce_scatter_tensor": on * xp.where(sp, rs, 0),
            "all_reduce": on * xp.where(sp, adaln + text, rs + text)}


def cp_volumes(xp: Any, k: CommConstants, comm: Any, cp: Any, tp: Any, tokens: Any, micro_batch: Any,
               crossing: Any, rerun: Any) -> dict[str, Any]:
    """CP bytes one rank contributes (irecv: receives) per micro-batch (forward + backward), by kind.

    Args:
        xp: numpy or ScalarOps.
        k: comm_constants(spec).
        comm: index into cp.CP_COMMS.
        cp, tp: context- and tensor-parallel sizes.
        tokens: tokens per CP rank (s = S/cp).
        micro_batch: samples per micro-batch.
        crossing: layers whose self-attention exchanges K/V across CP ranks.
        rerun: of those, layers whose attention core runs forward again (recompute).
    Returns:
        {"isend", "irecv", "all_gather_into_tensor", "reduce_scatter_tensor", "all_to_all_single"}: bytes
        (0 when cp = 1).
    """
    on = xp.where(cp > 1, 1, 0)
    x = tokens * micro_batch * k.hidden * k.act_bytes
    kv = tokens * micro_batch * k.hidden * k.act_bytes / tp          # one of q, k, v on this rank
    p2p = on * xp.where(comm == P2P, crossing * (cp - 1) * 2 * kv * 2 + crossing * cp * 2 * kv
                        + rerun * (cp - 1) * 2 * kv, 0)
    ag = on * xp.where(comm == ALL_GATHER, (crossing + rerun) * 2 * kv, 0)
    rs = on * xp.where(comm == ALL_GATHER, crossing * 2 * cp * kv, 0)
    a2a = on * xp.where(comm == A2A, (crossing * 8 + rerun * 4) * kv, 0)
    return {"isend": p2p, "irecv": p2p, "all_gather_into_tensor": ag + on * x,
            "reduce_scatter_tensor": rs + on * cp * x, "all_to_all_single": a2a}


def dp_volumes(xp: Any, k: CommConstants, n_params: Any, dp: Any, cp: Any, distributed_optimizer: Any) -> dict[str, Any]:
    """DP-CP bytes one rank contributes per optimizer step, by kind.

    Args:
        xp: numpy or ScalarOps.
        k: comm_constants(spec).
        n_params: parameters on this rank.
        dp, cp: data- and context-parallel sizes (the group holds dp·cp ranks).
        distributed_optimizer: reduce-scatter + all-gather of the flat buffers, else one all-reduce.
    Returns:
        {"reduce_scatter_tensor", "all_gather_into_tensor", "all_reduce"}: bytes (0 when dp·cp = 1).
    """
    g = dp * cp
    on = xp.where(g > 1, 1, 0)
    shard = optimizer_shard(xp, n_params, dp, cp, True)
    return {"reduce_scatter_tensor": on * xp.where(distributed_optimizer, g * shard * k.grad_bytes, 0),
            "all_gather_into_tensor": on * xp.where(distributed_optimizer, shard * k.param_bytes, 0),
            "all_reduce": on * xp.where(distributed_optimizer, 0, n_params * k.grad_bytes)}


def wire_factor(kind: str, n: Any) -> Any:
    """Bytes a ring algorithm puts on each rank's link per byte counted in the table, in a group of n:
    all_reduce 2(n-1)/n; all_gather_into_tensor (n-1) (the table counts the input shard);
    reduce_scatter_tensor and all_to_all_single (n-1)/n (the whole input); isend 1; irecv 0 (the
    sender's isend carries it)."""
    return {"all_reduce": 2 * (n - 1) / n, "all_gather_into_tensor": n - 1, "reduce_scatter_tensor": (n - 1) / n,
            "all_to_all_single": (n - 1) / n, "isend": 1, "irecv": 0}[kind]


def wire_bytes(volumes: dict[str, Any], n: Any) -> Any:
    """Link bytes per rank of a group of n for a table of volumes by kind."""
    return sum(wire_factor(kind, n) * v for kind, v in volumes.items())


def _crossing(spec: Spec) -> int:
    """Layers of one stage whose self-attention exchanges K/V across CP ranks (p2p / all-gather: full
    attention; a2a: every layer)."""
    p = spec.parallel
    return spec.model.layers // p.pp if (p.cp_comm == "a2a" or spec.model.attention_kind == "full") else 0


def pp_comm_bytes(spec: Spec, stage: int = 0) -> dict[str, int]:
    """{"<kind> PP": bytes} of one training step on pipeline rank `stage` (see the module docstring).

    Args:
        spec: the validated spec.
        stage: the pipeline rank (0-based).
    Returns:
        Bytes per kind in the PP group; empty when pp = 1.
    """
    from .params import param_groups

    p, m = spec.parallel, spec.model
    if p.pp == 1:
        return {}
    s = spec.seq_len // p.cp
    boundary = s // (p.tp if p.sequence_parallel else 1) * p.micro_batch * m.hidden * 4
    crossings = p.microbatches * (2 * p.vpp - (stage == 0) - (stage == p.pp - 1))
    every = sum(g.per_rank(p.tp) for g in param_groups(spec) if g.placement == "every")
    return {"all_reduce PP": every * 4 + 4, "irecv PP": crossings * boundary, "isend PP": crossings * boundary}


def comm_bytes(spec: Spec, stage: int = 0) -> dict[str, int]:
    """{"<kind> <group>": bytes} for one micro-batch's forward + backward on one rank (ranks of a stage move
    the same bytes), and with pp > 1 the PP group's bytes of one step on pipeline rank `stage`.

    Args:
        spec: the validated spec.
        stage: the pipeline rank (0-based) the PP entries are for.
    Returns:
        Bytes per kind and group, zero entries left out.
    """
    if spec.model.extended:   # the current block vocabulary: planner/comm_blocks.py
        from .comm_blocks import comm_blocks

        return comm_blocks(spec)
    m, p = spec.model, spec.parallel
    k = comm_constants(spec)
    L = m.layers // p.pp
    full = p.recompute == "full"
    n_full = (L if p.recompute_layers is None else p.recompute_layers) if full else 0
    crossing = _crossing(spec)
    rerun = crossing if p.recompute == "selective" else min(crossing, n_full)
    s = spec.seq_len // p.cp
    out: dict[str, int] = {}
    for group, vols in (("TP", tp_volumes(ScalarOps, k, p.tp, s, p.micro_batch, L, p.sequence_parallel, n_full)),
                        ("CP", cp_volumes(ScalarOps, k, CP_COMMS.index(p.cp_comm), p.cp, p.tp, s, p.micro_batch,
                                          crossing, rerun))):
        for kind, v in vols.items():
            if v:
                out[f"{kind} {group}"] = int(v)
    out.update(pp_comm_bytes(spec, stage))
    return dict(sorted(out.items()))


def dp_comm_bytes(spec: Spec, n_params: int | None = None) -> dict[str, int]:
    """{"<kind> DP-CP": bytes} for one optimizer step's gradient reduction and parameter update on one rank.

    Args:
        spec: the validated spec.
        n_params: parameters on this rank (default `params_per_gpu(spec)`).
    Returns:
        Bytes per kind, zero entries left out.
    """
    from .params import params_per_gpu

    p = spec.parallel
    n = params_per_gpu(spec) if n_params is None else n_params
    vols = dp_volumes(ScalarOps, comm_constants(spec), n, p.dp_size, p.cp, p.distributed_optimizer)
    return {f"{kind} DP-CP": int(v) for kind, v in sorted(vols.items()) if v}


def sp_grad_bytes(spec: Spec) -> dict[str, int]:
    """{"all_reduce TP": bytes} of the sequence-parallel gradient sync before the optimizer step (standard
    DiT block; empty without SP or at tp = 1).

    Args:
        spec: the validated spec.
    Returns:
        Bytes per kind and group, zero entries left out.
    """
    m, p = spec.model, spec.parallel
    if p.tp == 1 or not p.sequence_parallel:
        return {}
    sub = 3 if m.cross_attn else 2
    norms = sub * 2 * m.hidden if m.adaln == "none" else 0
    return {"all_reduce TP": (m.layers // p.pp) * (sub * m.hidden + norms) * DTYPE_BYTES[spec.kernels.grad_dtype]}
