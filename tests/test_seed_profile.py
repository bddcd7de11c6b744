"""Measured mode: `soraplan profile` on the meta device (FlopCounterMode + saved_tensors_hooks).

A small module defined here gives exact, hand-derived counts; the diffusers presets are checked when
diffusers is importable (pip install diffusers).
"""

import importlib.util
import json
import textwrap

import pytest
from typer.testing import CliRunner

from soraplan.cli import app
from soraplan.planner.errors import UserError

torch = pytest.importorskip("torch", reason="the measured mode needs torch (the [train] extra)")

from soraplan.validation import profile as P  # noqa: E402

runner = CliRunner()
HAS_DIFFUSERS = importlib.util.find_spec("diffusers") is not None

MLP_SRC = textwrap.dedent('''
    import torch.nn as nn

    class TinyMLP(nn.Module):
        def __init__(self, d_in, d_hidden, d_out):
            super().__init__()
            self.fc1 = nn.Linear(d_in, d_hidden)
            self.act = nn.ReLU()
            self.fc2 = nn.Linear(d_hidden, d_out)

        def forward(self, x):
            return self.fc2(self.act(self.fc1(x)))
''')


@pytest.fixture
def tiny_module(tmp_path, monkeypatch):
    (tmp_path / "seed_tiny_mlp.py").write_text(MLP_SRC)
    (tmp_path / "cfg.json").write_text(json.dumps({"d_in": 64, "d_hidden": 256, "d_out": 32}))
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_tiny_mlp_exact(tiny_module):
    cls = P.load_class("seed_tiny_mlp:TinyMLP")
    m = P.build_meta(cls, {"d_in": 64, "d_hidden": 256, "d_out": 32})
    prof = P.profile_module(m, [P.parse_input("x=8,64")])
    # params: 64*256 + 256 + 256*32 + 32 = 24,864
    assert prof.params == 24_864
    # forward: 2 * 8 * (64*256 + 256*32) = 393,216 FLOPs
    assert prof.forward_flops == 2 * 8 * (64 * 256 + 256 * 32) == 393_216
    # backward: dW2 and dh (2 matmuls of 8x256x32), dW1 (8x64x256); no dx (the input needs no grad):
    #   train = fwd + 2*2*8*256*32 + 2*8*64*256 = 393,216 + 262,144 + 262,144 = 917,504
    assert prof.train_flops == 917_504
    # saved for backward, once per storage, parameters excluded: x (fc1's addmm, 8*64*4 B) and the ReLU output
    # (saved by ReLU and by fc2's addmm: one storage, 8*256*4 B) = 2,048 + 8,192 = 10,240 B
    assert prof.saved_activation_bytes == 10_240
    assert prof.saved_tensors == 2


def test_bf16_halves_activation_bytes(tiny_module):
    m = P.build_meta(P.load_class("seed_tiny_mlp:TinyMLP"), {"d_in": 64, "d_hidden": 256, "d_out": 32}, "bfloat16")
    prof = P.profile_module(m, [P.parse_input("x=8,64")], "bfloat16")
    assert prof.saved_activation_bytes == 5_120


def test_sdpa_is_counted():
    # FlopCounterMode counts scaled_dot_product_attention: QK^T and AV, each b*h*s*s*d MACs (not halved).
    class Attn(torch.nn.Module):
        def forward(self, q, k, v):
            return torch.nn.functional.scaled_dot_product_attention(q, k, v)

    prof = P.profile_module(Attn(), [P.parse_input(x) for x in ("q=1,2,16,8", "k=1,2,16,8", "v=1,2,16,8")], backward=False)
    assert prof.forward_flops == 2 * 2 * (1 * 2 * 16 * 16 * 8)


def test_parse_input():
    assert P.parse_input("latents=1,4,16,32,32") == P.InputSpec("latents", (1, 4, 16, 32, 32), None)
    assert P.parse_input("t=1:int64").dtype == "int64"
    assert P.parse_input("s=:fp32").shape == ()
    for bad, needle in (("latents", "NAME="), ("x=1,a", "comma-separated"), ("x=1:float8", "dtype"),
                        ("1x=1", "valid argument"), ("x=0,2", ">= 1")):
        with pytest.raises(UserError, match=needle):
            P.parse_input(bad)


def test_cli_custom_module(tiny_module):
    res = runner.invoke(app, ["profile", "--module", "seed_tiny_mlp:TinyMLP", "--config", str(tiny_module / "cfg.json"),
                              "--input", "x=8,64", "--json"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)
    assert r["params"] == 24_864 and r["flops"]["forward"] == 393_216 and r["saved_activation_bytes"] == 10_240


@pytest.mark.parametrize("args, needle", [
    (["--module", "no_such_pkg.mod:X", "--input", "x=1"], "--module: cannot import"),
    (["--module", "seed_tiny_mlp:Nope", "--input", "x=1"], "no attribute"),
    (["--module", "seed_tiny_mlp", "--input", "x=1"], "pkg.mod:Class"),
    (["--module", "seed_tiny_mlp:TinyMLP", "--input", "x=8,64"], "--config"),             # missing ctor args
    (["--module", "seed_tiny_mlp:TinyMLP", "--config", "CFG", "--input", "x=8,63"], "--input"),  # shape mismatch
    (["--module", "seed_tiny_mlp:TinyMLP", "--config", "CFG", "--input", "y=8,64"], "--input"),  # wrong name
    (["--module", "seed_tiny_mlp:TinyMLP", "--config", "CFG"], "--input"),
    ([], "either --preset"),
    (["--preset", "sdxl"], "--preset: unknown"),
    (["--module", "seed_tiny_mlp:TinyMLP", "--config", "CFG", "--input", "x=8,64", "--dtype", "int8"], "--dtype"),
])
def test_cli_bad_input(tiny_module, args, needle):
    args = [str(tiny_module / "cfg.json") if a == "CFG" else a for a in args]
    res = runner.invoke(app, ["profile", *args])
    assert res.exit_code == 2, res.output
    err = res.stderr.strip()
    assert err.startswith("error: ") and needle in err and "\n" not in err


def test_bad_config_file(tmp_path, tiny_module):
    (tmp_path / "bad.json").write_text("{not json")
    res = runner.invoke(app, ["profile", "--module", "seed_tiny_mlp:TinyMLP", "--config", str(tmp_path / "bad.json"),
                              "--input", "x=1,64"])
    assert res.exit_code == 2 and "not valid JSON" in res.stderr


def test_preset_files_are_data():
    presets = P.list_presets()
    assert set(presets) == {"modelscope-t2v", "animatediff", "i2vgen-xl"}
    for p in presets.values():
        assert p["class"].startswith("diffusers:") and p["source"] and p["config"]["block_out_channels"] == [320, 640, 1280, 1280]
    shapes = {s.name: s.shape for s in P.preset_inputs(presets["animatediff"], 16, 256)}
    assert shapes["sample"] == (1, 4, 16, 32, 32) and shapes["encoder_hidden_states"] == (16, 77, 768)
    with pytest.raises(UserError, match="--frames/--res"):
        P.preset_inputs(presets["modelscope-t2v"], 16, 250)


# --- the diffusers presets (published configs) -------------------------------------------------------------------
needs_diffusers = pytest.mark.skipif(not HAS_DIFFUSERS, reason="diffusers is not installed (pip install diffusers)")

# Parameter counts measured on the meta device with diffusers 0.42.1; the model cards: ModelScope T2V UNet
# "1.7 B" for the whole pipeline (UNet ~1.4 B + OpenCLIP text encoder + VAE); AnimateDiff v2 = SD 1.5 UNet
# (860 M) + motion modules (~453 M); I2VGen-XL UNet ~1.4 B.
UNET_PARAMS = {"modelscope-t2v": 1_411_233_860, "animatediff": 1_312_730_244, "i2vgen-xl": 1_420_469_224}


@needs_diffusers
@pytest.mark.parametrize("name", sorted(UNET_PARAMS))
def test_unet_preset_params(name):
    pre = P.get_preset(name)
    m = P.build_meta(P.load_class(pre["class"]), pre["config"])
    assert sum(p.numel() for p in m.parameters()) == UNET_PARAMS[name]


@needs_diffusers
def test_unet_preset_profile_and_dit_comparison():
    # A short clip keeps the test fast: 8 frames at 128^2 -> latents 1x4x8x16x16.
    pre, prof = P.profile_preset("modelscope-t2v", 8, 128)
    assert prof.params == UNET_PARAMS["modelscope-t2v"]
    assert prof.forward_flops > 0
    # backward ~ 2 x forward for a conv/matmul network (the input needs no grad, so slightly under 3x in total)
    assert 2.9 < prof.train_flops / prof.forward_flops <= 3.0
    assert prof.saved_activation_bytes > 0
    rows = P.dit_comparison(pre, prof, 8, 128)
    assert [r["model"] for r in rows] == ["DiT-XL/2", "soraplan-6B"]
    # DiT-XL/2 on 8 latent frames of 8x8 patches (patch 1x2x2): 512 tokens
    assert rows[0]["tokens"] == 8 * 8 * 8


@needs_diffusers
def test_cli_preset_json():
    res = runner.invoke(app, ["profile", "--preset", "i2vgen-xl", "--frames", "8", "--res", "128", "--no-backward", "--json"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)
    assert r["params"] == UNET_PARAMS["i2vgen-xl"] and r["compare"][0]["model"] == "DiT-XL/2"
