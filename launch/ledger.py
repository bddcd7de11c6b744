"""The run ledger: one SQLite file (stdlib sqlite3) recording every run soraplan launched.

Per run: name, backend, spec and plan (JSON), run directory, job ids and the state history. For Kubernetes
the job ids are the created objects ("Kind/namespace/name"), so the ledger also keeps the mapping from the
exact run name to its object names (launch/k8s_names.object_name).

Exactly-once submission (carried out by launch/launcher.py and the backends' `submit` / `lookup`):
- `run_lock(name)`: an exclusive file lock per run name next to the ledger, held by one `soraplan launch` from
  its first read of the run to its last write; a second launch of the same run is refused with one line (the
  operating system drops the lock when the process dies, even by `kill -9`).
- `begin_submit` records a submission with a unique token (state "submitting") BEFORE the backend calls
  sbatch or creates objects; the backend hands the token to the job (Slurm `--comment`, a Kubernetes
  label). `record_jobs` closes it with the job ids, in one transaction. A submission still open when the
  next launch takes the lock was cut short between submit and record: the launcher asks the backend to
  look the token up and records what it finds (`record_jobs`) or, when nothing carries the token, closes
  it (`close_submission`, the run's state before the attempt comes back) so that submitting again is safe.
Location: `--ledger PATH`, else `$SORAPLAN_STATE_DIR/ledger.sqlite`, else
`$XDG_STATE_HOME/soraplan/ledger.sqlite` (default `~/.local/state/soraplan/ledger.sqlite`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from soraplan.planner.errors import UserError

from .policy import SUBMITTING

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    name TEXT PRIMARY KEY, backend TEXT NOT NULL, run_dir TEXT NOT NULL,
    spec_json TEXT NOT NULL, plan_json TEXT NOT NULL, options_json TEXT NOT NULL,
    created REAL NOT NULL, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    run TEXT NOT NULL REFERENCES runs(name) ON DELETE CASCADE, job_id TEXT NOT NULL, submitted REAL NOT NULL,
    PRIMARY KEY (run, job_id));
CREATE TABLE IF NOT EXISTS events (
    run TEXT NOT NULL REFERENCES runs(name) ON DELETE CASCADE, time REAL NOT NULL, state TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS submissions (
    run TEXT NOT NULL REFERENCES runs(name) ON DELETE CASCADE, token TEXT NOT NULL UNIQUE, started REAL NOT NULL,
    prior_state TEXT NOT NULL, planned TEXT NOT NULL DEFAULT '[]', finished REAL, outcome TEXT NOT NULL DEFAULT '');
"""


def default_path() -> Path:
    if os.environ.get("SORAPLAN_STATE_DIR"):
        return Path(os.environ["SORAPLAN_STATE_DIR"]) / "ledger.sqlite"
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "soraplan" / "ledger.sqlite"


@dataclass(frozen=True)
class Submission:
    """An open submission: its token (carried by the job), when it began and the job ids planned beforehand
    (Kubernetes object refs; empty for Slurm, whose job id is known only after sbatch)."""

    token: str
    started: float
    planned: tuple[str, ...] = ()


@dataclass
class RunRecord:
    name: str
    backend: str
    run_dir: Path
    spec: dict[str, Any]
    plan: dict[str, Any]
    options: dict[str, Any]
    created: float
    state: str
    job_ids: list[str] = field(default_factory=list)
    history: list[tuple[float, str, str]] = field(default_factory=list)
    submission: Submission | None = None      # an open submission (see the module docstring), else None


class Ledger:
    def __init__(self, path: Path | str | None = None):
        self.path = Path(path) if path else default_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self._db.execute("PRAGMA foreign_keys = ON")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "Ledger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- writes (each one transaction) ---
    def create(self, name: str, backend: str, run_dir: Path, spec: dict[str, Any], plan: dict[str, Any],
               options: dict[str, Any], replace: bool = False) -> RunRecord:
        now = time.time()
        with self._tx():
            if replace:
                self._db.execute("DELETE FROM runs WHERE name = ?", (name,))
            elif self._db.execute("SELECT 1 FROM runs WHERE name = ?", (name,)).fetchone():
                raise UserError(f"run {name!r} exists already; use --resume to continue it or --force to start it anew")
            self._db.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (name, backend, str(run_dir), json.dumps(spec), json.dumps(plan), json.dumps(options, default=str), now, "created"))
            self._db.execute("INSERT INTO events VALUES (?, ?, ?, ?)", (name, now, "created", ""))
        return self.get(name)

    def add_job(self, name: str, job_id: str) -> None:
        """Record one job id (state "submitted"); closes an open submission. See `record_jobs`."""
        self.record_jobs(name, [job_id])

    def record_jobs(self, name: str, job_ids: list[str], detail: str | None = None) -> None:
        """Record the job ids of a submission, close the open submission and set the state "submitted", in
        one transaction (a crash leaves either all of it or none).

        Args:
            name: the run name.
            job_ids: the job ids (Slurm job ids, Kubernetes object refs) in creation order.
            detail: the event's detail (default "job <ids>").
        """
        now = time.time()
        ids = [str(j) for j in job_ids]
        with self._tx():
            for job_id in ids:
                self._db.execute("INSERT OR IGNORE INTO jobs VALUES (?, ?, ?)", (name, job_id, now))
            self._db.execute("UPDATE submissions SET finished = ?, outcome = ? WHERE run = ? AND finished IS NULL",
                             (now, "submitted: " + ", ".join(ids), name))
            self._set_state(name, "submitted", detail if detail is not None else f"job {', '.join(ids)}")

    def set_state(self, name: str, state: str, detail: str = "") -> None:
        with self._tx():
            self._set_state(name, state, detail)

    def _set_state(self, name: str, state: str, detail: str) -> None:
        row = self._db.execute("SELECT state FROM runs WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise UserError(f"no run named {name!r} in the ledger {self.path}")
        self._db.execute("UPDATE runs SET state = ? WHERE name = ?", (state, name))
        last = self._db.execute("SELECT state, detail FROM events WHERE run = ? ORDER BY rowid DESC LIMIT 1",
                                (name,)).fetchone()
        if last != (state, detail):
            self._db.execute("INSERT INTO events VALUES (?, ?, ?, ?)", (name, time.time(), state, detail))

    def begin_submit(self, name: str, planned: list[str] | tuple[str, ...] = ()) -> str:
        """Open a submission before anything reaches the cluster: a new unique token, state "submitting".

        The state change is not an event of the run's history (the submissions table is that record); a
        crash from here to `record_jobs` leaves the submission open for the launcher to reconcile.

        Args:
            name: the run name.
            planned: the job ids known in advance (Kubernetes object refs), looked up on reconciliation.

        Returns:
            The token (32 hex digits) the backend must attach to the job.

        Raises:
            UserError: the run is not in the ledger, or a submission of it is still open.
        """
        token = uuid.uuid4().hex
        with self._tx():
            row = self._db.execute("SELECT state FROM runs WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise UserError(f"no run named {name!r} in the ledger {self.path}")
            if self._open_submission(name) is not None:
                raise UserError(f"run {name!r}: a submission is still open in the ledger {self.path}; "
                                "`soraplan launch --resume` reconciles it first")
            prior = row[0] if row[0] != SUBMITTING else "created"
            self._db.execute("INSERT INTO submissions (run, token, started, prior_state, planned) VALUES (?, ?, ?, ?, ?)",
                             (name, token, time.time(), prior, json.dumps(list(planned))))
            self._db.execute("UPDATE runs SET state = ? WHERE name = ?", (SUBMITTING, name))
        return token

    def close_submission(self, name: str, outcome: str) -> None:
        """Close the open submission without jobs (nothing on the cluster carries its token): the run gets
        back the state it had before the attempt, with `outcome` as the event's detail.

        Args:
            name: the run name.
            outcome: why it was closed, one line.
        """
        with self._tx():
            row = self._db.execute("SELECT prior_state FROM submissions WHERE run = ? AND finished IS NULL",
                                   (name,)).fetchone()
            if row is None:
                return
            self._db.execute("UPDATE submissions SET finished = ?, outcome = ? WHERE run = ? AND finished IS NULL",
                             (time.time(), outcome, name))
            state = self._db.execute("SELECT state FROM runs WHERE name = ?", (name,)).fetchone()
            self._set_state(name, row[0] if state and state[0] == SUBMITTING else state[0], outcome)

    def runs_holding(self, job_id: str) -> list[str]:
        """The runs that record `job_id` (a Kubernetes object ref) or plan it in an open submission."""
        held = {r[0] for r in self._db.execute("SELECT run FROM jobs WHERE job_id = ?", (job_id,))}
        for run, planned in self._db.execute("SELECT run, planned FROM submissions WHERE finished IS NULL"):
            if job_id in json.loads(planned):
                held.add(run)
        return sorted(held)

    def _open_submission(self, name: str) -> Submission | None:
        row = self._db.execute("SELECT token, started, planned FROM submissions WHERE run = ? AND finished IS NULL",
                               (name,)).fetchone()
        return None if row is None else Submission(row[0], row[1], tuple(json.loads(row[2])))

    @contextlib.contextmanager
    def run_lock(self, name: str) -> Iterator[Path]:
        """Hold the exclusive launch lock of run `name` (non-blocking: refused with one line when held).

        The lock is `<ledger>.locks/<sha256(name)[:24]>.lock` (flock); the file names the holder's pid.

        Args:
            name: the run name.

        Yields:
            The lock file's path.

        Raises:
            UserError: another process holds the lock.
        """
        folder = self.path.with_name(self.path.name + ".locks")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / (hashlib.sha256(name.encode()).hexdigest()[:24] + ".lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 64, 0).decode(errors="replace").split()
                who = f" by pid {holder[0]}" if holder and holder[0].isdigit() else ""
                raise UserError(f"run {name!r}: another soraplan launch of this run is in progress (lock {path} held"
                                f"{who}); try again when it has finished") from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()} {name}\n".encode(), 0)
            yield path
        finally:
            os.close(fd)   # closing the descriptor releases the lock

    # --- reads ---
    def exists(self, name: str) -> bool:
        return self._db.execute("SELECT 1 FROM runs WHERE name = ?", (name,)).fetchone() is not None

    def get(self, name: str) -> RunRecord:
        row = self._db.execute("SELECT name, backend, run_dir, spec_json, plan_json, options_json, created, state "
                               "FROM runs WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise UserError(f"no run named {name!r} in the ledger {self.path}")
        jobs = [r[0] for r in self._db.execute("SELECT job_id FROM jobs WHERE run = ? ORDER BY submitted, rowid", (name,))]
        hist = [tuple(r) for r in self._db.execute("SELECT time, state, detail FROM events WHERE run = ? ORDER BY rowid", (name,))]
        return RunRecord(row[0], row[1], Path(row[2]), json.loads(row[3]), json.loads(row[4]), json.loads(row[5]),
                         row[6], row[7], jobs, hist, self._open_submission(name))

    def all(self) -> Iterator[RunRecord]:
        for (name,) in self._db.execute("SELECT name FROM runs ORDER BY created").fetchall():
            yield self.get(name)

    # --- helpers ---
    class _Tx:
        def __init__(self, db: sqlite3.Connection):
            self.db = db

        def __enter__(self) -> None:
            self.db.execute("BEGIN IMMEDIATE")

        def __exit__(self, exc_type: object, *rest: object) -> None:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")

    def _tx(self) -> "Ledger._Tx":
        return Ledger._Tx(self._db)
