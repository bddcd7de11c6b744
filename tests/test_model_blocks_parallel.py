"""Pipeline stages of the current block vocabulary (models/blocks.py): each stage's parameters equal the
planner's (planner/blocks.stage_params), the stages together are the PP=1 model, and 1F1B over two gloo
ranks equals PP=1 in loss and every gradient (validation/pp_check_blocks.py)."""

import pytest

pytestmark = pytest.mark.megatron

SPECS = [
    {"model": "hunyuanvideo", "pp": 4},                                    # 20 double + 40 single: 15 per stage
    {"model": "hunyuanvideo", "pp": 3, "tp": 2, "sequence_parallel": False},
    {"model": "cogvideox-5b", "pp": 6},                                    # text in the sequence, expert adaLN
    {"model": "wan2.1-t2v-14b", "pp": 8},                                  # cross-attention: text_proj on every stage
]


@pytest.mark.parametrize("flags", SPECS, ids=lambda f: f"{f['model']}-pp{f['pp']}")
def test_every_stage_on_meta_equals_the_planner(megatron_pg, flags):
    import torch

    from soraplan.models.blocks import CurrentDiT
    from soraplan.models.config import transformer_config
    from soraplan.planner.blocks import stage_params
    from soraplan.planner.config import build_spec
    from soraplan.planner.params import params_per_gpu
    from soraplan.validation.pp_check_blocks import global_name

    spec = build_spec(flags=flags)
    ref = build_spec(flags={**flags, "pp": 1, "tp": 1})
    cfg = transformer_config(ref, use_cpu_initialization=True, perform_initialization=False)
    with torch.device("meta"):
        whole = {n: q.numel() for n, q in CurrentDiT(ref, cfg).named_parameters()}
    seen: dict[str, int] = {}
    counts = []
    for stage in range(spec.parallel.pp):
        with torch.device("meta"):
            model = CurrentDiT(ref, cfg, stage=stage, stages=spec.parallel.pp)
        # at tp=1 the stage's own count; the planner's per-rank count at the spec's tp
        assert sum(q.numel() for q in model.parameters()) == stage_params(build_spec(flags={**flags, "tp": 1}), stage)
        counts.append(stage_params(spec, stage))
        for name, q in model.named_parameters():
            seen[global_name(name, model)] = q.numel()
    assert seen == whole                       # the stages hold every parameter of the PP=1 model
    assert params_per_gpu(spec) == max(counts)


@pytest.mark.slow
def test_pipeline_equals_pp1_outputs_and_grads():
    from megatron_fixtures import check_rows

    rows = check_rows("pp_check_blocks")
    for row in rows:
        assert row["ok"] and row["max_rel_grad_err"] < 1e-4, row
    assert any(r["case"].get("text") == "mmdit" and r["case"].get("layers") == 2 for r in rows)   # hand-over = boundary
