"""Count the bytes torch.distributed moves: wrap its collectives and point-to-point calls while a block of
code runs, per kind and per process group (TP, CP, DP, PP; "world" for the default group).

Point-to-point calls (send, recv, isend, irecv, and each P2POp of batch_isend_irecv) with a neighbour of
this rank's pipeline group count under "PP" whichever group carries them (Megatron sends one direction
of a 2-stage pipeline over the world group).

Bytes counted per call on this rank: what it contributes (all_reduce, broadcast, send, isend: the tensor;
all_gather / all_gather_into_tensor: the input; reduce_scatter: the input list, reduce_scatter_tensor and
all_to_all_single: the input; all_to_all: the input list) or receives (recv, irecv: the tensor). Every
module already imported that holds one of these functions under its own name (Megatron keeps aliases such
as `dist_all_gather_func`) is patched too, and everything is restored on exit. `soraplan.planner.comm`
predicts the same table from the Spec.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
from collections import defaultdict
from typing import Any, Callable, Iterator

KINDS = ("all_reduce", "all_gather", "all_gather_into_tensor", "_all_gather_base", "reduce_scatter",
         "reduce_scatter_tensor", "_reduce_scatter_base", "all_to_all", "all_to_all_single", "broadcast", "send",
         "recv", "isend", "irecv")
# aliases that count as one kind (Megatron picks whichever its torch offers)
CANONICAL = {"_all_gather_base": "all_gather_into_tensor", "_reduce_scatter_base": "reduce_scatter_tensor"}
# the argument whose bytes are counted
COUNTED_ARG = {"all_reduce": "tensor", "broadcast": "tensor", "send": "tensor", "isend": "tensor", "recv": "tensor",
               "irecv": "tensor", "all_gather": "tensor", "all_gather_into_tensor": "input_tensor",
               "_all_gather_base": "input_tensor", "reduce_scatter": "input_list", "reduce_scatter_tensor": "input",
               "_reduce_scatter_base": "input", "all_to_all": "input_tensor_list", "all_to_all_single": "input"}
P2P_KINDS = ("send", "recv", "isend", "irecv")


def _nbytes(x: Any) -> int:
    if isinstance(x, (list, tuple)):
        return sum(_nbytes(t) for t in x)
    return x.numel() * x.element_size()


def group_names() -> list[tuple[Any, str]]:
    """(group, name) for the Megatron parallel groups that exist (TP, CP, DP, PP)."""
    from megatron.core import parallel_state as ps

    out = []
    for name, get in (("TP", ps.get_tensor_model_parallel_group), ("CP", ps.get_context_parallel_group),
                      ("DP", lambda: ps.get_data_parallel_group(with_context_parallel=False)),
                      ("DP-CP", lambda: ps.get_data_parallel_group(with_context_parallel=True)),
                      ("PP", ps.get_pipeline_model_parallel_group)):
        try:
            out.append((get(), name))
        except (AssertionError, RuntimeError):
            pass
    return out


def _pipeline_peers(groups: list[tuple[Any, str]]) -> set[int]:
    """Global ranks of this rank's pipeline group (empty without one, or at pp = 1)."""
    import torch.distributed as dist

    for g, n in groups:
        if n == "PP" and g is not None and dist.get_world_size(g) > 1:
            return set(dist.get_process_group_ranks(g))
    return set()


@contextlib.contextmanager
def count_comm() -> Iterator[dict[tuple[str, str], int]]:
    """Inside the block, every wrapped call adds its bytes to table[(kind, group name)]."""
    import torch.distributed as dist

    table: dict[tuple[str, str], int] = defaultdict(int)
    groups = group_names()

    pp_peers = _pipeline_peers(groups)

    def name_of(group: Any, peer: Any = None) -> str:
        name = "world" if group is None else next((n for g, n in groups if g is group), "other")
        # Megatron's P2P communicator sends one direction of a 2-stage pipeline over the world group:
        # point-to-point traffic with a pipeline neighbour is pipeline traffic whatever group carries it
        if name in ("world", "other") and peer is not None and peer in pp_peers:
            return "PP"
        return name                    # the first match: a size-1 group may be shared, TP is named first

    originals = {k: getattr(dist, k) for k in KINDS if hasattr(dist, k)}

    def wrap(kind: str, fn: Callable) -> Callable:
        sig = inspect.signature(fn)

        def counted(*args: Any, **kwargs: Any) -> Any:
            bound = sig.bind_partial(*args, **kwargs)
            group = bound.arguments.get("group")
            size = dist.get_world_size(group) if group is not None else dist.get_world_size()
            if size > 1:
                arg = bound.arguments.get(COUNTED_ARG[kind])
                if arg is not None:
                    # dst / src are global ranks (torch's group_dst / group_src are not used here)
                    peer = bound.arguments.get("dst", bound.arguments.get("src")) if kind in P2P_KINDS else None
                    table[(CANONICAL.get(kind, kind), name_of(group, peer))] += _nbytes(arg)
            return fn(*args, **kwargs)

        counted.__wrapped__ = fn          # type: ignore[attr-defined]
        return counted

    wrappers = {k: wrap(k, f) for k, f in originals.items()}
    # batch_isend_irecv: every P2POp counts as its isend / irecv (P2POp itself accepts only torch's own
    # functions, so a wrapped one passed to it is unwrapped first)
    original_batch, original_op = getattr(dist, "batch_isend_irecv", None), getattr(dist, "P2POp", None)
    if original_batch is not None and original_op is not None:
        def batch(p2p_op_list: list) -> Any:
            for op in p2p_op_list:
                kind = "isend" if op.op is originals.get("isend") else "irecv"
                if dist.get_world_size(op.group) > 1:
                    table[(kind, name_of(op.group, op.peer))] += _nbytes(op.tensor)
            return original_batch(p2p_op_list)

        def p2p_op(op: Callable, *args: Any, **kwargs: Any) -> Any:
            return original_op(getattr(op, "__wrapped__", op), *args, **kwargs)

        batch.__wrapped__ = original_batch        # type: ignore[attr-defined]
        originals["batch_isend_irecv"], wrappers["batch_isend_irecv"] = original_batch, batch
        originals["P2POp"], wrappers["P2POp"] = original_op, p2p_op
    patched: list[tuple[Any, str, Any]] = []
    for mod_name, mod in list(sys.modules.items()):
        if mod is None or not mod_name.startswith(("megatron", "soraplan", "torch.distributed")):
            continue
        if mod_name.startswith("torch.distributed") and mod_name not in ("torch.distributed",):
            continue                      # torch's internals keep their own references (P2POp checks them)
        for attr, value in list(vars(mod).items()):
            for kind, original in originals.items():
                if value is original:
                    patched.append((mod, attr, value))
                    setattr(mod, attr, wrappers[kind])
    try:
        yield table
    finally:
        for mod, attr, value in reversed(patched):
            setattr(mod, attr, value)


def comm_table(table: dict[tuple[str, str], int]) -> dict[str, int]:
    """{"<kind> <group>": bytes} (the row names' suffix), sorted."""
    return {f"{k} {g}": v for (k, g), v in sorted(table.items())}
