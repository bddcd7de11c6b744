"""Measured vs predicted: pure functions from a measurement dict (`measure_run`) and the Spec to table rows.

Tolerances: parameters and matmul/attention FLOPs are exact (0); saved activation bytes within 1 % (the
whole micro-batch, and the transformer block alone: the planner's activation terms depend on the model,
video and kernels only, so they keep a few small tensors the model keeps only in some layouts, see
docs/validation.md); the elementwise FLOP remainder is reported, never compared ("info").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

ACTIVATION_TOL = 0.01


@dataclass(frozen=True)
class Row:
    config: str
    quantity: str
    measured: float
    predicted: float | None
    tolerance: float | None          # relative; 0 = exact; None = reported only
    unit: str
    layout: dict[str, Any] | None = None   # the measured layout (`layout_of`)
    rank: int | None = None                # the global rank measured (None: the whole model, one process)

    @property
    def error(self) -> float | None:
        if self.predicted is None:
            return None
        if self.predicted == 0:
            return 0.0 if self.measured == 0 else float("inf")
        return (self.measured - self.predicted) / self.predicted

    @property
    def ok(self) -> bool:
        if self.tolerance is None or self.predicted is None:
            return True
        if self.tolerance == 0:
            return self.measured == self.predicted
        return abs(self.error or 0.0) <= self.tolerance

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["error"] = self.error
        d["ok"] = self.ok
        return d


def layout_of(spec) -> dict[str, Any]:
    """The layout a row was measured at: {tp, pp, vpp, cp, cp_comm, dp, sp, distributed_optimizer}."""
    p = spec.parallel
    return {"tp": p.tp, "pp": p.pp, "vpp": p.vpp, "cp": p.cp, "cp_comm": p.cp_comm, "dp": p.dp_size,
            "sp": p.sequence_parallel, "distributed_optimizer": p.distributed_optimizer}


def param_rows(config: str, spec, measured_groups: dict[str, int]) -> list[Row]:
    from soraplan.planner.params import params_breakdown, total_params

    predicted = params_breakdown(spec)
    rows = [Row(config, "params total", sum(measured_groups.values()), total_params(spec), 0, "params")]
    for name in sorted(set(predicted) | set(measured_groups)):
        rows.append(Row(config, f"params {name}", measured_groups.get(name, 0), predicted.get(name, 0), 0, "params"))
    return rows


def flop_rows(config: str, spec, m: dict[str, Any]) -> list[Row]:
    from soraplan.planner.flops import executed_backward, flops

    b = m["micro_batch"]
    f = flops(spec)
    mf = m["flops"]
    rows = [
        Row(config, "FLOPs forward", mf["forward"], f.forward * b, 0, "FLOP"),
        Row(config, "FLOPs fwd self-attn core", mf["forward_core"]["self"], f.by_part["self_attn_core"] * b, 0, "FLOP"),
    ]
    if spec.model.cross_attn:
        rows.append(Row(config, "FLOPs fwd cross-attn core", mf["forward_core"]["cross"], f.by_part["cross_attn_core"] * b, 0, "FLOP"))
    rows.append(Row(config, "FLOPs backward (executed)", mf["backward"], executed_backward(spec) * b, 0, "FLOP"))
    rows.append(Row(config, "FLOPs forward+backward", mf["forward"] + mf["backward"],
                    (f.forward + executed_backward(spec)) * b, 0, "FLOP"))
    # the MFU convention (3 x forward, no recompute): shown for reference, differs by design
    rows.append(Row(config, "FLOPs fwd+bwd vs model FLOPs (3 x fwd)", mf["forward"] + mf["backward"], f.train * b,
                    None, "FLOP"))
    if "fvcore" in m:
        rows.append(Row(config, "FLOPs forward (fvcore)", m["fvcore"]["forward"], f.forward * b, 0, "FLOP"))
    rows.append(Row(config, "FLOPs elementwise fwd+bwd (remainder)",
                    mf["elementwise_forward"] + mf["elementwise_backward"], None, None, "FLOP"))
    return rows


def _outside_bytes(spec) -> float:
    from soraplan.planner.activations import _cost, _layout, outside_terms

    from soraplan.planner.cp import cp_outside_bytes

    s, b, t, d = _layout(spec)
    terms = outside_terms(spec).values()
    return sum(_cost(x, s, b, t, d) for x in terms) + cp_outside_bytes(spec, sum(x.per_token for x in terms))


def activation_rows(config: str, spec, m: dict[str, Any]) -> list[Row]:
    """Saved bytes of the whole micro-batch vs stage_activations' per_microbatch, and the transformer block
    alone vs the same minus the planner's outside-the-block terms."""
    from soraplan.planner.activations import stage_activations

    predicted = stage_activations(spec)["per_microbatch"]
    outside = _outside_bytes(spec)
    s = m["saved"]
    return [
        Row(config, "saved bytes, whole micro-batch", s["total"], predicted, ACTIVATION_TOL, "B"),
        Row(config, "saved bytes, transformer block", s["blocks"], predicted - outside, ACTIVATION_TOL, "B"),
    ]


def rows_for(config: str, spec, m: dict[str, Any], params: bool = True) -> list[Row]:
    out: list[Row] = []
    if params:
        out += param_rows(config, spec, m["params"])
    out += flop_rows(config, spec, m)
    out += activation_rows(config, spec, m)
    return [replace(r, layout=layout_of(spec)) for r in out]


def tp_rows(config: str, spec, ranks: list[dict[str, Any]]) -> list[Row]:
    """Per-rank parameters and saved bytes of a TP / CP run vs the planner's per-GPU numbers."""
    from soraplan.planner.activations import stage_activations
    from soraplan.planner.params import params_per_gpu

    predicted = stage_activations(spec)["per_microbatch"]
    rows = []
    lay = layout_of(spec)
    for r in ranks:
        rank = r["rank"]
        rows.append(Row(config, f"rank {rank} params", r["params"], params_per_gpu(spec), 0, "params", lay, rank))
        rows.append(Row(config, f"rank {rank} saved bytes, whole micro-batch", r["saved_blocks"] + r["saved_outside"],
                        predicted, ACTIVATION_TOL, "B", lay, rank))
        rows.append(Row(config, f"rank {rank} saved bytes, transformer block", r["saved_blocks"],
                        predicted - _outside_bytes(spec), ACTIVATION_TOL, "B", lay, rank))
        rows += comm_rows(config, spec, r.get("comm", {}), lay, rank)
    return rows


def comm_rows(config: str, spec, measured: dict[str, int], layout: dict[str, Any], rank: int) -> list[Row]:
    """`comm bytes <kind> <group>`: the bytes one rank's forward + backward moved (validation.comm_count)
    against `planner.comm.comm_bytes`, exactly (the counts are deterministic)."""
    from soraplan.planner.comm import comm_bytes

    predicted = comm_bytes(spec)
    return [Row(config, f"comm bytes {key}", measured.get(key, 0), predicted.get(key, 0), 0, "B", layout, rank)
            for key in sorted(set(measured) | set(predicted))]
