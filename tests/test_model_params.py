"""The Megatron model has exactly the planner's parameters: 6B on meta, DiT-XL/2, every spec variant."""

import pytest

pytestmark = pytest.mark.megatron


def _counts(spec):
    from soraplan.models.build import build_model, param_groups

    return param_groups(build_model(spec, device="meta"))


def test_soraplan_6b_meta_matches_planner_total_and_groups(megatron_pg):
    from soraplan.planner.config import build_spec
    from soraplan.planner.params import params_breakdown, total_params

    spec = build_spec(flags={})
    got = _counts(spec)
    assert sum(got.values()) == total_params(spec) == 6_131_825_792
    assert got == params_breakdown(spec)


def test_dit_xl2_matches_paper_and_planner(megatron_pg):
    from soraplan.planner.config import build_spec
    from soraplan.planner.params import params_breakdown

    spec = build_spec(flags={"model": "DiT-XL/2"})
    got = _counts(spec)
    assert sum(got.values()) == 674_834_720          # DiT paper: 675 M (pos-embed is a buffer here)
    assert got == params_breakdown(spec)


@pytest.mark.parametrize("adaln", ["per-block", "single", "none"])
@pytest.mark.parametrize("cond", ["text+cross", "text-nocross", "class"])
def test_variants_match_planner(megatron_pg, adaln, cond):
    from soraplan.planner.config import build_spec
    from soraplan.planner.params import params_breakdown

    flags = {"layers": 3, "hidden": 256, "heads": 4, "adaln": adaln}
    if cond == "class":
        flags["model"] = "DiT-S/4"
    elif cond == "text-nocross":
        flags["cross_attn"] = False
    spec = build_spec(flags=flags)
    assert _counts(spec) == params_breakdown(spec)


def test_attribute_names_follow_the_planner_groups(megatron_pg):
    from soraplan.models.build import build_model

    from megatron_fixtures import tiny_spec

    m = build_model(tiny_spec(), device="meta")
    layer = m.decoder.layers[0]
    for name in ("patch_embed", "t_embedder", "t_block", "text_proj", "final_layer"):
        assert hasattr(m, name)
    for name in ("self_attention.linear_qkv", "self_attention.linear_proj", "cross_attention.linear_q",
                 "cross_attention.linear_kv", "cross_attention.linear_proj", "mlp.linear_fc1", "mlp.linear_fc2"):
        assert layer.get_submodule(name) is not None
    assert layer.scale_shift_table.shape == (6, 64)
