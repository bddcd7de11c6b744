"""Shared fixtures and the test tiers. Heavy imports (torch, megatron) stay inside the fixtures that need them.

Tiers (markers declared in pyproject.toml): `slurm` (a real local cluster), `browser` (headless Chromium),
`megatron` (builds the Megatron-core model or spawns torchrun), `slow` (several seconds of CPU each). The
daily tier leaves all four out:

    python -m pytest -q -m "not slow and not megatron and not slurm and not browser"

CI (`.ci/run`) runs everything. Besides the marks written in the test files, `SLOW` below marks single
tests of otherwise quick files, and any test that asks for the `megatron_pg` fixture is marked `megatron`.
"""

from __future__ import annotations

import pytest
from megatron_fixtures import megatron_pg  # noqa: E402,F401  (session process group for the model tests)

# file -> test functions that take several seconds of CPU each (every parametrization of them); each name
# must exist (tests/test_tiers.py checks it).
SLOW: dict[str, frozenset[str]] = {
    "test_seed_cli.py": frozenset({"test_readme_section_examples_run"}),
    "test_seed_profile.py": frozenset({"test_cli_preset_json", "test_unet_preset_profile_and_dit_comparison"}),
    "test_report_golden.py": frozenset({"test_header_and_attention_equal_estimate_json", "test_summary_equals_plan_json"}),
    "test_k8s_property.py": frozenset({"test_any_train_args_reach_torchrun_literally", "test_random_valid_layouts_render_schema_valid"}),
    "test_plan_cli.py": frozenset({"test_plan_curriculum_default", "test_plan_deadline_and_cost", "test_plan_json_contract", "test_plan_sequence_parallel_pinned_keeps_tp1", "test_plan_tables", "test_plan_uses_a_calibration_file"}),
    "test_plan_search.py": frozenset({"test_batch_and_tp_rules", "test_compact_and_prefilter_agree_with_full_evaluation", "test_deadline_without_counts_scans_gpu_counts", "test_objectives", "test_random_specs_plan_or_explain", "test_ranked_entry_matches_the_scalar_planner", "test_seed_finds_a_layout_that_fits_an_a100_80g", "test_vectorised_equals_reference"}),
    "test_estimate_spec.py": frozenset({"test_mostly_valid_layouts_estimate"}),
    "test_plan_budget.py": frozenset({"test_curriculum_yaml", "test_sensitivity_and_statement"}),
    "test_report_html.py": frozenset({"test_yaml_report_section"}),
    "test_term_progress.py": frozenset({"test_plan_on_a_pipe_writes_nothing_to_stderr", "test_plan_on_a_terminal_shows_progress_and_json_shows_none"}),
    "test_plan_trainable.py": frozenset({"test_search_never_proposes_what_train_refuses"}),
    "test_launch_exactly_once.py": frozenset({"test_two_concurrent_launches_give_one_job"}),
    "test_report_data.py": frozenset({"test_report_data_imports_no_plotly"}),
    "test_k8s_hardening.py": frozenset({"test_non_host_waits_for_dns_and_multi_node_without_rank_fails_fast"}),
    "test_k8s_emulator.py": frozenset({"test_create_each_kind_through_the_right_api"}),
    "test_seed_measured_backbones.py": frozenset({"test_dit_planner_equals_measured"}),
}


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        func = getattr(item, "originalname", None) or item.name
        if func in SLOW.get(item.path.name, ()):
            item.add_marker(pytest.mark.slow)
        if "megatron_pg" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.megatron)
