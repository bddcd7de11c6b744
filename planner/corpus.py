"""The backtest corpus: published training runs (package data `data/published_runs.yaml`) as frozen records.

`load_corpus()` reads the YAML through importlib.resources and validates every entry into a `Run`. A value
in the YAML is plain (stated by the source), `{value, assumed: true, reason}` (our assumption) or
`{value, derived}` (computed from stated numbers); each becomes a `Value` that keeps which of the three it
is. A malformed entry raises `CorpusError` with one line naming the entry and the field. The mapping of a
run to a Spec lives in `corpus_spec.py`; the comparison in `backtest.py`. docs/backtest-corpus.md
describes the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .errors import UserError

SPLITS = ("tune", "check")
KINDS = ("llm", "dit")
STATUSES = ("stated", "assumed", "derived")
LAYOUT_KEYS = ("tp", "pp", "vpp", "cp", "dp", "micro_batch", "global_batch", "recompute", "sequence_parallel",
               "distributed_optimizer")
RECOMPUTES = ("none", "selective", "full")


class CorpusError(UserError):
    """A malformed corpus entry: one line naming the entry and the field."""


@dataclass(frozen=True)
class Value:
    """One corpus value and how we know it."""

    value: Any
    status: str = "stated"     # stated | assumed | derived
    note: str = ""             # the reason (assumed) or the formula (derived)


@dataclass(frozen=True)
class Figure:
    """One published figure: value, unit and, for FLOP figures, which FLOPs the source counts."""

    key: str
    value: float
    unit: str = ""
    flops_kind: str = ""


@dataclass(frozen=True)
class Source:
    id: str
    title: str
    year: int
    where: str
    url: str = ""


@dataclass(frozen=True)
class Run:
    """One published training run, validated."""

    name: str
    split: str
    kind: str
    source: Source
    gpu: str
    gpus: int
    model: tuple[tuple[str, Value], ...]
    layout: tuple[tuple[str, Value], ...]
    published: tuple[tuple[str, Figure], ...]
    quote: str
    caveat: str = ""

    def model_value(self, key: str, default: Any = None) -> Any:
        """The model field's value (plain), or `default` when the entry has none."""
        return dict(self.model).get(key, Value(default)).value

    def layout_value(self, key: str) -> Value:
        """The layout field as a Value (every LAYOUT_KEYS entry is present)."""
        return dict(self.layout)[key]

    def figure(self, key: str) -> Figure | None:
        """The published figure `key`, or None."""
        return dict(self.published).get(key)

    @property
    def assumed(self) -> tuple[str, ...]:
        """The layout and model fields whose value is our assumption."""
        return tuple(k for k, v in self.layout + self.model if v.status == "assumed")


def _value(raw: Any, where: str) -> Value:
    if isinstance(raw, dict) and "value" in raw:
        if raw.get("assumed") is True:
            return Value(raw["value"], "assumed", str(raw.get("reason", "")))
        if "derived" in raw:
            return Value(raw["value"], "derived", str(raw["derived"]))
        if raw.get("assumed") not in (None, False):
            raise CorpusError(f"{where}: assumed must be true or absent, got {raw.get('assumed')!r}")
        return Value(raw["value"], "stated", str(raw.get("note", "")))
    return Value(raw)            # a plain value (a structured one, e.g. the latent grid, included)


def _need(entry: dict[str, Any], key: str, where: str) -> Any:
    if key not in entry:
        raise CorpusError(f"{where}: missing field '{key}'")
    return entry[key]


def _int(v: Value, where: str, minimum: int = 1, nullable: bool = False) -> None:
    if v.value is None and nullable:
        return
    if isinstance(v.value, bool) or not isinstance(v.value, int) or v.value < minimum:
        raise CorpusError(f"{where}: expected an integer >= {minimum}, got {v.value!r}")


def parse_run(entry: Any, index: int) -> Run:
    """One YAML entry as a Run.

    Args:
        entry: the mapping from the YAML `runs` list.
        index: its position (named in errors when the entry has no name).

    Returns:
        The Run; a malformed entry raises CorpusError naming the entry and the field.
    """
    if not isinstance(entry, dict):
        raise CorpusError(f"published_runs.yaml: runs[{index}]: expected a mapping, got {type(entry).__name__}")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise CorpusError(f"published_runs.yaml: runs[{index}].name: a non-empty string is required")
    at = f"published_runs.yaml: run {name!r}"
    split = _need(entry, "split", at)
    if split not in SPLITS:
        raise CorpusError(f"{at}: split must be one of {', '.join(SPLITS)}, got {split!r}")
    kind = _need(entry, "kind", at)
    if kind not in KINDS:
        raise CorpusError(f"{at}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    src = _need(entry, "source", at)
    if not isinstance(src, dict):
        raise CorpusError(f"{at}: source must be a mapping")
    for key in ("id", "title", "year", "where"):
        _need(src, key, f"{at}: source")
    if not isinstance(src["year"], int):
        raise CorpusError(f"{at}: source.year must be an integer, got {src['year']!r}")
    source = Source(str(src["id"]), str(src["title"]), int(src["year"]), str(src["where"]), str(src.get("url", "")))
    gpu = _need(entry, "gpu", at)
    if not isinstance(gpu, str):
        raise CorpusError(f"{at}: gpu must be a GPU name, got {gpu!r}")
    gpus = _value(_need(entry, "gpus", at), f"{at}: gpus")
    _int(gpus, f"{at}: gpus")
    model_raw = _need(entry, "model", at)
    if not isinstance(model_raw, dict):
        raise CorpusError(f"{at}: model must be a mapping")
    model = tuple((str(k), _value(v, f"{at}: model.{k}")) for k, v in model_raw.items())
    for key in ("layers", "hidden", "heads"):
        if key not in model_raw:
            raise CorpusError(f"{at}: missing field 'model.{key}'")
        _int(dict(model)[key], f"{at}: model.{key}")
    layout_raw = _need(entry, "layout", at)
    if not isinstance(layout_raw, dict):
        raise CorpusError(f"{at}: layout must be a mapping")
    layout = tuple((str(k), _value(v, f"{at}: layout.{k}")) for k, v in layout_raw.items())
    lay = dict(layout)
    for key in LAYOUT_KEYS:
        if key not in lay:
            raise CorpusError(f"{at}: missing field 'layout.{key}'")
    for key in ("tp", "pp", "cp", "dp"):
        _int(lay[key], f"{at}: layout.{key}")
    for key in ("vpp", "micro_batch", "global_batch"):
        _int(lay[key], f"{at}: layout.{key}", nullable=lay[key].status == "assumed")
    if lay["recompute"].value not in RECOMPUTES:
        raise CorpusError(f"{at}: layout.recompute must be one of {', '.join(RECOMPUTES)}, got {lay['recompute'].value!r}")
    for key in ("sequence_parallel", "distributed_optimizer"):
        if not isinstance(lay[key].value, bool):
            raise CorpusError(f"{at}: layout.{key} must be true or false, got {lay[key].value!r}")
    pub_raw = _need(entry, "published", at)
    if not isinstance(pub_raw, dict) or not pub_raw:
        raise CorpusError(f"{at}: published must be a non-empty mapping of figures")
    published = []
    for key, fig in pub_raw.items():
        if not isinstance(fig, dict) or "value" not in fig:
            raise CorpusError(f"{at}: published.{key} must be a mapping with 'value'")
        val = fig["value"]
        if isinstance(val, bool) or not isinstance(val, (int, float)) or val < 0:
            raise CorpusError(f"{at}: published.{key}.value must be a number >= 0, got {val!r}")
        published.append((str(key), Figure(str(key), float(val), str(fig.get("unit") or ""),
                                           str(fig.get("flops_kind") or ""))))
    quote = _need(entry, "quote", at)
    if not isinstance(quote, str) or not quote.strip():
        raise CorpusError(f"{at}: quote must be the source text the figures come from")
    caveat = entry.get("caveat") or ""
    return Run(name, split, kind, source, gpu.lower(), int(gpus.value), model, layout, tuple(published), quote,
               str(caveat))


def parse_corpus(doc: Any) -> tuple[Run, ...]:
    """Every run of a parsed corpus document (the YAML's top-level mapping), validated.

    Args:
        doc: the parsed YAML.

    Returns:
        The runs in file order; duplicate names are an error.
    """
    if not isinstance(doc, dict) or not isinstance(doc.get("runs"), list):
        raise CorpusError("published_runs.yaml: expected a mapping with a 'runs' list")
    runs = tuple(parse_run(e, i) for i, e in enumerate(doc["runs"]))
    seen: set[str] = set()
    for r in runs:
        if r.name in seen:
            raise CorpusError(f"published_runs.yaml: run {r.name!r}: the name is used twice")
        seen.add(r.name)
    return runs


@lru_cache(maxsize=1)
def load_corpus() -> tuple[Run, ...]:
    """The packaged corpus (`soraplan.planner/data/published_runs.yaml`), validated; read once per process.

    Returns:
        The runs in file order.
    """
    from importlib.resources import files

    import yaml

    text = files("soraplan.planner").joinpath("data/published_runs.yaml").read_text(encoding="utf-8")
    return parse_corpus(yaml.safe_load(text))
