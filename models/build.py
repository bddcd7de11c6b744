"""build_model(spec, device): the Spec -> a VideoDiT on "meta" (no memory, seconds for 6B), "cpu" or "cuda"."""

from __future__ import annotations

from soraplan.planner.errors import UserError


def build_model(spec, device: str = "cpu", dtype=None, seed: int | None = 1234):
    """Initialise parallel state if needed (from spec.parallel) and build the model for this rank
    (with pp > 1: this rank's pipeline stage; with vpp > 1 its vpp model chunks, a `pipeline.ModelChunks`).

    meta: parameters on the meta device, no initialisation (parameter counts, FLOP counting).
    cpu/cuda: initialised weights; with `seed`, every rank seeds identically, so TP shards are slices of
    the TP=1 weights (Megatron's CPU initialisation builds the full master weight and splits it).
    """
    import contextlib

    import torch
    from megatron.core import parallel_state as ps

    from .config import torch_dtype, transformer_config
    from .dit import VideoDiT
    from .parallel import initialize
    from .shims import seed_model_parallel_rng

    from soraplan.planner.trainable import train_refusal

    p = spec.parallel
    reason = train_refusal(spec)          # the rule `plan` and `launch` apply too
    if reason:
        raise UserError(reason)
    if spec.model.extended:   # the current block vocabulary: models/blocks.py
        from .blocks import check_supported

        why = check_supported(spec)
        if why:
            raise UserError(why)
    initialize(spec)
    if ps.get_tensor_model_parallel_world_size() != p.tp:
        raise UserError(f"parallel.tp: parallel state has tp={ps.get_tensor_model_parallel_world_size()}, spec says {p.tp}")
    dtype = dtype if dtype is not None else torch_dtype(spec.kernels.param_dtype)
    if isinstance(dtype, str):
        dtype = torch_dtype(dtype)
    if seed is not None and device != "meta":
        seed_model_parallel_rng(seed)
    overrides = dict(params_dtype=dtype, pipeline_dtype=dtype, bf16=dtype == torch.bfloat16, fp16=dtype == torch.float16)
    stage = dict(pre_process=ps.is_pipeline_first_stage(), post_process=ps.is_pipeline_last_stage())
    if spec.model.extended:
        return _build_current(spec, device, overrides)
    if device == "meta":
        overrides.update(use_cpu_initialization=True, perform_initialization=False)
    else:
        overrides.update(use_cpu_initialization=device != "cuda")
    if p.vpp > 1:
        overrides.update(virtual_pipeline_model_parallel_size=p.vpp)
        model = _build_chunks(spec, device, transformer_config(spec, **overrides))
    else:
        with torch.device(device) if device != "cpu" else contextlib.nullcontext():
            model = VideoDiT(spec, transformer_config(spec, **overrides), **stage)
    if p.pp > 1 and device != "meta":
        sync_every_stage_params(model)
    return model


def _build_chunks(spec, device: str, config):
    """Interleaved 1F1B: this pipeline rank's vpp model chunks (chunk v holds global layers
    (v * pp + pp_rank) * L/(pp*vpp) onwards). The chunks share one copy of the conditioning embedders
    (EVERY_STAGE): every chunk embeds the conditioning, but a rank holds, and updates, the weights once."""
    import contextlib

    import torch
    from megatron.core import parallel_state as ps

    from .dit import EVERY_STAGE, VideoDiT
    from .pipeline import ModelChunks

    chunks = []
    with torch.device(device) if device != "cpu" else contextlib.nullcontext():
        for v in range(spec.parallel.vpp):
            chunk = VideoDiT(spec, config, pre_process=ps.is_pipeline_first_stage(ignore_virtual=False, vp_stage=v),
                             post_process=ps.is_pipeline_last_stage(ignore_virtual=False, vp_stage=v), vp_stage=v)
            for name in EVERY_STAGE:
                if chunks and hasattr(chunk, name):
                    setattr(chunk, name, getattr(chunks[0], name))
            chunks.append(chunk)
    return ModelChunks(chunks)


def _build_current(spec, device: str, overrides: dict):
    """The current block vocabulary (models/blocks.py)."""
    import torch

    from .blocks import CurrentDiT
    from .config import transformer_config

    from megatron.core import parallel_state as ps

    overrides.update(use_cpu_initialization=device != "cuda",
                     perform_initialization=device != "meta")
    stage = dict(stage=ps.get_pipeline_model_parallel_rank(), stages=ps.get_pipeline_model_parallel_world_size())
    with torch.device(device):
        model = CurrentDiT(spec, transformer_config(spec, **overrides), **stage)
    if stage["stages"] > 1 and device != "meta":
        sync_every_stage_params(model)
    return model


def top_name(name: str) -> str:
    """The top-level submodule of a parameter name, past a model chunk's index ("1.decoder.x" -> "decoder")."""
    parts = name.split(".")
    return parts[1] if parts[0].isdigit() and len(parts) > 1 else parts[0]


def every_stage_params(model):
    """(name, param) of the conditioning embedders every pipeline stage holds a copy of (once per rank: model
    chunks share them)."""
    from .dit import EVERY_STAGE

    names = getattr(model, "every_stage", EVERY_STAGE)     # the current blocks name their own (models/blocks.py)
    return [(n, q) for n, q in model.named_parameters() if top_name(n) in names]


def sync_every_stage_params(model) -> None:
    """Copies of the conditioning embedders start equal on every stage: broadcast from the first stage."""
    import torch
    import torch.distributed as dist
    from megatron.core import parallel_state as ps

    group = ps.get_pipeline_model_parallel_group()
    src = dist.get_global_rank(group, 0)
    with torch.no_grad():
        for _, q in every_stage_params(model):
            dist.broadcast(q.data, src, group=group)


def param_groups(model) -> dict[str, int]:
    """Parameters of this rank by planner group name (blocks = the decoder)."""
    out: dict[str, int] = {}
    for name, p in model.named_parameters():
        top = top_name(name)
        key = "blocks" if top == "decoder" else top
        out[key] = out.get(key, 0) + p.numel()
    return out
