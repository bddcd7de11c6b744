"""Progress on stderr (cli/progress.py): shown on a terminal for work longer than a second, saying what is
done and how much is left; nothing on a pipe, nothing under --json."""

from __future__ import annotations

import io
import os
import re
import select
import subprocess
import sys
import time

from soraplan.cli.progress import LazyProgress

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_shown_on_a_terminal_with_what_and_how_much_is_left():
    out = FakeTTY()
    bar = LazyProgress(after_s=0, force_terminal=True, file=out, total=3)
    bar.step("measuring case a")
    bar.step("measuring case b")
    bar.bar.refresh()
    text = ANSI.sub("", out.getvalue())
    assert "measuring case b" in text and "1/3" in text and "left" in text
    bar.close()
    assert bar.bar is None


def test_nothing_on_a_pipe_nothing_when_disabled_nothing_before_after_s():
    pipe = io.StringIO()
    bar = LazyProgress(after_s=0, file=pipe)
    bar("searching 200 GPUs", 0, 3)
    assert bar.bar is None and pipe.getvalue() == ""
    off = FakeTTY()
    bar = LazyProgress(after_s=0, force_terminal=True, enabled=False, file=off)
    bar("searching 200 GPUs", 0, 3)
    assert bar.bar is None and off.getvalue() == ""
    early = FakeTTY()
    bar = LazyProgress(after_s=3600, force_terminal=True, file=early)
    bar("searching 200 GPUs", 0, 3)
    assert bar.bar is None and early.getvalue() == ""


def _stderr_on_a_pty(args: list[str]) -> tuple[int, str, str]:
    """Run soraplan with stderr on a pseudo-terminal (stdout a pipe); (exit code, stdout, stderr)."""
    master, slave = os.openpty()
    env = dict(os.environ, COLUMNS="100", TERM="xterm")
    p = subprocess.Popen([sys.executable, "-m", "soraplan", *args], stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    end = time.monotonic() + 300
    while time.monotonic() < end:
        r, _, _ = select.select([master], [], [], 0.2)
        if r:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        elif p.poll() is not None:
            break
    out = p.stdout.read().decode() if p.stdout else ""
    p.wait(timeout=60)
    os.close(master)
    return p.returncode, out, b"".join(chunks).decode(errors="replace")


PLAN = ["plan", "--frames", "960", "--res", "256", "--gpus", "64,128"]


def test_plan_on_a_terminal_shows_progress_and_json_shows_none():
    code, out, err = _stderr_on_a_pty(PLAN)
    assert code == 0, err
    text = ANSI.sub("", err)
    assert re.search(r"(searching \d+ GPUs|training budget|sensitivity)", text), text
    assert re.search(r"\d/4", text), text
    code, out, err = _stderr_on_a_pty(PLAN + ["--json"])
    assert code == 0 and out.startswith("{")
    assert err == "", err


def test_plan_on_a_pipe_writes_nothing_to_stderr():
    r = subprocess.run([sys.executable, "-m", "soraplan", *PLAN], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and r.stderr == "", r.stderr
