"""Micro-batches in flight on one pipeline rank under Megatron-core's 1F1B schedules, by replaying the
schedule's order of forwards and backwards (pure; no torch).

A rank holds the saved tensors of every (micro-batch, model chunk) it has run forward and not yet backward.
Megatron's order on rank r of pp, with m micro-batches and v model chunks per rank:

  1F1B (v = 1)         warm-up min(pp - r - 1, m) forwards, then (forward, backward) pairs, then the
                       remaining backwards; backwards in forward order
  interleaved (v > 1)  forwards follow the schedule table: micro-batches in groups of pp, each group
                       through chunk 0, 1, ..., v - 1 (`get_schedule_table`); warm-up
                       min((pp - r - 1) * 2 + (v - 1) * pp, m * v) forwards, then pairs, then the rest;
                       the k-th backward takes the k-th table entry with chunk v - 1 - chunk

Two peaks matter: the live set after a forward, and the live set while a backward rebuilds a layer
(recompute adds that layer's tensors). Every live set of the steady phase has the same size; among those,
the peak counts the one with the most micro-batches of the rank's special chunk (rank 0's chunk 0 holds
the patch embedding's input, the last rank's last chunk the final layer and the loss).
"""

from __future__ import annotations

from functools import lru_cache


def schedule_table(microbatches: int, chunks: int, group: int) -> list[tuple[int, int]]:
    """(micro-batch, chunk) in forward order: groups of `group` micro-batches through every chunk.

    Args:
        microbatches: micro-batches per step.
        chunks: model chunks per rank (vpp).
        group: micro-batches per group (Megatron's microbatch_group_size_per_vp_stage, = pp).
    Returns:
        The forward order.
    """
    out: list[tuple[int, int]] = []
    for start in range(0, microbatches, group):
        end = min(start + group, microbatches)
        out += [(mb, c) for c in range(chunks) for mb in range(start, end)]
    return out


def warmup(pp: int, vpp: int, microbatches: int, stage: int) -> int:
    """Forwards before the first backward on pipeline rank `stage` (Megatron's `get_pp_rank_microbatches`)."""
    total = microbatches * vpp
    w = pp - stage - 1 if vpp == 1 else (pp - stage - 1) * 2 + (vpp - 1) * pp
    return min(w, total)


@lru_cache(maxsize=4096)
def peak_in_flight(pp: int, vpp: int, microbatches: int, stage: int) -> tuple[int, int, int, int]:
    """The peak live sets of rank `stage`, counted as (chunk micro-batches, of which the rank's special
    chunk: chunk 0 on the first rank, chunk vpp - 1 on the last, none in between):

      after a forward      the live set, largest first by size, then by special count;
      during a backward    the live set including the micro-batch being backpropagated, whose final layer
                           and loss (the last rank's special terms) are released before its layers are
                           recomputed: on the last rank that micro-batch's special count is left out.

    Args:
        pp, vpp: pipeline stages and model chunks per stage.
        microbatches: micro-batches per step on one data-parallel rank.
        stage: the pipeline rank (0 <= stage < pp).
    Returns:
        (size, special) after a forward, then (size, special) during a backward.
    """
    if not 0 <= stage < pp:
        raise ValueError(f"stage {stage} outside 0..{pp - 1}")
    table = schedule_table(microbatches, vpp, pp) if vpp > 1 else [(mb, 0) for mb in range(microbatches)]
    backward = [(mb, vpp - 1 - c) for mb, c in table]
    special = 0 if stage == 0 else (vpp - 1 if stage == pp - 1 else -1)
    released = stage == pp - 1
    total, w = len(table), warmup(pp, vpp, microbatches, stage)
    size = held = 0                   # live chunk micro-batches, of which the special chunk
    after_forward = (0, 0)
    during_backward = (0, 0)
    events = [("F", k) for k in range(w)]
    for j in range(total - w):
        events += [("F", w + j), ("B", j)]
    events += [("B", j) for j in range(total - w, total)]
    for kind, i in events:
        if kind == "F":
            size += 1
            held += table[i][1] == special
            after_forward = max(after_forward, (size, held))
        else:
            mine = backward[i][1] == special
            during_backward = max(during_backward, (size, held - int(released and mine)))
            size -= 1
            held -= mine
    return (*after_forward, *during_backward)
