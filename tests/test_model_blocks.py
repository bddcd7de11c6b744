"""The Megatron model of the current block vocabulary (models/blocks.py) equals the planner, group by group,
for every released-model preset on the meta device, and runs forward / backward on shrunken versions."""

import pytest

pytestmark = pytest.mark.megatron

from soraplan.planner.presets_current import CURRENT_PRESETS  # noqa: E402


def _groups(spec):
    from soraplan.models.build import build_model, param_groups

    return param_groups(build_model(spec, device="meta"))


@pytest.mark.parametrize("name", sorted(CURRENT_PRESETS))
def test_every_preset_on_meta_equals_the_planner(megatron_pg, name):
    from soraplan.planner.config import build_spec
    from soraplan.planner.params import params_breakdown

    spec = build_spec(flags={"model": name})
    assert _groups(spec) == params_breakdown(spec)


def _tiny(name, **extra):
    """The preset's block types at toy size: 2 (+1 single) blocks, width 64, 4 heads, a 2x4x6 token grid."""
    from soraplan.planner.config import build_spec
    from soraplan.planner.spec import Spec

    data = build_spec(flags={"model": name}).model_dump()
    m, v = data["model"], data["video"]
    kv = m.get("kv_heads")
    m.update(layers=2, hidden=64, heads=4, ffn_hidden=128, single_layers=1 if m.get("single_layers") else 0,
             timestep_freq_dim=64 if m.get("adaln_dim") else m["timestep_freq_dim"], **extra)
    if kv:
        m["kv_heads"] = 2
    if m.get("text_hidden"):
        m.update(text_hidden=32, text_ffn_hidden=64)
    if m.get("adaln_dim"):
        m["adaln_dim"] = 32
    if m.get("pooled_text") == "attn-pool":
        m["pooled_text_dim"] = 32
    elif m.get("pooled_text_dim"):
        m["pooled_text_dim"] = 16
    if m.get("vocab_size"):
        m["vocab_size"] = 97
        v.update(tokens=16)
    else:
        v.update(tokens=None, vae_chunk=None, frames=2 * v["patch_t"], causal_first_frame=False, vae_stride_t=1,
                 vae_stride_s=1, height=4 * v["patch_h"], width=6 * v["patch_w"], text_tokens=6, text_dim=32,
                 latent_channels=4)
    data["kernels"].update(activation_dtype="fp32", param_dtype="fp32")
    return Spec.model_validate(data)


@pytest.mark.parametrize("name", sorted(CURRENT_PRESETS))
def test_tiny_versions_run_forward_and_backward(megatron_pg, name):
    import torch

    from soraplan.models.build import build_model, param_groups
    from soraplan.planner.params import params_breakdown

    spec = _tiny(name)
    model = build_model(spec, device="cpu", dtype=torch.float32)
    assert param_groups(model) == params_breakdown(spec)
    g = torch.Generator().manual_seed(0)
    m, v = spec.model, spec.video
    if m.vocab_size:
        tokens = torch.randint(0, m.vocab_size, (2, spec.seq_len), generator=g)
        out = model.forward_lm(tokens)
        assert out.shape == (spec.seq_len, 2, m.vocab_size)
    else:
        lat = torch.randn(2, v.latent_channels, *v.latent_thw, generator=g)
        text = torch.randn(2, v.text_tokens, v.text_dim, generator=g)
        mask = torch.ones(2, v.text_tokens, dtype=torch.bool)
        out = model(lat, torch.tensor([10.0, 500.0]), text, mask)
        assert out.shape == lat.shape
    assert torch.isfinite(out).all()
    out.float().square().mean().backward()
    unused = {"pos_frequencies"} if m.pos == "rope3d-learned" else set()     # zero angles: zero gradient path
    missing = [n for n, p in model.named_parameters() if p.grad is None and n.split(".")[0] not in unused]
    assert not missing, missing


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CURRENT_PRESETS))
def test_every_preset_validates_at_full_size(megatron_pg, name):
    """`soraplan validate --model NAME`: parameters and FLOPs exact, saved bytes within 1 % (meta, bf16)."""
    from soraplan.planner.config import build_spec
    from soraplan.validation.measure_matrix import run_spec

    rows, errors = run_spec(build_spec(flags={"model": name}))
    assert not errors
    assert rows and not [(r.quantity, r.measured, r.predicted) for r in rows if not r.ok]


@pytest.mark.parametrize("name", sorted(CURRENT_PRESETS))
def test_train_tiny_shrinks_every_preset(megatron_pg, name):
    """`soraplan train --tiny --model NAME`: the shrunken spec builds and takes a training loss step."""
    import torch

    from soraplan.models.build import build_model
    from soraplan.models.loss import synthetic_batch, training_loss
    from soraplan.models.tiny import shrink_spec
    from soraplan.planner.config import build_spec
    from soraplan.planner.params import params_breakdown

    spec = shrink_spec(build_spec(flags={"model": name}))
    model = build_model(spec, device="cpu", dtype=torch.float32)
    from soraplan.models.build import param_groups

    assert param_groups(model) == params_breakdown(spec)
    g = torch.Generator().manual_seed(0)
    loss = training_loss(model, synthetic_batch(spec, 2, "cpu", g), generator=g)
    loss.backward()
    assert torch.isfinite(loss)


def test_fused_sections_split_per_tp_rank():
    """A fused projection [a | b] at tp=2: rank r's contiguous shard is [a_r | b_r], and tp_shard takes the
    same slice of a full gradient (the layout of models/blocks.col_sections)."""
    import torch

    from soraplan.models.blocks import interleave_sections
    from soraplan.validation.equivalence import tp_shard

    full = torch.arange(12.0).view(6, 2)                     # sections of 4 and 2 rows
    laid = interleave_sections(full, (4, 2), 2)
    assert laid[:, 0].tolist() == [0, 2, 8, 4, 6, 10]        # [a_0 | b_0 | a_1 | b_1]
    param = torch.nn.Parameter(torch.zeros(3, 2))
    param.partition_dim, param.tp_sections = 0, (4, 2)
    for rank in range(2):
        assert torch.equal(tp_shard(full, param, 2, rank), laid.chunk(2)[rank])
    cols = interleave_sections(full.t(), (4, 2), 2, dim=1)
    assert torch.equal(cols, laid.t())
