"""Layout search: every (tp, pp, vpp, cp, dp, micro-batch, micro-batches, SP, recompute, distributed
optimizer, attention) candidate for a GPU count, evaluated as numpy arrays, not a loop over objects.

`Space(spec, options)` precomputes everything that does not depend on the layout (FLOPs and elementwise
bytes per op class for each attention/recompute choice via `step.op_work`, the activation terms of every
layer via `activations.layer_terms`, parameters per GPU for each (tp, pp) via `params.params_per_gpu`), so
one layout costs a few dozen array operations: `Space.evaluate(arrays)` gives, for every layout, the
reason it is rejected (or 0), its memory per GPU (memory.py's formulas, vectorised) and every step-time term
(step.step_terms, the same formula core `soraplan estimate` runs on scalars).

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
dp = GPUs // (tp*pp*cp): a layout may leave up to tp*pp*cp - 1 GPUs idle (reported as gpus_used).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .activations import SELECTIVE, layer_input_term, layer_terms, shared_terms
from .errors import UserError
from .memory import GiB, memory
from .params import params_per_gpu
from .spec import DTYPE_BYTES, Spec, parse_attention
from .step import STEP_FIELDS, WORK_KEYS, hw_constants, op_work, step_terms, step_time

RECOMPUTE = ("none", "selective", "full")
REASONS = ("ok", "tp_over_node", "divisibility", "batch", "memory")
OK, TP_OVER_NODE, DIVISIBILITY, BATCH, MEMORY = range(5)
FIELDS = ("att", "tp", "pp", "vpp", "cp", "mb", "m", "sp", "rc", "dist")
_DIV = {"1": 0, "t": 1, "d": 2}


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

    def __post_init__(self) -> None:
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

    def __post_init__(self) -> None:
        spec, o = self.spec, self.options
        m, gpu = spec.model, spec.hardware.spec
        self.c = hw_constants(spec)
        self.L, self.S = m.layers, spec.seq_len
        self.max_tp = o.max_tp_in_node or gpu.gpus_per_node
        if o.global_batch_range is not None:
            self.gb_range = o.global_batch_range
        elif spec.parallel.global_batch is not None:
            self.gb_range = (spec.parallel.global_batch, spec.parallel.global_batch)
        else:
            self.gb_range = (64, 1024)
        atts = list(o.attentions or [m.attention])
        if o.allow_window and o.attentions is None:
            atts += [w for w in window_options(spec) if w not in atts]
        self.attentions = tuple(atts)
        self.tps = tuple(o.tp or _divisors(m.heads, max(16, 2 * gpu.gpus_per_node)))
        self.pps = tuple(o.pp or _divisors(self.L, 32))
        self.vpps = tuple(o.vpp or _divisors(self.L, 8))
        mbs = set(o.microbatches or ())
        if not mbs:
            mbs = {2**i for i in range(9)} | {k * p for p in self.pps if p > 1 for k in (1, 2, 4, 8, 16, 32) if k * p <= 256}
        self.ms = tuple(sorted(mbs))
        self.capacity = gpu.hbm_gib * GiB
        self.usable = self.capacity * (1 - o.headroom)
        self.buffers = spec.hardware.buffer_gib * GiB
        k = spec.kernels
        opt = DTYPE_BYTES[k.master_dtype] + k.optimizer_states * DTYPE_BYTES[k.optimizer_dtype]
        if k.master_dtype == k.param_dtype and k.param_dtype == "fp32":
            opt = k.optimizer_states * DTYPE_BYTES[k.optimizer_dtype]   # as memory.py: no separate master copy
        self.opt_per_param = opt
        self.pbytes, self.gbytes = DTYPE_BYTES[k.param_dtype], DTYPE_BYTES[k.grad_dtype]
        self._tables()

    # ------------------------------------------------------------------------------------------------
    def variant(self, attention: str, **parallel: Any) -> Spec:
        """The spec with another attention pattern and parallel section (validated)."""
        d = self.spec.model_dump()
        d["model"]["attention"] = attention
        d["parallel"] = {"tp": 1, "pp": 1, "vpp": 1, "cp": 1, "dp": None, "gpus": None, "sequence_parallel": False,
                         "micro_batch": 1, "global_batch": None, "recompute": "none", "recompute_layers": None,
                         "distributed_optimizer": True, **parallel}
        return Spec.model_validate(d)

    def _tables(self) -> None:
        L, A = self.L, len(self.attentions)
        # work per (attention, recompute): op_work of a 1-GPU variant (layout-independent)
        self.work = {key: np.zeros(A * 3) for key in WORK_KEYS}
        self.ring_prefix = np.zeros((A, L + 1))
        self.frame_prefix = np.zeros((A, L + 1))
        self.windows = np.zeros(A, dtype=np.int64)   # window count (0: no window constraint)
        # activation coefficient prefix sums over layers: columns tok1, samp1, tokt, sampt, tokd, sampd
        self.full_prefix = np.zeros((A, L + 1, 6))
        self.free_prefix = np.zeros((A, L + 1, 6))
        kinds: list[list[tuple[int, np.ndarray, np.ndarray]]] = []
        for a, att in enumerate(self.attentions):
            try:
                base = self.variant(att)
            except ValueError as e:
                raise UserError(f"model.attention: {att}: {e}") from None
            for r, rc in enumerate(RECOMPUTE):
                w = op_work(self.variant(att, recompute=rc))
                for key in WORK_KEYS:
                    self.work[key][a * 3 + r] = getattr(w, key)
                if r == 0:
                    self.ring_prefix[a, 1:] = np.cumsum(w.ring_layers)
                    self.frame_prefix[a, 1:] = np.cumsum(w.frame_layers)
                    self.grid_t = w.grid_t
            kind, win = parse_attention(att)
            if kind == "window":
                assert win is not None
                self.windows[a] = self.spec.video.seq_len // math.prod(win)
            seen: dict[tuple[float, ...], int] = {}
            ak = []
            for i in range(L):
                full, free = np.zeros(6), np.zeros(6)
                for name, t in layer_terms(base, i).items():
                    j = 2 * _DIV[t.divisor]
                    full[j] += t.per_token
                    full[j + 1] += t.per_sample
                    if name.endswith(SELECTIVE):
                        free[j] += t.per_token
                        free[j + 1] += t.per_sample
                self.full_prefix[a, i + 1] = self.full_prefix[a, i] + full
                self.free_prefix[a, i + 1] = self.free_prefix[a, i] + free
                key = tuple(full) + tuple(free)
                if key not in seen:
                    seen[key] = i
                    ak.append((i, full, free))
            kinds.append(ak)
        K = max(len(k) for k in kinds)
        self.kind_first = np.full((A, K), L + 1)
        self.kind_full = np.zeros((A, K, 6))
        self.kind_free = np.zeros((A, K, 6))
        for a, ak in enumerate(kinds):
            for j, (i, full, free) in enumerate(ak):
                self.kind_first[a, j], self.kind_full[a, j], self.kind_free[a, j] = i, full, free
        base = self.variant(self.attentions[0])
        inp = layer_input_term(base)
        self.input_coef = np.zeros(6)
        self.input_coef[2 * _DIV[inp.divisor]] += inp.per_token
        self.input_coef[2 * _DIV[inp.divisor] + 1] += inp.per_sample
        self.shared_coef = np.zeros(6)
        for t in shared_terms(base).values():
            self.shared_coef[2 * _DIV[t.divisor]] += t.per_token
            self.shared_coef[2 * _DIV[t.divisor] + 1] += t.per_sample
        # combined per (attention, layers in the first stage, recompute): the saved bytes of one micro-batch
        # (layers + shared text states) and, for each layer kind, what one layer rebuilds while it is recomputed
        A, K = len(self.attentions), self.kind_first.shape[1]
        ps = np.arange(L + 1)
        layer = np.zeros((A, L + 1, 3, 6))
        layer[:, :, 0] = self.full_prefix
        layer[:, :, 1] = self.full_prefix - self.free_prefix
        layer[:, :, 2] = ps[None, :, None] * self.input_coef[None, None, :]
        layer += self.shared_coef
        work = np.zeros((K, A, L + 1, 3, 6))
        for k in range(K):
            present = (self.kind_first[:, k][:, None] < ps[None, :])[..., None]          # (A, L+1, 1)
            work[k, :, :, 1] = np.where(present, self.kind_free[:, k][:, None, :], 0.0)
            work[k, :, :, 2] = np.where(present, self.kind_full[:, k][:, None, :], 0.0)
        self.layer_cols = [np.ascontiguousarray(layer[..., j].ravel()) for j in range(6)]
        self.work_cols = [[np.ascontiguousarray(work[k, ..., j].ravel()) for j in range(6)] for k in range(K)]
        # parameters per GPU for each (tp, pp) that the Spec accepts (0 elsewhere: rejected anyway)
        self.tp_lut = np.zeros(max(self.tps) + 1, dtype=np.int64)
        self.pp_lut = np.zeros(max(self.pps) + 1, dtype=np.int64)
        self.tp_lut[list(self.tps)] = np.arange(len(self.tps))
        self.pp_lut[list(self.pps)] = np.arange(len(self.pps))
        self.params = np.zeros((len(self.tps), len(self.pps)))
        m = self.spec.model
        for i, tp in enumerate(self.tps):
            for j, pp in enumerate(self.pps):
                if m.heads % tp == 0 and m.ffn % tp == 0 and self.L % pp == 0:
                    self.params[i, j] = params_per_gpu(self.variant(self.attentions[0], tp=tp, pp=pp))

    # ------------------------------------------------------------------------------------------------
    def _struct(self) -> dict[str, np.ndarray]:
        """The (attention, tp, pp, vpp, cp) grid."""
        rows = [(a, tp, pp, vpp, cp) for a in range(len(self.attentions)) for tp in self.tps for pp in self.pps
                for vpp in (self.vpps if pp > 1 else (1,)) for cp in self.options.cp]
        g = np.array(rows, dtype=np.int64).reshape(-1, 5)
        return {name: g[:, col] for col, name in enumerate(("att", "tp", "pp", "vpp", "cp"))}

    def _inner(self) -> dict[str, np.ndarray]:
        """The (micro-batch, micro-batches, SP, recompute, distributed optimizer) grid."""
        rows = [(mb, m, sp, RECOMPUTE.index(r), dist) for mb in self.options.micro_batch for m in self.ms
                for sp in self.options.sequence_parallel for r in self.options.recompute
                for dist in self.options.distributed_optimizer]
        g = np.array(rows, dtype=np.int64).reshape(-1, 5)
        return {name: g[:, col] for col, name in enumerate(("mb", "m", "sp", "rc", "dist"))}

    def candidates(self, gpus: int, prefilter: bool = False) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The candidate space for `gpus` GPUs as flat arrays (one entry per layout), and rejection counts
        (by REASONS index) of the layouts left out by `prefilter`: with it, (attention, tp, pp, vpp, cp)
        combinations that break a rule on their own are counted (times their inner combinations) and not
        expanded. SP at tp = 1 is not a separate layout and is never generated."""
        st, inner = self._struct(), self._inner()
        pre = np.zeros(len(REASONS), dtype=np.int64)
        n_inner_sp1 = int(np.count_nonzero(inner["sp"] == 1)) if 0 in self.options.sequence_parallel else 0
        if prefilter:
            r = self._struct_reason(gpus, st)
            mult = len(inner["mb"]) - np.where(st["tp"] == 1, n_inner_sp1, 0)
            pre = np.bincount(r, weights=mult, minlength=len(REASONS)).astype(np.int64)
            pre[OK] = 0
            st = {f: v[r == OK] for f, v in st.items()}
        n_s, n_i = len(st["tp"]), len(inner["mb"])
        x = {f: np.repeat(v, n_i) for f, v in st.items()}
        x.update({f: np.tile(v, n_s) for f, v in inner.items()})
        if 0 not in self.options.sequence_parallel:      # SP pinned on: tp = 1 layouts run without it
            x["sp"] = np.where(x["tp"] == 1, 0, x["sp"])
            return {f: x[f] for f in FIELDS}, pre
        keep = ~((x["tp"] == 1) & (x["sp"] == 1))
        return {f: x[f][keep] for f in FIELDS}, pre

    def _struct_reason(self, gpus: int, x: dict[str, np.ndarray]) -> np.ndarray:
        """Rules that depend on (attention, tp, pp, vpp, cp) only: tp over a node, then divisibility."""
        m = self.spec.model
        tp, pp, vpp, cp = x["tp"], x["pp"], x["vpp"], x["cp"]
        dp = gpus // (tp * pp * cp)
        win = self.windows[x["att"]]
        bad_div = ((m.heads % tp != 0) | (m.ffn % tp != 0) | (self.L % (pp * vpp) != 0) | (self.S % cp != 0)
                   | ((win > 0) & (win % cp != 0)) | (dp < 1) | ((vpp > 1) & (pp == 1)))
        return np.where(tp > self.max_tp, TP_OVER_NODE, np.where(bad_div, DIVISIBILITY, OK))

    def reasons(self, gpus: int, x: dict[str, np.ndarray]) -> np.ndarray:
        """Why each layout is rejected (REASONS index; 0 = passes the integer rules)."""
        tp, pp, vpp, cp, mb, mm, sp = x["tp"], x["pp"], x["vpp"], x["cp"], x["mb"], x["m"], x["sp"]
        dp = gpus // (tp * pp * cp)
        bad_div = ((sp == 1) & ((self.S // cp) % tp != 0)) | ((vpp > 1) & (mm % pp != 0))
        gb = mm * mb * dp
        bad_batch = (gb < self.gb_range[0]) | (gb > self.gb_range[1])
        reason = self._struct_reason(gpus, x)
        return np.where(reason != OK, reason, np.where(bad_div, DIVISIBILITY, np.where(bad_batch, BATCH, OK)))

    def evaluate(self, gpus: int, x: dict[str, np.ndarray], compact: bool = True) -> dict[str, np.ndarray]:
        """Reasons, memory and step terms for every layout in `x` (flat arrays of FIELDS).

        compact=True computes memory and step time only for the layouts that pass the integer rules (the
        others keep their reason and NaN); compact=False pushes every layout through the whole model.
        """
        reason = self.reasons(gpus, x)
        idx = np.nonzero(reason == OK)[0] if compact else np.arange(len(reason))
        y = {f: v[idx] for f, v in x.items()} if compact else x
        mem, st = self._chunked(gpus, y)
        if not compact:
            fits = mem["total"] <= self.usable
            reason = np.where((reason == OK) & ~fits, MEMORY, reason)
            return {"reason": reason, **mem, **st}
        n = len(reason)
        out: dict[str, np.ndarray] = {}
        for key, v in {**mem, **st}.items():
            full = np.full(n, np.nan)
            full[idx] = v
            out[key] = full
        reason = reason.copy()
        reason[idx[mem["total"] > self.usable]] = MEMORY
        out["reason"] = reason
        return out

    def _chunked(self, gpus: int, y: dict[str, np.ndarray], chunk: int = 1 << 14) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """_memory_step over cache-sized chunks (numpy's temporaries stay in L2: ~2x faster)."""
        n = len(y["tp"])
        if n <= chunk:
            return self._memory_step(gpus, y)
        out: tuple[dict[str, np.ndarray], dict[str, np.ndarray]] | None = None
        for i in range(0, n, chunk):
            part = self._memory_step(gpus, {f: v[i:i + chunk] for f, v in y.items()})
            if out is None:
                out = ({k: np.empty(n) for k in part[0]}, {k: np.empty(n) for k in part[1]})
            for o, p in zip(out, part):
                for k, v in p.items():
                    o[k][i:i + chunk] = v
        assert out is not None
        return out

    def _memory_step(self, gpus: int, y: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        a, tp, pp, vpp, cp = y["att"], y["tp"], y["pp"], y["vpp"], y["cp"]
        mb, mm, sp, rc, dist = y["mb"], y["m"], y["sp"].astype(bool), y["rc"], y["dist"].astype(bool)
        mp = tp * pp * cp
        dp = np.maximum(gpus // mp, 1)
        s = (self.S // cp).astype(np.float64)
        b = mb.astype(np.float64)
        tpf = tp.astype(np.float64)
        ps = self.L // np.maximum(pp, 1)
        ps = np.minimum(ps, self.L)

        inv_t = 1.0 / tpf
        inv_d = np.where(sp, inv_t, 1.0)
        g = (a * (self.L + 1) + ps) * 3 + rc          # row of the (attention, layers, recompute) tables

        def cost(cols: list[np.ndarray]) -> np.ndarray:   # b (s tok + samp) / div, summed over the divisors
            c = [np.take(col, g) for col in cols]
            return b * ((s * c[0] + c[1]) + (s * c[2] + c[3]) * inv_t + (s * c[4] + c[5]) * inv_d)

        per_mb = cost(self.layer_cols)
        working = cost(self.work_cols[0])
        for cols in self.work_cols[1:]:
            working = np.maximum(working, cost(cols))
        in_flight = np.minimum(mm, pp)
        interleave = np.where(vpp > 1, 1 + (pp - 1) / (pp * vpp), 1.0)
        acts = per_mb * in_flight * interleave + working
        n = self.params[self.tp_lut[np.minimum(tp, len(self.tp_lut) - 1)], self.pp_lut[np.minimum(pp, len(self.pp_lut) - 1)]]
        weights, grads = n * self.pbytes, n * self.gbytes
        opt = n * self.opt_per_param / np.where(dist, dp, 1)
        total = weights + grads + opt + acts + self.buffers
        mem = {"weights": weights, "grads": grads, "optimizer": opt, "activations": acts, "total": total}
        wi = a * 3 + rc
        w = {key: v[wi] for key, v in self.work.items()}
        w["ring"] = self.ring_prefix[a, ps] + np.where(self.grid_t % cp == 0, 0.0, self.frame_prefix[a, ps])
        st = step_terms(np, self.c, w, tp, pp, vpp, cp, dp, mb, mm, sp, dist, n)
        return mem, st

    # ------------------------------------------------------------------------------------------------
    def spec_for(self, gpus: int, x: dict[str, Any], i: int) -> Spec:
        """The validated Spec of layout i (raises ValueError when the Spec rejects it)."""
        tp, pp, cp = int(x["tp"][i]), int(x["pp"][i]), int(x["cp"][i])
        dp = gpus // (tp * pp * cp)
        mb, mm = int(x["mb"][i]), int(x["m"][i])
        return self.variant(self.attentions[int(x["att"][i])], tp=tp, pp=pp, vpp=int(x["vpp"][i]), cp=cp, dp=dp,
                            sequence_parallel=bool(x["sp"][i]), micro_batch=mb, global_batch=mm * mb * max(dp, 1),
                            recompute=RECOMPUTE[int(x["rc"][i])], distributed_optimizer=bool(x["dist"][i]))


def reference_evaluate(space: Space, gpus: int, x: dict[str, np.ndarray], idx: Any = None) -> list[dict[str, Any]]:
    """The per-layout loop over the scalar planner: Spec validation + memory(spec) + step_time(spec)."""
    out = []
    rows = range(len(x["tp"])) if idx is None else idx
    for i in rows:
        tp, pp, vpp, cp, mm = (int(x[f][i]) for f in ("tp", "pp", "vpp", "cp", "m"))
        rec: dict[str, Any] = {"i": int(i)}
        if tp > space.max_tp:
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
        gb = spec.parallel.global_batch_size
        if not space.gb_range[0] <= gb <= space.gb_range[1]:
            out.append({**rec, "reason": BATCH})
            continue
        mem = memory(spec)
        st = step_time(spec)
        rec.update({"reason": MEMORY if mem.total > space.usable else OK, "weights": mem.weights, "grads": mem.grads,
                    "optimizer": mem.optimizer, "activations": mem.activations, "total": mem.total})
        rec.update({f: getattr(st, f) for f in STEP_FIELDS})
        out.append(rec)
    return out


def plan(*args: Any, **kwargs: Any) -> dict[str, Any]:
    """`soraplan.planner.plan.plan` (the whole plan dict), also reachable from here."""
    from .plan import plan as _plan

    return _plan(*args, **kwargs)
