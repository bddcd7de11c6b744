"""3D rotary position embedding (no parameters) and Mochi's learned-frequency variant.

The head dimension d is split over the (t, h, w) axes as (d - 4*(d//6), 2*(d//6), 2*(d//6)) (Wan2.1); each
axis rotates its channel pairs by position * theta^(-2i/d_axis). Tokens without a video position (text in a
joint sequence) get position 0: the identity rotation. A language model's grid is (1, 1, S).
"""

from __future__ import annotations

import torch


def axis_split(head_dim: int) -> tuple[int, int, int]:
    """Channels of the head dimension given to the t, h and w axes (even numbers)."""
    s = 2 * (head_dim // 6)
    return head_dim - 2 * s, s, s


def grid_positions(grid: tuple[int, int, int], text_tokens: int = 0) -> torch.Tensor:
    """[text_tokens + t*h*w, 3] integer positions; text tokens first, at position 0."""
    t, h, w = grid
    pos = torch.stack(torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij"), -1)
    pos = pos.reshape(-1, 3)
    if text_tokens:
        pos = torch.cat([torch.zeros(text_tokens, 3, dtype=pos.dtype), pos])
    return pos


def rope_angles(grid: tuple[int, int, int], head_dim: int, text_tokens: int = 0, theta: float = 10000.0) -> torch.Tensor:
    """[S, head_dim/2] rotation angles of the fixed 3D RoPE (a buffer, not a parameter)."""
    pos = grid_positions(grid, text_tokens).double()
    parts = []
    for axis, dim in enumerate(axis_split(head_dim)):
        inv = theta ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)     # [dim/2]
        parts.append(pos[:, axis, None] * inv[None])                             # [S, dim/2]
    return torch.cat(parts, -1).float()                                          # [S, d/2]


def learned_angles(pos_frequencies: torch.Tensor, grid: tuple[int, int, int], text_tokens: int = 0) -> torch.Tensor:
    """[S, heads, head_dim/2] angles from learned frequencies [3, heads, head_dim/2] (Mochi)."""
    pos = grid_positions(grid, text_tokens).to(pos_frequencies.device, pos_frequencies.dtype)   # [S, 3]
    # elementwise over the three axes (a 3-term sum, not a matmul)
    return sum(pos[:, a, None, None] * pos_frequencies[a][None] for a in range(3))


class _CosSin(torch.autograd.Function):
    """(cos, sin) of learned angles, saving the two tables (which the rotation keeps anyway), not the angles."""

    @staticmethod
    def forward(ctx, angles):
        cos, sin = angles.cos(), angles.sin()
        ctx.save_for_backward(cos, sin)
        return cos, sin

    @staticmethod
    def backward(ctx, d_cos, d_sin):
        cos, sin = ctx.saved_tensors
        return d_sin * cos - d_cos * sin


def rope_tables(angles: torch.Tensor, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) broadcastable to [S, B, heads, d/2] from angles [S, d/2] or [S, heads, d/2]."""
    if angles.dim() == 2:
        angles = angles[:, None, None, :]                    # [S, 1, 1, d/2]
    else:
        angles = angles[:, None, :, :]                       # [S, 1, heads, d/2]
    if angles.requires_grad:
        cos, sin = _CosSin.apply(angles)
        return cos.to(dtype), sin.to(dtype)
    return angles.cos().to(dtype), angles.sin().to(dtype)


def apply_rope(x: torch.Tensor, tables: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Rotate channel pairs of x [S, B, heads, d] by the (cos, sin) tables of `rope_tables`."""
    cos, sin = tables
    x1, x2 = x[..., 0::2], x[..., 1::2]                      # [S, B, heads, d/2]
    out = torch.stack([x1 * cos - x2 * sin, x1 * sin + x2 * cos], -1)
    return out.flatten(-2)                                   # [S, B, heads, d]
