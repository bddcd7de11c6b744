"""Parameter counts, derived by hand (see planner/params.py for the architecture)."""

from soraplan.planner import build_spec
from soraplan.planner.params import param_groups, params_per_gpu, total_params


def test_soraplan_6b_groups_by_hand():
    # h = 3072, f = 4h = 12288, L = 40, C = 16 latent channels, patch 2x2x2 (8), text 4096-d.
    spec = build_spec(flags={"frames": 960, "res": 256, "tp": 8})
    g = {x.name: x.total for x in param_groups(spec)}
    assert g["patch_embed"] == 16 * 8 * 3072 + 3072 == 396_288
    assert g["t_embedder"] == 256 * 3072 + 3072 + 3072 * 3072 + 3072 == 10_229_760
    assert g["t_block"] == 6 * 3072 * 3072 + 6 * 3072 == 56_641_536            # adaLN-single: one shared Linear(h, 6h)
    assert g["text_proj"] == 4096 * 3072 + 3072 + 3072 * 3072 + 3072 == 22_026_240
    # per layer: qkv 3h^2+3h, proj h^2+h, cross q h^2+h, kv 2h^2+2h, proj h^2+h, fc1 hf+f, fc2 fh+h, table 6h
    per_layer = (28_311_552 + 9_216) + (9_437_184 + 3_072) + (9_437_184 + 3_072) + (18_874_368 + 6_144) \
        + (9_437_184 + 3_072) + (37_748_736 + 12_288) + (37_748_736 + 3_072) + 18_432
    assert per_layer == 151_053_312
    assert g["blocks"] == 40 * per_layer == 6_042_132_480
    # final: table 2h + Linear(h, 8*16) = 6144 + 3072*128 + 128
    assert g["final_layer"] == 6_144 + 393_216 + 128 == 399_488
    assert total_params(spec) == 6_131_825_792


def test_soraplan_6b_per_gpu_tp8_by_hand():
    spec = build_spec(flags={"frames": 960, "res": 256, "tp": 8})
    # split over TP per layer: 8h^2 + 6h + 2hf + f (column weights+biases, row weights); replicated: 3 row biases + table = 9h
    split = 8 * 3072**2 + 6 * 3072 + 2 * 3072 * 12288 + 12288
    assert split == 151_025_664
    per_layer_rank = split // 8 + 9 * 3072
    embedders = 396_288 + 10_229_760 + 56_641_536 + 22_026_240 + 399_488   # replicated on every TP rank
    assert params_per_gpu(spec) == 40 * per_layer_rank + embedders == 845_927_552


def test_pipeline_stage_holds_its_share():
    one = build_spec(flags={"tp": 8})
    four = build_spec(flags={"tp": 8, "pp": 4})
    # blocks split 4 ways; conditioning embedders on every stage; patch embed (first) vs final layer (last): max
    blocks_rank = 40 * (151_025_664 // 8 + 9 * 3072)
    every = 10_229_760 + 56_641_536 + 22_026_240
    assert params_per_gpu(four) == blocks_rank // 4 + every + max(396_288, 399_488)
    assert params_per_gpu(one) > params_per_gpu(four)


def test_dit_xl2_675m():
    # DiT-XL/2 (Peebles & Xie): 28 x 1152, 16 heads, patch 2, 32x32x4 latents, 1000 classes + null, learned sigma.
    spec = build_spec(flags={"model": "DiT-XL/2"})
    g = {x.name: x.total for x in param_groups(spec)}
    assert g["patch_embed"] == 4 * 4 * 1152 + 1152 == 19_584
    assert g["class_embed"] == 1001 * 1152 == 1_153_152
    assert g["t_embedder"] == 256 * 1152 + 1152 + 1152 * 1152 + 1152 == 1_624_320
    # block: qkv 3,984,768 + proj 1,328,256 + fc1 5,313,024 + fc2 5,309,568 + adaLN Linear(h, 6h) 7,969,536
    assert g["blocks"] == 28 * 23_905_152 == 669_344_256
    assert g["final_layer"] == (2 * 1152 * 1152 + 2 * 1152) + (1152 * 32 + 32) == 2_693_408
    total = total_params(spec)
    assert total == 674_834_720
    # DiT's own count (675,129,632) includes its fixed sin-cos pos-embed table (256 x 1152) stored as a Parameter.
    assert total + 256 * 1152 == 675_129_632
    assert round(total / 1e6) == 675
