"""One training step through megatron-core's pipeline schedules (1F1B, `get_forward_backward_func`).

Every stage receives the same micro-batch items (latents, conditioning, target): the first stage embeds
the latents, every stage embeds the conditioning with its own copy of the embedders, the last stage
computes the loss. Point-to-point traffic uses Megatron's P2P communicator (isend/irecv, rank-parity
ordered: `batch_p2p_comm=False`), which runs on gloo as well as nccl.
"""

from __future__ import annotations

import contextlib
from functools import partial

import torch


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

    configure(model.config, spec)
    p = spec.parallel
    amp = (lambda: torch.autocast(device_type=device, dtype=amp_dtype)) if amp_dtype else contextlib.nullcontext

    def loss_func(target, output):
        loss = mse(output, target)
        return loss, {"loss": loss.detach().clone()}   # the schedule divides `loss` in place

    def forward_step(data_iterator, model_chunk):
        inputs, target = next(data_iterator)
        with amp():
            out = model_chunk(**inputs)
        if not ps.is_pipeline_last_stage():
            out = out.float()
        return out, partial(loss_func, target)

    losses = get_forward_backward_func()(
        forward_step_func=forward_step, data_iterator=iter(items), model=[model], num_microbatches=len(items),
        seq_length=spec.seq_len, micro_batch_size=p.micro_batch, forward_only=False)
    from .parallel import comm_device

    total = torch.zeros((), device=comm_device())
    if ps.is_pipeline_last_stage():
        total = torch.stack([d["loss"].float() for d in losses]).mean().to(total.device)
    dist.all_reduce(total, group=ps.get_pipeline_model_parallel_group())   # only the last stage adds
    return total
