"""Core attention: window / spatial-temporal token regrouping equals masked full attention; unfused
(Megatron DotProductAttention) equals SDPA; a CPU forward/backward runs for every variant."""

import pytest
import torch

pytestmark = pytest.mark.megatron


def _core(spec, layer_number=1, kernel="flash"):
    from soraplan.models.attention import VideoCoreAttention
    from soraplan.models.config import transformer_config

    m = spec.model
    return VideoCoreAttention(transformer_config(spec), layer_number, grid=spec.video.grid, pattern=m.attention_kind,
                              window=m.window, kernel=kernel).eval()


def _reference(q, k, v, group_of):
    """Full attention where token i sees token j only when group_of[i] == group_of[j]."""
    allowed = group_of[:, None] == group_of[None, :]                       # [S, S]
    o = torch.nn.functional.scaled_dot_product_attention(
        q.permute(1, 2, 0, 3), k.permute(1, 2, 0, 3), v.permute(1, 2, 0, 3), attn_mask=allowed)
    return o.permute(2, 0, 1, 3).reshape(q.shape[0], q.shape[1], -1)


def _qkv(spec, B=2):
    g = torch.Generator().manual_seed(0)
    S, n, d = spec.seq_len, spec.model.heads, spec.model.head_dim
    return [torch.randn(S, B, n, d, generator=g) for _ in range(3)]


def _coords(grid):
    t, h, w = grid
    tt, hh, ww = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
    return tt.reshape(-1), hh.reshape(-1), ww.reshape(-1)


@pytest.mark.parametrize("window", [(2, 2, 2), (1, 4, 2), (2, 1, 4)])
@pytest.mark.parametrize("kernel", ["flash", "unfused"])
def test_window_equals_masked_reference(megatron_pg, window, kernel):
    from megatron_fixtures import tiny_spec

    spec = tiny_spec(attention="window:" + ",".join(map(str, window)))   # grid 2x4x4
    tt, hh, ww = _coords(spec.video.grid)
    t, h, w = spec.video.grid
    group = (tt // window[0]) * (h * w) + (hh // window[1]) * w + ww // window[2]
    q, k, v = _qkv(spec)
    got = _core(spec, kernel=kernel)(q, k, v, None)
    torch.testing.assert_close(got, _reference(q, k, v, group), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("layer_number", [1, 2])
def test_spatial_temporal_equals_masked_reference(megatron_pg, layer_number):
    from megatron_fixtures import tiny_spec

    spec = tiny_spec(attention="spatial-temporal")
    tt, hh, ww = _coords(spec.video.grid)
    w = spec.video.grid[2]
    group = tt if layer_number % 2 == 1 else hh * w + ww     # layer 0 (number 1): spatial -> same frame
    q, k, v = _qkv(spec)
    got = _core(spec, layer_number)(q, k, v, None)
    torch.testing.assert_close(got, _reference(q, k, v, group), rtol=1e-5, atol=1e-5)


def test_unfused_equals_flash_full_with_text_mask(megatron_pg):
    from megatron.core.transformer.enums import AttnMaskType

    from soraplan.models.attention import VideoCoreAttention
    from soraplan.models.config import transformer_config

    from megatron_fixtures import tiny_spec

    spec = tiny_spec()
    cfg = transformer_config(spec)
    g = torch.Generator().manual_seed(1)
    q = torch.randn(32, 2, 4, 16, generator=g)
    k, v = torch.randn(8, 2, 4, 16, generator=g), torch.randn(8, 2, 4, 16, generator=g)
    mask = torch.tensor([[False] * 5 + [True] * 3, [False] * 8])[:, None, None, :]   # True = padding
    outs = [VideoCoreAttention(cfg, 1, AttnMaskType.padding, "cross", kernel=kern).eval()(q, k, v, mask)
            for kern in ("flash", "unfused")]
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("flags", [
    {}, {"adaln": "per-block"}, {"adaln": "none"}, {"adaln": "none", "cross_attn": False},
    {"attention": "window:2,2,2", "attention_kernel": "unfused", "dropout": 0.1},
    {"attention": "spatial-temporal", "recompute": "full"}, {"recompute": "selective"},
    {"recompute": "full", "recompute_layers": 1},
])
def test_forward_backward_every_variant(megatron_pg, flags):
    from soraplan.models.build import build_model
    from soraplan.models.loss import synthetic_batch, training_loss

    from megatron_fixtures import tiny_spec

    spec = tiny_spec(**flags)
    model = build_model(spec, device="cpu")
    g = torch.Generator().manual_seed(0)
    batch = synthetic_batch(spec, 2, "cpu", g)
    out = model(batch["latents"], torch.tensor([1.0, 500.0]), batch.get("text_states"), batch.get("text_mask"))
    assert out.shape == batch["latents"].shape
    for objective in ("flow", "eps"):
        loss = training_loss(model, batch, objective, generator=g)
        loss.backward()
        assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters())


def test_class_conditional_learn_sigma_output_channels(megatron_pg):
    from soraplan.models.build import build_model
    from soraplan.planner.config import build_spec

    spec = build_spec(flags={"model": "DiT-S/8", "layers": 2, "hidden": 64, "heads": 4, "precision": "fp32"})
    model = build_model(spec, device="cpu")
    x = torch.randn(2, 4, 1, 32, 32)
    out = model(x, torch.tensor([3.0, 7.0]), class_labels=torch.tensor([1, 2]))
    assert out.shape == (2, 8, 1, 32, 32)
