"""Pieces around the transformer block: 3D sin-cos positions, timestep / class / text embedders, the
final layer. Names and shapes follow DiT's models.py and PixArt-alpha."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


def sincos_1d(dim: int, pos: torch.Tensor) -> torch.Tensor:
    """[n] positions -> [n, dim] (sin | cos), DiT's get_1d_sincos_pos_embed_from_grid."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim / 2.0))   # [dim/2]
    out = pos.double()[:, None] * omega[None]                                            # [n, dim/2]
    return torch.cat([out.sin(), out.cos()], dim=1)                                      # [n, dim]


def sincos_3d(hidden: int, grid: tuple[int, int, int]) -> torch.Tensor:
    """Fixed 3D positions [t*h*w, hidden] in (t, h, w) token order: the hidden size is split between
    time (1/4, rounded to even) and the two spatial axes (the rest, halved, even)."""
    t, h, w = grid
    d_t = 2 * (hidden // 8)
    d_s = 2 * ((hidden - d_t) // 4)
    d_pad = hidden - d_t - 2 * d_s
    tt, hh, ww = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
    parts = [sincos_1d(d_t, tt.reshape(-1)), sincos_1d(d_s, hh.reshape(-1)), sincos_1d(d_s, ww.reshape(-1))]
    if d_pad:
        parts.append(torch.zeros(t * h * w, d_pad, dtype=torch.float64))
    return torch.cat(parts, dim=1).float()                                                # [S, hidden]


class TimestepEmbedder(nn.Module):
    """Scalar timesteps -> [B, h]: sinusoidal frequencies (256) -> Linear -> SiLU -> Linear (DiT)."""

    def __init__(self, hidden: int, freq_dim: int = 256, dtype=None):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, hidden, dtype=dtype), nn.SiLU(), nn.Linear(hidden, hidden, dtype=dtype))

    @staticmethod
    def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
        args = t[:, None].float() * freqs[None]                                          # [B, half]
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)                       # [B, 2*half]
        if dim % 2:
            emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
        return emb

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        freq = self.timestep_embedding(t, self.freq_dim).to(self.mlp[0].weight.dtype)     # [B, 256]
        return self.mlp(freq)                                                             # [B, h]


class ClassEmbedder(nn.Module):
    """Class labels -> [B, h]; row `num_classes` is the null class used for classifier-free guidance.
    The training-time label dropout (DiT: p = 0.1) is applied to the batch by `loss.drop_labels`, from the
    step's generator, so every pipeline stage sees the same labels; `dropout_prob` here defaults to 0."""

    def __init__(self, num_classes: int, hidden: int, dropout_prob: float = 0.0, dtype=None):
        super().__init__()
        self.num_classes, self.dropout_prob = num_classes, dropout_prob
        self.embedding_table = nn.Embedding(num_classes + 1, hidden, dtype=dtype)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        if self.training and self.dropout_prob > 0:
            drop = torch.rand(labels.shape[0], device=labels.device) < self.dropout_prob
            labels = torch.where(drop, torch.full_like(labels, self.num_classes), labels)
        return self.embedding_table(labels)                                              # [B, h]


class TextProjection(nn.Module):
    """Precomputed text-encoder states [B, T, D] -> [B, T, h]: Linear -> GELU(tanh) -> Linear (PixArt)."""

    def __init__(self, text_dim: int, hidden: int, dtype=None):
        super().__init__()
        self.fc1 = nn.Linear(text_dim, hidden, dtype=dtype)
        self.fc2 = nn.Linear(hidden, hidden, dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class FinalLayer(nn.Module):
    """LayerNorm (no affine) + modulation + Linear(h, patch volume * C_out).

    per-block: shift, scale = Linear(SiLU(c)) (zero-init, DiT); single: scale_shift_table[2, h] + c
    (PixArt T2IFinalLayer); none: an affine LayerNorm and no modulation.
    """

    def __init__(self, hidden: int, out_dim: int, adaln: str, dtype=None):
        super().__init__()
        self.adaln = adaln
        self.norm_final = nn.LayerNorm(hidden, eps=1e-6, elementwise_affine=adaln == "none", dtype=dtype)
        self.linear = nn.Linear(hidden, out_dim, dtype=dtype)
        if adaln == "per-block":
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden, dtype=dtype))
        elif adaln == "single":
            self.scale_shift_table = nn.Parameter(torch.randn(2, hidden, dtype=dtype) / hidden ** 0.5)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        # x [S, B, h]; c [B, h]
        x = self.norm_final(x)                                                           # [S, B, h]
        if self.adaln == "per-block":
            shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)                     # 2 x [B, h]
            x = x * (1 + scale[None]) + shift[None]                                      # [S, B, h]
        elif self.adaln == "single":
            shift, scale = (self.scale_shift_table[None] + c[:, None]).unbind(1)         # 2 x [B, h]
            x = x * (1 + scale[None]) + shift[None]                                      # [S, B, h]
        return self.linear(x)                                                            # [S, B, pv*C_out]
