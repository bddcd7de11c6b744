"""A parallel layout against its one-process reference: same loss, same gradients (torchrun, N ranks).

The TP, PP and CP checks (tp_check.py, pp_check.py, cp_check.py) each declare their CASES (spec flags) and
an `EquivalenceCheck`: how to build the two specs, how to run each side, which slice of the reference
gradient a parallel rank's parameter must equal. `run_equivalence(cases, check)` does the rest, on every
rank of a torchrun job whose world size N is the size of the checked axis:

  for each case: parallel state for the reference spec (axis size 1) -> reference loss and gradients;
                 parallel state for the parallel spec (axis size N) -> loss and this rank's gradients;
                 ok when |loss - ref_loss| <= 1e-5 |ref_loss| and, over this rank's parameters,
                 max|grad - ref_grad| / max|ref_grad| < 1e-4 (and, where the check asks for it, no
                 reference gradient is all zero: every parameter is exercised).

Rank 0 prints one JSON row per case, in this key order:
  {"case": {...}, "<axis>": N, "loss", "ref_loss", "max_rel_grad_err", ["zero_grads",] "ok"}
Every rank exits 0 when all its cases are ok, else 1 (torchrun then fails).
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from soraplan.models.tiny import TINY_FLAGS

LOSS_RTOL = 1e-5          # fp32, same operations in another order: agreement to ~1e-7, checked at 1e-5
GRAD_RTOL = 1e-4
ZERO_PARAM_SCALE = 0.05   # std of the random values given to zero-initialised parameters


@dataclass
class Side:
    """One run of a spec: its loss and parameters (with .grad), plus inputs the other side may reuse."""

    loss: float
    params: dict[str, Any]
    inputs: Any = None


class EquivalenceCheck:
    """What one equivalence check declares; `run_equivalence` drives it. Subclasses set `axis` and
    implement `specs`, `reference` and `parallel` (and `reference_grad` when the parallel parameters are
    slices or renamings of the reference ones)."""

    axis: str = ""                       # "tp" | "pp" | "cp": the JSON row's key for the world size
    require_nonzero_grads: bool = False  # report "zero_grads" and fail a case with an all-zero reference gradient

    def specs(self, case: dict[str, Any], size: int) -> tuple[Any, Any]:
        """(reference spec, parallel spec) of `case` with the axis at 1 and at `size`."""
        raise NotImplementedError

    def reference(self, spec) -> Side:
        """Run the reference spec (parallel state is already initialised for it)."""
        raise NotImplementedError

    def parallel(self, spec, ref: Side) -> Side:
        """Run the parallel spec on this rank (parallel state is initialised for it)."""
        raise NotImplementedError

    def reference_grad(self, name: str, param, ref: Side):
        """The part of the reference gradient that this rank's parameter `name` must equal."""
        return ref.params[name].grad


def case_flags(case: dict[str, Any], tiny_overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Spec flags of a case: the tiny sizes (with `tiny_overrides`) under the case's flags; a case that
    names its own `model` preset brings its own sizes and is used as it is.

    Args:
        case: the case's spec flags.
        tiny_overrides: changes to TINY_FLAGS for this check (e.g. more layers).
    Returns:
        A new flag dict.
    """
    if "model" in case:
        return dict(case)
    return {**TINY_FLAGS, **(tiny_overrides or {}), **case}


def name_seed(name: str) -> int:
    """A parameter's own seed: CRC-32 of its name."""
    return zlib.crc32(name.encode())


def fill_zero_params(model, seed_of: Callable[[str], int] = name_seed) -> None:
    """Give zero-initialised parameters (adaLN-Zero modulation, the final layer) random values so that
    gradients reach every parameter. The values are drawn at the full (TP=1) shape from `seed_of(name)`;
    a tensor-parallel shard takes its slice, so TP shards equal slices of the TP=1 parameter.

    Args:
        model: a model built by soraplan.models.build.build_model (parallel state initialised).
        seed_of: parameter name -> generator seed.
    """
    import torch
    from megatron.core import parallel_state as ps

    tp, rank = ps.get_tensor_model_parallel_world_size(), ps.get_tensor_model_parallel_rank()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.abs().max() != 0:
                continue
            split = getattr(p, "tensor_model_parallel", False)
            shape = list(p.shape)
            if split:
                shape[p.partition_dim] *= tp
            full = torch.randn(shape, generator=torch.Generator().manual_seed(seed_of(name))) * ZERO_PARAM_SCALE
            p.copy_(tp_shard(full, p, tp, rank) if split else full)


def tp_shard(full, param, tp: int, rank: int):
    """This TP rank's part of a full (TP=1) tensor, as `param` is split: contiguous chunks along its
    partition dim, or for a fused projection (`tp_sections`, models/blocks.py) part `rank` of each section.

    Args:
        full: the tensor at the TP=1 shape.
        param: the tensor-parallel parameter it belongs to.
        tp: the TP size.
        rank: this TP rank.
    Returns:
        The slice this rank holds.
    """
    import torch

    dim = param.partition_dim
    sections = getattr(param, "tp_sections", None)
    if sections is None:
        return full.chunk(tp, dim=dim)[rank]
    return torch.cat([s.chunk(tp, dim)[rank] for s in full.split(list(sections), dim)], dim)


def loss_and_grads(spec, model_seed: int, batch_seed: int, eval_mode: bool = False, samples: int = 2) -> Side:
    """Build the model (weights from `model_seed`), one synthetic batch (data and noise from `batch_seed`),
    one training loss and its backward, gradients finalised as training does (TP/SP, CP, DP reductions).
    Each CP rank backpropagates loss / cp through its own tokens, as the trainer does.

    Args:
        spec: the spec to run (parallel state initialised for it).
        model_seed: build_model's seed.
        batch_seed: seed of the generator behind the batch, the timesteps and the noise.
        eval_mode: run the model in eval mode (no label dropout).
        samples: batch size.
    Returns:
        The loss and this rank's parameters with their gradients.
    """
    import torch

    from soraplan.models.build import build_model
    from soraplan.models.loss import synthetic_batch, training_loss
    from soraplan.models.train_loop import finalize_grads

    model = build_model(spec, device="cpu", seed=model_seed)
    fill_zero_params(model)
    g = torch.Generator().manual_seed(batch_seed)
    batch = synthetic_batch(spec, samples, "cpu", g)
    if eval_mode:
        model.eval()
    loss = training_loss(model, batch, generator=g)
    (loss / spec.parallel.cp).backward()
    finalize_grads(model, spec)
    return Side(float(loss), dict(model.named_parameters()))


def relative_error(got, want) -> float:
    """max|got - want| / max|want| (with a 1e-12 floor on the denominator)."""
    return float((got - want).abs().max() / (want.abs().max() + 1e-12))


def compare_grads(check: EquivalenceCheck, got: Side, ref: Side) -> tuple[float, list[str]]:
    """(worst relative gradient error over this rank's parameters, names whose reference gradient is all zero)."""
    worst, zero_grads = 0.0, []
    for name, p in got.params.items():
        r = check.reference_grad(name, p, ref)
        if float(r.abs().max()) == 0.0:
            zero_grads.append(name)
        worst = max(worst, relative_error(p.grad, r))
    return worst, zero_grads


def run_equivalence(cases: Sequence[dict[str, Any]], check: EquivalenceCheck) -> int:
    """Run every case of `check` on this rank and print the rows (rank 0); see the module docstring.

    Args:
        cases: spec flags, one dict per case (printed back in the row's "case").
        check: the check's specs and runs.
    Returns:
        The process exit code: 0 when every case is ok on this rank, else 1.
    """
    from soraplan.models.quiet import quiet_megatron

    quiet_megatron()
    import torch.distributed as dist

    from soraplan.models.parallel import initialize

    initialize(tp=1)
    size = dist.get_world_size()
    ok = True
    for case in cases:
        ref_spec, spec = check.specs(case, size)
        initialize(ref_spec)
        ref = check.reference(ref_spec)
        initialize(spec)
        got = check.parallel(spec, ref)
        worst, zero_grads = compare_grads(check, got, ref)
        good = abs(got.loss - ref.loss) <= LOSS_RTOL * abs(ref.loss) and worst < GRAD_RTOL
        row: dict[str, Any] = {"case": case, check.axis: size, "loss": got.loss, "ref_loss": ref.loss,
                               "max_rel_grad_err": worst}
        if check.require_nonzero_grads:
            row["zero_grads"] = zero_grads
            good = good and not zero_grads
        row["ok"] = good
        ok &= good
        if dist.get_rank() == 0:
            print(json.dumps(row), flush=True)
    return 0 if ok else 1
