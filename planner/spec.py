"""The Spec: one validated, frozen description of a training run.

Everything in soraplan starts from a `Spec`: the planner's formulas, the Megatron model in
`soraplan.models`, the launch templates and the report. It is built once from a merged dict
(preset -> YAML file -> CLI flags, see `soraplan.planner.config`) and validated once.

Validation errors name the field and the rule (``parallel.tp: heads (24) % tp (5) != 0``).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from .hardware import GPU, resolve_gpu

DType = Literal["fp32", "bf16", "fp16"]
DTYPE_BYTES: dict[str, int] = {"fp32": 4, "bf16": 2, "fp16": 2}


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", validate_default=True)


class Video(_Frozen):
    """Clip geometry, VAE compression, patching and text conditioning."""

    frames: int = Field(960, ge=1, description="pixel frames per clip")
    height: int = Field(256, ge=1)
    width: int = Field(256, ge=1)
    fps: float = Field(24.0, gt=0)
    vae_stride_t: int = Field(4, ge=1)
    vae_stride_s: int = Field(8, ge=1)
    latent_channels: int = Field(16, ge=1)
    causal_first_frame: bool = Field(False, description="latent frames = 1 + (F-1)/st (causal VAE)")
    patch_t: int = Field(2, ge=1)
    patch_h: int = Field(2, ge=1)
    patch_w: int = Field(2, ge=1)
    text_tokens: int = Field(512, ge=0)
    text_dim: int = Field(4096, ge=1)
    tokens: int | None = Field(None, ge=1, description="give the sequence length directly")

    @model_validator(mode="after")
    def _tiles(self) -> "Video":
        if self.tokens is not None:
            return self
        st, ss = self.vae_stride_t, self.vae_stride_s
        if self.causal_first_frame:
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

    @property
    def latent_thw(self) -> tuple[int, int, int]:
        """Latent grid (T', H', W') after the VAE."""
        st, ss = self.vae_stride_t, self.vae_stride_s
        lt = 1 + (self.frames - 1) // st if self.causal_first_frame else self.frames // st
        return lt, self.height // ss, self.width // ss

    @property
    def grid(self) -> tuple[int, int, int]:
        """Token grid (t, h, w) after patching; (1, 1, tokens) when tokens is given directly."""
        if self.tokens is not None:
            return 1, 1, self.tokens
        lt, lh, lw = self.latent_thw
        return lt // self.patch_t, lh // self.patch_h, lw // self.patch_w

    @property
    def seq_len(self) -> int:
        t, h, w = self.grid
        return t * h * w

    @property
    def patch_volume(self) -> int:
        return self.patch_t * self.patch_h * self.patch_w

    @property
    def seconds(self) -> float:
        return self.frames / self.fps


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

    name: str = "soraplan-6B"
    layers: int = Field(40, ge=1)
    hidden: int = Field(3072, ge=1)
    heads: int = Field(24, ge=1)
    ffn_hidden: int | None = Field(None, ge=1, description="default 4 x hidden")
    cross_attn: bool = True
    adaln: Literal["per-block", "single", "none"] = "single"
    attention: str = "full"
    conditioning: Literal["text", "class"] = "text"
    num_classes: int = Field(1000, ge=1, description="class-conditional models: table has num_classes+1 rows (null class)")
    learn_sigma: bool = Field(False, description="output 2C channels (DiT learns the variance)")
    timestep_freq_dim: int = Field(256, ge=2)
    long_skip: bool = Field(False, description="U-ViT long skip connections between shallow and deep blocks")
    tokens_in_sequence: int = Field(0, ge=0, description="extra conditioning tokens in the sequence (U-ViT: time + class)")
    # U-ViT details (defaults keep every DiT-style preset unchanged):
    qkv_bias: bool = Field(True, description="bias on the fused QKV projection (U-ViT: False)")
    time_mlp: bool = Field(True, description="timestep MLP after the sinusoid (U-ViT: False, the sinusoid of width h is the time token)")
    learned_pos_embed: bool = Field(False, description="learned position table of (tokens + in-sequence tokens) x h (U-ViT); else fixed sin-cos")

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data):
        if isinstance(data, dict) and data.get("ffn_hidden") is None:
            data = dict(data)
            data["ffn_hidden"] = 4 * int(data.get("hidden", 3072))
        return data

    @model_validator(mode="after")
    def _check(self) -> "Model":
        if self.hidden % self.heads:
            raise ValueError(f"model.heads: hidden ({self.hidden}) % heads ({self.heads}) != 0")
        parse_attention(self.attention)
        if self.conditioning == "class" and self.cross_attn:
            raise ValueError("model.cross_attn: a class-conditional model has no text to cross-attend to")
        if self.long_skip and self.layers % 2 == 0:
            raise ValueError(f"model.layers: U-ViT long skips need an odd layer count (in, mid, out), got {self.layers}")
        return self

    @property
    def ffn(self) -> int:
        assert self.ffn_hidden is not None
        return self.ffn_hidden

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def attention_kind(self) -> str:
        return parse_attention(self.attention)[0]

    @property
    def window(self) -> tuple[int, int, int] | None:
        return parse_attention(self.attention)[1]


class Kernels(_Frozen):
    """Attention kernel, dropout and dtypes (precision)."""

    attention_kernel: Literal["flash", "unfused"] = "flash"
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    activation_dtype: DType = "bf16"
    param_dtype: DType = "bf16"
    grad_dtype: DType = "fp32"
    master_dtype: DType = "fp32"
    optimizer_dtype: DType = "fp32"
    optimizer_states: int = Field(2, ge=0, description="Adam: 2 (m, v)")
    cpu_semantics: bool = Field(False, description="dropout masks stored at the activation dtype (CPU) instead of 1 byte (GPU)")

    @property
    def act_bytes(self) -> int:
        return DTYPE_BYTES[self.activation_dtype]


class Parallel(_Frozen):
    """Parallel layout and batch."""

    tp: int = Field(1, ge=1)
    pp: int = Field(1, ge=1)
    vpp: int = Field(1, ge=1, description="virtual pipeline stages per rank (interleaved 1F1B)")
    cp: int = Field(1, ge=1)
    cp_comm: Literal["p2p", "all-gather", "a2a"] = Field(
        "p2p", description="context parallel K/V exchange: p2p ring attention | all-gather K/V | a2a (Ulysses)")
    dp: int | None = Field(None, ge=1)
    gpus: int | None = Field(None, ge=1, description="world size; dp = gpus / (tp*pp*cp)")
    sequence_parallel: bool = True
    micro_batch: int = Field(1, ge=1)
    global_batch: int | None = Field(None, ge=1)
    recompute: Literal["none", "selective", "full"] = "none"
    recompute_layers: int | None = Field(None, ge=0, description="full recompute: layers per stage recomputed (default all)")
    distributed_optimizer: bool = True

    @model_validator(mode="before")
    @classmethod
    def _world(cls, data):
        if not isinstance(data, dict):
            return data
        data = dict(data)
        mp = int(data.get("tp", 1) or 1) * int(data.get("pp", 1) or 1) * int(data.get("cp", 1) or 1)
        dp, gpus = data.get("dp"), data.get("gpus")
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

    @property
    def dp_size(self) -> int:
        assert self.dp is not None
        return self.dp

    @property
    def world(self) -> int:
        assert self.gpus is not None
        return self.gpus

    @property
    def microbatches(self) -> int:
        """Micro-batches per step per DP rank. Default: 1 without PP, 4*pp with PP (keeps the bubble <= 25%)."""
        if self.global_batch is not None:
            return self.global_batch // (self.micro_batch * self.dp_size)
        return 1 if self.pp == 1 else 4 * self.pp

    @property
    def global_batch_size(self) -> int:
        return self.microbatches * self.micro_batch * self.dp_size


class Hardware(_Frozen):
    """The GPU: a name from the table in hardware.py, or a custom entry (YAML `hardware.custom`)."""

    gpu: str = "a100-80g"
    custom: GPU | None = None
    efficiency: float | None = Field(None, gt=0, le=1.0,
                                     description="blanket achieved/peak FLOP/s for GEMMs and attention (default: the per-op table in step.py)")
    gemm_efficiency: float | None = Field(None, gt=0, le=1.0, description="override the table's GEMM efficiency")
    attention_efficiency: float | None = Field(None, gt=0, le=1.0, description="override the table's attention-kernel efficiency")
    hbm_efficiency: float | None = Field(None, gt=0, le=1.0, description="override the achieved fraction of HBM bandwidth (elementwise ops)")
    usd_per_gpu_hour: float | None = Field(None, ge=0, description="default from the GPU table")
    buffer_gib: float = Field(3.0, ge=0, description="allowance for CUDA context, NCCL buffers, allocator fragmentation")
    calibration: str | None = Field(None, description="path of a calibration JSON from `soraplan validate --device cuda`")

    @model_validator(mode="after")
    def _known(self) -> "Hardware":
        if self.custom is None:
            resolve_gpu(self.gpu)  # raises with the list of known GPUs
        return self

    @property
    def spec(self) -> GPU:
        return self.custom if self.custom is not None else resolve_gpu(self.gpu)

    @property
    def price(self) -> float:
        return self.usd_per_gpu_hour if self.usd_per_gpu_hour is not None else self.spec.usd_per_hour


class Training(_Frozen):
    """How much data: samples (clips) x epochs, or a dataset preset's count."""

    samples: int = Field(10_000_000, ge=1)
    epochs: float = Field(1.0, gt=0)
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


class Spec(_Frozen):
    """The whole run: video, model, kernels, parallel layout, hardware, training."""

    name: str = "soraplan-6B"
    video: Video = Video()
    model: Model = Model()
    kernels: Kernels = Kernels()
    parallel: Parallel = Parallel()
    hardware: Hardware = Hardware()
    training: Training = Training()

    @model_validator(mode="after")
    def _cross(self) -> "Spec":
        m, v, p = self.model, self.video, self.parallel
        if m.heads % p.tp:
            raise ValueError(f"parallel.tp: heads ({m.heads}) % tp ({p.tp}) != 0")
        if m.ffn % p.tp:
            raise ValueError(f"parallel.tp: ffn_hidden ({m.ffn}) % tp ({p.tp}) != 0")
        if m.layers % (p.pp * p.vpp):
            raise ValueError(f"parallel.pp: layers ({m.layers}) % (pp*vpp = {p.pp * p.vpp}) != 0")
        s = v.seq_len + m.tokens_in_sequence
        if s % p.cp:
            raise ValueError(f"parallel.cp: sequence length ({s}) % cp ({p.cp}) != 0")
        if p.sequence_parallel and (s // p.cp) % p.tp:
            raise ValueError(f"parallel.sequence_parallel: tokens per cp rank ({s // p.cp}) % tp ({p.tp}) != 0")
        if p.recompute_layers is not None and p.recompute_layers > m.layers // p.pp:
            raise ValueError(f"parallel.recompute_layers: {p.recompute_layers} > layers per stage ({m.layers // p.pp})")
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
        return self

    @property
    def seq_len(self) -> int:
        """Tokens the transformer sees per sample (video patches + in-sequence conditioning tokens)."""
        return self.video.seq_len + self.model.tokens_in_sequence


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
