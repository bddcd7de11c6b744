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
    batch = {"latents": torch.randn(batch_size, *latent_shape(spec), generator=g).to(device)}
    if m.cross_attn:
        batch["text_states"] = torch.randn(batch_size, v.text_tokens, v.text_dim, generator=g).to(device)
        lengths = torch.randint(1, v.text_tokens + 1, (batch_size,), generator=g)
        batch["text_mask"] = (torch.arange(v.text_tokens)[None] < lengths[:, None]).to(device)
    if m.conditioning == "class":
        batch["class_labels"] = torch.randint(0, m.num_classes, (batch_size,), generator=g).to(device)
    return batch


def _ddpm_alpha_bar(device) -> torch.Tensor:
    betas = torch.linspace(1e-4, 0.02, NUM_DDPM_STEPS, dtype=torch.float64)
    return torch.cumprod(1 - betas, 0).to(device)


def training_loss(model, batch: dict, objective: str = "flow", generator: torch.Generator | None = None) -> torch.Tensor:
    """Scalar diffusion loss of `model` on `batch` (noise and timesteps drawn from `generator`)."""
    x0 = batch["latents"].float()                                            # [B, C, T, H, W]
    B, C = x0.shape[:2]
    noise = torch.randn(x0.shape, generator=generator).to(x0.device)        # [B, C, T, H, W]
    if objective == "flow":
        t = torch.rand(B, generator=generator, dtype=torch.float64).to(x0.device)   # [B]
        tb = t.float().view(B, 1, 1, 1, 1)
        x_t = (1 - tb) * x0 + tb * noise                                     # [B, C, T, H, W]
        target = noise - x0                                                  # velocity
        timesteps = t.float() * NUM_DDPM_STEPS                               # [B]
    elif objective == "eps":
        ti = torch.randint(0, NUM_DDPM_STEPS, (B,), generator=generator).to(x0.device)  # [B]
        ab = _ddpm_alpha_bar(x0.device)[ti].float().view(B, 1, 1, 1, 1)
        x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
        target = noise
        timesteps = ti.float()
    else:
        raise ValueError(f"objective: 'flow' or 'eps', got {objective!r}")
    out = model(x_t, timesteps, text_states=batch.get("text_states"), text_mask=batch.get("text_mask"),
                class_labels=batch.get("class_labels"))                      # [B, C_out, T, H, W]
    return torch.mean((out[:, :C].float() - target) ** 2)
