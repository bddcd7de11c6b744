"""Which layouts `soraplan train` runs: one rule shared by the layout search (it never proposes a layout the
trainer refuses), `soraplan launch` (exit 2 before submitting) and the model/trainer (refusal at start).

A layout is refused, with one line naming the combination, when
  * its context-parallel combination is one the model cannot run (`cp.cp_refusal`: the kernel, the
    attention pattern under p2p / all-gather, heads % (tp*cp) under a2a, attention dropout under p2p);
  * it interleaves pipeline stages (vpp > 1): the trainer runs megatron's non-interleaved 1F1B schedule.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .cp import cp_refusal

if TYPE_CHECKING:
    from .spec import Spec

VPP_REFUSAL = ("parallel.vpp: interleaved 1F1B (vpp={vpp}) is not trained by soraplan train "
               "(it runs megatron's non-interleaved 1F1B schedule); use vpp=1")


def train_refusal(spec: Spec) -> str | None:
    """Why `soraplan train` cannot run this spec's layout (one line), or None.

    Args:
        spec: the validated spec.
    Returns:
        The refusal line, or None when the trainer runs the layout.
    """
    m, p, k = spec.model, spec.parallel, spec.kernels
    reason = cp_refusal(m.attention_kind, k.attention_kernel, k.dropout, m.heads, p.tp, p.cp, p.cp_comm)
    if reason:
        return reason
    if p.vpp > 1:
        return VPP_REFUSAL.format(vpp=p.vpp)
    return None
