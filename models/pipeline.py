"""One training step through megatron-core's pipeline schedules (`get_forward_backward_func`): 1F1B, and
interleaved 1F1B when a rank holds vpp > 1 model chunks (`ModelChunks`; chunk v of rank r runs the
layers of virtual stage v * pp + r, and micro-batches go through the chunks in groups of pp, so the
micro-batch count must be a multiple of pp: `planner.trainable`).

Every stage (and every model chunk) receives the same micro-batch items (latents, conditioning, target): the first stage embeds
the latents, every stage embeds the conditioning with its own copy of the embedders, the last stage
computes the loss. Point-to-point traffic uses Megatron's P2P communicator (isend/irecv, rank-parity
ordered: `batch_p2p_comm=False`), which runs on gloo as well as nccl.
"""

from __future__ import annotations

import contextlib
from functools import partial

import torch


class ModelChunks(torch.nn.ModuleList):
    """The vpp model chunks (VideoDiT, in virtual-stage order) of one pipeline rank. One module for the
    optimizer, the gradient reduction and the checkpoint (parameter names "<chunk>.<name>"; the shared
    conditioning embedders appear once, under chunk 0)."""

    @property
    def config(self):
        return self[0].config

    @property
    def class_cond(self) -> bool:
        return self[0].class_cond


def chunks_of(model) -> list:
    """The model chunks of this rank: [model] for one stage per rank."""
    return list(model) if isinstance(model, ModelChunks) else [model]


def configure(config, spec) -> None:
    """Schedule settings on the model's TransformerConfig (gloo-safe)."""
    config.batch_p2p_comm = False          # batch_isend_irecv + torch.cuda.synchronize() do not run on CPU
    config.batch_p2p_sync = False
    config.variable_seq_lengths = False
    config.pipeline_dtype = torch.float32  # stages exchange the fp32 residual stream
    config.deallocate_pipeline_outputs = False


def pipeline_step(model, spec, items: list[tuple[dict, torch.Tensor]], amp_dtype=None, device: str = "cpu") -> torch.Tensor:
    """Forward + backward of all micro-batches; returns the mean loss on every pipeline rank.

    items: per micro-batch (model inputs: latents, timesteps, text_states, text_mask, class_labels; target).
    """
    import torch.distributed as dist
    from megatron.core import parallel_state as ps
    from megatron.core.pipeline_parallel import get_forward_backward_func

    from .loss import mse

    chunks = chunks_of(model)
    configure(chunks[0].config, spec)
    p = spec.parallel
    amp = (lambda: torch.autocast(device_type=device, dtype=amp_dtype)) if amp_dtype else contextlib.nullcontext

    def loss_func(target, output):
        loss = mse(output, target)
        return loss, {"loss": loss.detach().clone()}   # the schedule divides `loss` in place

    def forward_step(data_iterator, model_chunk):
        inputs, target = next(data_iterator)
        with amp():
            out = model_chunk(**inputs)
        if not model_chunk.post_process:
            out = out.float()
        return out, partial(loss_func, target)

    # every chunk reads every micro-batch (each embeds the conditioning): one iterator per chunk
    data = [iter(items) for _ in chunks] if len(chunks) > 1 else iter(items)
    losses = get_forward_backward_func()(
        forward_step_func=forward_step, data_iterator=data, model=chunks, num_microbatches=len(items),
        seq_length=spec.seq_len, micro_batch_size=p.micro_batch, forward_only=False)
    from .parallel import comm_device

    total = torch.zeros((), device=comm_device())
    if ps.is_pipeline_last_stage():
        total = torch.stack([d["loss"].float() for d in losses]).mean().to(total.device)
    dist.all_reduce(total, group=ps.get_pipeline_model_parallel_group())   # only the last stage adds
    return total
