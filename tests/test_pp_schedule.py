"""planner/pp_schedule.py replays Megatron's 1F1B and interleaved orders: its table and warm-up equal
megatron-core's own, and its in-flight counts give the known closed forms (pp micro-batches on the first
stage; pp·vpp + pp - 1 chunk micro-batches with interleaving once m > pp, i.e. the factor
1 + (pp-1)/(pp·vpp) of Korthikanti et al. 2022)."""

import pytest

from soraplan.planner.pp_schedule import peak_in_flight, schedule_table, warmup


@pytest.mark.parametrize("pp, vpp, m", [(2, 1, 4), (4, 1, 2), (2, 2, 4), (2, 2, 2), (4, 2, 16), (2, 4, 6), (5, 2, 20)])
def test_closed_forms(pp, vpp, m):
    k, special, k_b, special_b = peak_in_flight(pp, vpp, m, 0)
    if vpp == 1:
        assert (k, special) == (min(m, pp), min(m, pp))
    else:
        assert k == min(pp * vpp + pp - 1, m * vpp)
    assert k_b == k and special_b == special                  # rank 0 releases nothing before a rebuild
    last = peak_in_flight(pp, vpp, m, pp - 1)
    assert last[0] == min(m * vpp, (vpp - 1) * pp + 1) and last[3] == last[1] - 1


@pytest.mark.megatron
@pytest.mark.parametrize("pp, vpp, m", [(2, 2, 4), (2, 2, 2), (4, 2, 8), (2, 3, 6)])
def test_table_and_warmup_are_megatrons(pp, vpp, m):
    from megatron.core.pipeline_parallel.schedules import get_pp_rank_microbatches, get_schedule_table

    assert schedule_table(m, vpp, pp) == get_schedule_table(m, vpp, pp)

    class Group:
        def __init__(self, rank):
            self._rank = rank

        def size(self):
            return pp

        def rank(self):
            return self._rank

    class Comm:
        def __init__(self, rank):
            self.pp_group, self.virtual_pipeline_model_parallel_size = Group(rank), vpp

    for r in range(pp):
        got = get_pp_rank_microbatches(m, vpp, pp, p2p_communicator=Comm(r))
        assert got[2] == warmup(pp, vpp, m, r)
