"""Print the Markdown tables of docs/backtest.md (per run, summary, per GPU type) from `soraplan backtest`.

    python benchmarks/backtest_tables.py            # print them
    python benchmarks/backtest_tables.py --write    # replace them in docs/backtest.md (temp file, rename)

Run it after a change to the step model, the fit or the corpus: tests/test_backtest.py pins the summary rows.
"""

from __future__ import annotations

import argparse
import os
import re
import tempfile
from pathlib import Path

from soraplan.planner.backtest import backtest

DOC = Path(__file__).resolve().parent.parent / "docs" / "backtest.md"


def _value(x: float, unit: str) -> str:
    if unit == "MFU":
        return f"{x * 100:.1f} %"
    if x >= 1000:
        return f"{x:,.0f}"
    return f"{x:.2f}" if x < 1 else f"{x:.1f}"


def _pct(x: float, digits: int = 1, sign: bool = True) -> str:
    return f"{x * 100:+.{digits}f} %" if sign else f"{x * 100:.{digits}f} %"


def tables() -> dict[str, str]:
    """{"runs", "summary", "by_gpu"}: the three tables as Markdown."""
    r = backtest()
    runs = ["| run | split | gpu | figure | published | predicted | error | dominant term |",
            "|---|---|---|---|---:|---:|---:|---|"]
    for x in r.runs:
        runs.append(f"| {x.name} | {x.split} | {x.gpu} | {x.figure} | {_value(x.published, x.unit)} | "
                    f"{_value(x.predicted, x.unit)} | {_pct(x.error)} | {x.dominant_term} "
                    f"({x.dominant_share * 100:.0f}%) |")
    summary = ["| split | n | median abs error | worst abs error | bias | worst run |",
               "|---|---:|---:|---:|---:|---|"]
    for split in ("check", "tune"):
        s = r.summary[split]
        summary.append(f"| {split} | {s.n} | {_pct(s.median_abs_error, 2, False)} | {_pct(s.worst_abs_error, 2, False)}"
                       f" | {s.bias * 100:.2f} % | {s.worst_run} |")
    by_gpu = ["| gpu | split | n | median abs error | worst abs error | bias |", "|---|---|---:|---:|---:|---:|"]
    for gpu in sorted(r.by_gpu):
        for split, s in r.by_gpu[gpu].items():
            by_gpu.append(f"| {gpu} | {split} | {s.n} | {_pct(s.median_abs_error, 1, False)} | "
                          f"{_pct(s.worst_abs_error, 1, False)} | {_pct(s.bias)} |")
    return {"runs": "\n".join(runs), "summary": "\n".join(summary), "by_gpu": "\n".join(by_gpu)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", action="store_true", help="replace the tables in docs/backtest.md")
    args = ap.parse_args()
    t = tables()
    if not args.write:
        print("\n\n".join(t.values()))
        return
    text = DOC.read_text(encoding="utf-8")
    for key, head in (("runs", "| run | split |"), ("summary", "| split | n |"), ("by_gpu", "| gpu | split |")):
        pattern = re.compile(r"^" + re.escape(head) + r".*?(?=\n\n|\Z)", re.S | re.M)
        text, n = pattern.subn(lambda _m, k=key: t[k], text, count=1)
        assert n == 1, f"docs/backtest.md: no table starting {head!r}"
    fd, tmp = tempfile.mkstemp(dir=DOC.parent, prefix=".backtest.")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, DOC)
    print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
