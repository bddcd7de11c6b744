"""VideoDiT: the Megatron-core video diffusion transformer that soraplan plans, validates and launches.

  latents [B, C, T, H, W] --Conv3d patch (pt, ph, pw)--> [S, B, h] + 3D sin-cos positions
  timesteps [B] --TimestepEmbedder--> t [B, h]   (+ class_embed(labels) for class-conditional models) = c
  adaLN single: t_block(c) -> [B, 6h] shared by every layer; per-block: each layer maps c itself
  text_states [B, T, D] --text_proj--> [T, B, h] (cross-attention keys/values, same for every layer)
  decoder: Megatron TransformerBlock of DiTLayers (sequence-sharded under SP) -> final_layer -> unpatchify

Parameter groups (names = planner.params groups): patch_embed, class_embed, t_embedder, t_block,
text_proj, decoder (= "blocks"), final_layer. The pos-embed is a fixed buffer, not a parameter.
Pipeline parallel: the first stage holds patch_embed, the last final_layer, every stage the conditioning
embedders (EVERY_STAGE: their gradients are summed over the pipeline group) and its share of the layers.
Interleaved (vpp > 1): a rank holds vpp VideoDiT chunks (`vp_stage`; models/pipeline.ModelChunks) sharing
one copy of the conditioning embedders; chunk 0 of the first stage embeds the patches, the last chunk of
the last stage holds final_layer.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from megatron.core import parallel_state as ps
from megatron.core import tensor_parallel
from megatron.core.transformer.module import MegatronModule

from .embed import ClassEmbedder, FinalLayer, TextProjection, TimestepEmbedder, sincos_3d
from .layer import DiTBlock, dit_layer_spec


def latent_shape(spec) -> tuple[int, int, int, int]:
    """(C, T, H, W) of one sample's latents; with `--tokens S` the grid is (1, 1, S) patches."""
    v = spec.video
    if v.tokens is not None:
        return v.latent_channels, v.patch_t, v.patch_h, v.patch_w * v.tokens
    return (v.latent_channels, *v.latent_thw)


EVERY_STAGE = ("class_embed", "t_embedder", "t_block", "text_proj")   # planner placement "every"


class VideoDiT(MegatronModule):
    """Video DiT over a Megatron TransformerBlock (see the module docstring)."""

    def __init__(self, spec, config, pre_process: bool = True, post_process: bool = True, vp_stage: int | None = None):
        super().__init__(config=config)
        from megatron.core.enums import ModelType

        self.model_type = ModelType.encoder_or_decoder   # read by Megatron's pipeline schedules
        self.pre_process, self.post_process = pre_process, post_process
        self.vp_stage = vp_stage          # interleaved 1F1B: this model chunk's virtual stage (None: one chunk)
        self.input_tensor = None          # pipeline stages > 0: the previous stage's output
        m, v = spec.model, spec.video
        if m.long_skip or m.tokens_in_sequence:
            raise ValueError("model.long_skip/tokens_in_sequence: U-ViT layouts are planned analytically only; "
                             "the Megatron model builds DiT/PixArt layouts (long_skip false, tokens_in_sequence 0)")
        self.spec = spec
        h, dtype = m.hidden, config.params_dtype
        self.grid = v.grid
        self.patch = (v.patch_t, v.patch_h, v.patch_w)
        self.c_in = v.latent_channels
        self.c_out = v.latent_channels * (2 if m.learn_sigma else 1)
        self.adaln, self.cross_attn, self.class_cond = m.adaln, m.cross_attn, m.conditioning == "class"
        self.sequence_parallel = config.sequence_parallel
        self.cp = config.context_parallel_size

        if pre_process:
            self.patch_embed = nn.Conv3d(self.c_in, h, kernel_size=self.patch, stride=self.patch, dtype=dtype)
            self.register_buffer("pos_embed", sincos_3d(h, self.grid).to(dtype), persistent=False)   # [S, h]
        if self.class_cond:
            self.class_embed = ClassEmbedder(m.num_classes, h, dtype=dtype)
        self.t_embedder = TimestepEmbedder(h, m.timestep_freq_dim, dtype=dtype)
        if m.adaln == "single":
            self.t_block = nn.Sequential(nn.SiLU(), nn.Linear(h, 6 * h, dtype=dtype))
        if m.cross_attn:
            self.text_proj = TextProjection(v.text_dim, h, dtype=dtype)
        self.decoder = DiTBlock(config=config, spec=dit_layer_spec(spec), post_layer_norm=False,
                                pre_process=pre_process, post_process=post_process, vp_stage=vp_stage)
        if post_process:
            self.final_layer = FinalLayer(h, v.patch_volume * self.c_out, m.adaln, dtype=dtype)
        if config.perform_initialization:
            self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        """DiT's initialisation for the non-Megatron parts (Megatron linears use config.init_method)."""
        for mod in (getattr(self, "patch_embed", None), getattr(self, "t_block", None), getattr(self, "text_proj", None),
                    getattr(self, "final_layer", None)):
            if mod is None:
                continue
            for sub in mod.modules():
                if isinstance(sub, nn.Linear):
                    nn.init.xavier_uniform_(sub.weight)
                    nn.init.zeros_(sub.bias)
        if self.pre_process:
            w = self.patch_embed.weight
            nn.init.xavier_uniform_(w.view(w.shape[0], -1))
            nn.init.zeros_(self.patch_embed.bias)
        nn.init.normal_(self.t_embedder.mlp[0].weight, std=0.02)
        nn.init.normal_(self.t_embedder.mlp[2].weight, std=0.02)
        if self.class_cond:
            nn.init.normal_(self.class_embed.embedding_table.weight, std=0.02)
        if not self.post_process:
            return
        if self.adaln == "per-block":
            nn.init.zeros_(self.final_layer.adaLN_modulation[-1].weight)
            nn.init.zeros_(self.final_layer.adaLN_modulation[-1].bias)
        nn.init.zeros_(self.final_layer.linear.weight)     # adaLN-Zero: the model starts as the zero map
        nn.init.zeros_(self.final_layer.linear.bias)

    def set_input_tensor(self, input_tensor) -> None:
        """Megatron's pipeline schedules hand a stage its input here (a list with one tensor)."""
        self.input_tensor = input_tensor[0] if isinstance(input_tensor, (list, tuple)) else input_tensor

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        # x [S, B, pt*ph*pw*C_out] -> [B, C_out, T, H, W]
        t, h, w = self.grid
        pt, ph, pw = self.patch
        B = x.shape[1]
        x = x.view(t, h, w, B, pt, ph, pw, self.c_out)                     # [t, h, w, B, pt, ph, pw, C]
        x = x.permute(3, 7, 0, 4, 1, 5, 2, 6)                               # [B, C, t, pt, h, ph, w, pw]
        return x.reshape(B, self.c_out, t * pt, h * ph, w * pw)            # [B, C, T, H, W]

    def forward(self, latents, timesteps, text_states=None, text_mask=None, class_labels=None):
        # latents [B, C, T, H, W]; timesteps [B]; text_states [B, T_txt, D]; text_mask [B, T_txt]; labels [B]
        c = self.t_embedder(timesteps)                                     # [B, h]
        if self.class_cond:
            c = c + self.class_embed(class_labels)                         # [B, h]
        if self.adaln == "single":
            cond = self.t_block(c)                                         # [B, 6h]
        elif self.adaln == "per-block":
            cond = c                                                       # [B, h] (each layer: Linear(h, 6h))
        else:
            cond = None
        context = context_mask = None
        if self.cross_attn:
            txt = text_states.transpose(0, 1).to(self.text_proj.fc1.weight.dtype)  # [T_txt, B, D]
            context = self.text_proj(txt)                                  # [T_txt, B, h]
            if text_mask is not None:
                context_mask = ~text_mask.bool()[:, None, None, :]         # [B, 1, 1, T_txt] True = padding
        if self.pre_process:
            x = self.patch_embed(latents.to(self.patch_embed.weight.dtype))  # [B, h, t, hh, ww]
            x = x.flatten(2).permute(2, 0, 1)                              # [S, B, h]
            x = x + self.pos_embed[:, None]                                # [S, B, h]
            if self.adaln == "none":
                x = x + c[None]                                            # [S, B, h] additive conditioning
            if self.cp > 1:
                x = x.chunk(self.cp, dim=0)[ps.get_context_parallel_rank()]  # [S/cp, B, h] this CP rank's tokens
            if self.sequence_parallel:
                x = tensor_parallel.scatter_to_sequence_parallel_region(x)  # [S/tp, B, h]
        else:
            x = self.input_tensor                                          # [S(/tp), B, h] from the previous stage
        x = self.decoder(x, cond, context, context_mask)                   # [S(/tp), B, h]
        if not self.post_process:
            return x.contiguous()                                          # [S(/tp), B, h] to the next stage
        if self.sequence_parallel:
            x = tensor_parallel.gather_from_sequence_parallel_region(x, tensor_parallel_output_grad=False)  # [S/cp, B, h]
        if self.cp > 1:   # backward: reduce-scatter (each CP rank backpropagates loss / cp, grads summed over CP)
            x = tensor_parallel.gather_from_sequence_parallel_region(x, True, group=ps.get_context_parallel_group())  # [S, B, h]
        x = self.final_layer(x, c)                                         # [S, B, pt*ph*pw*C_out]
        return self.unpatchify(x)                                          # [B, C_out, T, H, W]
