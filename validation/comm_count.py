"""Count the bytes torch.distributed moves: wrap its collectives and point-to-point calls while a block of
code runs, per kind and per process group (TP, CP, DP, PP; "world" for the default group).

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


@contextlib.contextmanager
def count_comm() -> Iterator[dict[tuple[str, str], int]]:
    """Inside the block, every wrapped call adds its bytes to table[(kind, group name)]."""
    import torch.distributed as dist

    table: dict[tuple[str, str], int] = defaultdict(int)
    groups = group_names()

    def name_of(group: Any) -> str:
        if group is None:
            return "world"
        for g, n in groups:           # the first match: a size-1 group may be shared, TP is named first
            if g is group:
                return n
        return "other"

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
                    table[(CANONICAL.get(kind, kind), name_of(group))] += _nbytes(arg)
            return fn(*args, **kwargs)

        counted.__wrapped__ = fn          # type: ignore[attr-defined]
        return counted

    wrappers = {k: wrap(k, f) for k, f in originals.items()}
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
