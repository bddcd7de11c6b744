"""`soraplan status` explains Slurm's pending reasons in words, with what to do."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from soraplan.launch.runs import PENDING_REASONS, RunStatus, explain_reason


@pytest.mark.parametrize("code, words", [
    ("PartitionConfig", "exceeds what the partition allows"),
    ("Resources", "waits for enough free nodes"),
    ("Priority", "higher priority"),
    ("ReqNodeNotAvail", "down, drained or reserved"),
    ("ReqNodeNotAvail, UnavailableNodes:n1", "down, drained or reserved"),
    ("QOSMaxJobsPerUserLimit", "most jobs your QOS allows"),
    ("AssocGrpGRES", "GPU limit"),
    ("Dependency", "depends on"),
    ("BeginTime", "start time in the future"),
    ("JobHeldUser", "scontrol release"),
])
def test_reason_in_words(code, words):
    text = explain_reason(code)
    assert text.startswith(code.split(",")[0] + ": ") and words in text


def test_no_reason_and_unknown_reason():
    assert explain_reason("None") == "" and explain_reason("") == "" and explain_reason(None) == ""
    assert "man squeue" in explain_reason("SomethingNew")
    assert all(meaning and todo for meaning, todo in PENDING_REASONS.values())


def test_status_view_prints_the_explanation():
    from soraplan.cli.runs_view import render_status

    buf = io.StringIO()
    render_status([RunStatus("r", "slurm", "pending", "job 7 PENDING (Priority)", ("7",), "/runs/r",
                             explain_reason("Priority")),
                   RunStatus("q", "slurm", "running", "job 8 RUNNING", ("8",), "/runs/q")], Console(file=buf, width=80))
    out = " ".join(buf.getvalue().split())
    assert "r pending: Priority: jobs with higher priority are ahead in the queue" in out
    assert out.count("pending:") == 1
