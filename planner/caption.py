"""The re-captioning pass: a VLM describes every training clip (and an LLM may condense the frame captions).

OpenAI's Sora technical report ("Video generation models as world simulators", 2024): OpenAI re-captioned all training videos with a captioner. This module prices that pass for
the open VLMs in `vlm_presets.py`: FLOPs and memory per clip, then GPUs and days for a dataset.

Per clip of F frames (formulas in MACs; FLOPs = 2 x MACs; attention is bidirectional in the ViT, causal in the LLM):
  vision      per frame  N = (img/patch)^2 (+1 CLS) tokens, d width, m MLP, Lv layers:
                 patch embed N*3*p^2*d  +  Lv * (N*(4d^2 + 2dm) + 2*N^2*d)
  adapter     mlp: T*(d*h [+ h*h]);  resampler (Q = T queries): N*d*h + 2*N*h^2 + 2*Q*h^2 + 2*Q*N*h;
              glu (CogVLM): T*(d*h + 3*h*f)
  prefill     S = F*T + P tokens (T LLM tokens per frame, P prompt tokens):
                 L * (S*lin + h*S*(S+1))   with lin = h*(h + 2*kv) + h^2 + 3*h*f  (SwiGLU), causal core sum_i 2*h*i
  decode      C caption tokens, token i sees S+i+1 keys: L * (C*lin + 2h*(C*S + C(C+1)/2)) + C*h*V (LM head)
  KV cache    2 (K,V) * L * kv_dim * (S + C) * 2 bytes (bf16)

Time on an instance of `tp` GPUs for a batch of B clips:
  vision + prefill are compute-bound:  B * (vision + adapter + prefill FLOPs) / (tp * peak * efficiency)
  decode is memory-bandwidth-bound:    each of the C steps reads the LLM weights once and the batch's KV cache:
       step_s = max((W_llm + B * KV_avg) / (tp * HBM * bw_efficiency),  B * decode FLOPs per token / (tp * peak * eff))
  clips/s per instance = B / (compute_s + C * step_s);  instances = gpus // tp.
TP communication is not modelled (inference all-reduces are small next to the weight reads at these batch sizes).
"""

from __future__ import annotations

import math

from dataclasses import dataclass
from typing import Any

from .errors import UserError
from .hardware import GPU, UnknownGPU, resolve_gpu
from .vlm_presets import LLM, VLM, VisionEncoder, get_llm, get_vlm

BF16 = 2
GIB = 1024**3


MAX_COUNT = 1e15        # clips (a count read by parse_count)


def parse_count(text: str | int | float, field: str = "--clips") -> int:
    """'10M' -> 10_000_000; also k, B/G; plain integers and floats ('2.5e6')."""
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        s = str(text).strip().replace(",", "").replace("_", "")
        mult = 1.0
        suffixes = {"k": 1e3, "K": 1e3, "m": 1e6, "M": 1e6, "b": 1e9, "B": 1e9, "g": 1e9, "G": 1e9}
        if s and s[-1] in suffixes:
            mult, s = suffixes[s[-1]], s[:-1]
        try:
            value = float(s) * mult
        except ValueError:
            raise UserError(f"{field}: expected a count like 10M, 2.5e6 or 1000, got {text!r}") from None
    if not math.isfinite(value) or not 1 <= value <= MAX_COUNT:
        raise UserError(f"{field}: must be a finite count from 1 to {MAX_COUNT:.0e}, got {text!r}")
    return int(round(value))


# --- vision -----------------------------------------------------------------------------------------------------
def vision_macs_per_image(v: VisionEncoder) -> int:
    n, d = v.seq, v.width
    patch = v.patches * 3 * v.patch * v.patch * d
    layers = v.layers * (n * (4 * d * d + 2 * d * v.mlp) + 2 * n * n * d)
    return patch + layers


def vision_params(v: VisionEncoder) -> int:
    d = v.width
    per_layer = 4 * d * d + 4 * d + 2 * d * v.mlp + v.mlp + d + 4 * d  # qkv+o (+biases), fc1/fc2 (+biases), 2 LN
    return v.layers * per_layer + 3 * v.patch * v.patch * d + v.seq * d


def adapter_macs_per_image(v: VisionEncoder, llm: LLM) -> int:
    d, h, t, n = v.width, llm.hidden, v.llm_tokens, v.patches
    if v.adapter == "mlp":
        return t * (d * h + (h * h if v.adapter_layers >= 2 else 0))
    if v.adapter == "resampler":
        return n * d * h + 2 * n * h * h + 2 * t * h * h + 2 * t * n * h
    return t * (d * h + 3 * h * llm.ffn)  # glu


def adapter_params(v: VisionEncoder, llm: LLM) -> int:
    d, h, t = v.width, llm.hidden, v.llm_tokens
    if v.adapter == "mlp":
        return d * h + h + ((h * h + h) if v.adapter_layers >= 2 else 0)
    if v.adapter == "resampler":
        return d * h + 4 * h * h + t * h
    return d * h + 3 * h * llm.ffn


# --- LLM ---------------------------------------------------------------------------------------------------------
def llm_linear_macs_per_token(m: LLM) -> int:
    h = m.hidden
    mlp = (3 if m.gated_mlp else 2) * h * m.ffn
    return h * (h + 2 * m.kv_dim) + h * h + mlp


def llm_params(m: LLM) -> int:
    h = m.hidden
    per_layer = llm_linear_macs_per_token(m) + 2 * h        # the same matrices (one MAC per weight per token) + 2 RMSNorms
    emb = (1 if m.tied_embeddings else 2) * m.vocab * h         # embedding + LM head (one table when tied)
    return m.layers * per_layer + emb + h                      # + final norm


def prefill_macs(m: LLM, s: int) -> int:
    return m.layers * (s * llm_linear_macs_per_token(m) + m.hidden * s * (s + 1))


def decode_macs(m: LLM, s: int, c: int) -> int:
    core = 2 * m.hidden * (c * s + c * (c + 1) // 2)
    return m.layers * (c * llm_linear_macs_per_token(m) + core) + c * m.hidden * m.vocab


def kv_bytes_per_token(m: LLM) -> int:
    return 2 * m.layers * m.kv_dim * BF16


# --- the pass ----------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Throughput:
    tp: int
    compute_s: float           # per batch: vision + adapter + prefill
    decode_s: float            # per batch: C decode steps
    decode_bound: str          # "memory" | "compute"
    clips_per_s: float         # per instance


def _memory(weights_b: int, kv_per_seq_b: int, batch: int, working_b: int, gpu: GPU, tp: int, buffer_gib: float) -> dict[str, Any]:
    w = weights_b / tp / GIB
    kv = batch * kv_per_seq_b / tp / GIB
    act = working_b / tp / GIB
    total = w + kv + act + buffer_gib
    return {"weights": w, "kv_cache": kv, "activations": act, "buffers": buffer_gib, "total": total,
            "capacity": gpu.hbm_gib, "fits": total <= gpu.hbm_gib, "tp": tp}


def _pick_tp(tp: int | None, mem_at, gpu: GPU) -> int:
    if tp is not None:
        return tp
    for cand in (1, 2, 4, 8):
        if cand <= gpu.gpus_per_node and mem_at(cand)["fits"]:
            return cand
    raise UserError(f"--batch: does not fit on {gpu.gpus_per_node} x {gpu.name} even with tp={gpu.gpus_per_node}; "
                    "lower --batch or pick a GPU with more memory")


def _throughput(*, batch: int, tp: int, gpu: GPU, flops_compute: float, llm: LLM, llm_weight_b: int,
                s: int, c: int, efficiency: float, bw_efficiency: float) -> Throughput:
    peak = gpu.peak_tflops * 1e12 * efficiency * tp
    bw = gpu.hbm_tbs * 1e12 * bw_efficiency * tp
    compute_s = batch * flops_compute / peak
    kv_avg = kv_bytes_per_token(llm) * (s + c / 2)       # context grows from S to S + C during decode
    mem_step = (llm_weight_b + batch * kv_avg) / bw
    flops_per_token = 2 * (llm.layers * (llm_linear_macs_per_token(llm) + 2 * llm.hidden * (s + c / 2)) + llm.hidden * llm.vocab)
    cmp_step = batch * flops_per_token / peak
    step = max(mem_step, cmp_step)
    decode_s = c * step
    return Throughput(tp, compute_s, decode_s, "memory" if mem_step >= cmp_step else "compute",
                      batch / (compute_s + decode_s) if compute_s + decode_s > 0 else float("inf"))


def _schedule(clips: int, thr: Throughput, gpus: int, gpu: GPU, price: float) -> dict[str, Any]:
    instances = gpus // thr.tp
    if instances < 1:
        raise UserError(f"--gpus: {gpus} GPUs are fewer than one instance (tp={thr.tp})")
    seconds = clips / (instances * thr.clips_per_s)
    gpu_hours = seconds * instances * thr.tp / 3600
    return {"tp": thr.tp, "instances": instances, "gpus_used": instances * thr.tp,
            "compute_s_per_batch": thr.compute_s, "decode_s_per_batch": thr.decode_s, "decode_bound": thr.decode_bound,
            "clips_per_s_per_instance": thr.clips_per_s, "clips_per_s": instances * thr.clips_per_s,
            "days": seconds / 86400, "gpu_hours": gpu_hours, "cost_usd": gpu_hours * price}


def caption_estimate(vlm: str, clips: int | str, frames_per_clip: int = 8, caption_tokens: int = 128,
                     prompt_tokens: int = 64, batch: int = 16, gpu: str = "a100-80g", gpus: int = 64,
                     tp: int | None = None, efficiency: float = 0.4, bw_efficiency: float = 0.7,
                     buffer_gib: float = 3.0, price: float | None = None,
                     summarize_llm: str | None = None, summary_tokens: int = 256,
                     summary_prompt_tokens: int = 64) -> dict[str, Any]:
    """Everything `soraplan estimate caption` prints, as one JSON-ready dict."""
    try:
        model: VLM = get_vlm(vlm)
        g = resolve_gpu(gpu)
    except (KeyError, UnknownGPU) as e:
        raise UserError(str(e.args[0])) from None
    n_clips = parse_count(clips)
    for field, value, low, high in (("--frames-per-clip", frames_per_clip, 1, 100_000),
                                    ("--caption-tokens", caption_tokens, 1, 1_000_000),
                                    ("--prompt-tokens", prompt_tokens, 0, 1_000_000), ("--batch", batch, 1, 1_000_000),
                                    ("--gpus", gpus, 1, 1_000_000), ("--summary-tokens", summary_tokens, 1, 1_000_000)):
        if not low <= value <= high:
            raise UserError(f"{field}: must be from {low} to {high:,}, got {value}")
    if tp is not None and tp not in (1, 2, 4, 8):
        raise UserError(f"--tp: must be 1, 2, 4 or 8, got {tp}")
    for field, eff in (("--efficiency", efficiency), ("--bw-efficiency", bw_efficiency)):
        if not 0 < eff <= 1:                              # also refuses nan
            raise UserError(f"{field}: must be in (0, 1], got {eff}")
    if price is not None and not 0 <= price <= 1e6:       # also refuses nan and inf
        raise UserError(f"--price: USD per GPU-hour must be from 0 to 1e6, got {price}")
    usd = g.usd_per_hour if price is None else price
    v, llm = model.vision, model.llm
    f, c, p = frames_per_clip, caption_tokens, prompt_tokens

    # per clip
    vis = f * vision_macs_per_image(v)
    ada = f * adapter_macs_per_image(v, llm)
    s = f * v.llm_tokens + p
    pre = prefill_macs(llm, s)
    dec = decode_macs(llm, s, c)
    kv_seq = kv_bytes_per_token(llm) * (s + c)

    # params and weights (bf16)
    p_vis, p_ada, p_llm = vision_params(v), adapter_params(v, llm), llm_params(llm)
    p_expert = llm.layers * llm_linear_macs_per_token(llm) if model.visual_expert else 0
    weights_b = (p_vis + p_ada + p_llm + p_expert) * BF16
    llm_weight_b = p_llm * BF16   # decode reads the language weights (text tokens never use the visual expert)

    # working set of the largest layer at batch B (inference: no activations kept across layers; flash attention):
    # the ViT on B*F frames (x, qkv, MLP hidden) or the LLM prefill on B*S tokens (x, qkv, gated MLP hidden).
    work_vis = batch * f * v.seq * (4 * v.width + v.mlp) * BF16
    work_pre = batch * s * (2 * llm.hidden + 2 * llm.kv_dim + 2 * llm.ffn) * BF16
    working = max(work_vis, work_pre)

    def mem_at(t: int) -> dict[str, Any]:
        return _memory(weights_b, kv_seq, batch, working, g, t, buffer_gib)

    chosen_tp = _pick_tp(tp, mem_at, g)
    mem = mem_at(chosen_tp)
    thr = _throughput(batch=batch, tp=chosen_tp, gpu=g, flops_compute=2 * (vis + ada + pre), llm=llm,
                      llm_weight_b=llm_weight_b, s=s, c=c, efficiency=efficiency, bw_efficiency=bw_efficiency)
    out: dict[str, Any] = {
        "vlm": model.name, "source": model.source, "note": model.note,
        "clips": n_clips, "frames_per_clip": f, "caption_tokens": c, "prompt_tokens": p, "batch": batch,
        "gpu": g.name, "gpus": gpus, "efficiency": efficiency, "bw_efficiency": bw_efficiency,
        "vision": {"encoder": v.name, "image_size": v.image_size, "patch": v.patch, "tokens_in_encoder": v.seq,
                   "llm_tokens_per_frame": v.llm_tokens, "adapter": v.adapter, "layers": v.layers, "width": v.width},
        "llm": {"name": llm.name, "layers": llm.layers, "hidden": llm.hidden, "ffn": llm.ffn, "heads": llm.heads,
                "kv_heads": llm.kv_heads, "vocab": llm.vocab},
        "params": {"vision": p_vis, "adapter": p_ada, "llm": p_llm, "visual_expert": p_expert,
                   "total": p_vis + p_ada + p_llm + p_expert, "published_b": model.params_published_b},
        "per_clip": {"vision_flops": 2 * vis, "adapter_flops": 2 * ada, "prefill_tokens": s, "prefill_flops": 2 * pre,
                     "decode_flops": 2 * dec, "total_flops": 2 * (vis + ada + pre + dec), "kv_cache_bytes": kv_seq},
        "memory_gib": mem,
        "time": _schedule(n_clips, thr, gpus, g, usd),
        "usd_per_gpu_hour": usd,
        "assumptions": [
            f"compute-bound parts (ViT, adapter, prefill) run at {efficiency:.0%} of {g.peak_tflops:g} TFLOP/s dense bf16",
            f"decode reads the LLM weights once per step plus the batch's KV cache at {bw_efficiency:.0%} of "
            f"{g.hbm_tbs:g} TB/s HBM",
            "bf16 weights and KV cache; flash attention (no score matrices); TP communication not modelled",
            "frames are encoded independently at the encoder's native resolution; video decoding/resizing on CPU not counted",
        ],
    }
    if summarize_llm:
        try:
            sm = get_llm(summarize_llm)
        except KeyError as e:
            raise UserError(str(e.args[0])) from None
        s2 = f * c + summary_prompt_tokens
        pre2, dec2 = prefill_macs(sm, s2), decode_macs(sm, s2, summary_tokens)
        kv2 = kv_bytes_per_token(sm) * (s2 + summary_tokens)
        w2 = llm_params(sm) * BF16
        work2 = batch * s2 * (2 * sm.hidden + 2 * sm.kv_dim + 2 * sm.ffn) * BF16

        def mem2_at(t: int) -> dict[str, Any]:
            return _memory(w2, kv2, batch, work2, g, t, buffer_gib)

        tp2 = _pick_tp(tp, mem2_at, g)
        thr2 = _throughput(batch=batch, tp=tp2, gpu=g, flops_compute=2 * pre2, llm=sm, llm_weight_b=w2, s=s2,
                           c=summary_tokens, efficiency=efficiency, bw_efficiency=bw_efficiency)
        out["summary"] = {
            "llm": sm.name, "input_tokens": s2, "summary_tokens": summary_tokens, "params": llm_params(sm),
            "per_clip": {"prefill_flops": 2 * pre2, "decode_flops": 2 * dec2, "total_flops": 2 * (pre2 + dec2),
                         "kv_cache_bytes": kv2},
            "memory_gib": mem2_at(tp2), "time": _schedule(n_clips, thr2, gpus, g, usd),
        }
        out["total_days"] = out["time"]["days"] + out["summary"]["time"]["days"]
        out["total_gpu_hours"] = out["time"]["gpu_hours"] + out["summary"]["time"]["gpu_hours"]
    else:
        out["summary"] = None
        out["total_days"] = out["time"]["days"]
        out["total_gpu_hours"] = out["time"]["gpu_hours"]
    return out
