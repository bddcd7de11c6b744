"""What `soraplan train` can run: the one rule for the layouts and models the Megatron-core model refuses.

The planner plans every valid Spec analytically; the model (`soraplan.models.build.build_model`) builds a
subset. `unsupported(spec)` says, in one line naming the combination, why a Spec is outside it;
`build_model`, `soraplan train` and `soraplan launch` refuse such a Spec, and the layout search
(`refused_layouts`) does not propose the layouts it refuses.

Current blocks (`Model.extended`, models/blocks.py): tensor and data parallelism only (no pipeline, virtual
pipeline, context or sequence parallelism), and q/k norms over all heads at tp = 1 only.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .spec import Model, Spec


def layout_refusal(m: Model, tp: int, pp: int, vpp: int, cp: int, sequence_parallel: bool) -> str | None:
    """Why the model refuses model `m` at this layout (one line naming the combination), or None.

    Args:
        m: the model section of a Spec.
        tp, pp, vpp, cp: the parallel sizes.
        sequence_parallel: sequence parallelism on (it only acts at tp > 1).
    Returns:
        The refusal, or None when the trainer builds it.
    """
    if m.long_skip or m.tokens_in_sequence:
        return "model.long_skip: U-ViT layouts are planned analytically only"
    if m.text_mode in ("in-sequence", "mmdit") and m.causal:
        return "model.causal: causal attention is for language models (text 'none')"
    if m.adaln == "single" and (m.text_mode == "mmdit" or m.single_layers):
        return ("model.adaln: 'single' (a shared table) is built for the standard block only; MMDiT and "
                "single-stream blocks take --adaln per-block or none")
    if not m.extended:
        return None
    if pp > 1 or vpp > 1:
        return (f"parallel.pp: pp={pp} (vpp={vpp}) with the current block vocabulary: the trainer runs it with "
                "tp and dp only (pipeline stages are planned analytically)")
    if cp > 1:
        return (f"parallel.cp: cp={cp} with the current block vocabulary: the trainer runs it with tp and dp only "
                "(context parallelism is planned analytically)")
    if sequence_parallel and tp > 1:
        return (f"parallel.sequence_parallel: sequence parallelism at tp={tp} with the current block vocabulary: "
                "the blocks run whole sequences on each TP rank; use --no-sequence-parallel")
    if m.qk_norm != "none" and m.qk_norm_width == "all" and tp > 1:
        return f"parallel.tp: tp={tp} with q/k norms over all heads (qk_norm_width all): tp = 1 only"
    return None


def unsupported(spec: Spec) -> str | None:
    """Why `soraplan train` cannot run `spec` (one line naming the combination), or None.

    Args:
        spec: a validated Spec.
    Returns:
        The refusal, or None.
    """
    p = spec.parallel
    return layout_refusal(spec.model, p.tp, p.pp, p.vpp, p.cp, p.sequence_parallel)


def refused_layouts(m: Model, tp: Any, pp: Any, vpp: Any, cp: Any, sequence_parallel: Any) -> np.ndarray:
    """Which layouts (parallel integer arrays) the trainer refuses for model `m`, as a boolean array. A model
    refused at every layout (planned analytically only, e.g. U-ViT) masks none: the search still plans it.

    Args:
        m: the model section of a Spec.
        tp, pp, vpp, cp, sequence_parallel: one entry per layout.
    Returns:
        True where `layout_refusal` refuses the layout.
    """
    cols = np.stack(np.broadcast_arrays(*(np.asarray(a, dtype=np.int64) for a in (tp, pp, vpp, cp, sequence_parallel))))
    if cols.shape[1] == 0 or layout_refusal(m, 1, 1, 1, 1, False) is not None:
        return np.zeros(cols.shape[1], dtype=bool)
    # the rule only looks at which sizes exceed 1: evaluate it once per distinct pattern
    keys = np.stack([cols[0] > 1, cols[1] > 1, cols[2] > 1, cols[3] > 1, cols[4] > 0]).astype(np.int64)
    patterns, inverse = np.unique(keys, axis=1, return_inverse=True)
    refused = np.array([layout_refusal(m, 1 + int(a), 1 + int(b), 1 + int(c), 1 + int(d), bool(e)) is not None
                        for a, b, c, d, e in patterns.T], dtype=bool)
    return refused[inverse.reshape(-1)]
