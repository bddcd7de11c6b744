"""Training objectives and a synthetic batch.

flow (rectified flow / linear interpolant, SiT):  x_t = (1 - t) x0 + t eps,  target v = eps - x0,
    t ~ U(0, 1), the model sees timesteps 1000 t;  loss = mean((v_pred - v)^2).
eps (DDPM, DiT): linear betas 1e-4..0.02 over 1000 steps, x_t = sqrt(abar) x0 + sqrt(1 - abar) eps,
    integer t ~ U{0..999};  loss = mean((eps_pred - eps)^2).
With learn_sigma the model outputs 2C channels; the loss uses the first C (the variance half is not
trained by the simple loss; DiT's VLB term is not implemented).
"""

from __future__ import annotations

import torch

NUM_DDPM_STEPS = 1000


def synthetic_batch(spec, batch_size: int, device="cpu", generator: torch.Generator | None = None) -> dict:
    """Random latents [B, C, T, H, W], text states [B, T_txt, D] + mask [B, T_txt], class labels [B]."""
    from .dit import latent_shape

    v, m = spec.video, spec.model
    g = generator
    if m.vocab_size:      # a language model: S + 1 token ids (inputs and next-token targets)
        return {"tokens": torch.randint(0, m.vocab_size, (batch_size, spec.seq_len + 1), generator=g).to(device)}
    batch = {"latents": torch.randn(batch_size, *latent_shape(spec), generator=g).to(device)}
    if m.text_mode != "none":
        batch["text_states"] = torch.randn(batch_size, v.text_tokens, v.text_dim, generator=g).to(device)
        lengths = torch.randint(1, v.text_tokens + 1, (batch_size,), generator=g)
        batch["text_mask"] = (torch.arange(v.text_tokens)[None] < lengths[:, None]).to(device)
    if m.conditioning == "class":
        batch["class_labels"] = torch.randint(0, m.num_classes, (batch_size,), generator=g).to(device)
    return batch


def _ddpm_alpha_bar(device) -> torch.Tensor:
    betas = torch.linspace(1e-4, 0.02, NUM_DDPM_STEPS, dtype=torch.float64)
    return torch.cumprod(1 - betas, 0).to(device)


def diffusion_inputs(batch: dict, objective: str = "flow", generator: torch.Generator | None = None):
    """(x_t [B, C, T, H, W], timesteps [B], target [B, C, T, H, W]) for one batch (noise from `generator`)."""
    x0 = batch["latents"].float()                                            # [B, C, T, H, W]
    B = x0.shape[0]
    noise = torch.randn(x0.shape, generator=generator).to(x0.device)        # [B, C, T, H, W]
    if objective == "flow":
        t = torch.rand(B, generator=generator, dtype=torch.float64).to(x0.device)   # [B]
        tb = t.float().view(B, 1, 1, 1, 1)
        x_t = (1 - tb) * x0 + tb * noise                                     # [B, C, T, H, W]
        return x_t, t.float() * NUM_DDPM_STEPS, noise - x0                   # velocity target
    if objective == "eps":
        ti = torch.randint(0, NUM_DDPM_STEPS, (B,), generator=generator).to(x0.device)  # [B]
        ab = _ddpm_alpha_bar(x0.device)[ti].float().view(B, 1, 1, 1, 1)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise, ti.float(), noise
    raise ValueError(f"objective: 'flow' or 'eps', got {objective!r}")


def model_kwargs(batch: dict) -> dict:
    return {"text_states": batch.get("text_states"), "text_mask": batch.get("text_mask"),
            "class_labels": batch.get("class_labels")}


def mse(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error on the first C output channels (learn_sigma: the variance half is ignored)."""
    return torch.mean((out[:, :target.shape[1]].float() - target) ** 2)


CLASS_DROPOUT = 0.1   # DiT: labels replaced by the null class with p = 0.1 (classifier-free guidance)


def drop_labels(batch: dict, num_classes: int, generator: torch.Generator | None = None, p: float = CLASS_DROPOUT) -> dict:
    """Replace class labels by the null class (`num_classes`) with probability p (a new batch dict)."""
    if "class_labels" not in batch or p <= 0:
        return batch
    labels = batch["class_labels"]
    drop = (torch.rand(labels.shape[0], generator=generator) < p).to(labels.device)
    return {**batch, "class_labels": torch.where(drop, torch.full_like(labels, num_classes), labels)}


def training_loss(model, batch: dict, objective: str = "flow", generator: torch.Generator | None = None) -> torch.Tensor:
    """Scalar diffusion loss of `model` on `batch` (noise, timesteps and label dropout from `generator`);
    a language model's batch ("tokens"): next-token cross-entropy."""
    if "tokens" in batch:
        tokens = batch["tokens"]                                             # [B, S + 1]
        logits = model(tokens[:, :-1])                                       # [S, B, V]
        targets = tokens[:, 1:].t()                                          # [S, B]
        return torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))
    x_t, timesteps, target = diffusion_inputs(batch, objective, generator)
    if getattr(model, "class_cond", False) and model.training:
        batch = drop_labels(batch, model.spec.model.num_classes, generator)
    out = model(x_t, timesteps, **model_kwargs(batch))                      # [B, C_out, T, H, W]
    return mse(out, target)
