"""The trainer's human log lines carry no colour codes when stdout is not a terminal (Slurm/K8s log files)."""

from __future__ import annotations

import io

from soraplan.models.trainer import _human

REC = {"step": 3, "loss": 0.123456, "step_time_s": 0.5, "samples_per_s": 8.0, "tokens_per_s": 1234.0,
       "tflops_per_gpu": 1.5, "mfu": 0.0123}


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_text_in_a_file_even_with_force_color(monkeypatch):
    monkeypatch.setenv("FORCE_COLOR", "1")
    buf = io.StringIO()
    _human(REC, 20, buf)
    assert buf.getvalue() == ("step 3/20 loss 0.12346  0.500 s/step  8.00 samples/s  1234 tok/s  1.5000 TFLOP/s/GPU  "
                              "MFU 1.230%\n")


def test_styled_on_a_terminal(monkeypatch):
    monkeypatch.setenv("FORCE_COLOR", "1")
    tty = FakeTTY()
    _human(REC, 20, tty)
    assert "\x1b[" in tty.getvalue() and "step 3/20" in tty.getvalue()
