"""`soraplan estimate presets` lists every model preset; `--hidden` keeps the preset's FFN ratio and head dim."""

import json

import pytest
from typer.testing import CliRunner

from soraplan.cli import app
from soraplan.planner.config import SpecError, build_spec
from soraplan.planner.presets import PRESETS

runner = CliRunner()


def test_presets_json_lists_every_model_with_params_geometry_source():
    res = runner.invoke(app, ["estimate", "presets", "--json"])
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.output)["models"]}
    assert set(rows) == set(PRESETS)
    assert rows["llama-3-8b"]["params"] == 8_030_261_248
    assert rows["wan2.1-t2v-1.3b"]["geometry"] == "480x832x81" and rows["wan2.1-t2v-1.3b"]["tokens"] == 32_760
    assert rows["hunyuanvideo"]["single_blocks"] == 40
    assert all(r["source"] for r in rows.values())


@pytest.mark.parametrize("name", ["wan2.1-t2v-14b", "hunyuanvideo", "cogvideox-5b", "open-sora-2.0", "mochi-1",
                                  "step-video-t2v", "movie-gen-30b", "ltx-video", "llama-3-70b", "gpt-3-175b"])
def test_estimate_json_works_for_each_preset(name):
    res = runner.invoke(app, ["estimate", "--model", name, "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["params"]["total"] > 1e9 and out["flops"]["forward_per_sample"] > 0


def test_hidden_keeps_the_ffn_ratio_and_head_dim():
    spec = build_spec(flags={"hidden": 2048})                 # soraplan-6B: FFN 4x, head dim 128
    assert (spec.model.ffn_hidden, spec.model.heads) == (8192, 16)
    wan = build_spec(flags={"model": "wan2.1-t2v-1.3b", "hidden": 3072})   # FFN 8960 / 1536
    assert (wan.model.ffn_hidden, wan.model.heads) == (17920, 24)
    given = build_spec(flags={"hidden": 2048, "ffn_hidden": 4096, "heads": 8})
    assert (given.model.ffn_hidden, given.model.heads) == (4096, 8)


def test_hidden_that_breaks_the_head_dim_is_refused_in_one_line():
    with pytest.raises(SpecError, match=r"^model.heads: hidden \(1000\)"):
        build_spec(flags={"hidden": 1000})
