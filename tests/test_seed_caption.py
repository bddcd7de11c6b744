"""The re-captioning pass: VLM presets against their published sizes, hand-derived FLOPs, memory, time, CLI."""

import json

import pytest
from typer.testing import CliRunner

from soraplan.cli import app
from soraplan.planner.caption import (caption_estimate, decode_macs, kv_bytes_per_token, llm_params, parse_count,
                                      prefill_macs, vision_macs_per_image, vision_params)
from soraplan.planner.errors import UserError
from soraplan.planner.vlm_presets import LLMS, VLMS, get_vlm

runner = CliRunner()


def test_parse_count():
    assert parse_count("10M") == 10_000_000
    assert parse_count("2.5e6") == 2_500_000
    assert parse_count("1,000") == 1000
    assert parse_count("5.85B") == 5_850_000_000
    with pytest.raises(UserError, match="--clips"):
        parse_count("ten")
    with pytest.raises(UserError, match="--clips"):
        parse_count("0")


@pytest.mark.parametrize("name", sorted(VLMS))
def test_params_match_published(name):
    # Our count from the config shapes vs the total each model card / paper states (vision + adapter + LLM).
    # Within 7 %: XComposer2's partial LoRA and the adapters' exact shapes are not modelled.
    r = caption_estimate(name, "1000")
    assert r["params"]["total"] / 1e9 == pytest.approx(VLMS[name].params_published_b, rel=0.07)


def test_vision_encoder_sizes():
    # ViT-bigG/14 (Qwen-VL): 48 x (4*1664^2 + 2*1664*8192 + biases/LN) ~ 1.84 B ("1.9 B" in Qwen-VL Table 1).
    assert vision_params(get_vlm("qwen-vl-chat").vision) / 1e9 == pytest.approx(1.9, rel=0.04)
    # EVA2-CLIP-E (CogVLM): 63 x (4*1792^2 + 2*1792*15360) ~ 4.28 B ("4.4 B").
    assert vision_params(get_vlm("cogvlm").vision) / 1e9 == pytest.approx(4.4, rel=0.04)
    # Tokens per frame: 448/14 = 32 -> 1024 patches; 490/14 = 35 -> 1225 (+ CLS); 224/14 = 16 -> 256 (+ CLS).
    assert get_vlm("qwen-vl-chat").vision.seq == 1024
    assert get_vlm("internlm-xcomposer2-vl-7b").vision.seq == 1226
    assert get_vlm("video-llava-7b").vision.seq == 257
    assert get_vlm("minicpm-v").vision.llm_tokens == 64


def test_qwen_vl_vision_macs_by_hand():
    # N = 1024, d = 1664, m = 8192, 48 layers, patch 14:
    #   patch embed 1024*3*14*14*1664                    =     1,001,914,368
    #   layer  1024*(4*1664^2 + 2*1664*8192) + 2*1024^2*1664 = 42,748,346,368;  x48 = 2,051,920,625,664
    assert vision_macs_per_image(get_vlm("qwen-vl-chat").vision) == 2_052_922_540_032


def test_llm_sizes():
    # Qwen-7B: 32 x (4096*(4096+2*4096) + 4096^2 + 3*4096*11008 + 2*4096) + 2*151936*4096 + 4096 = 7.72 B ("7.7 B").
    assert llm_params(LLMS["qwen-7b"]) / 1e9 == pytest.approx(7.7, rel=0.01)
    # Yi-34B (GQA, 8 KV heads of 128): 34.4 B
    assert llm_params(LLMS["yi-34b"]) / 1e9 == pytest.approx(34.4, rel=0.01)
    # KV cache per token: 2 * layers * kv_heads * head_dim * 2 bytes
    assert kv_bytes_per_token(LLMS["qwen-7b"]) == 2 * 32 * 4096 * 2 == 524_288
    assert kv_bytes_per_token(LLMS["yi-34b"]) == 2 * 60 * 8 * 128 * 2 == 245_760


def test_prefill_and_decode_formulas():
    m = LLMS["vicuna-7b"]
    lin = 4096 * (4096 + 2 * 4096) + 4096 * 4096 + 3 * 4096 * 11008   # MACs per token per layer
    # causal prefill of S tokens: each layer S*lin + sum_{i=1..S} 2*h*i = S*lin + h*S*(S+1)
    assert prefill_macs(m, 10) == 32 * (10 * lin + 4096 * 10 * 11)
    # decode 3 tokens after S = 10: keys 11, 12, 13 -> core 2h*(11+12+13); + 3 LM-head rows
    assert decode_macs(m, 10, 3) == 32 * (3 * lin + 2 * 4096 * 36) + 3 * 4096 * 32000


def test_qwen_vl_pass():
    r = caption_estimate("qwen-vl-chat", "10M", frames_per_clip=8, caption_tokens=128, prompt_tokens=64,
                         batch=16, gpu="a100-80g", gpus=64)
    # prefill: 8 frames x 256 adapter tokens + 64 prompt tokens
    assert r["per_clip"]["prefill_tokens"] == 8 * 256 + 64 == 2112
    assert r["per_clip"]["vision_flops"] == 2 * 8 * 2_052_922_540_032
    # KV cache per clip: 524,288 B/token x (2112 + 128) tokens = 1,120 MiB
    assert r["per_clip"]["kv_cache_bytes"] == 524_288 * 2240
    # Decode is memory-bound: per step (LLM weights 2 B x 7.72 B + 16 x KV at the mean context) / (0.7 x 2.039 TB/s)
    t = r["time"]
    assert t["decode_bound"] == "memory"
    w = llm_params(LLMS["qwen-7b"]) * 2
    step = (w + 16 * 524_288 * (2112 + 64)) / (2.039e12 * 0.7)
    assert t["decode_s_per_batch"] == pytest.approx(128 * step)
    # compute: 16 clips x (vision + adapter + prefill) FLOPs at 40 % of 312 TFLOP/s
    pc = r["per_clip"]
    assert t["compute_s_per_batch"] == pytest.approx(16 * (pc["vision_flops"] + pc["adapter_flops"] + pc["prefill_flops"]) / (312e12 * 0.4))
    # 64 instances of 1 GPU; days = clips / (64 x clips/s per instance) / 86400
    assert t["tp"] == 1 and t["instances"] == 64
    assert t["days"] == pytest.approx(10_000_000 / (64 * 16 / (t["compute_s_per_batch"] + t["decode_s_per_batch"])) / 86400)
    assert r["memory_gib"]["fits"]


def test_big_models_pick_tensor_parallel():
    # Yi-VL-34B: ~70 GB of bf16 weights do not fit one 80 GB A100 with a KV cache -> tp 2.
    r = caption_estimate("yi-vl-34b", "1M", batch=16)
    assert r["time"]["tp"] == 2 and r["memory_gib"]["fits"]
    assert r["time"]["instances"] == 32
    # CogVLM's visual expert doubles the LLM matrices in memory (same FLOPs per token).
    c = caption_estimate("cogvlm", "1M")
    assert c["params"]["visual_expert"] > 6e9
    with pytest.raises(UserError, match="--batch"):
        caption_estimate("yi-vl-34b", "1M", batch=4096)


def test_summary_pass():
    r = caption_estimate("video-llava-7b", "1M", frames_per_clip=8, caption_tokens=100, summarize_llm="llama-2-13b",
                         summary_tokens=200)
    s = r["summary"]
    assert s["input_tokens"] == 8 * 100 + 64
    assert r["total_days"] == pytest.approx(r["time"]["days"] + s["time"]["days"])
    with pytest.raises(UserError, match="--summarize-llm"):
        caption_estimate("video-llava-7b", "1M", summarize_llm="gpt-9")


def test_cli_caption_json():
    res = runner.invoke(app, ["estimate", "caption", "--vlm", "qwen-vl-chat", "--clips", "10M", "--frames-per-clip", "8",
                              "--caption-tokens", "128", "--batch", "16", "--gpu", "h100-sxm", "--gpus", "128",
                              "--summarize-llm", "qwen-7b", "--json"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)
    assert r["gpu"] == "h100-sxm" and r["clips"] == 10_000_000
    assert {"per_clip", "memory_gib", "time", "summary", "total_days"} <= set(r)


def test_cli_caption_table():
    res = runner.invoke(app, ["estimate", "caption", "--vlm", "minicpm-v", "--clips", "100k"])
    assert res.exit_code == 0, res.output
    assert "decode" in res.stdout and "minicpm-v" in res.stdout


@pytest.mark.parametrize("args, needle", [
    (["--vlm", "gpt-4v"], "--vlm"), (["--clips", "lots"], "--clips"), (["--gpu", "tpu-v9"], "hardware.gpu"),
    (["--batch", "0"], "--batch"), (["--tp", "3"], "--tp"), (["--efficiency", "2"], "--efficiency"),
])
def test_cli_caption_bad_input(args, needle):
    res = runner.invoke(app, ["estimate", "caption", *args])
    assert res.exit_code == 2
    err = res.stderr.strip()
    assert err.startswith("error: ") and needle in err and "\n" not in err
