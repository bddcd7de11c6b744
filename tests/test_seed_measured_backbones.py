"""Planner vs measured: DiT and U-ViT reference modules built on the meta device and counted with FlopCounterMode.

The modules below are written from the papers' descriptions (DiT: adaLN-Zero blocks, Peebles & Xie 2023 Fig. 3;
U-ViT: tokens for time/class, pre-LN ViT blocks, long skips via Linear(2h, h), Bao et al. 2023 Fig. 1 and the
released configs). Built on the meta device they cost nothing; the planner's parameter and forward-FLOP counts
must equal the measured ones exactly (batch 1; 1 MAC = 2 FLOPs; norms and activations count 0 on both sides).
"""

import math

import pytest

torch = pytest.importorskip("torch", reason="the measured check needs torch (the [train] extra)")
nn = torch.nn
F = torch.nn.functional

from soraplan.validation.profile import parse_input, profile_module  # noqa: E402
from soraplan.planner import build_spec  # noqa: E402
from soraplan.planner.flops import flops  # noqa: E402
from soraplan.planner.params import total_params  # noqa: E402


def sinusoid(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class Attention(nn.Module):
    def __init__(self, h, heads, qkv_bias=True):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(h, 3 * h, bias=qkv_bias)
        self.proj = nn.Linear(h, h)

    def forward(self, x):
        b, s, h = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, self.heads, h // self.heads).permute(2, 0, 3, 1, 4)
        o = F.scaled_dot_product_attention(q, k, v)
        return self.proj(o.transpose(1, 2).reshape(b, s, h))


class Mlp(nn.Module):
    def __init__(self, h, f):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(h, f), nn.Linear(f, h)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate="tanh"))


class DiTBlock(nn.Module):
    def __init__(self, h, heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(h, elementwise_affine=False, eps=1e-6)
        self.norm2 = nn.LayerNorm(h, elementwise_affine=False, eps=1e-6)
        self.attn, self.mlp = Attention(h, heads), Mlp(h, 4 * h)
        self.ada = nn.Linear(h, 6 * h)

    def forward(self, x, c):
        sh1, sc1, g1, sh2, sc2, g2 = self.ada(F.silu(c)).unsqueeze(1).chunk(6, dim=-1)
        x = x + g1 * self.attn(self.norm1(x) * (1 + sc1) + sh1)
        return x + g2 * self.mlp(self.norm2(x) * (1 + sc2) + sh2)


class DiT(nn.Module):
    def __init__(self, depth, h, heads, patch, in_ch=4, size=32, classes=1000):
        super().__init__()
        self.patch, self.in_ch = patch, in_ch
        self.x_emb = nn.Conv2d(in_ch, h, patch, patch)
        self.t_mlp = nn.Sequential(nn.Linear(256, h), nn.SiLU(), nn.Linear(h, h))
        self.y_emb = nn.Embedding(classes + 1, h)             # + the null class for classifier-free guidance
        self.register_buffer("pos", torch.zeros(1, (size // patch) ** 2, h))   # fixed sin-cos
        self.blocks = nn.ModuleList(DiTBlock(h, heads) for _ in range(depth))
        self.final_norm = nn.LayerNorm(h, elementwise_affine=False, eps=1e-6)
        self.final_ada = nn.Linear(h, 2 * h)
        self.out = nn.Linear(h, patch * patch * 2 * in_ch)    # learned sigma: 2C

    def forward(self, x, t, y):
        x = self.x_emb(x).flatten(2).transpose(1, 2) + self.pos
        c = self.t_mlp(sinusoid(t, 256)) + self.y_emb(y)
        for blk in self.blocks:
            x = blk(x, c)
        shift, scale = self.final_ada(F.silu(c)).unsqueeze(1).chunk(2, dim=-1)
        return self.out(self.final_norm(x) * (1 + scale) + shift)


class UViTBlock(nn.Module):
    def __init__(self, h, heads, skip=False):
        super().__init__()
        self.skip = nn.Linear(2 * h, h) if skip else None
        self.norm1, self.norm2 = nn.LayerNorm(h), nn.LayerNorm(h)
        self.attn, self.mlp = Attention(h, heads, qkv_bias=False), Mlp(h, 4 * h)

    def forward(self, x, skip=None):
        if self.skip is not None:
            x = self.skip(torch.cat([x, skip], dim=-1))
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class UViT(nn.Module):
    def __init__(self, depth, h, heads, patch, in_ch=4, size=32, classes=1001):
        super().__init__()
        self.h = h
        self.x_emb = nn.Conv2d(in_ch, h, patch, patch)
        self.y_emb = nn.Embedding(classes, h)
        self.pos = nn.Parameter(torch.zeros(1, 2 + (size // patch) ** 2, h))   # learned, over time + class + patches
        self.inb = nn.ModuleList(UViTBlock(h, heads) for _ in range(depth // 2))
        self.mid = UViTBlock(h, heads)
        self.outb = nn.ModuleList(UViTBlock(h, heads, skip=True) for _ in range(depth // 2))
        self.norm = nn.LayerNorm(h)
        self.out = nn.Linear(h, patch * patch * in_ch)

    def forward(self, x, t, y):
        x = self.x_emb(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.y_emb(y)[:, None], sinusoid(t, self.h)[:, None], x], dim=1) + self.pos
        skips = []
        for blk in self.inb:
            x = blk(x)
            skips.append(x)
        x = self.mid(x)
        for blk in self.outb:
            x = blk(x, skips.pop())
        return self.out(self.norm(x))[:, 2:]


INPUTS = [parse_input(s) for s in ("x=1,4,32,32", "t=1:int64", "y=1:int64")]


def measure(module):
    return profile_module(module, INPUTS, backward=False)


@pytest.mark.parametrize("name, depth, h, heads, patch", [
    ("DiT-XL/2", 28, 1152, 16, 2), ("DiT-B/4", 12, 768, 12, 4), ("DiT-S/8", 12, 384, 6, 8),
])
def test_dit_planner_equals_measured(name, depth, h, heads, patch):
    with torch.device("meta"):
        m = DiT(depth, h, heads, patch)
    prof = measure(m)
    spec = build_spec(flags={"model": name})
    assert prof.params == total_params(spec)
    assert prof.forward_flops == flops(spec).forward


@pytest.mark.parametrize("name, depth, h, heads, patch", [("U-ViT-H/2", 28, 1152, 16, 2), ("U-ViT-L/2", 20, 1024, 16, 2)])
def test_uvit_planner_equals_measured(name, depth, h, heads, patch):
    with torch.device("meta"):
        m = UViT(depth, h, heads, patch)
    prof = measure(m)
    spec = build_spec(flags={"model": name})
    assert prof.params == total_params(spec)
    assert prof.forward_flops == flops(spec).forward
