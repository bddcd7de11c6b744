"""Progress on stderr for CLI work that takes more than a second or two.

One helper, `LazyProgress`: a callable `(what, done, total)` that the planner, the validation matrix and the
report take as their `progress` argument. It shows a rich progress bar on stderr - what is being done, done/total,
elapsed and an estimate of the time left - and only

- once the work has taken `after_s` seconds (quick commands print nothing extra),
- when stderr is a terminal (pipes, CI logs and test runners get nothing), and
- when it is enabled (commands pass `enabled=not json_out`, so `--json` output comes alone).

The bar is transient: it disappears when closed, leaving stderr as it was.
"""

from __future__ import annotations

import time
from typing import Any


class LazyProgress:
    """A rich progress bar on stderr that appears only when the work has taken more than `after_s` seconds.

    Args:
        after_s: seconds of work before the bar appears.
        force_terminal: treat stderr as a terminal (tests); None: ask stderr.
        enabled: False: never show anything (`--json`).
        total: the number of steps, for `step` (the `(what, done, total)` call gives its own).
        file: write here instead of stderr (tests).
    """

    def __init__(self, after_s: float = 1.0, force_terminal: bool | None = None, enabled: bool = True,
                 total: int = 0, file: Any = None) -> None:
        self.t0, self.after_s = time.monotonic(), after_s if enabled else float("inf")
        self.bar: Any = None            # rich.progress.Progress once shown (rich is imported only then)
        self.task: Any = None
        self.force_terminal = force_terminal
        self.file = file
        self.done, self.total = 0, total

    def __call__(self, what: str, done: int, total: int) -> None:
        """Report that `what` is being done, `done` of `total` steps finished."""
        self.done, self.total = done, total
        if self.bar is None and time.monotonic() - self.t0 < self.after_s:
            return
        if self.bar is None:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                       TimeRemainingColumn)

            console = Console(stderr=self.file is None, file=self.file, force_terminal=self.force_terminal)
            if not console.is_terminal:       # pipes, CI logs, CliRunner: no bar, stderr stays clean
                self.after_s = float("inf")
                return
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
                                console=console, transient=True)
            self.bar.start()
            self.task = self.bar.add_task(what, total=total)
        self.bar.update(self.task, description=what, completed=done, total=total)

    def step(self, what: str) -> None:
        """Start the next step, `what` (for callbacks that only name the work); `total` was given up front."""
        self(what, self.done, max(self.total, self.done + 1))
        self.done += 1

    def note(self, what: str) -> None:
        """Say what is being done now without moving the count."""
        self(what, self.done, self.total)

    def close(self) -> None:
        """Remove the bar (if it was shown)."""
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def __enter__(self) -> "LazyProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
