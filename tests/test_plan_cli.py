"""`soraplan plan` through typer's CliRunner: the JSON contract, the tables, errors as one line."""

import json

from typer.testing import CliRunner

from soraplan.cli import app

runner = CliRunner()
SEED = ["plan", "--frames", "960", "--res", "256", "--gpu", "a100-80g"]


def _json(args):
    r = runner.invoke(app, args + ["--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_plan_json_contract():
    out = _json(SEED + ["--gpus", "200,300,400", "--top", "3"])
    assert set(out) >= {"spec", "objective", "gpu_counts", "best", "budget", "sensitivity"}
    assert out["objective"] == "time"
    assert [c["gpus"] for c in out["gpu_counts"]] == [200, 300, 400]
    for c in out["gpu_counts"]:
        assert set(c) >= {"gpus", "ranked", "rejected", "evaluated", "why_best"}
        assert 1 <= len(c["ranked"]) <= 3
        e = c["ranked"][0]
        for key in ("tp", "pp", "vpp", "cp", "dp", "micro_batch", "global_batch", "sequence_parallel", "recompute",
                    "distributed_optimizer", "attention", "memory_gib", "step", "train"):
            assert key in e
        assert set(e["memory_gib"]) >= {"weights", "grads", "optimizer", "activations", "buffers", "total", "capacity", "fits"}
        assert set(e["step"]) >= {"compute_s", "tp_comm_s", "cp_comm_s", "dp_comm_s", "pp_bubble_s", "pp_p2p_s",
                                  "optimizer_s", "time_s", "mfu", "samples_per_s"}
        assert set(e["train"]) >= {"days", "gpu_hours", "cost_usd"}
        assert set(c["rejected"]) >= {"memory", "divisibility", "batch"}
    assert out["best"]["gpus"] in (200, 300, 400)
    for row in out["sensitivity"]:
        assert set(row) >= {"assumption", "low", "high", "days_low", "days_high"}
    assert {r["assumption"] for r in out["sensitivity"]} >= {"kernel efficiency (MFU)", "epochs", "recompute",
                                                             "window attention"}
    assert "passes over 10,000,000" in out["budget"]["statement"]


def test_plan_tables():
    r = runner.invoke(app, SEED + ["--gpus", "200", "--top", "2", "--no-sensitivity"])
    assert r.exit_code == 0, r.output
    for text in ("200 x a100-80g", "layouts", "rejected", "Step terms", "Why:", "Best", "Passes over"):
        assert text in r.output


def test_plan_pins_spec_flags_and_allows_window():
    out = _json(SEED + ["--gpus", "64", "--tp", "4", "--recompute", "selective", "--allow-window", "--no-sensitivity"])
    c = out["gpu_counts"][0]
    assert all(e["tp"] == 4 and e["recompute"] == "selective" for e in c["ranked"])
    assert len(out["search"]["attentions"]) > 1


def test_plan_infeasible_is_a_message_not_an_empty_table():
    r = runner.invoke(app, ["plan", "--frames", "960", "--res", "256", "--gpu", "a100-40g", "--layers", "96",
                            "--hidden", "12288", "--heads", "96", "--ffn-hidden", "49152", "--gpus", "8", "--no-sensitivity"])
    assert r.exit_code == 0, r.output
    assert "no layout fits on 8 x a100-40g" in " ".join(r.output.split())
    assert "no GPU count has a layout that fits" in " ".join(r.output.split())


def test_plan_bad_input_is_one_line_exit_2():
    for args, text in ((["--gpus", "two"], "--gpus"), (["--objective", "fast"], "--objective"),
                       (["--objective", "deadline"], "--deadline-days"), (["--global-batch-range", "5"], "LOW,HIGH"),
                       (["--gpu", "tpu-v9"], "unknown GPU"), (["--headroom", "2"], "--headroom"),
                       (["--curriculum", "/nope.yaml"], "--curriculum")):
        r = runner.invoke(app, SEED + args)
        assert r.exit_code == 2, (args, r.output)
        assert text in r.stderr and r.stderr.count("\n") == 1, r.stderr


def test_plan_deadline_and_cost():
    out = _json(SEED + ["--gpus", "128,256,512", "--objective", "deadline", "--deadline-days", "20", "--no-sensitivity"])
    assert out["best"]["train"]["days"] <= 20
    assert "fewest GPUs" in out["best_reason"]
    out = _json(SEED + ["--gpus", "128,256", "--objective", "cost", "--no-sensitivity"])
    assert out["objective"] == "cost"


def test_plan_curriculum_default():
    out = _json(SEED + ["--gpus", "200,400", "--curriculum", "default", "--no-sensitivity"])
    b = out["budget"]
    assert b["curriculum"] and len(b["stages"]) == 3
    assert [s["sequence_length"] for s in b["stages"]] == [256, 768, 30720]
    assert all(t["feasible"] for t in b["totals"])
    assert b["totals"][0]["days"] > b["totals"][1]["days"]
    for s in b["stages"]:
        assert s["storage"]["latent_bytes"] > 0
        assert all(row["read_mb_s_per_gpu_latent"] > 0 for row in s["per_gpus"])


def test_estimate_still_works():
    r = runner.invoke(app, ["estimate", "--frames", "960", "--res", "256", "--tp", "8"])
    assert r.exit_code == 0, r.output
    assert "efficiency assumed / MFU" in r.output


def test_progress_bar_only_after_a_second(capsys):
    from soraplan.cli.plan import LazyProgress

    quiet = LazyProgress(after_s=3600)
    quiet("searching", 0, 3)
    assert quiet.bar is None
    piped = LazyProgress(after_s=0)
    piped("searching", 0, 3)
    assert piped.bar is None                       # not a terminal: no bar
    shown = LazyProgress(after_s=0, force_terminal=True)
    shown("searching 200 GPUs", 1, 3)
    assert shown.bar is not None and shown.bar.tasks[0].completed == 1
    shown.close()


def test_plan_sequence_parallel_pinned_keeps_tp1():
    out = _json(SEED + ["--gpus", "64", "--sequence-parallel", "--no-sensitivity", "--top", "20"])
    c = out["gpu_counts"][0]
    assert all(e["sequence_parallel"] == (e["tp"] > 1) for e in c["ranked"])


def test_plan_pinned_impossible_layout_says_why():
    r = runner.invoke(app, SEED + ["--gpus", "64", "--pp", "3", "--no-sensitivity"])
    assert r.exit_code == 2 and "layers (40) % (pp*vpp = 3)" in r.stderr     # the Spec refuses it first
    r = runner.invoke(app, SEED + ["--gpus", "64", "--tp", "8", "--pp", "8", "--cp", "32", "--no-sensitivity"])
    assert r.exit_code == 0, r.output                                        # valid, but 2048 GPUs > 64
    text = " ".join(r.output.split())
    assert "no layout fits on 64 x a100-80g" in text and "divisibility" in text


def test_plan_uses_a_calibration_file(tmp_path):
    cal = tmp_path / "cal.json"
    cal.write_text(json.dumps({"gpu": "a100-80g", "efficiency": 0.3, "gemm_efficiency": 0.5, "attention_efficiency": 0.4}))
    out = _json(SEED + ["--gpus", "200", "--calibration", str(cal), "--no-sensitivity", "--top", "1"])
    eff = out["search"]["efficiency"]
    assert (eff["gemm"], eff["attention"]) == (0.5, 0.4) and "calibration" in eff["source"]
    base = _json(SEED + ["--gpus", "200", "--no-sensitivity", "--top", "1"])
    assert out["best"]["train"]["days"] > base["best"]["train"]["days"]
    over = _json(SEED + ["--gpus", "200", "--gemm-efficiency", "0.9", "--no-sensitivity", "--top", "1"])
    assert over["search"]["efficiency"]["gemm"] == 0.9
