"""Parameter counts by group, total and per GPU (TP/PP sharding, replicated norms and biases).

The architecture counted here is exactly the one `soraplan.models` builds (docs/model.md lists every group):

  patch_embed   Conv3d(C, h, kernel = stride = (pt, ph, pw))       C*pt*ph*pw*h + h
  class_embed   Embedding(num_classes + 1, h)  (class-conditional)  (n+1)*h
  t_embedder    Linear(256, h) -> SiLU -> Linear(h, h)             256*h + h + h*h + h   (absent if not time_mlp)
  pos_embed     learned_pos_embed only (U-ViT): (S + in-seq tokens)*h
  t_block       adaLN-single only: SiLU -> Linear(h, 6h)           6h^2 + 6h
  text_proj     Linear(D_text, h) -> GELU -> Linear(h, h)          D*h + h + h*h + h
  blocks        L x per-layer (below)
  skip          U-ViT only: (L-1)/2 x Linear(2h, h)                2h^2 + h each
  final_layer   LayerNorm(no affine) + modulation + Linear(h, pt*ph*pw*C_out)

Per layer (Megatron ColumnParallel weights and biases split over TP; RowParallel weights split, biases
replicated; norms and the adaLN-single table replicated):
  self-attn     linear_qkv h->3h (col)  3h^2 + 3h    linear_proj h->h (row)  h^2 | + h
  cross-attn    linear_q h->h (col) h^2 + h, linear_kv h->2h (col) 2h^2 + 2h, linear_proj (row) h^2 | + h
  mlp           fc1 h->f (col) h*f + f,  fc2 f->h (row) f*h | + h
  adaLN         per-block: Linear(h, 6h) (col, gathered) 6h^2 + 6h; single: table 6h (replicated);
                none: two LayerNorms with affine 2h each (+2h more with cross-attention)
"""

from __future__ import annotations

from dataclasses import dataclass

from .spec import Spec


@dataclass(frozen=True)
class ParamGroup:
    name: str
    total: int          # parameters in the whole model
    tp_split: int       # of `total`, the part divided over TP ranks
    placement: str      # "blocks" (spread over pipeline stages) | "first" | "last" | "every" (each stage)

    def per_rank(self, tp: int) -> int:
        return self.tp_split // tp + (self.total - self.tp_split)


def layer_groups(spec: Spec) -> list[tuple[str, int, int]]:
    """(name, total, tp_split) for one transformer layer."""
    m = spec.model
    h, f = m.hidden, m.ffn
    out = [
        ("self_attn.linear_qkv", 3 * h * h + 3 * h * m.qkv_bias, 3 * h * h + 3 * h * m.qkv_bias),  # U-ViT: no qkv bias
        ("self_attn.linear_proj", h * h + h, h * h),
    ]
    if m.cross_attn:
        out += [
            ("cross_attn.linear_q", h * h + h, h * h + h),
            ("cross_attn.linear_kv", 2 * h * h + 2 * h, 2 * h * h + 2 * h),
            ("cross_attn.linear_proj", h * h + h, h * h),
        ]
    out += [("mlp.linear_fc1", h * f + f, h * f + f), ("mlp.linear_fc2", f * h + h, f * h)]
    if m.adaln == "per-block":
        out.append(("adaln.linear", 6 * h * h + 6 * h, 6 * h * h + 6 * h))
    elif m.adaln == "single":
        out.append(("adaln.scale_shift_table", 6 * h, 0))
    else:
        n_norms = 3 if m.cross_attn else 2
        out.append(("norms", n_norms * 2 * h, 0))
    return out


def param_groups(spec: Spec) -> list[ParamGroup]:
    m, v = spec.model, spec.video
    if m.extended:
        return _extended_groups(spec)
    h, L = m.hidden, m.layers
    c_out = v.latent_channels * (2 if m.learn_sigma else 1)
    groups = [ParamGroup("patch_embed", v.latent_channels * v.patch_volume * h + h, 0, "first")]
    if m.conditioning == "class":
        groups.append(ParamGroup("class_embed", (m.num_classes + 1) * h, 0, "every"))
    if m.time_mlp:  # U-ViT (time_mlp False): the sinusoid itself is the time token, no parameters
        groups.append(ParamGroup("t_embedder", m.timestep_freq_dim * h + h + h * h + h, 0, "every"))
    if m.learned_pos_embed:  # U-ViT: nn.Parameter(1, extras + patches, h)
        groups.append(ParamGroup("pos_embed", spec.seq_len * h, 0, "first"))
    if m.adaln == "single":
        groups.append(ParamGroup("t_block", 6 * h * h + 6 * h, 0, "every"))
    if m.cross_attn:
        groups.append(ParamGroup("text_proj", v.text_dim * h + h + h * h + h, 0, "every"))
    per_layer = layer_groups(spec)
    groups.append(ParamGroup("blocks", L * sum(t for _, t, _ in per_layer), L * sum(s for _, _, s in per_layer), "blocks"))
    if m.long_skip:
        n_skip = (L - 1) // 2
        groups.append(ParamGroup("skip", n_skip * (2 * h * h + h), 0, "blocks"))
    final_mod = {"per-block": 2 * h * h + 2 * h, "single": 2 * h, "none": 2 * h}[m.adaln]
    groups.append(ParamGroup("final_layer", final_mod + h * v.patch_volume * c_out + v.patch_volume * c_out, 0, "last"))
    return groups


def _extended_groups(spec: Spec) -> list[ParamGroup]:
    """Groups of the current video-DiT / LLM vocabulary (planner/blocks.py): embedders, the block stacks,
    then the final layer (and an untied output head)."""
    from .blocks import block_stacks, embed_groups

    outer = [ParamGroup(*g) for g in embed_groups(spec)]
    tail = [g for g in outer if g.name in ("final_layer", "output_head")]
    head = [g for g in outer if g.name not in ("final_layer", "output_head")]
    stacks = [ParamGroup(name, total, split, "blocks") for name, total, split in block_stacks(spec)]
    return head + stacks + tail


def total_params(spec: Spec) -> int:
    return sum(g.total for g in param_groups(spec))


def params_per_gpu(spec: Spec) -> int:
    """Parameters held by one GPU of the most loaded pipeline stage (first or last)."""
    p = spec.parallel
    tp, pp = p.tp, p.pp
    if spec.model.extended and pp > 1:     # blocks of different kinds: stage by stage (planner/blocks.py)
        from .blocks import max_stage_params

        return max_stage_params(spec)
    blocks = sum(g.per_rank(tp) for g in param_groups(spec) if g.placement == "blocks")
    # blocks (and U-ViT skips) are spread evenly: layers % pp == 0 is validated.
    per_stage_blocks = blocks // pp
    every = sum(g.per_rank(tp) for g in param_groups(spec) if g.placement == "every")
    first = sum(g.per_rank(tp) for g in param_groups(spec) if g.placement == "first")
    last = sum(g.per_rank(tp) for g in param_groups(spec) if g.placement == "last")
    if pp == 1:
        return per_stage_blocks + every + first + last
    return per_stage_blocks + every + max(first, last)


def stage_params(spec: Spec, stage: int) -> int:
    """Parameters held by one GPU of pipeline stage `stage` (0-based): its share of the blocks, the
    conditioning every stage embeds with (once per GPU, also with vpp model chunks), and the first stage's
    or the last stage's own groups. `params_per_gpu` is the larger of the first and the last stage.

    Args:
        spec: the validated spec.
        stage: the pipeline rank.
    Returns:
        Parameters on one GPU of that stage.
    """
    p = spec.parallel
    groups = param_groups(spec)

    def on(where: str) -> int:
        return sum(g.per_rank(p.tp) for g in groups if g.placement == where)

    return (on("blocks") // p.pp + on("every") + (on("first") if stage == 0 else 0)
            + (on("last") if stage == p.pp - 1 else 0))


def params_breakdown(spec: Spec) -> dict[str, int]:
    return {g.name: g.total for g in param_groups(spec)}
