"""Training budget: curriculum YAML, storage bytes, sensitivity list, the seed statement."""

import pytest

from soraplan.planner import build_spec
from soraplan.planner.budget import (DEFAULT_CURRICULUM, bytes_per_sample, load_curriculum, sensitivity, stage_spec,
                                     training_budget)
from soraplan.planner.errors import UserError

SEED = {"frames": 960, "res": 256}


def test_curriculum_yaml(tmp_path):
    p = tmp_path / "cur.yaml"
    p.write_text("stages:\n"
                 "  - name: short\n    geometry: {frames: 96, res: 128}\n    samples: 1000000\n    epochs: 2\n"
                 "  - name: full\n    geometry: {frames: 960, res: 256}\n    dataset: youku-mplug\n")
    cur = load_curriculum(str(p))
    spec = build_spec(flags=SEED)
    s0, n0, gbr0 = stage_spec(spec, cur["stages"][0], 0)
    assert s0.seq_len == 12 * 8 * 8 and n0 == 2_000_000 and gbr0 is None
    s1, n1, _ = stage_spec(spec, cur["stages"][1], 1)
    assert s1.seq_len == 30_720 and n1 == 10_000_000
    b = training_budget(spec, (200,), curriculum=str(p)).to_json()
    assert [s["name"] for s in b["stages"]] == ["short", "full"]
    total = b["totals"][0]
    assert total["days"] == pytest.approx(sum(s["per_gpus"][0]["days"] for s in b["stages"]))


@pytest.mark.parametrize("stage, match", [
    ({"name": "x", "geometry": {"frames": 97}}, "frames"),
    ({"name": "x", "geometry": {"nope": 1}}, "not a spec flag"),
    ({"name": "x", "dataset": "imagenet-99"}, "unknown dataset"),
    ({"name": "x", "colour": "red"}, "unknown keys"),
    ({"name": "x", "samples": 0}, "positive"),
])
def test_curriculum_errors(stage, match):
    with pytest.raises(UserError, match=match):
        stage_spec(build_spec(flags=SEED), stage, 0)


def test_curriculum_file_errors(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_curriculum(str(tmp_path / "missing.yaml"))
    p = tmp_path / "bad.yaml"
    p.write_text("stages: 3\n")
    with pytest.raises(UserError, match="stages"):
        load_curriculum(str(p))
    assert load_curriculum("default") == DEFAULT_CURRICULUM


def test_storage_bytes_by_hand():
    io = bytes_per_sample(build_spec(flags=SEED))
    # latents: 240 x 32 x 32 x 16 channels at 2 bytes
    assert io["latent_bytes"] == 240 * 32 * 32 * 16 * 2
    # raw: Youku-mPLUG 36 TB over 10 M clips of 54.2 s mean -> bytes per second of footage x 40 s
    assert io["raw_bytes"] == pytest.approx(36e12 / 10_000_000 / 54.2 * 40)
    img = bytes_per_sample(build_spec(flags={"frames": 1, "vae_stride_t": 1, "patch_t": 1, "res": 256}))
    assert img["latent_bytes"] == 32 * 32 * 16 * 2
    assert "laion-5b" in img["raw_source"]


def test_sensitivity_and_statement():
    from soraplan.planner.plan import plan

    out = plan(build_spec(flags=SEED), (200, 400)).to_json()
    sens = out["sensitivity"]
    names = [r["assumption"] for r in sens]
    assert {"kernel efficiency (MFU)", "epochs", "recompute", "window attention", "inter-node bandwidth",
            "price per GPU-hour", "failure/restart overhead"} <= set(names)
    eff = next(r for r in sens if r["assumption"] == "kernel efficiency (MFU)")
    assert eff["days_low"] > eff["days_base"] > eff["days_high"]
    ep = next(r for r in sens if r["assumption"] == "epochs")
    assert ep["days_high"] == pytest.approx(4 * ep["days_low"])
    swings = [abs(r["days_high"] - r["days_low"]) for r in sens if r["days_low"] is not None and r["days_high"] is not None]
    assert swings == sorted(swings, reverse=True)
    st = out["budget"]["statement"]
    assert st.startswith("200-400 x a100-80g for 60-90 days buy") and "passes over 10,000,000" in st
    assert "What moves it most" in st


def test_sensitivity_of_an_infeasible_count_is_empty():
    spec = build_spec(flags={**SEED, "gpu": "a100-40g", "layers": 96, "hidden": 12288, "heads": 96, "ffn_hidden": 49152})
    assert sensitivity(spec, 8) == []
