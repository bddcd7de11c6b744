"""Names (planner/names.py and its users): fullmatch with length limits, the Spec's display name, the run name,
values in #SBATCH lines and Kubernetes names; property tests over arbitrary unicode names for the sbatch
script (bash -n, nothing runs before the directives, every #SBATCH line is read by sbatch) and for unique
Kubernetes object names.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from soraplan.launch.k8s_names import HASHED, object_name, pod_hostnames
from soraplan.planner.names import (DISPLAY_NAME_MAX, RUN_NAME, check_display_name, check_run_name, comment_text,
                                   matches)
from soraplan.launch.options import LaunchOptions, build_options
from soraplan.launch.slurm_script import render_sbatch
from soraplan.planner.config import build_spec
from soraplan.planner.errors import UserError
from soraplan.planner.estimate import estimate

BASH = shutil.which("bash") or "/bin/bash"
KINDS = ("jobset", "pytorchjob", "trainjob", "indexed-job")
EXAMPLES = int(os.environ.get("SORAPLAN_NAME_EXAMPLES", "150"))
COUNTER: dict[str, int] = {}


def count(test: str) -> None:
    COUNTER[test] = COUNTER.get(test, 0) + 1


@pytest.fixture(scope="module")
def plan_4():
    spec = build_spec(flags={"tp": 2, "dp": 2})
    return estimate(spec, compare=False)


# ------------------------------------------------------------------------------------------------ fixed cases

@pytest.mark.parametrize("name", ["abc\n", "abc\r", "a\tb", "\x1b[31mred", "a\u202eb", "a\u2028b", "", " ",
                                  "x" * (DISPLAY_NAME_MAX + 1), "evil\nid > pwned #", ".\x1f:", "a.b:\x00"])
def test_display_name_refuses_control_characters_and_lengths(name):
    with pytest.raises(UserError) as e:
        check_display_name(name)
    assert str(e.value).startswith("name: ") and "\n" not in str(e.value)
    with pytest.raises(UserError) as e:
        build_spec(flags={"name": name})
    assert str(e.value).startswith("name: must be a display name (printable") and "\n" not in str(e.value)


@pytest.mark.parametrize("name", ["DiT-XL/2", "U-ViT-L/4@512", "my run (v2)", "训练-ü", "[/]", "x" * DISPLAY_NAME_MAX])
def test_display_name_allows_printable_text(name):
    assert check_display_name(name) == name and build_spec(flags={"name": name}).name == name


@pytest.mark.parametrize("name", ["abc\n", "a b", "-a", ".a", "a/b", "a;b", "$(id)", "x" * 64, "ä", "a\x00"])
def test_run_name_is_a_strict_slug(name):
    with pytest.raises(UserError) as e:
        build_options("x", None, {}, name)
    assert str(e.value).startswith("launch.name: ") and "\n" not in str(e.value)
    with pytest.raises(UserError, match="launch.name"):
        check_run_name(name)


def test_empty_run_name_is_refused():
    with pytest.raises(UserError, match="^launch.name: '' is not a valid run name"):
        check_run_name("")


def test_run_name_accepts_the_slug():
    for name in ("a", "A.b_c-1", "7b", "x" * 63):
        assert build_options("x", None, {}, name).name == name == check_run_name(name)


def test_fullmatch_never_accepts_a_trailing_newline():
    assert re.match(r"^[a-z]+$", "abc\n")            # the bug this module exists for
    assert matches(RUN_NAME, "abc") and not matches(RUN_NAME, "abc\n") and not matches(RUN_NAME, None)


@pytest.mark.parametrize("flag, msg", [("namespace", "--namespace"), ("pvc", "--pvc"), ("queue", "--queue")])
def test_k8s_values_with_a_trailing_newline_are_refused(flag, msg, plan_4):
    from soraplan.launch.k8s import render

    spec = build_spec(flags={"tp": 2, "dp": 2})
    opts = LaunchOptions(cluster="k8s", name="r", image="img:1", **{flag: "abc\n"})
    with pytest.raises(UserError) as e:
        render(spec, plan_4, opts)
    assert str(e.value).startswith(f"{msg}: 'abc\\n' is not a valid") and "\n" not in str(e.value)


@pytest.mark.parametrize("flag", ["partition", "account", "qos"])
def test_sbatch_values_with_a_trailing_newline_are_refused(flag, plan_4):
    spec = build_spec(flags={"tp": 2, "dp": 2})
    with pytest.raises(UserError, match=rf"^launch.{flag}: 'gpu\\n' has characters not allowed"):
        render_sbatch(spec, plan_4, LaunchOptions(**{flag: "gpu\n"}))


def test_comment_text_is_one_printable_line():
    assert comment_text("a\nb\r\x1b[0m\u2028c") == "a?b??[0m?c"
    assert comment_text("x" * 500, 10) == "xxxxxxx..."


def test_issue_example_names_give_distinct_objects():
    names = ["a.b", "a_b", "a..b", "a-b", "A-b", "A.B"]
    for kind in KINDS:
        objs = [object_name(n, kind, 4) for n in names]
        assert len(set(objs)) == len(names), objs
        assert objs[3] == "a-b" and all(o.startswith("a-b-") for i, o in enumerate(objs) if i != 3)


def test_a_name_that_looks_hashed_is_hashed_again():
    assert HASHED.fullmatch("run-deadbeef") and object_name("run-deadbeef", "jobset", 1) != "run-deadbeef"
    assert object_name("seed-run", "jobset", 2) == "seed-run"       # the goldens' name is kept as it is


# ------------------------------------------------------------------------------------------------ properties

def _sbatch_checks(text: str) -> None:
    """bash -n passes; the lines before the last #SBATCH are comments (sbatch reads directives until the first
    command); running the part before the first #SBATCH executes nothing (bash -x traces every command)."""
    assert subprocess.run(["bash", "-n"], input=text, text=True, capture_output=True).returncode == 0
    lines = text.split("\n")                            # bash and sbatch split on \n only
    directive_idx = [i for i, ln in enumerate(lines) if ln.startswith("#SBATCH")]
    assert directive_idx and len(directive_idx) >= 10
    for ln in lines[: directive_idx[-1]]:
        assert ln.strip() == "" or ln.lstrip().startswith("#"), ln
    prefix = "\n".join(lines[: directive_idx[0]]) + "\n"
    with tempfile.TemporaryDirectory() as d:
        r = subprocess.run([BASH, "-x", "-c", prefix], env={"PATH": d, "PS4": "+RAN "}, cwd=d, capture_output=True,
                           text=True)
        assert r.returncode == 0 and "+RAN" not in r.stderr and r.stdout == "", r.stderr
        assert os.listdir(d) == []


HOSTILE = ["evil\nid > pwned #", "x\n#SBATCH --wrap=id", "$(touch /tmp/x)", "`id`", "a'b\"c", "\r\nid", "\u2028id",
           "\x00", "a\\", "#!/bin/sh", "SORAPLAN_SPEC_EOF", "x\nSORAPLAN_SPEC_EOF\nid", "a\u202e", "DiT-XL/2"]
any_text = st.text(st.characters(exclude_categories=("Cs",)), min_size=0, max_size=40)
printable = st.text(st.characters(exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")), min_size=1, max_size=40)
spec_names = any_text | printable | st.sampled_from(HOSTILE)
run_names = (any_text | st.sampled_from(HOSTILE + ["", "a", "a.b", "A_b-1", "x" * 63, "x" * 64, "abc\n"])
             | st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z", fullmatch=True))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec_name=spec_names, run_name=run_names)
def test_any_names_render_a_safe_sbatch_script_or_one_line_refusal(spec_name, run_name, plan_4):
    count("sbatch")
    try:
        spec = build_spec(flags={"tp": 2, "dp": 2, "name": spec_name})
        opts = build_options(spec.name, None, {"run_root": Path("/scratch/runs")}, run_name or None)
        text = render_sbatch(spec, plan_4, opts)
    except UserError as e:
        assert "\n" not in str(e) and re.match(r"^[a-z_.]+: ", str(e)), str(e)
        return
    assert spec.name == spec_name
    if run_name:
        assert opts.name == run_name
    count("sbatch-rendered")
    _sbatch_checks(text)
    assert f"#SBATCH --job-name={opts.name}\n" in text


@settings(max_examples=EXAMPLES, deadline=None)
@given(names=st.sets(st.text(st.sampled_from("aAb._-1Z"), min_size=1, max_size=70), min_size=2, max_size=12),
       kind=st.sampled_from(KINDS), nodes=st.sampled_from([1, 2, 9, 10, 1000]))
def test_distinct_run_names_give_distinct_objects(names, kind, nodes):
    count("objects")
    valid = [n for n in names if matches(RUN_NAME, n)]
    objs = [object_name(n, kind, nodes) for n in valid]
    assert len(set(objs)) == len(objs), dict(zip(valid, objs))
    for o in objs:
        assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", o)
        assert max(len(h) for h in pod_hostnames(o, kind, nodes)) <= 63


@settings(max_examples=EXAMPLES, deadline=None)
@given(name=st.text(min_size=1, max_size=63), kind=st.sampled_from(KINDS))
def test_object_names_are_valid_for_any_text(name, kind):
    count("any-object")
    o = object_name(name, kind, 4)
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", o) and len(o) <= 63


def test_zz_report_generated_case_counts():
    """Prints how many generated cases ran (pytest -s shows it); every one of them passed to get here."""
    print(f"\nhypothesis cases run: {COUNTER}")
