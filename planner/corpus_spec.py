"""A corpus run as a Spec: the model from a preset or from the entry's fields, the layout as published.

`run_spec(run)` returns the Spec soraplan prices and the list of choices the backtest made where the corpus
leaves a value open (a `null` assumption) or where the Spec needs something the source words differently
(e.g. Llama 3's 126 layers over 16 stages). `RunExcluded` is raised, with its reason, for a run that cannot be
expressed as a Spec; the backtest lists such runs with the reason, never silently.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from .config import format_validation_error
from .corpus import Run
from .errors import UserError
from .presets import get_preset
from .spec import Spec


class RunExcluded(Exception):
    """The run cannot be priced; the message says why."""


@dataclass(frozen=True)
class RunSpec:
    spec: Spec
    choices: tuple[str, ...]       # what the backtest chose beyond the corpus (empty when nothing)


# Language models by family: GPT (Megatron: learned positions, LayerNorm, GELU MLP, biases, tied embeddings),
# MPT (ALiBi, no biases, tied), Llama (RoPE, RMSNorm, SwiGLU, GQA, untied).
_GPT = dict(text="none", adaln="none", time_mlp=False, causal=True, ffn_type="gelu", norm="layernorm",
            norm_affine=True, learned_pos_embed=True, tied_embeddings=True)
_MPT = dict(_GPT, learned_pos_embed=False, qkv_bias=False, out_bias=False, ffn_bias=False)
_LLAMA = dict(text="none", adaln="none", time_mlp=False, causal=True, ffn_type="swiglu", qkv_bias=False,
              out_bias=False, ffn_bias=False, norm="rmsnorm", norm_affine=True, pos="rope3d", tied_embeddings=False)
_LLM_FAMILIES = {"gpt": _GPT, "mpt": _MPT, "llama": _LLAMA}
# Sources whose Megatron of the time ran attention unfused (fused softmax + batched GEMMs, no flash attention).
UNFUSED_ATTENTION_SOURCES = ("narayanan2021", "korthikanti2022")
# Open-Sora v1.0 conditions on T5-XXL states of at most 120 tokens (opensora/models/text_encoder/t5.py).
OPENSORA_TEXT_TOKENS = 120
# A pipelined run whose source gives no interleaving: the largest divisor of layers per stage up to this.
MAX_ASSUMED_VPP = 4


def _llm(run: Run, family: str, choices: list[str]) -> dict[str, Any]:
    m = run.model_value
    model = {"name": run.name[:128], "layers": m("layers"), "hidden": m("hidden"), "heads": m("heads"),
             "ffn_hidden": m("ffn_hidden"), "vocab_size": m("vocab"), **_LLM_FAMILIES[family]}
    if m("kv_heads") is not None:
        model["kv_heads"] = m("kv_heads")
    return {"name": run.name[:128], "video": {"frames": 1, "height": 8, "width": 8, "fps": 1, "vae_stride_t": 1,
            "vae_stride_s": 8, "latent_channels": 1, "causal_first_frame": False, "patch_t": 1, "patch_h": 1,
            "patch_w": 1, "text_tokens": 0, "text_dim": 1, "tokens": m("seq_len")}, "model": model}


def _dit(run: Run, choices: list[str]) -> dict[str, Any]:
    arch = str(run.model_value("arch", ""))
    m = run.model_value
    if arch.startswith("wan2.1"):
        base = get_preset("wan2.1-t2v-14b")
        data = {**base, "video": {**base["video"], "frames": m("frames"), "height": m("height"), "width": m("width")}}
        return {**data, "name": run.name}
    if arch.startswith("dit (adaLN-Zero"):
        base = get_preset("DiT-XL/2")
        return {**base, "name": run.name}
    if arch.startswith("dit (full 3-D attention) with T5"):
        choices.append(f"text: {OPENSORA_TEXT_TOKENS} T5-XXL tokens (Open-Sora v1.0's maximum), cross-attention, "
                       "per-block adaLN")
        base = get_preset("DiT-XL/2")
        video = {"frames": m("frames"), "height": m("height"), "width": m("width"), "fps": 8, "vae_stride_t": 1,
                 "vae_stride_s": 8, "latent_channels": 4, "patch_t": 1, "patch_h": 2, "patch_w": 2,
                 "text_tokens": OPENSORA_TEXT_TOKENS, "text_dim": 4096}
        model = {**base["model"], "name": run.name, "cross_attn": True, "conditioning": "text", "learn_sigma": True}
        return {"name": run.name, "video": video, "model": model}
    raise RunExcluded(f"model.arch {arch!r}: no preset or field mapping for this diffusion transformer")


def _layout(run: Run, depth: int, choices: list[str]) -> tuple[dict[str, Any], int]:
    lay = run.layout_value
    tp, pp, cp, dp = (lay(k).value for k in ("tp", "pp", "cp", "dp"))
    vpp = lay("vpp").value
    if depth % pp:
        padded = -(-depth // pp) * pp
        choices.append(f"layers: {depth} padded to {padded} so {pp} stages hold equal layers (the source balances "
                       "the first and last stage, which also carry the embedding and the output layer)")
        depth = padded
    if vpp is None:
        per_stage = depth // pp
        vpp = max(v for v in range(1, MAX_ASSUMED_VPP + 1) if per_stage % v == 0)
        if pp > 1:
            choices.append(f"vpp: {vpp}, the largest divisor of the {per_stage} layers per stage up to "
                           f"{MAX_ASSUMED_VPP} (the source gives no interleaving; large runs of the time interleave)")
    mb = lay("micro_batch").value
    if mb is None:
        mb = 1
        choices.append("micro_batch: 1 (not stated)")
    gb = lay("global_batch").value
    if gb is None:
        gb = mb * dp
        choices.append(f"global_batch: micro_batch x dp = {gb} (not stated)")
    if tp * pp * cp * dp != run.gpus:
        choices.append(f"world: tp*pp*cp*dp = {tp * pp * cp * dp} as published, not the {run.gpus} GPUs stated "
                       "(per-GPU figures compared)")
    parallel = {"tp": tp, "pp": pp, "vpp": vpp, "cp": cp, "dp": dp, "micro_batch": mb, "global_batch": gb,
                "recompute": lay("recompute").value, "sequence_parallel": lay("sequence_parallel").value,
                "distributed_optimizer": lay("distributed_optimizer").value}
    detail = str(dict(run.layout).get("recompute_detail", _NONE).value or "")
    if parallel["recompute"] == "full" and "recompute_num_layers" in detail:
        n = int(detail.split("recompute_num_layers")[1].split()[0].strip(" ,:("))
        parallel["recompute_layers"] = n
        choices.append(f"recompute_layers: {n} per stage (recompute_detail)")
    if run.source.id == "llama3_2024" and cp > 1:
        parallel["cp_comm"] = "all-gather"
    return parallel, depth


_NONE = type("_V", (), {"value": None})()


def run_spec(run: Run) -> RunSpec:
    """The Spec for `run` and the choices made beyond the corpus.

    Args:
        run: a corpus run.

    Returns:
        The RunSpec; RunExcluded (with the reason) when the run cannot be expressed as a Spec.
    """
    choices: list[str] = []
    if run.kind == "llm":
        family = str(run.model_value("arch", "")).split()[0].lower()
        if family not in _LLM_FAMILIES:
            raise RunExcluded(f"model.arch {family!r}: no language-model family mapping")
        data = _llm(run, family, choices)
    else:
        data = _dit(run, choices)
    model = data["model"]
    parallel, depth = _layout(run, int(model["layers"]), choices)
    if depth != model["layers"]:
        data["model"] = {**model, "layers": depth}
    kernels: dict[str, Any] = {}
    if run.source.id in UNFUSED_ATTENTION_SOURCES:
        kernels["attention_kernel"] = "unfused"
        choices.append("attention: unfused (Megatron of the time: fused softmax and batched GEMMs)")
    data = {**data, "parallel": parallel, "hardware": {"gpu": run.gpu}, "kernels": kernels}
    try:
        spec = Spec.model_validate(data)
    except ValidationError as e:
        raise RunExcluded(format_validation_error(e)) from None
    except UserError as e:
        raise RunExcluded(str(e)) from None
    return RunSpec(spec, tuple(choices))
