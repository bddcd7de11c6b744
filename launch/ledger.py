"""The run ledger: one SQLite file (stdlib sqlite3) recording every run soraplan launched.

Per run: name, backend, spec and plan (JSON), run directory, job ids and the state history.
Location: `--ledger PATH`, else `$SORAPLAN_STATE_DIR/ledger.sqlite`, else
`$XDG_STATE_HOME/soraplan/ledger.sqlite` (default `~/.local/state/soraplan/ledger.sqlite`).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from soraplan.planner.errors import UserError

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
"""


def default_path() -> Path:
    if os.environ.get("SORAPLAN_STATE_DIR"):
        return Path(os.environ["SORAPLAN_STATE_DIR"]) / "ledger.sqlite"
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "soraplan" / "ledger.sqlite"


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
        with self._tx():
            self._db.execute("INSERT OR IGNORE INTO jobs VALUES (?, ?, ?)", (name, str(job_id), time.time()))
        self.set_state(name, "submitted", f"job {job_id}")

    def set_state(self, name: str, state: str, detail: str = "") -> None:
        with self._tx():
            row = self._db.execute("SELECT state FROM runs WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise UserError(f"no run named {name!r} in the ledger {self.path}")
            self._db.execute("UPDATE runs SET state = ? WHERE name = ?", (state, name))
            last = self._db.execute("SELECT state, detail FROM events WHERE run = ? ORDER BY rowid DESC LIMIT 1",
                                    (name,)).fetchone()
            if last != (state, detail):
                self._db.execute("INSERT INTO events VALUES (?, ?, ?, ?)", (name, time.time(), state, detail))

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
                         row[6], row[7], jobs, hist)

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
