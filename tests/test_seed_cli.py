"""Every system of the seed has a row in `soraplan estimate --help` / `soraplan --help`, and stays light."""

import json
import subprocess
import sys

from typer.testing import CliRunner

from soraplan.cli import app

runner = CliRunner()


def test_estimate_help_lists_the_systems():
    res = runner.invoke(app, ["estimate", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    for row in ("caption", "dataset", "presets"):
        assert row in res.stdout
    top = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert "profile" in top.stdout


def test_presets_listing():
    res = runner.invoke(app, ["estimate", "presets", "--json"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)
    names = r["backbones"]["names"]
    for n in ("DiT-XL/2", "DiT-S/8", "SiT-XL/2", "U-ViT-H/2", "U-ViT-H/4@512", "soraplan-6B"):
        assert n in names
    assert set(r["captioners"]) == {"qwen-vl-chat", "cogvlm", "yi-vl-34b", "internlm-xcomposer2-vl-7b", "minicpm-v",
                                    "video-llava-7b"}
    assert set(r["datasets"]) == {"youku-mplug", "laion-5b"}
    assert set(r["unet_video_models"]) == {"modelscope-t2v", "animatediff", "i2vgen-xl"}
    table = runner.invoke(app, ["estimate", "presets"])
    assert table.exit_code == 0 and "U-ViT" in table.stdout


def test_backbone_presets_through_estimate():
    res = runner.invoke(app, ["estimate", "--model", "U-ViT-H/2", "--json"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)
    assert r["params"]["total"] == 500_832_016 and r["sequence_length"] == 258
    bad = runner.invoke(app, ["estimate", "--model", "U-ViT-Z/2"])
    assert bad.exit_code == 2 and bad.stderr.startswith("error: model: unknown preset")


def test_subcommands_import_no_heavy_modules():
    # The caption, dataset and presets subcommands are planner-only: no torch/diffusers in a fresh process.
    code = (
        "import sys, io, contextlib\n"
        "from soraplan.cli import app\n"
        "for args in (['estimate','caption','--json'], ['estimate','dataset','--dataset','youku-mplug','--frames','96','--json'],"
        " ['estimate','presets','--json']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        "        try:\n"
        "            app(args)\n"
        "        except SystemExit as e:\n"
        "            assert e.code in (0, None), (args, e.code)\n"
        "heavy = [m for m in ('torch', 'diffusers', 'megatron', 'plotly', 'kubernetes', 'submitit') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def _readme_commands():
    import shlex
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "seed-systems.README-section.md").read_text()
    cmds, buf = [], ""
    for line in text.splitlines():
        s = line.strip()
        if line.startswith("    ") and (s.startswith("soraplan ") or buf):
            buf += " " + s.rstrip("\\").strip()
            if not s.endswith("\\"):
                cmds.append(shlex.split(buf)[1:])
                buf = ""
    return cmds


def test_readme_section_examples_run():
    import importlib.util

    cmds = _readme_commands()
    assert len(cmds) >= 5
    ran = 0
    for args in cmds:
        if "my_pkg.net:Net" in args:
            continue  # a placeholder module; the custom-module path is tested in test_seed_profile.py
        if args[0] == "profile" and importlib.util.find_spec("diffusers") is None:
            continue  # the UNet presets need diffusers (tested in test_seed_profile.py when present)
        res = runner.invoke(app, args)
        assert res.exit_code == 0, (args, res.output)
        ran += 1
    assert ran >= 4
