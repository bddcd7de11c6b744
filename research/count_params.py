"""Recompute each reference model's parameter count from research/preset_reference.yaml.

Pure Python (PyYAML only, no torch). For every model the YAML gives the architecture fields
(layers, widths, heads, FFN, norms, biases) and its embedders / final layer as named linear
tensors; this script sums every tensor per group and prints the total next to the released
figure, so the derivation written in docs/presets.md is checked mechanically.

Usage: python3 research/count_params.py [path/to/preset_reference.yaml]
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml


def linear(n_in: int, n_out: int, bias: bool = True) -> int:
    """Parameters of one nn.Linear (weight n_out x n_in, optional bias).

    Args:
        n_in: input features.
        n_out: output features.
        bias: whether the layer carries a bias vector.

    Returns:
        The parameter count.
    """
    return n_in * n_out + (n_out if bias else 0)


def norm(width: int, kind: str) -> int:
    """Parameters of one normalisation layer.

    Args:
        width: normalised width.
        kind: ``layernorm`` (weight + bias), ``layernorm_noaffine`` / ``none`` (0),
            ``rmsnorm`` (weight only).

    Returns:
        The parameter count.
    """
    return {"layernorm": 2 * width, "rmsnorm": width, "layernorm_noaffine": 0, "none": 0}[kind]


def listed(entries: list | None) -> int:
    """Sum a YAML list of named tensors: ``[name, n_in, n_out, bias]`` linears or ``[name, count]``.

    Args:
        entries: list of tensor descriptions from the YAML.

    Returns:
        The summed parameter count.
    """
    total = 0
    for entry in entries or []:
        if len(entry) == 4:
            _, n_in, n_out, bias = entry
            total += linear(n_in, n_out, bias)
        elif len(entry) == 2:
            total += entry[1]
        else:
            raise ValueError(f"bad tensor entry {entry!r}")
    return total


def attn_proj(t: dict, d: int, kv_in: int | None = None) -> int:
    """q, k, v and output projections of one attention (MHA or GQA), with the YAML's bias flags."""
    heads, hd = t["heads"], t["head_dim"]
    kv = t.get("kv_heads", heads)
    kv_in = d if kv_in is None else kv_in
    qkv_b, out_b = t["qkv_bias"], t["out_bias"]
    return (linear(d, heads * hd, qkv_b) + 2 * linear(kv_in, kv * hd, qkv_b)
            + linear(heads * hd, d, out_b))


def qk_norm(t: dict) -> int:
    """Parameters of the q and k norms of one attention (per-head or across all heads)."""
    kind = t.get("qk_norm", "none")
    if kind == "none":
        return 0
    width = t["head_dim"] if t.get("qk_norm_width", "head") == "head" else t["heads"] * t["head_dim"]
    return 2 * norm(width, kind)


def ffn(t: dict, d_in: int, f: int) -> int:
    """Parameters of one FFN: gated kinds (swiglu/geglu) have three matrices, others two."""
    b = t["ffn_bias"]
    if t["ffn"] in ("swiglu", "geglu"):
        return 2 * linear(d_in, f, b) + linear(f, d_in, b)
    return linear(d_in, f, b) + linear(f, d_in, b)


def count_wan(t: dict) -> dict:
    """Wan2.1 DiT block: self-attn + cross-attn (text) + FFN, per-block modulation table."""
    d, f = t["hidden"], t["ffn_hidden"]
    blk = (attn_proj(t, d) + qk_norm(t)                 # self-attention
           + attn_proj(t, d) + qk_norm(t)               # cross-attention to text tokens
           + norm(d, t["cross_attn_norm"])              # norm3 before cross-attention
           + 2 * norm(d, t["norm"])                     # norm1, norm2
           + ffn(t, d, f)
           + t["block_modulation"] * d)                 # per-block learned table (1, 6, dim)
    return {"blocks": t["layers"] * blk, "per_block": blk}


def count_mmdit(t: dict) -> dict:
    """Double-stream (separate per-stream weights, joint attention) + single-stream (fused) blocks."""
    d, f = t["hidden"], t["ffn_hidden"]
    stream = (linear(d, t["double_mod"] * d) + attn_proj(t, d) + qk_norm(t)
              + 2 * norm(d, t["norm"]) + ffn(t, d, f))
    double = 2 * stream
    single = (linear(d, 3 * d + f, t["single_bias"]) + linear(d + f, d, t["single_bias"])
              + qk_norm(t) + norm(d, t["norm"]) + linear(d, t["single_mod"] * d))
    return {"double_blocks": t["double_layers"] * double, "single_blocks": t["single_layers"] * single,
            "per_double_block": double, "per_single_block": single}


def count_cogvideox(t: dict) -> dict:
    """CogVideoX block: expert adaLN (one linear emits video + text shift/scale/gate) around joint attention."""
    d, f, temb = t["hidden"], t["ffn_hidden"], t["time_embed_dim"]
    ln_zero = linear(temb, 6 * d) + norm(d, t["norm"])    # CogVideoXLayerNormZero
    blk = 2 * ln_zero + attn_proj(t, d) + qk_norm(t) + ffn(t, d, f)
    return {"blocks": t["layers"] * blk, "per_block": blk}


def count_pixart(t: dict) -> dict:
    """PixArt-style block: self-attn + cross-attn to text + FFN, shared adaLN-single + per-block table."""
    d, f = t["hidden"], t["ffn_hidden"]
    blk = (attn_proj(t, d) + qk_norm(t)
           + attn_proj(t, d, kv_in=t["cross_kv_in"]) + qk_norm(t)
           + 2 * norm(d, t["norm"]) + ffn(t, d, f) + t["block_modulation"] * d)
    return {"blocks": t["layers"] * blk, "per_block": blk}


def count_mochi(t: dict) -> dict:
    """Mochi AsymmDiT: visual stream width dx, text stream width dy; the last block does not update text."""
    dx, dy, hd = t["hidden"], t["text_hidden"], t["head_dim"]
    fx, fy = t["ffn_hidden"], t["text_ffn_hidden"]
    qkv_b, out_b = t["qkv_bias"], t["out_bias"]
    qkn = 4 * norm(hd, t["qk_norm"])                   # q/k norms for x and y
    common = (linear(dx, 4 * dx) + linear(dx, 3 * dx, qkv_b) + linear(dy, 3 * dx, qkv_b)
              + qkn + linear(dx, dx, out_b) + ffn(t, dx, fx))
    full = common + linear(dx, 4 * dy) + linear(dx, dy, out_b) + ffn(t, dy, fy)
    last = common + linear(dx, dy)                      # mod_y only; no proj_y, no mlp_y
    n = t["layers"]
    return {"blocks": (n - 1) * full + last, "per_block": full, "last_block": last}


def count_llm(t: dict) -> dict:
    """Decoder-only LM block: causal self-attention (MHA/GQA) + FFN, two norms; optional cross-attention."""
    d, f = t["hidden"], t["ffn_hidden"]
    blk = attn_proj(t, d) + qk_norm(t) + 2 * norm(d, t["norm"]) + ffn(t, d, f)
    if t.get("cross_attn"):
        blk += attn_proj(t, d, kv_in=t.get("cross_kv_in", d)) + norm(d, t["norm"])
    blk += t.get("block_modulation", 0) * d
    return {"blocks": t["layers"] * blk, "per_block": blk}


FAMILIES = {"wan": count_wan, "mmdit": count_mmdit, "cogvideox": count_cogvideox,
            "pixart": count_pixart, "mochi": count_mochi, "llm": count_llm}


def count_model(m: dict) -> dict:
    """Count one model's parameters per group.

    Args:
        m: the model's YAML mapping (``transformer`` fields, ``embedders``, ``final_layer``,
            ``vocab`` for LMs).

    Returns:
        Mapping group -> count, with ``total``.
    """
    t = m["transformer"]
    groups = FAMILIES[t["family"]](t)
    out = {k: v for k, v in groups.items() if not k.startswith(("per_", "last_"))}
    out["embedders"] = listed(m.get("embedders"))
    out["final_layer"] = listed(m.get("final_layer"))
    if "vocab" in m:
        v = m["vocab"]
        out["token_embedding"] = v["size"] * t["hidden"]
        out["position_embedding"] = v.get("learned_positions", 0) * t["hidden"]
        out["output_head"] = 0 if v["tied"] else v["size"] * t["hidden"]
    out["total"] = sum(out.values())
    out.update({k: v for k, v in groups.items() if k.startswith(("per_", "last_"))})
    return out


def main(argv: list[str]) -> int:
    """Print computed vs released parameter counts for every model; exit 1 on an exact-match miss."""
    path = Path(argv[1]) if len(argv) > 1 else Path(__file__).with_name("preset_reference.yaml")
    models = yaml.safe_load(path.read_text())["models"]
    bad = 0
    print(f"{'model':<22}{'computed':>18}{'released':>18}  match")
    for name, m in models.items():
        c = count_model(m)
        rel = m["params"]["released"]
        kind = m["params"]["released_kind"]
        if kind == "exact":
            verdict = "EXACT" if c["total"] == rel else "MISMATCH"
            bad += c["total"] != rel
        else:
            verdict = f"{kind} ({100.0 * (c['total'] - rel) / rel:+.2f} %)"
        print(f"{name:<22}{c['total']:>18,}{rel:>18,}  {verdict}")
        detail = ", ".join(f"{k}={v:,}" for k, v in c.items() if k != "total")
        print(f"    {detail}")
        expected = dict(m["params"].get("groups", {}), total=m["params"].get("total", c["total"]))
        for k, v in expected.items():
            if c.get(k) != v:
                print(f"    group {k}: yaml says {v:,}, recomputed {c.get(k)!r}")
                bad += 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
