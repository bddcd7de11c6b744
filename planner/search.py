"""Layout search: every (tp, pp, vpp, cp, dp, micro-batch, micro-batches, SP, recompute, distributed
optimizer, attention) candidate for a GPU count, evaluated as numpy arrays, not a loop over objects.

`Space(spec, options)` precomputes everything that does not depend on the layout (FLOPs and elementwise
bytes per op class for each attention/recompute choice via `step.op_work`, the activation terms of every
layer via `activations.layer_terms`, parameters per GPU for each (tp, pp) via `params.params_per_gpu`), so
one layout costs a few dozen array operations: `Space.evaluate(gpus, LayoutArrays)` gives, for every layout, the
reason it is rejected (or 0), its memory per GPU (memory.memory_terms) and every step-time term
(step.step_terms): the same formula cores `soraplan estimate` runs on scalars.

`reference_evaluate` is the straightforward per-layout loop over the scalar planner (Spec validation +
memory(spec) + step_time(spec)); tests check the two agree on random samples, and
benchmarks/bench_search.py times both.

Rules (in the order a layout is rejected):
  tp_over_node  tp > --max-tp-in-node (default GPUs per node): TP all-reduces every sub-block, so it is
                kept on NVLink (the scalar step model prices it at network bandwidth if a user forces it)
  divisibility  the Spec's rules (heads % tp, ffn % tp, layers % (pp*vpp), tokens % cp, SP tokens % tp,
                windows % cp), fewer GPUs than tp*pp*cp, and Megatron's interleaved schedule (m % pp with vpp > 1)
  batch         global batch (m * micro_batch * dp) outside --global-batch-range
  memory        total > capacity * (1 - headroom)
  unsupported   a layout `soraplan train` refuses (`trainable.train_refusal`: the context-parallel
                combinations the model cannot run, interleaved 1F1B, and pipeline / context / sequence
                parallelism for the current block vocabulary); the same rule `soraplan launch` and the
                trainer apply; checked after divisibility
cp_comm (p2p | all-gather | a2a) is an axis of the search for cp > 1; cp = 1 layouts carry the first choice.
dp = GPUs // (tp*pp*cp): a layout may leave up to tp*pp*cp - 1 GPUs idle (reported as gpus_used).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from .activations import SELECTIVE, Term, layer_input_term, layer_terms, outside_terms, placement, shared_terms
from .cp import CP_COMMS, CpConstants, cp_constants, cp_extra, cp_refusal
from .errors import UserError
from .memory import MemoryConstants, memory, memory_constants, memory_terms
from .params import params_per_gpu
from .pp_schedule import peak_in_flight
from .spec import Spec, parse_attention, spec_with
from .step import (STEP_FIELDS, WORK_KEYS, HwConstants, StepLayout, StepWork, hw_constants, op_work, step_terms,
                   step_time)
from .trainable import layout_refusal, layout_refused, model_cp_refusal, refused_layouts

RECOMPUTE = ("none", "selective", "full")
REASONS = ("ok", "tp_over_node", "divisibility", "batch", "memory", "unsupported")
OK, TP_OVER_NODE, DIVISIBILITY, BATCH, MEMORY, UNSUPPORTED = range(6)
DIVISORS = ("1", "t", "d")        # activations.Term.divisor: whole, / tp, / tp under sequence parallel


@dataclass(frozen=True)
class LayoutArrays:
    """Layouts as parallel integer arrays, one entry per layout."""

    attention: np.ndarray              # index into Space.attentions
    tp: np.ndarray
    pp: np.ndarray
    vpp: np.ndarray
    cp: np.ndarray
    micro_batch: np.ndarray
    microbatches: np.ndarray           # micro-batches per optimizer step
    sequence_parallel: np.ndarray      # 0 | 1
    recompute: np.ndarray              # index into RECOMPUTE
    distributed_optimizer: np.ndarray  # 0 | 1
    cp_comm: np.ndarray                # index into cp.CP_COMMS

    def __len__(self) -> int:
        return len(self.tp)

    def take(self, idx: Any) -> LayoutArrays:
        """The layouts at `idx` (an index array, a boolean mask or a slice)."""
        return LayoutArrays(**{f.name: getattr(self, f.name)[idx] for f in fields(self)})

    def row(self, i: int) -> dict[str, int]:
        """Layout i as plain ints (for messages)."""
        return {f.name: int(getattr(self, f.name)[i]) for f in fields(self)}


LAYOUT_FIELDS = tuple(f.name for f in fields(LayoutArrays))


@dataclass(frozen=True)
class ActivationTable:
    """Activation bytes of one micro-batch, b * (s * per_token + per_sample) / divisor summed over the three
    divisors, as coefficients per row of the (attention, layers in the first stage, recompute) table."""

    per_token_whole: np.ndarray
    per_sample_whole: np.ndarray
    per_token_tp: np.ndarray           # divided by tp
    per_sample_tp: np.ndarray
    per_token_sp: np.ndarray           # divided by tp under sequence parallel
    per_sample_sp: np.ndarray

    @staticmethod
    def from_columns(cols: np.ndarray) -> ActivationTable:
        """From an array whose last axis is (per_token, per_sample) for each of DIVISORS, flattened over the rest."""
        flat = [np.ascontiguousarray(cols[..., j].ravel()) for j in range(6)]
        return ActivationTable(*flat)

    def bytes(self, row: np.ndarray, s: np.ndarray, b: np.ndarray, inv_tp: np.ndarray, inv_sp: np.ndarray) -> np.ndarray:
        """Bytes at table rows `row` for s tokens per CP rank and b samples per micro-batch."""
        t = np.take
        return b * ((s * t(self.per_token_whole, row) + t(self.per_sample_whole, row))
                    + (s * t(self.per_token_tp, row) + t(self.per_sample_tp, row)) * inv_tp
                    + (s * t(self.per_token_sp, row) + t(self.per_sample_sp, row)) * inv_sp)


def _coefs(terms: list[Term]) -> np.ndarray:
    """(per_token, per_sample) for each of DIVISORS, summed over terms."""
    out = np.zeros(6)
    for t in terms:
        j = 2 * DIVISORS.index(t.divisor)
        out[j] += t.per_token
        out[j + 1] += t.per_sample
    return out


def _divisors(n: int, cap: int) -> list[int]:
    return [x for x in range(1, min(n, cap) + 1) if n % x == 0]


def window_options(spec: Spec) -> list[str]:
    """Window patterns offered with --allow-window: 8 or 4 latent-patch frames x the whole frame."""
    if spec.video.tokens is not None:
        return []
    t, h, w = spec.video.grid
    return [f"window:{wt},{h},{w}" for wt in (8, 4) if t % wt == 0 and t > wt]


@dataclass(frozen=True)
class SearchOptions:
    headroom: float = 0.10
    max_tp_in_node: int | None = None               # default: GPUs per node
    global_batch_range: tuple[int, int] | None = None   # default: the spec's global batch, else (64, 1024)
    allow_window: bool = False
    attentions: tuple[str, ...] | None = None         # default: the spec's (+ windows when allowed)
    tp: tuple[int, ...] | None = None
    pp: tuple[int, ...] | None = None
    vpp: tuple[int, ...] | None = None
    cp: tuple[int, ...] = (1, 2, 4, 8, 16, 32)
    micro_batch: tuple[int, ...] = (1, 2, 4, 8)
    microbatches: tuple[int, ...] | None = None
    recompute: tuple[str, ...] = RECOMPUTE
    distributed_optimizer: tuple[bool, ...] = (False, True)
    sequence_parallel: tuple[bool, ...] = (False, True)
    cp_comm: tuple[str, ...] = CP_COMMS

    def __post_init__(self) -> None:
        for c in self.cp_comm:
            if c not in CP_COMMS:
                raise UserError(f"parallel.cp_comm: {c!r} is not one of {', '.join(CP_COMMS)}")
        if not 0 <= self.headroom < 1:
            raise UserError(f"--headroom: must be in [0, 1), got {self.headroom}")
        if self.global_batch_range is not None:
            lo, hi = self.global_batch_range
            if lo < 1 or hi < lo:
                raise UserError(f"--global-batch-range: need 1 <= low <= high, got {lo},{hi}")
        for r in self.recompute:
            if r not in RECOMPUTE:
                raise UserError(f"recompute: {r!r} is not one of {', '.join(RECOMPUTE)}")


@dataclass
class Space:
    """The layout-independent tables for one spec, and the vectorised evaluation of layouts."""

    spec: Spec
    options: SearchOptions = field(default_factory=SearchOptions)
    # search settings, resolved from the options and the spec
    max_tp_in_node: int = field(init=False)
    global_batch_range: tuple[int, int] = field(init=False)
    attentions: tuple[str, ...] = field(init=False)
    tp_sizes: tuple[int, ...] = field(init=False)
    pp_sizes: tuple[int, ...] = field(init=False)
    vpp_sizes: tuple[int, ...] = field(init=False)
    microbatch_counts: tuple[int, ...] = field(init=False)
    # constants of the two formula cores
    step_constants: HwConstants = field(init=False)
    memory: MemoryConstants = field(init=False)
    usable_bytes: float = field(init=False)            # capacity less the headroom
    # per (attention, recompute) choice, row attention * 3 + recompute: OpWork numbers (step.WORK_KEYS)
    work: dict[str, np.ndarray] = field(init=False)
    # per attention and number of first-stage layers (prefix sums over layers): layers whose K/V exchange
    # always spans CP ranks, and spatial layers that need it unless the latent frames split evenly over cp
    ring_layers_prefix: np.ndarray = field(init=False)
    frame_layers_prefix: np.ndarray = field(init=False)
    grid_t: int = field(init=False)
    window_counts: np.ndarray = field(init=False)      # per attention: windows (0: no window constraint)
    full_attention: np.ndarray = field(init=False)     # per attention: 1 if full attention
    cp_supported: np.ndarray = field(init=False)       # [attention, tp, cp, cp_comm]: cp.cp_refusal is None
    cp_consts: CpConstants = field(init=False)
    # activations, per (attention, layers in the first stage, recompute): the saved bytes of one micro-batch
    # (layers + shared text states) and, for each distinct layer kind, what it rebuilds while recomputed
    saved: ActivationTable = field(init=False)
    rebuilt_by_kind: tuple[ActivationTable, ...] = field(init=False)
    # the shared terms' coefficients by where a pipeline holds them: "every" model chunk, the "first" stage's
    # first chunk, the "last" stage's last chunk (planner/pp_schedule.py)
    placed_coefs: dict[str, Any] = field(init=False)
    # parameters per GPU for each (tp, pp) the Spec accepts (0 elsewhere: rejected anyway)
    params_by_tp_pp: np.ndarray = field(init=False)
    tp_index: np.ndarray = field(init=False)           # tp size -> row of params_by_tp_pp
    pp_index: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        spec, o = self.spec, self.options
        m, gpu = spec.model, spec.hardware.spec
        self.step_constants = hw_constants(spec)
        self.memory = memory_constants(spec)
        self.max_tp_in_node = o.max_tp_in_node or gpu.gpus_per_node
        if o.global_batch_range is not None:
            self.global_batch_range = o.global_batch_range
        elif spec.parallel.global_batch is not None:
            self.global_batch_range = (spec.parallel.global_batch, spec.parallel.global_batch)
        else:
            self.global_batch_range = (64, 1024)
        atts = list(o.attentions or [m.attention])
        if o.allow_window and o.attentions is None:
            atts += [w for w in window_options(spec) if w not in atts]
        self.attentions = tuple(atts)
        self.tp_sizes = tuple(o.tp or _divisors(m.heads, max(16, 2 * gpu.gpus_per_node)))
        self.pp_sizes = tuple(o.pp or _divisors(m.depth, 32))
        self.vpp_sizes = tuple(o.vpp or _divisors(m.depth, 8))
        counts = set(o.microbatches or ())
        if not counts:
            counts = ({2**i for i in range(9)}
                      | {k * p for p in self.pp_sizes if p > 1 for k in (1, 2, 4, 8, 16, 32) if k * p <= 256})
        self.microbatch_counts = tuple(sorted(counts))
        self.usable_bytes = self.memory.capacity_bytes * (1 - o.headroom)
        self._work_tables()
        self._activation_tables()
        self._param_table()
        self._cp_tables()

    @property
    def layers(self) -> int:
        """Blocks divided over pipeline stages: layers + single-stream blocks (Model.depth)."""
        return self.spec.model.depth

    @property
    def seq_len(self) -> int:
        return self.spec.seq_len

    @property
    def capacity_bytes(self) -> float:
        return self.memory.capacity_bytes

    @property
    def buffers_bytes(self) -> float:
        return self.memory.buffers_bytes

    # ------------------------------------------------------------------------------------------------
    def variant(self, attention: str, **parallel: Any) -> Spec:
        """The spec with another attention pattern and parallel section (validated)."""
        every_field = {"tp": 1, "pp": 1, "vpp": 1, "cp": 1, "cp_comm": "p2p", "dp": None, "gpus": None, "sequence_parallel": False,
                       "micro_batch": 1, "global_batch": None, "recompute": "none", "recompute_layers": None,
                       "distributed_optimizer": True}
        return spec_with(self.spec, model={"attention": attention}, parallel={**every_field, **parallel})

    def _base(self, attention: str) -> Spec:
        try:
            return self.variant(attention)
        except ValueError as e:
            raise UserError(f"model.attention: {attention}: {e}") from None

    def _work_tables(self) -> None:
        """op_work of a 1-GPU variant for each (attention, recompute): layout-independent."""
        n_att, n_layers = len(self.attentions), self.layers
        self.work = {key: np.zeros(n_att * len(RECOMPUTE)) for key in WORK_KEYS}
        self.ring_layers_prefix = np.zeros((n_att, n_layers + 1))
        self.frame_layers_prefix = np.zeros((n_att, n_layers + 1))
        self.window_counts = np.zeros(n_att, dtype=np.int64)
        self.grid_t = self.spec.video.grid[0]
        for a, att in enumerate(self.attentions):
            self._base(att)
            for r, rc in enumerate(RECOMPUTE):
                w = op_work(self.variant(att, recompute=rc))
                for key in WORK_KEYS:
                    self.work[key][a * len(RECOMPUTE) + r] = getattr(w, key)
                if r == 0:
                    self.ring_layers_prefix[a, 1:] = np.cumsum(w.ring_layers)
                    self.frame_layers_prefix[a, 1:] = np.cumsum(w.frame_layers)
            kind, win = parse_attention(att)
            if kind == "window":
                assert win is not None
                self.window_counts[a] = self.spec.video.seq_len // math.prod(win)

    def _activation_tables(self) -> None:
        """The activation coefficient tables (see `saved` and `rebuilt_by_kind`)."""
        n_att, n_layers = len(self.attentions), self.layers
        # prefix sums over layers of every saved term, and of the terms a selective recompute frees
        saved_prefix = np.zeros((n_att, n_layers + 1, 6))
        freed_prefix = np.zeros((n_att, n_layers + 1, 6))
        kinds: list[list[tuple[int, np.ndarray, np.ndarray]]] = []   # per attention: (first layer, saved, freed)
        for a, att in enumerate(self.attentions):
            base = self._base(att)
            seen: set[tuple[float, ...]] = set()
            distinct = []
            for i in range(n_layers):
                terms = layer_terms(base, i)
                saved = _coefs(list(terms.values()))
                freed = _coefs([t for name, t in terms.items() if name.endswith(SELECTIVE)])
                saved_prefix[a, i + 1] = saved_prefix[a, i] + saved
                freed_prefix[a, i + 1] = freed_prefix[a, i] + freed
                key = tuple(saved) + tuple(freed)
                if key not in seen:
                    seen.add(key)
                    distinct.append((i, saved, freed))
            kinds.append(distinct)
        base = self.variant(self.attentions[0])
        input_coef = _coefs([layer_input_term(base)])
        shared = shared_terms(base)
        shared_coef = _coefs(list(shared.values()))
        # under pipeline parallelism: per model chunk, the first stage's first chunk, the last stage's last
        self.placed_coefs = {where: _coefs([t for name, t in shared.items() if placement(name) == where])
                             for where in ("every", "first", "last")}
        stage_layers = np.arange(n_layers + 1)
        # saved per micro-batch by recompute: none keeps every term; selective drops the freed ones; full
        # keeps each layer's input only
        saved_cols = np.zeros((n_att, n_layers + 1, len(RECOMPUTE), 6))
        saved_cols[:, :, 0] = saved_prefix
        saved_cols[:, :, 1] = saved_prefix - freed_prefix
        saved_cols[:, :, 2] = stage_layers[None, :, None] * input_coef[None, None, :]
        saved_cols += shared_coef
        self.saved = ActivationTable.from_columns(saved_cols)
        # while one layer is recomputed it rebuilds its freed terms (selective) or all of them (full); each
        # distinct layer kind present in the first stage is a candidate for the largest
        tables = []
        for k in range(max(len(d) for d in kinds)):
            rebuilt = np.zeros((n_att, n_layers + 1, len(RECOMPUTE), 6))
            for a, distinct in enumerate(kinds):
                if k >= len(distinct):
                    continue
                first, saved, freed = distinct[k]
                present = (first < stage_layers)[:, None]               # the kind is among the stage's layers
                rebuilt[a, :, 1] = np.where(present, freed[None, :], 0.0)
                rebuilt[a, :, 2] = np.where(present, (saved - input_coef)[None, :], 0.0)   # the input is kept
            tables.append(ActivationTable.from_columns(rebuilt))
        self.rebuilt_by_kind = tuple(tables)

    def _cp_tables(self) -> None:
        """Which (attention, tp, cp, cp_comm) the model trains (cp.cp_refusal), and cp_extra's constants."""
        m, k = self.spec.model, self.spec.kernels
        max_tp, max_cp = max(self.tp_sizes), max(self.options.cp)
        self.cp_supported = np.zeros((len(self.attentions), max_tp + 1, max_cp + 1, len(CP_COMMS)), dtype=bool)
        self.full_attention = np.zeros(len(self.attentions))
        analytic_only = layout_refusal(m, 1, 1, 1, 1, False) is not None   # refused everywhere: planned, not masked
        for a, att in enumerate(self.attentions):
            kind, _ = parse_attention(att)
            self.full_attention[a] = 1.0 if kind == "full" else 0.0
            for tp in self.tp_sizes:
                for cp in self.options.cp:
                    for c, comm in enumerate(CP_COMMS):
                        self.cp_supported[a, tp, cp, c] = cp_refusal(kind, k.attention_kernel, k.dropout, m.heads,
                                                                      tp, cp, comm) is None \
                            and (analytic_only or model_cp_refusal(m, tp, cp, comm) is None)
        self.cp_consts = cp_constants(self.spec, sum(t.per_token for t in outside_terms(self.spec).values()))

    def _param_table(self) -> None:
        self.tp_index = np.zeros(max(self.tp_sizes) + 1, dtype=np.int64)
        self.pp_index = np.zeros(max(self.pp_sizes) + 1, dtype=np.int64)
        self.tp_index[list(self.tp_sizes)] = np.arange(len(self.tp_sizes))
        self.pp_index[list(self.pp_sizes)] = np.arange(len(self.pp_sizes))
        self.params_by_tp_pp = np.zeros((len(self.tp_sizes), len(self.pp_sizes)))
        m = self.spec.model
        for i, tp in enumerate(self.tp_sizes):
            for j, pp in enumerate(self.pp_sizes):
                if m.heads % tp == 0 and m.ffn % tp == 0 and self.layers % pp == 0:
                    self.params_by_tp_pp[i, j] = params_per_gpu(self.variant(self.attentions[0], tp=tp, pp=pp))

    # ------------------------------------------------------------------------------------------------
    def _outer_grid(self) -> dict[str, np.ndarray]:
        """The (attention, tp, pp, vpp, cp, cp_comm) grid (cp = 1: the first cp_comm only)."""
        comms = [CP_COMMS.index(c) for c in self.options.cp_comm]
        rows = [(a, tp, pp, vpp, cp, c) for a in range(len(self.attentions)) for tp in self.tp_sizes for pp in self.pp_sizes
                for vpp in (self.vpp_sizes if pp > 1 else (1,)) for cp in self.options.cp
                for c in (comms if cp > 1 else comms[:1])]
        g = np.array(rows, dtype=np.int64).reshape(-1, 6)
        return {name: g[:, col] for col, name in enumerate(("attention", "tp", "pp", "vpp", "cp", "cp_comm"))}

    def _inner_grid(self) -> dict[str, np.ndarray]:
        """The (micro-batch, micro-batches, SP, recompute, distributed optimizer) grid."""
        rows = [(mb, m, sp, RECOMPUTE.index(r), dist) for mb in self.options.micro_batch for m in self.microbatch_counts
                for sp in self.options.sequence_parallel for r in self.options.recompute
                for dist in self.options.distributed_optimizer]
        g = np.array(rows, dtype=np.int64).reshape(-1, 5)
        names = ("micro_batch", "microbatches", "sequence_parallel", "recompute", "distributed_optimizer")
        return {name: g[:, col] for col, name in enumerate(names)}

    def candidates(self, gpus: int, prefilter: bool = False) -> tuple[LayoutArrays, np.ndarray]:
        """The candidate space for `gpus` GPUs as flat arrays (one entry per layout), and rejection counts
        (by REASONS index) of the layouts left out by `prefilter`: with it, (attention, tp, pp, vpp, cp)
        combinations that break a rule on their own are counted (times their inner combinations) and not
        expanded. SP at tp = 1 is not a separate layout and is never generated."""
        outer, inner = self._outer_grid(), self._inner_grid()
        pre = np.zeros(len(REASONS), dtype=np.int64)
        n_inner_sp1 = (int(np.count_nonzero(inner["sequence_parallel"] == 1))
                       if 0 in self.options.sequence_parallel else 0)
        if prefilter:
            r = self._outer_reason(gpus, outer["attention"], outer["tp"], outer["pp"], outer["vpp"], outer["cp"],
                                   outer["cp_comm"])
            mult = len(inner["micro_batch"]) - np.where(outer["tp"] == 1, n_inner_sp1, 0)
            r = np.where(r == UNSUPPORTED, OK, r)        # inner divisibility rules come first: expand those
            pre = np.bincount(r, weights=mult, minlength=len(REASONS)).astype(np.int64)
            pre[OK] = 0
            outer = {f: v[r == OK] for f, v in outer.items()}
        n_outer, n_inner = len(outer["tp"]), len(inner["micro_batch"])
        x = {f: np.repeat(v, n_inner) for f, v in outer.items()}
        x.update({f: np.tile(v, n_outer) for f, v in inner.items()})
        if 0 not in self.options.sequence_parallel:      # SP pinned on: tp = 1 layouts run without it
            x["sequence_parallel"] = np.where(x["tp"] == 1, 0, x["sequence_parallel"])
            return LayoutArrays(**x), pre
        keep = ~((x["tp"] == 1) & (x["sequence_parallel"] == 1))
        return LayoutArrays(**{f: v[keep] for f, v in x.items()}), pre

    def _outer_reason(self, gpus: int, att: np.ndarray, tp: np.ndarray, pp: np.ndarray, vpp: np.ndarray,
                      cp: np.ndarray, comm: np.ndarray) -> np.ndarray:
        """Rules that depend on (attention, tp, pp, vpp, cp, cp_comm) only: tp over a node, divisibility,
        then what the model cannot train."""
        m = self.spec.model
        dp = gpus // (tp * pp * cp)
        win = self.window_counts[att]
        bad_div = ((m.heads % tp != 0) | (m.ffn % tp != 0) | (self.layers % (pp * vpp) != 0) | (self.seq_len % cp != 0)
                   | ((win > 0) & (win % cp != 0)) | (dp < 1) | ((vpp > 1) & (pp == 1)))
        tp_i = np.minimum(tp, self.cp_supported.shape[1] - 1)
        cp_i = np.minimum(cp, self.cp_supported.shape[2] - 1)
        unsupported = ~self.cp_supported[att, tp_i, cp_i, comm]   # trainable.train_refusal
        return np.where(tp > self.max_tp_in_node, TP_OVER_NODE,
                        np.where(bad_div, DIVISIBILITY, np.where(unsupported, UNSUPPORTED, OK)))

    def reasons(self, gpus: int, x: LayoutArrays) -> np.ndarray:
        """Why each layout is rejected (REASONS index; 0 = passes the integer rules)."""
        tp, pp, vpp, cp = x.tp, x.pp, x.vpp, x.cp
        dp = gpus // (tp * pp * cp)
        bad_div = (((x.sequence_parallel == 1) & ((self.seq_len // cp) % tp != 0))
                   | ((vpp > 1) & (x.microbatches % pp != 0)))      # trainable.interleave_refusal
        gb = x.microbatches * x.micro_batch * dp
        lo, hi = self.global_batch_range
        bad_batch = (gb < lo) | (gb > hi)
        reason = self._outer_reason(gpus, x.attention, tp, pp, vpp, cp, x.cp_comm)
        refused = refused_layouts(self.spec.model, tp, pp, vpp, cp, x.sequence_parallel)   # the model's part
        reason = np.where((reason == OK) & refused, UNSUPPORTED, reason)
        early = (reason != OK) & (reason != UNSUPPORTED)
        return np.where(early, reason, np.where(bad_div, DIVISIBILITY, np.where(reason == UNSUPPORTED, UNSUPPORTED,
                                                                                np.where(bad_batch, BATCH, OK))))

    def evaluate(self, gpus: int, x: LayoutArrays, compact: bool = True) -> dict[str, np.ndarray]:
        """Reasons, memory and step terms for every layout in `x`.

        compact=True computes memory and step time only for the layouts that pass the integer rules (the
        others keep their reason and NaN); compact=False pushes every layout through the whole model.
        """
        reason = self.reasons(gpus, x)
        idx = np.nonzero(reason == OK)[0] if compact else np.arange(len(reason))
        y = x.take(idx) if compact else x
        mem, st = self._chunked(gpus, y)
        if not compact:
            fits = mem["total"] <= self.usable_bytes
            reason = np.where((reason == OK) & ~fits, MEMORY, reason)
            return {"reason": reason, **mem, **st}
        n = len(reason)
        out: dict[str, np.ndarray] = {}
        for key, v in {**mem, **st}.items():
            full = np.full(n, np.nan)
            full[idx] = v
            out[key] = full
        reason = reason.copy()
        reason[idx[mem["total"] > self.usable_bytes]] = MEMORY
        out["reason"] = reason
        return out

    def _chunked(self, gpus: int, y: LayoutArrays, chunk: int = 1 << 14) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """memory_and_step over cache-sized chunks (numpy's temporaries stay in L2: ~2x faster)."""
        n = len(y)
        if n <= chunk:
            return self.memory_and_step(gpus, y)
        out: tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None = None
        for i in range(0, n, chunk):
            part = self.memory_and_step(gpus, y.take(slice(i, i + chunk)))
            if out is None:
                out = ({k: np.empty(n) for k in part[0]}, {k: np.empty(n) for k in part[1]})
            for o, p in zip(out, part):
                for k, v in p.items():
                    o[k][i:i + chunk] = v
        assert out is not None
        return out

    def memory_and_step(self, gpus: int, y: LayoutArrays) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Memory terms (memory.memory_terms) and step terms (step.step_terms) of every layout in `y`."""
        tp, pp, vpp, cp, mb, mm = y.tp, y.pp, y.vpp, y.cp, y.micro_batch, y.microbatches
        sp, dist = y.sequence_parallel.astype(bool), y.distributed_optimizer.astype(bool)
        dp = np.maximum(gpus // (tp * pp * cp), 1)
        stage_layers = np.minimum(self.layers // np.maximum(pp, 1), self.layers)
        s = (self.seq_len // cp).astype(np.float64)
        b = mb.astype(np.float64)
        inv_tp = 1.0 / tp.astype(np.float64)
        inv_sp = np.where(sp, inv_tp, 1.0)
        row = (y.attention * (self.layers + 1) + stage_layers) * len(RECOMPUTE) + y.recompute
        per_mb = self.saved.bytes(row, s, b, inv_tp, inv_sp)
        working = self.rebuilt_by_kind[0].bytes(row, s, b, inv_tp, inv_sp)
        for table in self.rebuilt_by_kind[1:]:
            working = np.maximum(working, table.bytes(row, s, b, inv_tp, inv_sp))
        full_layers = stage_layers * self.full_attention[y.attention]
        kept = np.where(y.recompute == 0, full_layers, 0.0)
        rebuilt = np.where((y.recompute > 0) & (full_layers > 0), 1.0, 0.0)
        cp_saved, cp_working = cp_extra(np, self.cp_consts, s, b, tp, sp, cp, y.cp_comm, kept, rebuilt, kept)
        per_mb = per_mb + cp_saved
        working = working + cp_working
        acts = self._in_flight(per_mb, working, pp, vpp, mm, s, b, inv_tp, inv_sp)
        n = self.params_by_tp_pp[self.tp_index[np.minimum(tp, len(self.tp_index) - 1)],
                                 self.pp_index[np.minimum(pp, len(self.pp_index) - 1)]]
        mem = memory_terms(np, self.memory, n, dp, cp, dist, acts)
        del mem["buffers"]
        choice = y.attention * len(RECOMPUTE) + y.recompute
        ring = (self.ring_layers_prefix[y.attention, stage_layers]
                + np.where(self.grid_t % cp == 0, 0.0, self.frame_layers_prefix[y.attention, stage_layers]))
        work = StepWork(**{key: v[choice] for key, v in self.work.items()}, ring=ring)
        layout = StepLayout(tp=tp, pp=pp, vpp=vpp, cp=cp, dp=dp, micro_batch=mb, microbatches=mm,
                            sequence_parallel=sp, distributed_optimizer=dist, n_params=n, cp_comm=y.cp_comm)
        return mem, step_terms(np, self.step_constants, work, layout)

    def _in_flight(self, per_mb: np.ndarray, working: np.ndarray, pp: np.ndarray, vpp: np.ndarray, mm: np.ndarray,
                   s: np.ndarray, b: np.ndarray, inv_tp: np.ndarray, inv_sp: np.ndarray) -> np.ndarray:
        """Activation bytes of the most loaded stage with its in-flight micro-batches, as
        `activations.stage_activations` (the schedule replayed once per distinct (pp, vpp, m))."""
        def coef_bytes(c: np.ndarray) -> np.ndarray:
            return b * ((s * c[0] + c[1]) + (s * c[2] + c[3]) * inv_tp + (s * c[4] + c[5]) * inv_sp)

        every, first, last = (coef_bytes(self.placed_coefs[w]) for w in ("every", "first", "last"))
        layers = per_mb - (every + first + last)
        if len(pp) == 0:
            return per_mb + working
        code = (pp.astype(np.int64) * 100_000 + vpp) * 10_000_000 + mm          # one integer per (pp, vpp, m)
        keys, inverse = np.unique(code, return_inverse=True)
        base = layers / vpp + every
        stages = []
        for last_stage, extra in ((False, first), (True, last)):
            table = []
            for key in keys.tolist():
                a, v, m = key // 1_000_000_000_000, key // 10_000_000 % 100_000, key % 10_000_000
                table.append(peak_in_flight(a, v, m, a - 1 if last_stage else 0) if a > 1 else (1, 1, 1, 1))
            peak = np.array(table, dtype=np.float64).reshape(-1, 4)[inverse.reshape(-1)]
            stages.append(np.maximum(base * peak[:, 0] + extra * peak[:, 1],
                                     base * peak[:, 2] + extra * peak[:, 3] + working))
        single = np.maximum(per_mb, per_mb - last + working)       # pp = 1: one micro-batch
        return np.where(pp > 1, np.maximum(*stages), single)

    # ------------------------------------------------------------------------------------------------
    def spec_for(self, gpus: int, x: LayoutArrays, i: int) -> Spec:
        """The validated Spec of layout i (raises ValueError when the Spec rejects it)."""
        tp, pp, cp = int(x.tp[i]), int(x.pp[i]), int(x.cp[i])
        dp = gpus // (tp * pp * cp)
        mb, mm = int(x.micro_batch[i]), int(x.microbatches[i])
        return self.variant(self.attentions[int(x.attention[i])], tp=tp, pp=pp, vpp=int(x.vpp[i]), cp=cp, dp=dp,
                            sequence_parallel=bool(x.sequence_parallel[i]), micro_batch=mb,
                            global_batch=mm * mb * max(dp, 1), recompute=RECOMPUTE[int(x.recompute[i])],
                            distributed_optimizer=bool(x.distributed_optimizer[i]),
                            cp_comm=CP_COMMS[int(x.cp_comm[i])])


def reference_evaluate(space: Space, gpus: int, x: LayoutArrays, idx: Any = None) -> list[dict[str, Any]]:
    """The per-layout loop over the scalar planner: Spec validation + memory(spec) + step_time(spec)."""
    out = []
    rows = range(len(x)) if idx is None else idx
    for i in rows:
        tp, pp, vpp, cp, mm = int(x.tp[i]), int(x.pp[i]), int(x.vpp[i]), int(x.cp[i]), int(x.microbatches[i])
        rec: dict[str, Any] = {"i": int(i)}
        if tp > space.max_tp_in_node:
            out.append({**rec, "reason": TP_OVER_NODE})
            continue
        dp = gpus // (tp * pp * cp)
        if dp < 1 or (vpp > 1 and mm % pp):
            out.append({**rec, "reason": DIVISIBILITY})
            continue
        try:
            spec = space.spec_for(gpus, x, i)
        except ValueError:
            out.append({**rec, "reason": DIVISIBILITY})
            continue
        if layout_refused(spec):
            out.append({**rec, "reason": UNSUPPORTED})
            continue
        gb = spec.parallel.global_batch_size
        lo, hi = space.global_batch_range
        if not lo <= gb <= hi:
            out.append({**rec, "reason": BATCH})
            continue
        mem = memory(spec)
        st = step_time(spec)
        rec.update({"reason": MEMORY if mem.total > space.usable_bytes else OK, "weights": mem.weights,
                    "grads": mem.grads, "optimizer": mem.optimizer, "activations": mem.activations, "total": mem.total})
        rec.update({f: getattr(st, f) for f in STEP_FIELDS})
        out.append(rec)
    return out
