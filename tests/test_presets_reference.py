"""Every released-model preset equals its reference configuration, parameter group by parameter group.

The reference counts below are sums over the tensors of each model's released code (docs/presets.md derives
every one and cites the file); the planner counts the same model from its Spec (planner/params.py and
planner/blocks.py). Groups: the block stacks, the final layer, the LM embeddings, and "embedders" = every
other group (patch, timestep, text, pooled-text, guidance, condition embedders and the shared adaLN).
"""

import pytest

from soraplan.planner.config import build_spec
from soraplan.planner.params import params_breakdown, total_params

REFERENCE = {
    "wan2.1-t2v-1.3b": {"blocks": 1_393_221_120, "embedders": 25_674_240, "final_layer": 101_440},
    "wan2.1-t2v-14b": {"blocks": 14_055_772_160, "embedders": 232_381_440, "final_layer": 337_984},
    "hunyuanvideo": {"blocks": 6_796_625_920, "single_blocks": 5_663_672_320, "embedders": 341_637_120,
                     "final_layer": 19_077_184},
    "cogvideox-2b": {"blocks": 1_682_446_080, "embedders": 9_237_248, "final_layer": 2_100_544},
    "cogvideox-5b": {"blocks": 5_552_300_544, "embedders": 14_621_696, "final_layer": 3_360_832},
    "open-sora-2.0": {"blocks": 6_456_794_624, "single_blocks": 5_380_488_704, "embedders": 35_030_016,
                      "final_layer": 19_077_184},
    "step-video-t2v": {"blocks": 28_994_002_944, "embedders": 348_069_888, "final_layer": 405_568},
    "mochi-1": {"blocks": 9_929_041_920, "embedders": 79_607_808, "final_layer": 19_028_016},
    "ltx-video": {"blocks": 1_880_367_104, "embedders": 42_752_000, "final_layer": 266_368},
    "llama-3-8b": {"blocks": 6_979_584_000, "embedders": 0, "final_layer": 4_096, "token_embed": 525_336_576,
                   "output_head": 525_336_576},
    "llama-3-70b": {"blocks": 68_452_352_000, "embedders": 0, "final_layer": 8_192, "token_embed": 1_050_673_152,
                    "output_head": 1_050_673_152},
    "gpt-3-175b": {"blocks": 173_961_510_912, "embedders": 0, "final_layer": 24_576, "token_embed": 617_558_016,
                   "pos_embed": 25_165_824},
}
TOTALS = {
    "wan2.1-t2v-1.3b": 1_418_996_800, "wan2.1-t2v-14b": 14_288_491_584, "hunyuanvideo": 12_821_012_544,
    "cogvideox-2b": 1_693_783_872, "cogvideox-5b": 5_570_283_072, "open-sora-2.0": 11_891_390_528,
    "step-video-t2v": 29_342_478_400, "mochi-1": 10_027_677_744, "ltx-video": 1_923_385_472,
    "llama-3-8b": 8_030_261_248, "llama-3-70b": 70_553_706_496, "gpt-3-175b": 174_604_259_328,
}
NAMED = ("blocks", "single_blocks", "final_layer", "token_embed", "output_head", "pos_embed")


def _grouped(name: str) -> dict[str, int]:
    got = params_breakdown(build_spec(flags={"model": name}))
    out = {k: v for k, v in got.items() if k in NAMED}
    out["embedders"] = sum(v for k, v in got.items() if k not in NAMED)
    return out


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_preset_groups_equal_the_reference(name):
    assert _grouped(name) == REFERENCE[name]
    assert total_params(build_spec(flags={"model": name})) == TOTALS[name] == sum(REFERENCE[name].values())


def test_llama_3_8b_is_exact():
    assert total_params(build_spec(flags={"model": "llama-3-8b"})) == 8_030_261_248


def test_movie_gen_within_one_percent_of_the_paper():
    # Table 1 blocks (48 x 603,998,208 without adaLN) + the assumed per-block adaLN Linear(512, 6h): 30B +- 1 %
    spec = build_spec(flags={"model": "movie-gen-30b"})
    g = params_breakdown(spec)
    assert g["blocks"] == 48 * (603_998_208 + 512 * 6 * 6144 + 6 * 6144)
    assert abs(total_params(spec) / 30e9 - 1) < 0.01


def test_per_block_derivations():
    # spot checks of docs/presets.md's per-block sums (Mochi's last block does not update text)
    from soraplan.planner.blocks import asymmetric_layer, layer_groups, single_layer

    def total(groups):
        return sum(t for _, t, _ in groups)

    hy = build_spec(flags={"model": "hunyuanvideo"})
    assert total(layer_groups(hy)) == 339_831_296 and total(single_layer(hy)) == 141_591_808
    mochi = build_spec(flags={"model": "mochi-1"})
    assert total(asymmetric_layer(mochi, last=False)) == 207_641_600
    assert total(asymmetric_layer(mochi, last=True)) == 169_886_720
    cog = build_spec(flags={"model": "cogvideox-2b"})
    assert total(layer_groups(cog)) == 56_081_536


@pytest.mark.parametrize("name,thw,seq", [
    ("wan2.1-t2v-1.3b", (21, 30, 52), 32_760), ("wan2.1-t2v-14b", (21, 45, 80), 75_600),
    ("mochi-1", (28, 30, 53), 44_520 + 256), ("step-video-t2v", (36, 34, 62), 75_888),
    ("movie-gen-30b", (32, 48, 48), 73_728), ("cogvideox-5b", (13, 30, 45), 17_550 + 226),
])
def test_published_geometry(name, thw, seq):
    spec = build_spec(flags={"model": name})
    assert spec.video.grid == thw
    assert spec.seq_len == seq
