"""The validation matrix: which configurations `soraplan validate` measures and how (CPU, meta, TP ranks).

Small CPU sizes keep the default matrix a CI job (about a minute on 2 cores): 2 layers of 64 wide, 4 heads,
16 frames at 64x64 -> a 2x4x4 grid of 32 tokens, 8 text tokens of 32, micro-batch 2, fp32, CPU semantics
(dropout masks and LayerNorm statistics at the activation dtype). The 6B runs on the meta device at its
full 30,720 tokens (bf16, GPU semantics): exact parameter, FLOP and saved-byte accounting without memory.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from soraplan.models.tiny import FFN_RATIO, MAX_LATENT_CHANNELS, TINY_FLAGS, tiny_flags

from .measure_blocks import BLOCK_CASES, META_CASES, TP_CASES

# the tiny model (soraplan.models.tiny) with its ffn and latent channels scaled down as `train --tiny` does,
# CPU semantics, 2 samples per micro-batch
BASE: dict[str, Any] = tiny_flags(latent_channels=MAX_LATENT_CHANNELS, ffn_hidden=FFN_RATIO * TINY_FLAGS["hidden"],
                                  cpu_semantics=True, micro_batch=2)


CP_FLAGS: dict[str, Any] = {"frames": 32, "cp": 2, "gpus": 2}
CP_TP_FLAGS: dict[str, Any] = {"frames": 32, "cp": 2, "tp": 2, "gpus": 4, "sequence_parallel": True}
DP_CASES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("DP=2, distributed optimizer (2 gloo ranks)", {"dp": 2, "gpus": 2}),
    ("DP=2, replicated optimizer (2 gloo ranks)", {"dp": 2, "gpus": 2, "distributed_optimizer": False}),
    ("DP=3, distributed optimizer, padded flat buffer (3 gloo ranks)", {"dp": 3, "gpus": 3}),
    ("DP=2 x CP=2 p2p, distributed optimizer (4 gloo ranks)", {"dp": 2, "cp": 2, "gpus": 4}),
    ("DP=2 x TP=2 + SP, distributed optimizer (4 gloo ranks)", {"dp": 2, "tp": 2, "gpus": 4, "sequence_parallel": True}),
)
# pipeline: 4 layers over 2 stages, 4 micro-batches per step (validation/measure_pp.py)
PP_FLAGS: dict[str, Any] = {"pp": 2, "gpus": 2, "layers": 4, "global_batch": 8}


@dataclass(frozen=True)
class Case:
    name: str
    flags: dict[str, Any] = field(default_factory=dict)
    device: str = "cpu"          # "cpu" | "meta" | "tp" (tp*cp gloo processes, one per rank) | "dp" (the
                                 # whole world, with the trainer's optimizer step: validation/measure_dp.py)
                                 # | "pp" (pp processes: validation/measure_pp.py)
    base: bool = True            # start from BASE (False: from the preset named in flags / the default 6B)
    quick: bool = False
    saved: bool = True           # compare saved bytes (False: parameters and FLOPs only)

    def all_flags(self) -> dict[str, Any]:
        return {**(BASE if self.base else {}), **self.flags}


MATRIX: tuple[Case, ...] = (
    Case("adaLN single, cross-attn, full, flash", {}, quick=True),
    Case("adaLN per-block, cross-attn", {"adaln": "per-block"}),
    Case("adaLN per-block, no cross-attn", {"adaln": "per-block", "cross_attn": False}),
    Case("adaLN none (affine norms)", {"adaln": "none"}),
    Case("DiT-S/8 class-conditional, 2 layers", {"model": "DiT-S/8", "layers": 2, "precision": "fp32", "cpu_semantics": True,
                                                "micro_batch": 2}, base=False),
    Case("window:1,2,2 attention", {"attention": "window:1,2,2"}),
    Case("spatial-temporal attention", {"attention": "spatial-temporal"}),
    Case("unfused attention", {"attention_kernel": "unfused"}),
    Case("dropout 0.1, flash (CPU: SDPA math path)", {"dropout": 0.1}),
    Case("dropout 0.1, unfused", {"dropout": 0.1, "attention_kernel": "unfused"}, quick=True),
    Case("recompute selective", {"recompute": "selective"}),
    Case("recompute selective, unfused, dropout 0.1", {"recompute": "selective", "attention_kernel": "unfused", "dropout": 0.1}),
    Case("recompute full", {"recompute": "full"}, quick=True),
    Case("recompute full, first layer only", {"recompute": "full", "recompute_layers": 1}),
    Case("bf16, flash", {"precision": "bf16"}),
    Case("bf16, unfused, dropout 0.1, selective", {"precision": "bf16", "attention_kernel": "unfused", "dropout": 0.1,
                                                   "recompute": "selective"}),
    Case("soraplan-6B on meta (30,720 tokens, bf16)", {}, device="meta", base=False, quick=True),
    Case("TP=2 + sequence parallel (2 gloo ranks)", {"tp": 2, "gpus": 2, "sequence_parallel": True}, device="tp"),
    Case("TP=2, no sequence parallel (2 gloo ranks)", {"tp": 2, "gpus": 2, "sequence_parallel": False}, device="tp"),
    # the current block vocabulary (planner/blocks.py, models/blocks.py)
    *(Case(name, flags) for name, flags in BLOCK_CASES),
    *(Case(name, flags, device="tp") for name, flags in TP_CASES),
    *(Case(name, flags, device="meta", base=False) for name, flags in META_CASES),
    # context parallel: every K/V exchange, alone and with TP (32 frames: 32 tokens per CP rank, so the
    # planner's documented per-sample overcount stays well under the tolerance)
    Case("CP=2 p2p ring attention (2 gloo ranks)", {**CP_FLAGS, "cp_comm": "p2p"}, device="tp"),
    Case("CP=2 all-gather (2 gloo ranks)", {**CP_FLAGS, "cp_comm": "all-gather"}, device="tp"),
    Case("CP=2 a2a Ulysses (2 gloo ranks)", {**CP_FLAGS, "cp_comm": "a2a"}, device="tp"),
    Case("CP=2 a2a, spatial-temporal attention (2 gloo ranks)", {**CP_FLAGS, "cp_comm": "a2a",
                                                                 "attention": "spatial-temporal"}, device="tp"),
    Case("CP=2 p2p x TP=2 + SP (4 gloo ranks)", {**CP_TP_FLAGS, "cp_comm": "p2p"}, device="tp"),
    Case("CP=2 all-gather x TP=2 + SP (4 gloo ranks)", {**CP_TP_FLAGS, "cp_comm": "all-gather"}, device="tp"),
    Case("CP=2 a2a x TP=2, no SP (4 gloo ranks)", {**CP_TP_FLAGS, "cp_comm": "a2a", "sequence_parallel": False},
         device="tp"),
    Case("CP=2 p2p x TP=2 + SP, recompute full (4 gloo ranks)", {**CP_TP_FLAGS, "cp_comm": "p2p", "recompute": "full"},
         device="tp"),
    Case("CP=2 all-gather x TP=2 + SP, recompute selective (4 gloo ranks)",
         {**CP_TP_FLAGS, "cp_comm": "all-gather", "recompute": "selective"}, device="tp"),
    # data parallel with the trainer's optimizer: state bytes per rank and the optimizer step's traffic
    *(Case(name, flags, device="dp") for name, flags in DP_CASES),
    # pipeline parallel: per stage, 1F1B and interleaved (in-flight saved bytes, stage parameters, PP bytes)
    Case("PP=2 1F1B, 4 micro-batches (2 gloo ranks)", PP_FLAGS, device="pp"),
    Case("PP=2 interleaved vpp=2, 4 micro-batches (2 gloo ranks)", {**PP_FLAGS, "vpp": 2}, device="pp"),
    Case("PP=2 interleaved vpp=2, 2 micro-batches: all in warm-up (2 gloo ranks)",
         {**PP_FLAGS, "vpp": 2, "global_batch": 4}, device="pp"),
    Case("PP=2 1F1B, recompute full (2 gloo ranks)", {**PP_FLAGS, "recompute": "full"}, device="pp"),
)


def cases(quick: bool = False) -> list[Case]:
    return [c for c in MATRIX if c.quick or not quick]


def spec_for(case: Case):
    from soraplan.planner.config import build_spec

    return build_spec(flags=case.all_flags())


def run_cases(selected: list[Case], progress: Callable[[str], None] = lambda s: None) -> tuple[list, list[dict]]:
    """Measure every case; (rows, errors). A case that crashes becomes an error entry (validate fails)."""
    from .measure_compare import rows_for, tp_rows
    from .measure_run import measure_spec
    from .measure_tp import run_tp

    rows: list = []
    errors: list[dict] = []
    local = [c for c in selected if c.device not in ("tp", "dp", "pp")]
    tp = [c for c in selected if c.device == "tp"]
    pp = [c for c in selected if c.device == "pp"]
    for c in local:
        progress(c.name)
        try:
            spec = spec_for(c)
            m = measure_spec(spec, c.device, fvcore=c.device != "meta")
            rows += [r for r in rows_for(c.name, spec, m) if c.saved or not r.quantity.startswith("saved bytes")]
        except Exception as e:  # noqa: BLE001 - reported as a failed case
            errors.append({"config": c.name, "error": f"{type(e).__name__}: {e}"})
    by_world: dict[int, list[Case]] = {}
    for c in tp:
        by_world.setdefault(int(c.all_flags().get("tp", 1)) * int(c.all_flags().get("cp", 1)), []).append(c)
    for world, group in sorted(by_world.items()):
        progress(", ".join(c.name for c in group))
        try:
            specs = [spec_for(c) for c in group]
            for c, spec, ranks in zip(group, specs, run_tp(specs)):
                rows += tp_rows(c.name, spec, ranks)
        except Exception as e:  # noqa: BLE001
            errors.append({"config": "TP cases" if world == 2 else f"rank cases (world {world})",
                           "error": f"{type(e).__name__}: {e}"})
    if pp:
        rows, errors = _run_pp(pp, rows, errors, progress)
    rows_dp, errors_dp = _run_dp_cases([c for c in selected if c.device == "dp"], progress)
    return rows + rows_dp, errors + errors_dp


def _run_dp_cases(selected: list[Case], progress: Callable[[str], None]) -> tuple[list, list[dict]]:
    """The "dp" cases, one set of processes per world size (validation/measure_dp.py)."""
    from .measure_dp import dp_rows, run_dp

    rows: list = []
    errors: list[dict] = []
    by_world: dict[int, list[tuple[Case, Any]]] = {}
    for c in selected:
        try:
            spec = spec_for(c)
        except Exception as e:  # noqa: BLE001 - reported as a failed case
            errors.append({"config": c.name, "error": f"{type(e).__name__}: {e}"})
            continue
        by_world.setdefault(spec.parallel.world, []).append((c, spec))
    for world, group in sorted(by_world.items()):
        progress(", ".join(c.name for c, _ in group))
        try:
            for (c, spec), ranks in zip(group, run_dp([spec for _, spec in group])):
                rows += dp_rows(c.name, spec, ranks)
        except Exception as e:  # noqa: BLE001
            errors.append({"config": f"DP cases (world {world})", "error": f"{type(e).__name__}: {e}"})
    return rows, errors


def _run_pp(selected: list[Case], rows: list, errors: list[dict], progress: Callable[[str], None]) -> tuple[list, list[dict]]:
    """The pipeline cases: one set of gloo processes for all of them (validation/measure_pp.py)."""
    from .measure_pp import pp_rows, run_pp

    progress(", ".join(c.name for c in selected))
    try:
        specs = [spec_for(c) for c in selected]
        for c, spec, ranks in zip(selected, specs, run_pp(specs)):
            rows += pp_rows(c.name, spec, ranks)
    except Exception as e:  # noqa: BLE001 - reported as a failed case
        errors.append({"config": "PP cases", "error": f"{type(e).__name__}: {e}"})
    return rows, errors


def run_spec(spec, progress: Callable[[str], None] = lambda s: None) -> tuple[list, list[dict]]:
    """Validate one user-given spec: on CPU when small, else on the meta device (shapes only)."""
    from soraplan.planner.params import total_params
    from soraplan.planner.spec import Spec

    from .measure_compare import rows_for, tp_rows
    from .measure_run import measure_spec
    from .measure_tp import run_tp

    from soraplan.planner.errors import UserError

    p = spec.parallel
    small = total_params(spec) <= 50_000_000 and spec.seq_len <= 4096
    if p.pp > 1:
        return _run_pp_spec(spec, small, progress)
    device = "cpu" if small else "meta"
    d = spec.model_dump()
    # the accounting must use the semantics of the device it is compared on
    d["kernels"]["cpu_semantics"] = device == "cpu"
    spec = Spec.model_validate(d)
    name = f"{spec.name} ({device})"
    if spec.parallel.tp * spec.parallel.cp > 1 and not small:
        raise UserError("parallel.tp: TP and CP ranks are measured in gloo processes on this CPU, for models up to "
                        "50M parameters and 4,096 tokens; validate the large model with tp=1, cp=1 (meta device)")
    progress(name)
    if small and spec.parallel.dp_size > 1:                # every rank, with the trainer's optimizer step
        from .measure_dp import dp_rows, run_dp

        return dp_rows(name, spec, run_dp([spec])[0]), []
    if spec.parallel.tp * spec.parallel.cp > 1:
        return tp_rows(name, spec, run_tp([spec])[0]), []
    rows = rows_for(name, spec, measure_spec(spec, device, fvcore=device != "meta"))
    if device == "meta" and spec.kernels.dropout > 0:
        # meta runs dropout like the CPU (mask at the activation dtype) but LayerNorm like the GPU (fp32 stats)
        rows = [r for r in rows if not r.quantity.startswith("saved bytes")]
    return rows, []


def _run_pp_spec(spec, small: bool, progress: Callable[[str], None]) -> tuple[list, list[dict]]:
    """One user-given pipeline spec: pp gloo processes on this CPU (small models, tp = cp = dp = 1)."""
    from soraplan.planner.errors import UserError
    from soraplan.planner.spec import Spec

    from .measure_pp import pp_rows, run_pp

    p = spec.parallel
    if not small or p.world != p.pp:
        raise UserError(f"parallel.pp: pipeline stages are measured in pp gloo processes on this CPU, with tp = cp = dp "
                        f"= 1 (--gpus {p.pp}) and models up to 50M parameters and 4,096 tokens; got pp={p.pp} on "
                        f"{p.world} GPUs")
    if spec.kernels.param_dtype != "fp32":
        raise UserError(f"kernels.param_dtype: pipeline stages are measured with fp32 parameters (the trainer's "
                        f"master weights, whose gradients the stages all-reduce); got {spec.kernels.param_dtype}")
    d = spec.model_dump()
    d["kernels"]["cpu_semantics"] = True
    spec = Spec.model_validate(d)
    name = f"{spec.name} (cpu, pp={p.pp}" + (f", vpp={p.vpp})" if p.vpp > 1 else ")")
    progress(name)
    return pp_rows(name, spec, run_pp([spec])[0]), []
