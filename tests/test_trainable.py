"""The one rule for what `soraplan train` runs (planner/trainable.py): the search does not propose what it
refuses, launch and train refuse it with one line, and pipeline stages count single-stream blocks."""

import itertools

import numpy as np
import pytest
from typer.testing import CliRunner

from soraplan.cli import app
from soraplan.planner import build_spec
from soraplan.planner.rank import search_count
from soraplan.planner.search import OK, REASONS, UNSUPPORTED, SearchOptions, Space
from soraplan.planner.trainable import layout_refusal, refused_layouts, unsupported

CURRENT = {"ffn_type": "swiglu", "layers": 4, "hidden": 256, "heads": 8, "tokens": 1024}


@pytest.mark.parametrize("flags, field", [
    ({"cp": 2, "pp": 2}, "parallel.cp"), ({"cp": 2, "cp_comm": "all-gather"}, "parallel.cp_comm"),
    ({"cp": 2, "kv_heads": 2}, "parallel.cp_comm"), ({"cp": 2, "cp_comm": "a2a"}, "parallel.cp_comm"),
    ({"pp": 2, "vocab_size": 96, "tokens": 32, "text": "none", "adaln": "none", "time_mlp": False}, "parallel.pp"),
    ({"pp": 2, "text": "mmdit", "adaln": "per-block", "text_hidden": 128}, "parallel.pp"),
    ({"tp": 2, "qk_norm": "rmsnorm", "qk_norm_width": "all", "sequence_parallel": False}, "parallel.tp"),
    ({"tp": 2, "sequence_parallel": True, "text": "mmdit", "adaln": "per-block", "text_tokens": 7, "tokens": 33},
     "parallel.sequence_parallel"),
])
def test_current_blocks_refuse_layouts_with_one_line(flags, field):
    why = unsupported(build_spec(flags={**CURRENT, **flags}))
    assert why is not None and why.startswith(field + ":") and "\n" not in why


def test_models_the_blocks_do_not_build_are_refused_at_every_layout():
    spec = build_spec(flags={**CURRENT, "text": "in-sequence", "single_layers": 2, "adaln": "single"})
    assert unsupported(spec).startswith("model.adaln:")
    assert not refused_layouts(spec.model, [1, 2], [1, 2], [1, 1], [1, 1], [0, 0]).any()   # planned analytically


def test_trainable_layouts():
    assert unsupported(build_spec(flags={**CURRENT, "tp": 2, "sequence_parallel": False})) is None
    # pipeline stages (1F1B), an MMDiT's hand-over anywhere
    assert unsupported(build_spec(flags={**CURRENT, "pp": 2, "tp": 2})) is None
    assert unsupported(build_spec(flags={**CURRENT, "pp": 2, "text": "mmdit", "adaln": "per-block",
                                         "single_layers": 2})) is None
    # context parallelism: p2p for every text mode, a2a for MMDiT stacks (text and video split per CP rank)
    assert unsupported(build_spec(flags={**CURRENT, "cp": 2, "tp": 2, "text": "in-sequence"})) is None
    assert unsupported(build_spec(flags={**CURRENT, "cp": 2, "cp_comm": "a2a", "text": "mmdit",
                                         "adaln": "per-block", "single_layers": 2})) is None
    # sequence parallelism: the blocks run on sequence shards (an MMDiT's text stream too)
    assert unsupported(build_spec(flags={**CURRENT, "tp": 2, "sequence_parallel": True})) is None
    assert unsupported(build_spec(flags={**CURRENT, "tp": 2, "sequence_parallel": True, "text": "mmdit", "adaln": "per-block",
                                         "single_layers": 2})) is None
    assert unsupported(build_spec(flags={"pp": 2})) is None                    # the DiT runs pipeline stages


def test_vectorised_rule_equals_the_scalar_rule():
    m = build_spec(flags=CURRENT).model
    grid = np.array(list(itertools.product((1, 2, 4), (1, 2), (1, 2), (1, 2), (0, 1)))).T
    got = refused_layouts(m, *grid)
    want = [layout_refusal(m, *map(int, row[:4]), bool(row[4])) is not None for row in grid.T]
    assert got.tolist() == want and any(want) and not all(want)


def test_search_never_proposes_a_refused_layout():
    spec = build_spec(flags=CURRENT)
    space = Space(spec, SearchOptions(global_batch_range=(1, 4096)))
    x, _ = space.candidates(16)
    reason = space.evaluate(16, x)["reason"]
    ok = np.nonzero(reason == OK)[0]
    assert len(ok) and (reason == UNSUPPORTED).any()
    assert (x.pp[ok] > 1).any() and (x.cp[ok] > 1).any()              # pipeline and context parallelism train
    assert not ((x.cp[ok] > 1) & (x.pp[ok] > 1)).any() and not ((x.cp[ok] > 1) & (x.cp_comm[ok] != 0)).any()
    assert (x.sequence_parallel[ok] & (x.tp[ok] > 1)).any()          # SP trains with the current blocks
    assert search_count(space, 16, 1e7).to_json()["rejected"]["unsupported"] > 0
    # a DiT trains with pipeline and sequence parallelism: without vpp and cp nothing of it is refused
    dit_space = Space(build_spec(flags={"tokens": 1024, "layers": 4, "hidden": 256, "heads": 8}))
    xd, _ = dit_space.candidates(16)
    rd = dit_space.evaluate(16, xd)["reason"]
    assert not ((rd == UNSUPPORTED) & (xd.vpp == 1) & (xd.cp == 1)).any() and REASONS[UNSUPPORTED] == "unsupported"


def test_pipeline_stages_count_single_stream_blocks():
    flags = {**CURRENT, "text": "in-sequence", "single_layers": 2, "layers": 3}
    space = Space(build_spec(flags=flags), SearchOptions())
    assert space.layers == 5 and 5 in space.pp_sizes


runner = CliRunner()


def test_train_and_launch_refuse_with_one_line(tmp_path):
    r = runner.invoke(app, ["train", "--model", "wan2.1-t2v-1.3b", "--tiny", "--cp", "2", "--cp-comm", "all-gather",
                            "--steps", "1", "--run-dir", str(tmp_path / "run")])
    assert r.exit_code == 2 and "parallel.cp_comm" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["launch", "--model", "hunyuanvideo", "--cp", "2", "--pp", "2", "--gpus", "8",
                            "--cluster", "slurm", "--dry-run", "--steps", "1"])
    assert r.exit_code == 2 and "parallel.cp" in r.output and "Traceback" not in r.output
