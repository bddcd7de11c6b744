"""Measurements of a built model: parameters by group, FLOPs (FlopCounterMode), saved-for-backward bytes.

`soraplan validate` compares every figure here with the planner. Nothing in this module knows a formula:
it only counts what torch executes and keeps.

  * parameters: sum(p.numel()) by top-level submodule (the planner's groups; `decoder` is "blocks").
  * FLOPs: torch.utils.flop_counter.FlopCounterMode, forward and backward counted separately, per module.
    CPU SDPA runs `aten._scaled_dot_product_flash_attention_for_cpu`, which torch's counter does not know:
    we register it with the same formula torch uses for the CUDA flash kernel (forward 2 bmm, backward 4).
    Elementwise work (which the counter ignores) is counted separately and coarsely: one FLOP per output
    element of every pointwise op (the "elementwise remainder" of the report, never compared).
  * saved bytes: torch.autograd.graph.saved_tensors_hooks; every saved tensor is reduced to its storage
    (untyped_storage()._cdata, the StorageImpl address: stable for views and valid on the meta device where
    data_ptr is 0), de-duplicated, parameters and buffers excluded, and attributed to the innermost module
    running when it was first saved. A storage's full nbytes is counted (a view keeps its whole base alive).
  * meta device: SDPA has no fused kernel on meta and falls back to the math path. `flash_on_meta()`
    routes it to the flash-for-cpu op (which has meta kernels) so that the 6B on meta saves what flash saves.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch

# planner group name <- model submodule name
GROUP_ALIASES = {"decoder": "blocks"}


# ------------------------------------------------------------------------------------------ parameters
def params_by_group(model: torch.nn.Module) -> dict[str, int]:
    """numel summed by top-level submodule (parameters directly on the root go to '<root>')."""
    out: dict[str, int] = defaultdict(int)
    for name, p in model.named_parameters():
        top = name.split(".", 1)[0] if "." in name else "<root>"
        out[GROUP_ALIASES.get(top, top)] += p.numel()
    return dict(out)


# ------------------------------------------------------------------------------------------ FLOPs
def _sdpa_cpu_fwd_flops(query_shape, key_shape, value_shape, dropout_p=0.0, is_causal=False, *args, out_shape=None,
                        **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_flop_count

    n = sdpa_flop_count(query_shape, key_shape, value_shape)
    return n // 2 if is_causal else n           # a causal flash kernel skips the masked half


def _sdpa_cpu_bwd_flops(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    from torch.utils.flop_counter import sdpa_backward_flop_count

    n = sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)
    causal = len(args) > 3 and args[3] is True   # (out, logsumexp, dropout_p, is_causal, ...)
    return n // 2 if causal else n


def custom_flop_mapping() -> dict[Any, Callable[..., int]]:
    """Formulas for ops torch's FlopCounterMode does not register (CPU flash attention)."""
    aten = torch.ops.aten   # FlopCounterMode wraps these with shape_wrapper itself (they receive shapes)
    return {
        aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_fwd_flops,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: _sdpa_cpu_bwd_flops,
    }


MATMUL_OPS = ("mm", "addmm", "bmm", "baddbmm", "convolution", "convolution_backward")


def _op_kind(op: Any) -> str:
    name = str(op).split(".")[1] if str(op).startswith("aten.") else str(op)
    if "attention" in name:
        return "attention"
    return "matmul"


@dataclass
class FlopCount:
    total: int = 0
    by_module: dict[str, int] = field(default_factory=dict)      # module path (no root prefix) -> FLOPs
    by_kind: dict[str, int] = field(default_factory=dict)        # "matmul" | "attention"
    by_op: dict[str, int] = field(default_factory=dict)

    def under(self, prefix: str) -> int:
        """FLOPs attributed to the module `prefix` (and everything inside it)."""
        return self.by_module.get(prefix, 0)


def _collect(counter: Any, root: str) -> FlopCount:
    fc = FlopCount(total=int(counter.get_total_flops()))
    for mod, ops in counter.get_flop_counts().items():
        key = mod[len(root) + 1:] if mod.startswith(root + ".") else ("" if mod in (root, "Global") else mod)
        if key:
            fc.by_module[key] = int(sum(ops.values()))
        if mod == "Global":
            for op, n in ops.items():
                fc.by_op[str(op)] = fc.by_op.get(str(op), 0) + int(n)
                kind = _op_kind(op)
                fc.by_kind[kind] = fc.by_kind.get(kind, 0) + int(n)
    return fc


class ElementwiseCounter(torch.utils._python_dispatch.TorchDispatchMode):
    """One FLOP per output element of every pointwise op (a coarse 'remainder', reported, never compared)."""

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        out = func(*args, **(kwargs or {}))
        if torch.Tag.pointwise in getattr(func, "tags", ()):
            for t in (out if isinstance(out, (tuple, list)) else (out,)):
                if isinstance(t, torch.Tensor):
                    self.flops += t.numel()
        return out


@contextlib.contextmanager
def count_flops(root: str = "model") -> Iterator[dict[str, Any]]:
    """`with count_flops() as box: ...` -> box["flops"] (FlopCount), box["elementwise"] (int)."""
    from torch.utils.flop_counter import FlopCounterMode

    box: dict[str, Any] = {}
    counter = FlopCounterMode(display=False, custom_mapping=custom_flop_mapping())
    elem = ElementwiseCounter()
    with counter, elem:
        yield box
    box["flops"] = _collect(counter, root)
    box["elementwise"] = elem.flops


def training_flops(model: torch.nn.Module, step: Callable[[], torch.Tensor]) -> dict[str, Any]:
    """Forward and backward FLOPs of `loss = step(); loss.backward()`, counted separately."""
    root = type(model).__name__
    with count_flops(root) as fwd:
        loss = step()
    with count_flops(root) as bwd:
        loss.backward()
    return {"forward": fwd["flops"], "backward": bwd["flops"],
            "elementwise_forward": fwd["elementwise"], "elementwise_backward": bwd["elementwise"]}


def forward_flops(model: torch.nn.Module, step: Callable[[], Any]) -> dict[str, Any]:
    root = type(model).__name__
    with torch.no_grad(), count_flops(root) as fwd:
        step()
    return {"forward": fwd["flops"], "elementwise_forward": fwd["elementwise"]}


# ------------------------------------------------------------------------------------------ saved bytes
@dataclass
class SavedRecord:
    module: str
    nbytes: int
    shape: tuple[int, ...]
    dtype: str


@dataclass
class SavedBytes:
    records: list[SavedRecord] = field(default_factory=list)
    excluded_param_saves: int = 0

    @property
    def total(self) -> int:
        return sum(r.nbytes for r in self.records)

    def under(self, prefix: str) -> int:
        return sum(r.nbytes for r in self.records if r.module == prefix or r.module.startswith(prefix + "."))

    def outside(self, prefix: str) -> int:
        return self.total - self.under(prefix)

    def listing(self, prefix: str) -> list[dict[str, Any]]:
        return [{"module": r.module, "bytes": r.nbytes, "shape": list(r.shape), "dtype": r.dtype}
                for r in self.records if r.module == prefix or r.module.startswith(prefix + ".")]


def _storage_key(t: torch.Tensor) -> int:
    return t.untyped_storage()._cdata


@contextlib.contextmanager
def record_saved(model: torch.nn.Module) -> Iterator[SavedBytes]:
    """Record the storages autograd saves for backward while the block runs (see the module docstring)."""
    result = SavedBytes()
    skip = {_storage_key(p) for p in model.parameters()} | {_storage_key(b) for b in model.buffers()}
    seen: dict[int, torch.UntypedStorage] = {}      # keeps storages alive so addresses are never reused
    stack: list[str] = [""]
    handles = []

    def enter(name: str) -> Callable[..., None]:
        def hook(module: Any, args: Any) -> None:
            stack.append(name)
        return hook

    def leave(module: Any, args: Any, output: Any) -> None:   # must return None (else it replaces the output)
        stack.pop()

    for name, mod in model.named_modules():
        if name:
            handles.append(mod.register_forward_pre_hook(enter(name)))
            handles.append(mod.register_forward_hook(leave))

    def pack(t: torch.Tensor) -> torch.Tensor:
        key = _storage_key(t)
        if key in skip:
            result.excluded_param_saves += 1
        elif key not in seen:
            st = t.untyped_storage()
            seen[key] = st
            result.records.append(SavedRecord(stack[-1], st.nbytes(), tuple(t.shape), str(t.dtype).replace("torch.", "")))
        return t

    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            yield result
    finally:
        for h in handles:
            h.remove()


# ------------------------------------------------------------------------------------------ meta flash
class _FlashOnMeta(torch.overrides.TorchFunctionMode):
    """Route F.scaled_dot_product_attention on meta tensors to the flash-for-cpu op (meta kernels exist)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        if func is torch.nn.functional.scaled_dot_product_attention and args and args[0].device.type == "meta":
            q, k, v = args[:3]
            mask = kwargs.get("attn_mask")
            if not kwargs.get("dropout_p"):
                if mask is not None and mask.dtype == torch.bool:
                    # what SDPA does with a bool mask on CPU: an additive float mask at q's dtype
                    mask = torch.where(mask, torch.zeros((), dtype=q.dtype, device=q.device),
                                       torch.full((), float("-inf"), dtype=q.dtype, device=q.device))
                out, _lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
                    q, k, v, 0.0, bool(kwargs.get("is_causal", False)), attn_mask=mask, scale=kwargs.get("scale"))
                return out
        return func(*args, **kwargs)


@contextlib.contextmanager
def flash_on_meta() -> Iterator[None]:
    with _FlashOnMeta():
        yield
