"""The backtest: soraplan's step time against the published training runs of the corpus.

Per run: the Spec (`corpus_spec.run_spec`), soraplan's step time (`step.step_time`), and one published
figure compared in the source's own unit, converted with the source's own FLOP count where the figure is a
FLOP rate (docs/backtest-corpus.md, "Conventions by source"):

  narayanan2021          TFLOP/s per GPU, hardware FLOPs: 96 B s l h^2 (1 + s/6h + V/16lh)   (eq. 3)
  korthikanti2022        MFU, model FLOPs: 72 B s l h^2 (1 + s/6h + V/12hl) / peak            (eq. 7)
  megatron_readme_2024   TFLOP/s per GPU, Megatron's model FLOP count (eq. 7 for these GPT models)
  llama3_2024            TFLOP/s per GPU, Chowdhery et al.: (6 N + 12 l h s) per token
  nemo_dfm               TFLOP/s per GPU, soraplan's model FLOPs (the source's Wan counter is not documented)
  megascale2024, mosaic_llmfoundry, torchtitan   tokens/s per GPU (no FLOP convention needed)
  fast_dit               steps/s;  opensora     samples/s per GPU

error = predicted / published - 1 (a throughput, so positive = soraplan is optimistic). The summary per
split (and per GPU type) gives n, the median and worst |error| and the bias (median error).
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass
from typing import Any, Callable

from .corpus import Run, load_corpus
from .corpus_spec import RunExcluded, run_spec
from .spec import Spec
from .step import StepTime, step_time

# the step terms a run's "dominant term" is chosen from (StepTime fields)
TERMS = ("gemm_s", "attention_s", "elementwise_s", "tp_comm_s", "cp_comm_s", "dp_comm_s", "pp_bubble_s",
         "pp_p2p_s", "optimizer_s", "overhead_s")


@dataclass(frozen=True)
class Comparison:
    name: str
    source: str
    kind: str
    gpu: str
    split: str
    figure: str            # what is compared, e.g. "TFLOP/s per GPU (hardware FLOPs, eq. 3)"
    unit: str
    published: float
    predicted: float
    error: float
    gpus: int
    step_time_s: float
    mfu: float
    dominant_term: str
    dominant_share: float
    assumed: tuple[str, ...]
    choices: tuple[str, ...]
    caveat: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Excluded:
    name: str
    source: str
    split: str
    reason: str


@dataclass(frozen=True)
class Summary:
    n: int
    median_abs_error: float | None
    worst_abs_error: float | None
    bias: float | None
    worst_run: str = ""


def _eq3(run: Run) -> float:
    s, l, h, v = (run.model_value(k) for k in ("seq_len", "layers", "hidden", "vocab"))
    return 96 * s * l * h * h * (1 + s / (6 * h) + v / (16 * l * h))


def _eq7(run: Run) -> float:
    s, l, h, v = (run.model_value(k) for k in ("seq_len", "layers", "hidden", "vocab"))
    return 72 * s * l * h * h * (1 + s / (6 * h) + v / (12 * h * l))


def _palm(run: Run) -> float:
    s, l, h = (run.model_value(k) for k in ("seq_len", "layers", "hidden"))
    n = float(run.model_value("params_b")) * 1e9
    return s * (6 * n + 12 * l * h * s)


@dataclass(frozen=True)
class FigureRule:
    key: str                  # the published figure compared
    label: str
    unit: str
    predict: Callable[[Run, Spec, StepTime], float]


def _world(spec: Spec) -> int:
    return spec.parallel.world


def _tflops(per_sample: Callable[[Run], float]) -> Callable[[Run, Spec, StepTime], float]:
    return lambda run, spec, st: per_sample(run) * st.samples_per_s / _world(spec) / 1e12


def _mfu(per_sample: Callable[[Run], float]) -> Callable[[Run, Spec, StepTime], float]:
    return lambda run, spec, st: (per_sample(run) * st.samples_per_s / _world(spec)
                                  / (spec.hardware.spec.peak_tflops * 1e12))


def _tokens_per_gpu(run: Run, spec: Spec, st: StepTime) -> float:
    return st.samples_per_s * spec.seq_len / _world(spec)


def _soraplan_model_flops(run: Run, spec: Spec, st: StepTime) -> float:
    return st.mfu * spec.hardware.spec.peak_tflops


RULES: dict[str, FigureRule] = {
    "narayanan2021": FigureRule("tflops_per_gpu", "TFLOP/s per GPU (hardware FLOPs, eq. 3)", "TFLOP/s", _tflops(_eq3)),
    "korthikanti2022": FigureRule("mfu", "MFU (model FLOPs, eq. 7)", "fraction", _mfu(_eq7)),
    "megatron_readme_2024": FigureRule("tflops_per_gpu", "TFLOP/s per GPU (Megatron model FLOPs)", "TFLOP/s",
                                       _tflops(_eq7)),
    "llama3_2024": FigureRule("tflops_per_gpu", "TFLOP/s per GPU (6N + 12lhs per token)", "TFLOP/s", _tflops(_palm)),
    "nemo_dfm": FigureRule("tflops_per_gpu", "TFLOP/s per GPU (soraplan model FLOPs)", "TFLOP/s",
                           _soraplan_model_flops),
    "megascale2024": FigureRule("tokens_per_s", "tokens/s per GPU", "tokens/s", _tokens_per_gpu),
    "mosaic_llmfoundry": FigureRule("tokens_per_s_per_gpu", "tokens/s per GPU", "tokens/s", _tokens_per_gpu),
    "torchtitan_2024": FigureRule("tokens_per_s_per_gpu", "tokens/s per GPU", "tokens/s", _tokens_per_gpu),
    "fast_dit": FigureRule("steps_per_s", "steps/s", "steps/s", lambda run, spec, st: 1 / st.time_s),
    "opensora_accel": FigureRule("samples_per_s_per_gpu", "samples/s per GPU", "samples/s",
                           lambda run, spec, st: st.samples_per_s / _world(spec)),
}


def _published(run: Run, rule: FigureRule) -> float:
    fig = run.figure(rule.key)
    if fig is None:
        raise RunExcluded(f"published.{rule.key}: the figure this source is compared on is missing")
    if rule.key == "tokens_per_s" and run.source.id == "megascale2024":
        return fig.value / run.gpus          # whole-job tokens/s -> per GPU
    return fig.value


def dominant(st: StepTime) -> tuple[str, float]:
    """The largest step term and its share of the step time."""
    vals = {t: float(getattr(st, t, 0.0) or 0.0) for t in TERMS}
    name = max(vals, key=lambda k: vals[k])
    return name.removesuffix("_s"), vals[name] / st.time_s if st.time_s else 0.0


def compare(run: Run, fit: Any = None) -> Comparison:
    """soraplan's prediction for one run against its published figure.

    Args:
        run: a corpus run.
        fit: step-model parameters (efficiency.StepFit) to use instead of the committed fit.

    Returns:
        The Comparison; RunExcluded when the run cannot be priced.
    """
    rule = RULES.get(run.source.id)
    if rule is None:
        raise RunExcluded(f"source {run.source.id!r}: no rule for which published figure to compare")
    rs = run_spec(run)
    st = step_time(rs.spec, fit=fit) if fit is not None else step_time(rs.spec)
    published = _published(run, rule)
    predicted = rule.predict(run, rs.spec, st)
    term, share = dominant(st)
    return Comparison(run.name, run.source.id, run.kind, run.gpu, run.split, rule.label, rule.unit, published,
                      predicted, predicted / published - 1, rs.spec.parallel.world, st.time_s, st.mfu, term, share,
                      run.assumed, rs.choices, run.caveat)


def summarize(rows: list[Comparison]) -> Summary:
    """n, median and worst |error|, bias (median signed error) of `rows`."""
    if not rows:
        return Summary(0, None, None, None)
    errs = [r.error for r in rows]
    worst = max(rows, key=lambda r: abs(r.error))
    return Summary(len(rows), statistics.median(abs(e) for e in errs), abs(worst.error), statistics.median(errs),
                   worst.name)


@dataclass(frozen=True)
class Backtest:
    runs: tuple[Comparison, ...]
    excluded: tuple[Excluded, ...]
    summary: dict[str, Summary]                   # per split
    by_gpu: dict[str, dict[str, Summary]]         # gpu -> split|"all" -> Summary


def backtest(split: str | None = None, gpu: str | None = None, fit: Any = None,
             runs: tuple[Run, ...] | None = None) -> Backtest:
    """Every corpus run compared (optionally one split or one GPU type), with the summaries.

    Args:
        split: "tune" or "check", or None for both.
        gpu: a GPU name from the corpus, or None for all.
        fit: step-model parameters to use instead of the committed fit (the fitting script).
        runs: the runs (default: the packaged corpus).

    Returns:
        The Backtest.
    """
    chosen = [r for r in (runs if runs is not None else load_corpus())
              if (split is None or r.split == split) and (gpu is None or r.gpu == gpu)]
    rows, excluded = [], []
    for r in chosen:
        try:
            rows.append(compare(r, fit))
        except RunExcluded as e:
            excluded.append(Excluded(r.name, r.source.id, r.split, str(e)))
    summary = {s: summarize([r for r in rows if r.split == s]) for s in ("check", "tune")}
    by_gpu: dict[str, dict[str, Summary]] = {}
    for g in sorted({r.gpu for r in rows}):
        mine = [r for r in rows if r.gpu == g]
        by_gpu[g] = {s: summarize([r for r in mine if r.split == s]) for s in ("check", "tune")}
        by_gpu[g]["all"] = summarize(mine)
    return Backtest(tuple(rows), tuple(excluded), summary, by_gpu)


def gpu_summary(gpu: str) -> Summary:
    """The backtest's summary over both splits for one GPU type (a GPU table name).

    Args:
        gpu: the GPU's table name, e.g. "a100-80g".

    Returns:
        The Summary; n = 0 when the corpus has no published run on that GPU.
    """
    return summarize(list(backtest(gpu=gpu.lower()).runs))
