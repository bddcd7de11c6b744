"""Shared CLI pieces: the spec flags (one definition, reused by every command) and one-line errors.

`with_spec_options` appends every spec flag of the CLI contract to a command's signature and hands the
command a `spec_flags` dict; `spec_from_flags` turns it into the one validated Spec. Errors a user can fix
print one line on stderr and exit 2 (`fail`).
"""

import functools
import inspect
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

V, M, K, P, H, T = "Video", "Model", "Kernels & precision", "Parallel layout", "Hardware", "Training"


def _o(*names: str, help: str, panel: str, **kw: Any) -> Any:
    return typer.Option(*names, help=help, rich_help_panel=panel, show_default=False, **kw)


SPEC_OPTIONS: list[tuple[str, Any]] = [
    ("config", Annotated[Optional[Path], _o("--config", "-c", help="YAML file: a partial spec (+ launch/report sections)", panel="Input")]),
    ("model", Annotated[Optional[str], _o("--model", "-m", help="preset: soraplan-6B (default), DiT-XL/2, ...", panel=M)]),
    ("name", Annotated[Optional[str], _o("--name", help="run name", panel="Input")]),
    ("frames", Annotated[Optional[int], _o("--frames", help="pixel frames per clip (960 = 40 s at 24 fps)", panel=V)]),
    ("res", Annotated[Optional[int], _o("--res", help="square resolution: sets height and width", panel=V)]),
    ("height", Annotated[Optional[int], _o("--height", help="pixel height", panel=V)]),
    ("width", Annotated[Optional[int], _o("--width", help="pixel width", panel=V)]),
    ("fps", Annotated[Optional[float], _o("--fps", help="frames per second", panel=V)]),
    ("vae_stride_t", Annotated[Optional[int], _o("--vae-stride-t", help="VAE temporal compression (4)", panel=V)]),
    ("vae_stride_s", Annotated[Optional[int], _o("--vae-stride-s", help="VAE spatial compression (8)", panel=V)]),
    ("latent_channels", Annotated[Optional[int], _o("--latent-channels", help="VAE latent channels (16)", panel=V)]),
    ("causal_first_frame", Annotated[Optional[bool], _o("--causal-first-frame/--no-causal-first-frame", help="latent frames = 1 + (F-1)/st", panel=V)]),
    ("patch_t", Annotated[Optional[int], _o("--patch-t", help="temporal patch (2)", panel=V)]),
    ("patch_s", Annotated[Optional[int], _o("--patch-s", help="spatial patch (2)", panel=V)]),
    ("text_tokens", Annotated[Optional[int], _o("--text-tokens", help="text-encoder tokens (512)", panel=V)]),
    ("text_dim", Annotated[Optional[int], _o("--text-dim", help="text-encoder width (4096)", panel=V)]),
    ("tokens", Annotated[Optional[int], _o("--tokens", help="give the sequence length directly", panel=V)]),
    ("layers", Annotated[Optional[int], _o("--layers", help="transformer layers", panel=M)]),
    ("hidden", Annotated[Optional[int], _o("--hidden", help="hidden size (keeps the preset's FFN ratio and head dim unless --ffn-hidden / --heads are given)", panel=M)]),
    ("heads", Annotated[Optional[int], _o("--heads", help="attention heads (default with --hidden: the preset's head dim)", panel=M)]),
    ("ffn_hidden", Annotated[Optional[int], _o("--ffn-hidden", help="FFN hidden size (default: the preset's ratio x hidden)", panel=M)]),
    ("cross_attn", Annotated[Optional[bool], _o("--cross-attn/--no-cross-attn", help="cross-attention to text", panel=M)]),
    ("adaln", Annotated[Optional[str], _o("--adaln", help="per-block | single | expert | none", panel=M)]),
    ("text", Annotated[Optional[str], _o("--text", help="text conditioning: cross-attn | in-sequence | mmdit | none", panel=M)]),
    ("single_layers", Annotated[Optional[int], _o("--single-layers", help="single-stream blocks (fused attention + MLP) after the layers (0)", panel=M)]),
    ("ffn_type", Annotated[Optional[str], _o("--ffn-type", help="gelu | gelu-tanh | swiglu | geglu (gated: three matrices)", panel=M)]),
    ("norm", Annotated[Optional[str], _o("--norm", help="block norms: layernorm | rmsnorm", panel=M)]),
    ("norm_affine", Annotated[Optional[bool], _o("--norm-affine/--no-norm-affine", help="block norms carry weights (default: only without adaLN)", panel=M)]),
    ("cross_attn_norm", Annotated[Optional[bool], _o("--cross-attn-norm/--no-cross-attn-norm", help="an affine norm before cross-attention (Wan)", panel=M)]),
    ("qk_norm", Annotated[Optional[str], _o("--qk-norm", help="q/k norm: none | layernorm | rmsnorm", panel=M)]),
    ("qk_norm_width", Annotated[Optional[str], _o("--qk-norm-width", help="q/k norm over: head | all (all heads: tp 1 only)", panel=M)]),
    ("kv_heads", Annotated[Optional[int], _o("--kv-heads", help="key/value heads, GQA / MQA (default: heads)", panel=M)]),
    ("pos", Annotated[Optional[str], _o("--pos", help="positions: sincos3d | rope3d | rope3d-learned", panel=M)]),
    ("qkv_bias", Annotated[Optional[bool], _o("--qkv-bias/--no-qkv-bias", help="bias on the QKV projection", panel=M)]),
    ("out_bias", Annotated[Optional[bool], _o("--out-bias/--no-out-bias", help="bias on attention output projections", panel=M)]),
    ("ffn_bias", Annotated[Optional[bool], _o("--ffn-bias/--no-ffn-bias", help="biases in the FFN", panel=M)]),
    ("adaln_dim", Annotated[Optional[int], _o("--adaln-dim", help="width of the embedding that drives adaLN (default: hidden)", panel=M)]),
    ("text_hidden", Annotated[Optional[int], _o("--text-hidden", help="mmdit: width of a narrower text stream (Mochi)", panel=M)]),
    ("text_ffn_hidden", Annotated[Optional[int], _o("--text-ffn-hidden", help="mmdit: FFN of the narrower text stream", panel=M)]),
    ("text_proj", Annotated[Optional[str], _o("--text-proj", help="text states -> model width: mlp | linear | refiner", panel=M)]),
    ("text_refiner_layers", Annotated[Optional[int], _o("--text-refiner-layers", help="--text-proj refiner: refiner blocks (2)", panel=M)]),
    ("pooled_text_dim", Annotated[Optional[int], _o("--pooled-text-dim", help="pooled text vector width added to the timestep (0: none)", panel=M)]),
    ("pooled_text", Annotated[Optional[str], _o("--pooled-text", help="pooled text embedder: mlp | linear | attn-pool", panel=M)]),
    ("guidance_embed", Annotated[Optional[bool], _o("--guidance-embed/--no-guidance-embed", help="guidance-scale embedder (cfg-distilled)", panel=M)]),
    ("cond_in_channels", Annotated[Optional[int], _o("--cond-in-channels", help="image-condition embedder input channels (0: none)", panel=M)]),
    ("vocab_size", Annotated[Optional[int], _o("--vocab-size", help="language model vocabulary (0: video model; needs --text none)", panel=M)]),
    ("tied_embeddings", Annotated[Optional[bool], _o("--tied-embeddings/--untied-embeddings", help="language model: output head shares the token embedding", panel=M)]),
    ("causal", Annotated[Optional[bool], _o("--causal/--no-causal", help="causal self-attention (language models)", panel=M)]),
    ("timestep_freq_dim", Annotated[Optional[int], _o("--timestep-freq-dim", help="timestep sinusoid width (256)", panel=M)]),
    ("time_mlp", Annotated[Optional[bool], _o("--time-mlp/--no-time-mlp", help="timestep MLP after the sinusoid", panel=M)]),
    ("learned_pos_embed", Annotated[Optional[bool], _o("--learned-pos-embed/--no-learned-pos-embed", help="learned position table (else fixed sin-cos)", panel=M)]),
    ("attention", Annotated[Optional[str], _o("--attention", help="full | window:T,H,W | spatial-temporal", panel=M)]),
    ("attention_kernel", Annotated[Optional[str], _o("--attention-kernel", help="flash | unfused", panel=K)]),
    ("dropout", Annotated[Optional[float], _o("--dropout", help="dropout probability", panel=K)]),
    ("precision", Annotated[Optional[str], _o("--precision", help="bf16 | fp16 | fp32 (params and activations)", panel=K)]),
    ("cpu_semantics", Annotated[Optional[bool], _o("--cpu-semantics/--gpu-semantics", help="dropout masks at activation dtype (CPU)", panel=K)]),
    ("tp", Annotated[Optional[int], _o("--tp", help="tensor parallel size", panel=P)]),
    ("pp", Annotated[Optional[int], _o("--pp", help="pipeline parallel size", panel=P)]),
    ("vpp", Annotated[Optional[int], _o("--vpp", help="virtual pipeline stages per rank", panel=P)]),
    ("cp", Annotated[Optional[int], _o("--cp", help="context parallel size", panel=P)]),
    ("cp_comm", Annotated[Optional[str], _o("--cp-comm", help="p2p (ring attention) | all-gather | a2a (Ulysses)", panel=P)]),
    ("dp", Annotated[Optional[int], _o("--dp", help="data parallel size", panel=P)]),
    ("gpus", Annotated[Optional[int], _o("--gpus", help="world size (dp = gpus / (tp*pp*cp))", panel=P)]),
    ("sequence_parallel", Annotated[Optional[bool], _o("--sequence-parallel/--no-sequence-parallel", help="Megatron sequence parallel", panel=P)]),
    ("micro_batch", Annotated[Optional[int], _o("--micro-batch", help="micro-batch size", panel=P)]),
    ("global_batch", Annotated[Optional[int], _o("--global-batch", help="global batch size", panel=P)]),
    ("recompute", Annotated[Optional[str], _o("--recompute", help="none | selective | full", panel=P)]),
    ("recompute_layers", Annotated[Optional[int], _o("--recompute-layers", help="full recompute: layers per stage", panel=P)]),
    ("distributed_optimizer", Annotated[Optional[bool], _o("--distributed-optimizer/--no-distributed-optimizer", help="shard optimizer state over DP", panel=P)]),
    ("gpu", Annotated[Optional[str], _o("--gpu", help="a100-80g (default), h100-sxm, h200, b200, ...", panel=H)]),
    ("efficiency", Annotated[Optional[float], _o("--efficiency", help="blanket achieved/peak FLOP/s for GEMMs and attention (default: per-op table)", panel=H)]),
    ("price", Annotated[Optional[float], _o("--price", help="USD per GPU-hour", panel=H)]),
    ("calibration", Annotated[Optional[str], _o("--calibration", help="calibration JSON from soraplan validate", panel=H)]),
    ("samples", Annotated[Optional[int], _o("--samples", help="training samples (clips)", panel=T)]),
    ("epochs", Annotated[Optional[float], _o("--epochs", help="passes over the samples", panel=T)]),
    ("dataset", Annotated[Optional[str], _o("--dataset", help="youku-mplug | laion-5b", panel=T)]),
    ("compare_gpus", Annotated[Optional[str], _o("--compare-gpus", help="GPU counts for the days table (200,300,400)", panel=T)]),
]
SPEC_OPTION_NAMES = [n for n, _ in SPEC_OPTIONS]


def fail(message: str, code: int = 2) -> "typer.Exit":
    """Print one line on stderr and exit (default 2); control characters in it are shown escaped."""
    line = literal(" ".join(str(message).split()))
    sys.stderr.write(f"error: {line}\n")
    raise typer.Exit(code)


def literal(text: Any) -> str:
    """`text` safe to print on a terminal as plain text: control and format characters (escape, bidi overrides,
    newlines) are shown as escapes ('\\x1b'), everything else as written. Use `markup_literal` for rich markup."""
    import unicodedata

    out = []
    for ch in str(text):
        if ch.isprintable() or ch == " ":
            out.append(ch)
        else:
            cat = unicodedata.category(ch)
            out.append(ch.encode("unicode_escape").decode("ascii") if cat[0] in "CZ" else ch)
    return "".join(out)


def markup_literal(text: Any) -> str:
    """`text` to interpolate into a rich markup string: printed exactly as written (brackets escaped, control
    characters shown as escapes)."""
    from rich.markup import escape

    return escape(literal(text))


def check_range(value: Any, flag: str, low: float, high: float, low_open: bool = False, what: str = "") -> Any:
    """`value` (a flag's number) when finite and within [low, high] ((low, high] with `low_open`); else a
    UserError naming the flag and the range. None passes through.

    Args:
        value: the number (int or float) or None.
        flag: the flag, for the message.
        low: the smallest allowed value.
        high: the largest allowed value.
        low_open: refuse `low` itself.
        what: what the number is, for the message (e.g. "days").

    Returns:
        `value` unchanged.
    """
    import math

    from soraplan.planner.errors import UserError

    if value is None:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (low < value if low_open else low <= value) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise UserError(f"{flag}: must be a finite number{' of ' + what if what else ''} in {bracket}{low:g}, {high:g}], "
                        f"got {value!r}")
    return value


# Optional packages -> the extra that installs them (pyproject.toml).
EXTRAS = {"torch": "train", "megatron": "train", "einops": "train", "fvcore": "train", "safetensors": "train",
          "plotly": "report", "submitit": "slurm", "kubernetes": "k8s", "diffusers": "unet"}


def missing_extra_message(module: str) -> str | None:
    top = module.split(".")[0]
    if top not in EXTRAS:
        return None
    return f"this command needs {top!r}, which is not installed: pip install 'soraplan[{EXTRAS[top]}]'"


def require(*modules: str) -> None:
    """Fail with one line (exit 2) unless every module is importable."""
    import importlib.util

    for mod in modules:
        try:
            found = importlib.util.find_spec(mod) is not None
        except ModuleNotFoundError:
            found = False
        if not found:
            fail(missing_extra_message(mod) or f"missing module {mod!r}")


def user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn UserError (and SpecError) into one line on stderr + exit 2; so is a missing optional extra and a
    ledger file that is not an SQLite database (the ledger is the only database soraplan opens)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        import sqlite3

        from soraplan.planner.errors import UserError

        try:
            return func(*args, **kwargs)
        except UserError as e:
            fail(str(e))
        except sqlite3.DatabaseError as e:
            fail(f"--ledger: the run ledger is not a usable SQLite database ({e})")
        except ModuleNotFoundError as e:
            msg = missing_extra_message(e.name or "")
            if msg is None:
                raise
            fail(msg)

    return wrapper


def with_spec_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Add every spec flag to `func`'s CLI signature; `func` receives them as `spec_flags`."""
    sig = inspect.signature(func)
    own = [p for p in sig.parameters.values() if p.name != "spec_flags"]
    taken = {p.name for p in own}
    extra = [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=a)
             for n, a in SPEC_OPTIONS if n not in taken]

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        flags = {n: kwargs.pop(n) for n in SPEC_OPTION_NAMES if n in kwargs and n not in taken}
        return func(*args, spec_flags=flags, **kwargs)

    params = own + extra
    wrapper.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    del wrapper.__wrapped__  # typer must read the new signature, not the original
    return user_errors(wrapper)


def spec_from_flags(spec_flags: dict[str, Any]):
    """(Spec, yaml extras) from the collected flags; raises SpecError with one line."""
    from soraplan.planner.config import build_spec_and_extras

    flags = dict(spec_flags)
    config = flags.pop("config", None)
    return build_spec_and_extras(None, config, flags)


def print_json(obj: Any) -> None:
    """Print `obj` as indented JSON on stdout; an object also gets `soraplan_version` (last key)."""
    import json

    if isinstance(obj, dict) and "soraplan_version" not in obj:
        from soraplan import __version__

        obj = {**obj, "soraplan_version": __version__}
    sys.stdout.write(json.dumps(obj, indent=2, default=_default) + "\n")


def _default(o: Any) -> Any:
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (set, tuple)):
        return list(o)
    if hasattr(o, "model_dump"):
        return o.model_dump(mode="json")
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def parse_ints(text: str, flag: str, what: str = "integers", example: str = "",
               high: int = 10 ** 12) -> tuple[int, ...]:
    """Positive integers from a comma list ('200,300,400'); a UserError naming `flag` otherwise.

    Args:
        text: the flag's value.
        flag: the flag, for the message.
        what: what the numbers are, for the message.
        example: appended to the first message, e.g. ' (e.g. 200,300,400)'.
        high: the largest value allowed.

    Returns:
        The integers, in the order given.
    """
    from soraplan.planner.errors import UserError

    try:
        vals = tuple(int(x) for x in str(text).replace(" ", "").split(",") if x)
    except ValueError:
        raise UserError(f"{flag}: comma-separated {what} expected{example}, got {literal(text)[:80]!r}") from None
    if not vals or min(vals) < 1:
        raise UserError(f"{flag}: positive {what} expected, got {literal(text)[:80]!r}")
    if max(vals) > high:
        raise UserError(f"{flag}: {what} of at most {high:,} expected, got {literal(text)[:80]!r}")
    if len(vals) > 1000:
        raise UserError(f"{flag}: at most 1,000 values, got {len(vals):,}")
    return vals


def parse_gpu_counts(text: str) -> tuple[int, ...]:
    """`--gpus 200,300,400` of `soraplan plan` and `soraplan report` (each count at most the Spec's MAX_GPUS)."""
    from soraplan.planner.spec import MAX_GPUS

    return parse_ints(text, "--gpus", "GPU counts", " (e.g. 200,300,400)", high=MAX_GPUS)


def check_search_flags(spec: Any, *, deadline_days: Any = None, headroom: Any = None, max_tp_in_node: Any = None,
                       top: Any = None) -> None:
    """The layout-search flags of `plan` and `report`, checked before the search (UserError naming the flag).

    Args:
        spec: the Spec (its GPU's node size bounds --max-tp-in-node).
        deadline_days: --deadline-days: finite, > 0 (at most 100 years).
        headroom: --headroom: the memory fraction kept free, in [0, 1).
        max_tp_in_node: --max-tp-in-node: 1 to the GPUs per node (larger TP would cross nodes).
        top: --top: layouts shown per GPU count, 1 to 1000.
    """
    from soraplan.planner.errors import UserError

    if deadline_days is not None:
        ok = isinstance(deadline_days, (int, float)) and not isinstance(deadline_days, bool)
        if not ok or not 0 < deadline_days <= 36_500:                    # also refuses nan and inf
            raise UserError(f"--deadline-days: must be positive and finite (at most 36,500 days), got {deadline_days!r}")
    check_range(headroom, "--headroom", 0, 0.99, what="the memory fraction kept free")
    check_range(top, "--top", 1, 1000)
    if max_tp_in_node is not None:
        node = spec.hardware.spec.gpus_per_node
        if not isinstance(max_tp_in_node, int) or not 1 <= max_tp_in_node <= node:
            raise UserError(f"--max-tp-in-node: must be from 1 to the GPUs per node of {spec.hardware.spec.name} "
                            f"({node}), got {max_tp_in_node!r}")


# Spec flags that, when given, pin that dimension of the layout search (spec flag -> SearchOptions field).
SEARCH_PINS = ("tp", "pp", "vpp", "cp", "cp_comm", "micro_batch", "recompute", "sequence_parallel", "distributed_optimizer")


def search_options(spec_flags: dict[str, Any], **settings: Any) -> Any:
    """The layout search's options: `settings` (headroom, allow_window, ...) plus one pinned value for each
    parallel flag given on the command line or in the YAML.

    Returns:
        A `soraplan.planner.search.SearchOptions`.
    """
    from soraplan.planner.search import SearchOptions

    pins: dict[str, Any] = {k: (spec_flags[k],) for k in SEARCH_PINS if spec_flags.get(k) is not None}
    for k in ("sequence_parallel", "distributed_optimizer"):
        if k in pins:
            pins[k] = (bool(pins[k][0]),)
    return SearchOptions(**settings, **pins)
