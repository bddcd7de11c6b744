"""The Spec: one validated, frozen description of a training run.

Everything in soraplan starts from a `Spec`: the planner's formulas, the Megatron model in
`soraplan.models`, the launch templates and the report. It is built once from a merged dict
(preset -> YAML file -> CLI flags, see `soraplan.planner.config`) and validated once.

Validation errors name the field and the rule (``parallel.tp: heads (24) % tp (5) != 0``).
Derived values (sequence length, head dim, ...) are cached properties: the sections are frozen, and a changed
spec is built by validating again (`spec_with`), never by `model_copy`, which would carry the cached values over.
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer, model_validator

from .hardware import GPU, resolve_gpu
from .names import check_display_name

DType = Literal["fp32", "bf16", "fp16"]
DTYPE_BYTES: dict[str, int] = {"fp32": 4, "bf16": 2, "fp16": 2}

# Upper bounds, checked when the Spec is validated (before any work; docs/input-limits.md). Far beyond any real
# run, they keep every formula finite and fast: a per-layer list stays short, products of sizes stay exact.
MAX_LAYERS = 10_000                  # transformer layers (and vpp, recompute_layers)
MAX_WIDTH = 1_048_576                # hidden, heads, text_dim, timestep_freq_dim (ffn_hidden: 4x)
MAX_FRAMES = 1_000_000               # pixel frames per clip (11.5 hours at 24 fps)
MAX_PIXELS = 65_536                  # pixel height and width
MAX_SMALL = 4_096                    # VAE strides, patch sizes, latent channels
MAX_TOKENS = 1_000_000_000           # tokens (given directly), text tokens, in-sequence tokens, classes
MAX_GPUS = 1_000_000                 # tp, pp, cp, dp, world size; each --compare-gpus count
MAX_BATCH = 1_000_000_000            # micro and global batch (samples)
MAX_SAMPLES = 10 ** 15               # training samples
MAX_NAME = 128                       # characters of a run or model name


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True, allow_inf_nan=False)


class Video(_Frozen):
    """Clip geometry, VAE compression, patching and text conditioning."""

    frames: int = Field(960, ge=1, le=MAX_FRAMES, description="pixel frames per clip")
    height: int = Field(256, ge=1, le=MAX_PIXELS)
    width: int = Field(256, ge=1, le=MAX_PIXELS)
    fps: float = Field(24.0, gt=0, le=1000)
    vae_stride_t: int = Field(4, ge=1, le=MAX_SMALL)
    vae_stride_s: int = Field(8, ge=1, le=MAX_SMALL)
    latent_channels: int = Field(16, ge=1, le=MAX_SMALL)
    causal_first_frame: bool = Field(False, description="latent frames = 1 + (F-1)/st (causal VAE)")
    patch_t: int = Field(2, ge=1, le=MAX_SMALL)
    patch_h: int = Field(2, ge=1, le=MAX_SMALL)
    patch_w: int = Field(2, ge=1, le=MAX_SMALL)
    text_tokens: int = Field(512, ge=0, le=MAX_TOKENS)
    text_dim: int = Field(4096, ge=1, le=MAX_WIDTH)
    tokens: int | None = Field(None, ge=1, le=MAX_TOKENS, description="give the sequence length directly")
    vae_chunk: tuple[int, int] | None = Field(
        None, description="(frames, latent frames) per VAE chunk, for VAEs that encode fixed chunks (Step-Video: 17 -> 3)")

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        out = handler(self)
        if isinstance(out, dict) and out.get("vae_chunk") is None:
            out.pop("vae_chunk", None)
        return out

    @model_validator(mode="after")
    def _tiles(self) -> "Video":
        if self.tokens is not None:
            return self
        st, ss = self.vae_stride_t, self.vae_stride_s
        if self.vae_chunk is not None:
            if self.frames % self.vae_chunk[0]:
                raise ValueError(f"video.frames: frames ({self.frames}) % VAE chunk ({self.vae_chunk[0]}) != 0")
        elif self.causal_first_frame:
            if (self.frames - 1) % st:
                raise ValueError(f"video.frames: (frames-1) ({self.frames - 1}) % vae_stride_t ({st}) != 0 with a causal first frame")
        elif self.frames % st:
            raise ValueError(f"video.frames: frames ({self.frames}) % vae_stride_t ({st}) != 0")
        for name, px in (("height", self.height), ("width", self.width)):
            if px % ss:
                raise ValueError(f"video.{name}: {name} ({px}) % vae_stride_s ({ss}) != 0")
        lt, lh, lw = self.latent_thw
        for name, n, p in (("patch_t", lt, self.patch_t), ("patch_h", lh, self.patch_h), ("patch_w", lw, self.patch_w)):
            if n % p:
                raise ValueError(f"video.{name}: latent size ({n}) % {name} ({p}) != 0")
        return self

    @cached_property
    def latent_thw(self) -> tuple[int, int, int]:
        """Latent grid (T', H', W') after the VAE."""
        st, ss = self.vae_stride_t, self.vae_stride_s
        lt = 1 + (self.frames - 1) // st if self.causal_first_frame else self.frames // st
        if self.vae_chunk is not None:
            lt = self.frames // self.vae_chunk[0] * self.vae_chunk[1]
        return lt, self.height // ss, self.width // ss

    @cached_property
    def grid(self) -> tuple[int, int, int]:
        """Token grid (t, h, w) after patching; (1, 1, tokens) when tokens is given directly."""
        if self.tokens is not None:
            return 1, 1, self.tokens
        lt, lh, lw = self.latent_thw
        return lt // self.patch_t, lh // self.patch_h, lw // self.patch_w

    @cached_property
    def seq_len(self) -> int:
        t, h, w = self.grid
        return t * h * w

    @cached_property
    def patch_volume(self) -> int:
        return self.patch_t * self.patch_h * self.patch_w

    @cached_property
    def seconds(self) -> float:
        return self.frames / self.fps


def _as_int(v: Any) -> int | None:
    """`v` as an int when it is a whole finite number (or a string of one), else None."""
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return int(v) if math.isfinite(v) and v.is_integer() else None
    if isinstance(v, str):
        try:
            return int(v.strip())
        except ValueError:
            return None
    return None


def parse_attention(pattern: str) -> tuple[str, tuple[int, int, int] | None]:
    """'full' | 'spatial-temporal' | 'window:T,H,W' -> (kind, window)."""
    if pattern in ("full", "spatial-temporal"):
        return pattern, None
    if pattern.startswith("window:"):
        parts = pattern[len("window:"):].split(",")
        try:
            win = tuple(int(p) for p in parts)
        except ValueError:
            win = ()
        if len(win) != 3 or min(win) < 1:
            raise ValueError(f"model.attention: window must be 'window:T,H,W' with positive integers, got {pattern!r}")
        return "window", win
    raise ValueError(f"model.attention: must be 'full', 'spatial-temporal' or 'window:T,H,W', got {pattern!r}")


class Model(_Frozen):
    """The DiT architecture (see docs/model.md for every parameter group)."""

    name: str = Field("soraplan-6B", min_length=1, max_length=MAX_NAME)
    layers: int = Field(40, ge=1, le=MAX_LAYERS)
    hidden: int = Field(3072, ge=1, le=MAX_WIDTH)
    heads: int = Field(24, ge=1, le=MAX_WIDTH)
    ffn_hidden: int | None = Field(None, ge=1, le=4 * MAX_WIDTH, description="default 4 x hidden")
    cross_attn: bool = True
    adaln: Literal["per-block", "single", "none", "expert"] = "single"
    attention: str = "full"
    conditioning: Literal["text", "class"] = "text"
    num_classes: int = Field(1000, ge=1, le=MAX_TOKENS, description="class-conditional models: table has num_classes+1 rows (null class)")
    learn_sigma: bool = Field(False, description="output 2C channels (DiT learns the variance)")
    timestep_freq_dim: int = Field(256, ge=2, le=MAX_WIDTH)
    long_skip: bool = Field(False, description="U-ViT long skip connections between shallow and deep blocks")
    tokens_in_sequence: int = Field(0, ge=0, le=MAX_TOKENS, description="extra conditioning tokens in the sequence (U-ViT: time + class)")
    # U-ViT details (defaults keep every DiT-style preset unchanged):
    qkv_bias: bool = Field(True, description="bias on the fused QKV projection (U-ViT: False)")
    time_mlp: bool = Field(True, description="timestep MLP after the sinusoid (U-ViT: False, the sinusoid of width h is the time token)")
    learned_pos_embed: bool = Field(False, description="learned position table of (tokens + in-sequence tokens) x h (U-ViT); else fixed sin-cos")
    # Block vocabulary of current video DiTs and LLMs (planner/blocks.py; docs/presets.md). Every default
    # keeps the DiT / PixArt blocks above, and fields at their default are left out of the JSON dump.
    text: Literal["cross-attn", "in-sequence", "mmdit", "none"] | None = Field(
        None, description="text conditioning; default from cross_attn (in-sequence: CogVideoX; mmdit: SD3 / HunyuanVideo)")
    single_layers: int = Field(0, ge=0, le=MAX_LAYERS, description="single-stream blocks (fused parallel attention + MLP) after the layers")
    ffn_type: Literal["gelu", "gelu-tanh", "swiglu", "geglu"] = Field("gelu", description="gated kinds: three matrices")
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    norm_affine: bool | None = Field(None, description="block norms carry weights (default: only without adaLN)")
    cross_attn_norm: bool = Field(False, description="an affine norm before cross-attention (Wan)")
    qk_norm: Literal["none", "layernorm", "rmsnorm"] = "none"
    qk_norm_width: Literal["head", "all"] = Field("head", description="q/k norm over one head or all heads")
    kv_heads: int | None = Field(None, ge=1, le=MAX_WIDTH, description="key/value heads (GQA / MQA); default heads")
    pos: Literal["sincos3d", "rope3d", "rope3d-learned"] = Field(
        "sincos3d", description="rope3d: no parameters; rope3d-learned: learned frequencies (Mochi)")
    out_bias: bool = Field(True, description="bias on attention output projections")
    ffn_bias: bool = Field(True, description="biases in the FFN")
    adaln_dim: int | None = Field(None, ge=1, le=MAX_WIDTH, description="width of the timestep embedding that drives adaLN (CogVideoX 512)")
    text_hidden: int | None = Field(None, ge=1, le=MAX_WIDTH, description="mmdit: width of a narrower text stream (Mochi)")
    text_ffn_hidden: int | None = Field(None, ge=1, le=4 * MAX_WIDTH, description="mmdit: FFN of the narrower text stream")
    text_proj: Literal["mlp", "linear", "refiner"] = Field("mlp", description="text-encoder states -> model width")
    text_refiner_layers: int = Field(2, ge=0, le=MAX_LAYERS, description="text_proj refiner: token-refiner blocks (HunyuanVideo)")
    pooled_text_dim: int = Field(0, ge=0, le=MAX_WIDTH, description="pooled text vector width added to the timestep (0: none)")
    pooled_text: Literal["mlp", "linear", "attn-pool"] = "mlp"
    guidance_embed: bool = Field(False, description="guidance-scale embedder (cfg-distilled HunyuanVideo)")
    cond_in_channels: int = Field(0, ge=0, le=MAX_WIDTH, description="image-condition embedder input channels (Open-Sora 2.0)")
    vocab_size: int = Field(0, ge=0, le=MAX_TOKENS, description="language model: token embedding and output logits (0: video model)")
    tied_embeddings: bool = False
    causal: bool = Field(False, description="causal self-attention (flash skips the masked half)")

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data):
        if isinstance(data, dict) and isinstance(data.get("ffn"), str):   # YAML `ffn: swiglu`
            data = dict(data)
            data["ffn_type"] = data.pop("ffn")
        if isinstance(data, dict) and data.get("text") is not None:      # `text` decides `cross_attn`
            data = dict(data)
            data["cross_attn"] = data["text"] == "cross-attn"
        if isinstance(data, dict) and data.get("ffn_hidden") is None:
            hidden = _as_int(data.get("hidden", 3072))
            if hidden is not None:                 # else the hidden field reports the bad value
                data = dict(data)
                data["ffn_hidden"] = 4 * hidden
        return data

    @model_serializer(mode="wrap")
    def _dump(self, handler):
        out = handler(self)
        if isinstance(out, dict):
            for key, default in _EXTENDED_DEFAULTS.items():
                if key in out and out[key] == default:
                    del out[key]
        return out

    @model_validator(mode="after")
    def _check(self) -> "Model":
        if self.hidden % self.heads:
            raise ValueError(f"model.heads: hidden ({self.hidden}) % heads ({self.heads}) != 0")
        parse_attention(self.attention)
        if self.conditioning == "class" and self.cross_attn:
            raise ValueError("model.cross_attn: a class-conditional model has no text to cross-attend to")
        if self.long_skip and self.layers % 2 == 0:
            raise ValueError(f"model.layers: U-ViT long skips need an odd layer count (in, mid, out), got {self.layers}")
        if self.kv_heads is not None and self.heads % self.kv_heads:
            raise ValueError(f"model.kv_heads: heads ({self.heads}) % kv_heads ({self.kv_heads}) != 0")
        if self.single_layers and self.text_mode not in ("mmdit", "in-sequence", "none"):
            raise ValueError("model.single_layers: single-stream blocks need text 'mmdit', 'in-sequence' or 'none'")
        if self.text_hidden is not None and self.text_mode != "mmdit":
            raise ValueError("model.text_hidden: a separate text width needs text 'mmdit'")
        if self.vocab_size and (self.conditioning != "text" or self.text_mode != "none"):
            raise ValueError("model.vocab_size: a language model has no text encoder (text 'none')")
        return self

    @cached_property
    def text_mode(self) -> str:
        """cross-attn | in-sequence | mmdit | none (`text`, else from `cross_attn`)."""
        if self.text is not None:
            return self.text
        return "cross-attn" if self.cross_attn else "none"

    @cached_property
    def extended(self) -> bool:
        """True when any field of the current-DiT / LLM vocabulary differs from its default."""
        return any(getattr(self, k) != v for k, v in _EXTENDED_DEFAULTS.items())

    @cached_property
    def depth(self) -> int:
        """Transformer blocks: layers (double-stream for mmdit) + single-stream blocks."""
        return self.layers + self.single_layers

    @cached_property
    def n_kv_heads(self) -> int:
        return self.kv_heads if self.kv_heads is not None else self.heads

    @cached_property
    def affine_norms(self) -> bool:
        """Whether the pre-attention / pre-MLP norms carry weights."""
        return self.norm_affine if self.norm_affine is not None else self.adaln == "none"

    @cached_property
    def ffn(self) -> int:
        assert self.ffn_hidden is not None
        return self.ffn_hidden

    @cached_property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @cached_property
    def attention_kind(self) -> str:
        return parse_attention(self.attention)[0]

    @cached_property
    def window(self) -> tuple[int, int, int] | None:
        return parse_attention(self.attention)[1]


_EXTENDED_DEFAULTS: dict[str, Any] = {
    name: f.default for name, f in Model.model_fields.items()
    if name in ("text", "single_layers", "ffn_type", "norm", "norm_affine", "cross_attn_norm", "qk_norm",
                "qk_norm_width", "kv_heads", "pos", "out_bias", "ffn_bias", "adaln_dim", "text_hidden",
                "text_ffn_hidden", "text_proj", "text_refiner_layers", "pooled_text_dim", "pooled_text",
                "guidance_embed", "cond_in_channels", "vocab_size", "tied_embeddings", "causal")}


class Kernels(_Frozen):
    """Attention kernel, dropout and dtypes (precision)."""

    attention_kernel: Literal["flash", "unfused"] = "flash"
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    activation_dtype: DType = "bf16"
    param_dtype: DType = "bf16"
    grad_dtype: DType = "fp32"
    master_dtype: DType = "fp32"
    optimizer_dtype: DType = "fp32"
    optimizer_states: int = Field(2, ge=0, le=16, description="Adam: 2 (m, v)")
    cpu_semantics: bool = Field(False, description="dropout masks stored at the activation dtype (CPU) instead of 1 byte (GPU)")

    @cached_property
    def act_bytes(self) -> int:
        return DTYPE_BYTES[self.activation_dtype]


class Parallel(_Frozen):
    """Parallel layout and batch."""

    tp: int = Field(1, ge=1, le=MAX_GPUS)
    pp: int = Field(1, ge=1, le=MAX_GPUS)
    vpp: int = Field(1, ge=1, le=MAX_LAYERS, description="virtual pipeline stages per rank (interleaved 1F1B)")
    cp: int = Field(1, ge=1, le=MAX_GPUS)
    cp_comm: Literal["p2p", "all-gather", "a2a"] = Field(
        "p2p", description="context parallel K/V exchange: p2p ring attention | all-gather K/V | a2a (Ulysses)")
    dp: int | None = Field(None, ge=1, le=MAX_GPUS)
    gpus: int | None = Field(None, ge=1, le=MAX_GPUS, description="world size; dp = gpus / (tp*pp*cp)")
    sequence_parallel: bool = True
    micro_batch: int = Field(1, ge=1, le=MAX_BATCH)
    global_batch: int | None = Field(None, ge=1, le=MAX_BATCH)
    recompute: Literal["none", "selective", "full"] = "none"
    recompute_layers: int | None = Field(None, ge=0, le=MAX_LAYERS, description="full recompute: layers per stage recomputed (default all)")
    distributed_optimizer: bool = True

    @model_validator(mode="before")
    @classmethod
    def _world(cls, data):
        if not isinstance(data, dict):
            return data
        data = dict(data)
        sizes = [_as_int(data.get(k, 1) or 1) for k in ("tp", "pp", "cp")]
        dp, gpus = data.get("dp"), data.get("gpus")
        given = sizes + [_as_int(x) for x in (dp, gpus) if x is not None]
        if any(n is None or n > MAX_GPUS for n in given):
            return data                            # the fields themselves report the bad value
        mp = math.prod(s for s in sizes if s is not None)
        if dp is None and gpus is None:
            data["dp"], data["gpus"] = 1, mp
        elif dp is None:
            if int(gpus) % mp:
                raise ValueError(f"parallel.gpus: world size ({gpus}) % (tp*pp*cp = {mp}) != 0")
            data["dp"] = int(gpus) // mp
        elif gpus is None:
            data["gpus"] = int(dp) * mp
        elif int(dp) * mp != int(gpus):
            raise ValueError(f"parallel.gpus: world size ({gpus}) != tp*pp*cp*dp ({mp}*{dp} = {int(dp) * mp})")
        return data

    @model_validator(mode="after")
    def _check(self) -> "Parallel":
        if self.sequence_parallel and self.tp == 1:
            object.__setattr__(self, "sequence_parallel", False)  # SP is a TP feature; it means nothing at tp=1
        if self.vpp > 1 and self.pp == 1:
            raise ValueError("parallel.vpp: virtual pipeline stages need pp > 1")
        if self.global_batch is not None and self.global_batch % (self.micro_batch * self.dp_size):
            raise ValueError(
                f"parallel.global_batch: global batch ({self.global_batch}) % (micro_batch*dp = {self.micro_batch * self.dp_size}) != 0")
        return self

    @cached_property
    def dp_size(self) -> int:
        assert self.dp is not None
        return self.dp

    @cached_property
    def world(self) -> int:
        assert self.gpus is not None
        return self.gpus

    @cached_property
    def microbatches(self) -> int:
        """Micro-batches per step per DP rank. Default: 1 without PP, 4*pp with PP (keeps the bubble <= 25%)."""
        if self.global_batch is not None:
            return self.global_batch // (self.micro_batch * self.dp_size)
        return 1 if self.pp == 1 else 4 * self.pp

    @cached_property
    def global_batch_size(self) -> int:
        return self.microbatches * self.micro_batch * self.dp_size


MIN_EFFICIENCY = 1e-6   # smallest achieved/peak fraction a step-time model accepts


class Hardware(_Frozen):
    """The GPU: a name from the table in hardware.py, or a custom entry (YAML `hardware.custom`)."""

    gpu: str = "a100-80g"
    custom: GPU | None = None
    efficiency: float | None = Field(None, gt=0, le=1.0,
                                     description="blanket achieved/peak FLOP/s for GEMMs and attention (default: the per-op table in step.py)")
    gemm_efficiency: float | None = Field(None, gt=0, le=1.0, description="override the table's GEMM efficiency")
    attention_efficiency: float | None = Field(None, gt=0, le=1.0, description="override the table's attention-kernel efficiency")
    hbm_efficiency: float | None = Field(None, gt=0, le=1.0, description="override the achieved fraction of HBM bandwidth (elementwise ops)")
    usd_per_gpu_hour: float | None = Field(None, ge=0, le=1e6, description="default from the GPU table")
    buffer_gib: float = Field(3.0, ge=0, le=1e6, description="allowance for CUDA context, NCCL buffers, allocator fragmentation")
    calibration: str | None = Field(None, description="path of a calibration JSON from `soraplan validate --device cuda`")

    @field_validator("efficiency", "gemm_efficiency", "attention_efficiency", "hbm_efficiency")
    @classmethod
    def _plausible(cls, v: float | None, info) -> float | None:
        """Below 1e-6 of peak the step time overflows to inf: no real kernel is that slow."""
        if v is not None and v < MIN_EFFICIENCY:
            raise ValueError(f"hardware.{info.field_name}: must be >= {MIN_EFFICIENCY:g} (a fraction of peak), got {v:g}")
        return v

    @model_validator(mode="after")
    def _known(self) -> "Hardware":
        if self.custom is None:
            resolve_gpu(self.gpu)  # raises with the list of known GPUs
        return self

    @cached_property
    def spec(self) -> GPU:
        return self.custom if self.custom is not None else resolve_gpu(self.gpu)

    @cached_property
    def price(self) -> float:
        return self.usd_per_gpu_hour if self.usd_per_gpu_hour is not None else self.spec.usd_per_hour


class Training(_Frozen):
    """How much data: samples (clips) x epochs, or a dataset preset's count."""

    samples: int = Field(10_000_000, ge=1, le=MAX_SAMPLES)
    epochs: float = Field(1.0, gt=0, le=1e6)
    dataset: str | None = None
    compare_gpus: tuple[int, ...] = (200, 300, 400)

    @field_validator("compare_gpus", mode="before")
    @classmethod
    def _split(cls, v):
        if isinstance(v, str):
            try:
                v = tuple(int(x) for x in v.split(",") if x.strip())
            except ValueError:
                raise ValueError(f"training.compare_gpus: comma-separated integers expected, got {v!r}") from None
        return v

    @field_validator("compare_gpus")
    @classmethod
    def _counts(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if not v or any(not 1 <= n <= MAX_GPUS for n in v):
            raise ValueError(f"training.compare_gpus: one or more GPU counts from 1 to {MAX_GPUS:,} expected, got {v!r}")
        return v


class Spec(_Frozen):
    """The whole run: video, model, kernels, parallel layout, hardware, training."""

    name: str = "soraplan-6B"   # a display name: planner/names.check_display_name (1-128 printable characters)
    video: Video = Video()
    model: Model = Model()
    kernels: Kernels = Kernels()
    parallel: Parallel = Parallel()
    hardware: Hardware = Hardware()
    training: Training = Training()

    @field_validator("name")
    @classmethod
    def _display_name(cls, v: str) -> str:
        """A display name: printable, no control characters, 1-128 characters (planner/names.py)."""
        return check_display_name(v, "")

    @model_validator(mode="after")
    def _cross(self) -> "Spec":
        m, v, p = self.model, self.video, self.parallel
        if m.heads % p.tp:
            raise ValueError(f"parallel.tp: heads ({m.heads}) % tp ({p.tp}) != 0")
        if m.ffn % p.tp:
            raise ValueError(f"parallel.tp: ffn_hidden ({m.ffn}) % tp ({p.tp}) != 0")
        if m.depth % (p.pp * p.vpp):
            raise ValueError(f"parallel.pp: layers ({m.depth}) % (pp*vpp = {p.pp * p.vpp}) != 0")
        s = self.seq_len
        if s % p.cp:
            raise ValueError(f"parallel.cp: sequence length ({s}) % cp ({p.cp}) != 0")
        if p.sequence_parallel and (s // p.cp) % p.tp:
            raise ValueError(f"parallel.sequence_parallel: tokens per cp rank ({s // p.cp}) % tp ({p.tp}) != 0")
        if p.recompute_layers is not None and p.recompute_layers > m.depth // p.pp:
            raise ValueError(f"parallel.recompute_layers: {p.recompute_layers} > layers per stage ({m.depth // p.pp})")
        kind, win = parse_attention(m.attention)
        if kind == "window":
            assert win is not None
            grid = v.grid
            for axis, g, w in zip("THW", grid, win):
                if g % w:
                    raise ValueError(f"model.attention: window {axis}={w} does not tile the token grid {axis}={g} (grid {grid[0]}x{grid[1]}x{grid[2]})")
            if (v.seq_len // math.prod(win)) % p.cp:
                raise ValueError(f"parallel.cp: window count ({v.seq_len // math.prod(win)}) % cp ({p.cp}) != 0")
        if kind == "spatial-temporal" and v.tokens is not None:
            raise ValueError("model.attention: spatial-temporal attention needs a video grid, not --tokens")
        if m.cross_attn and v.text_tokens == 0:
            raise ValueError("video.text_tokens: cross-attention needs text_tokens > 0")
        if m.text_mode in ("in-sequence", "mmdit") and v.text_tokens == 0:
            raise ValueError(f"video.text_tokens: text '{m.text_mode}' needs text_tokens > 0")
        if m.kv_heads is not None and m.kv_heads % p.tp:
            raise ValueError(f"parallel.tp: kv_heads ({m.kv_heads}) % tp ({p.tp}) != 0")
        return self

    @cached_property
    def seq_len(self) -> int:
        """Tokens the transformer sees per sample (video patches + in-sequence conditioning tokens, and the
        text tokens when text shares the attention: `in-sequence` and `mmdit`)."""
        joint = self.video.text_tokens if self.model.text_mode in ("in-sequence", "mmdit") else 0
        return self.video.seq_len + self.model.tokens_in_sequence + joint


def spec_with(spec: Spec, **sections: dict[str, Any]) -> Spec:
    """The spec with some fields of its sections changed, validated again.

    Args:
        spec: the spec.
        **sections: section name -> {field: new value}, e.g. spec_with(s, hardware={"efficiency": 0.5}).

    Returns:
        The new Spec (ValueError / ValidationError when the change breaks a rule).
    """
    data = spec.model_dump()
    for name, changes in sections.items():
        data[name].update(changes)
    return Spec.model_validate(data)
