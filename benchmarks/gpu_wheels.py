"""The carried wheel set of the GPU validation: the pins (benchmarks/gpu_wheels.txt) against a wheel folder.

Standard library only: it runs on the developer machine (benchmarks/fetch_gpu_wheels.sh) and on the GPU
machine before anything is installed (benchmarks/gpu_validate.sh).

    python benchmarks/gpu_wheels.py pins              the pins, "name==version" separated by spaces
    python benchmarks/gpu_wheels.py check DIR         the wheel files, one a line; exit 2 unless DIR holds
                                                      exactly one wheel per pin and nothing else
    python benchmarks/gpu_wheels.py prune DIR         remove wheels in DIR that no pin names (old versions)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

PINS_FILE = Path(__file__).with_name("gpu_wheels.txt")


def normalize(name: str) -> str:
    """A distribution name as PEP 503 compares them (lower case, runs of -_. as one -)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path = PINS_FILE) -> dict[str, str]:
    """{normalized name: version} from a pins file ("name==version", # comments).

    Args:
        path: the pins file.
    Returns:
        the pins; ValueError on a line that is not an exact pin.
    """
    pins: dict[str, str] = {}
    for n, raw in enumerate(Path(path).read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!]+)", line)
        if not m:
            raise ValueError(f"{path}:{n}: not an exact pin 'name==version': {line!r}")
        if normalize(m.group(1)) in pins:
            raise ValueError(f"{path}:{n}: {m.group(1)} is pinned twice")
        pins[normalize(m.group(1))] = m.group(2)
    return pins


def wheel_name_version(filename: str) -> tuple[str, str]:
    """(normalized name, version) of a wheel file name (name-version-[build-]python-abi-platform.whl)."""
    parts = Path(filename).name[:-len(".whl")].split("-")
    if len(parts) < 5:
        raise ValueError(f"not a wheel file name: {filename}")
    return normalize(parts[0]), parts[1]


def check_dir(folder: Path, pins: dict[str, str]) -> list[Path]:
    """The wheel of every pin in `folder`; ValueError naming what is missing, doubled or extra.

    Args:
        folder: the wheel folder. pins: from read_pins.
    Returns:
        the wheel paths, in pin order.
    """
    found: dict[str, list[Path]] = {}
    for whl in sorted(Path(folder).glob("*.whl")):
        found.setdefault(wheel_name_version(whl.name)[0], []).append(whl)
    problems = []
    for name, version in pins.items():
        have = found.get(name, [])
        if len(have) != 1 or wheel_name_version(have[0].name)[1] != version:
            problems.append(f"{name}=={version}: found {[p.name for p in have] or 'nothing'}")
    problems += [f"{name}: not pinned ({[p.name for p in paths]})" for name, paths in found.items()
                 if name not in pins]
    if problems:
        raise ValueError(f"wheel folder {folder} does not match {PINS_FILE.name}: " + "; ".join(problems))
    return [found[name][0] for name in pins]


def prune(folder: Path, pins: dict[str, str]) -> list[Path]:
    """Remove wheels whose name and version no pin names; returns what was removed."""
    removed = []
    for whl in sorted(Path(folder).glob("*.whl")):
        name, version = wheel_name_version(whl.name)
        if pins.get(name) != version:
            whl.unlink()
            removed.append(whl)
    return removed


def main(argv: list[str]) -> int:
    """The command line above; returns the exit status."""
    pins = read_pins()
    if argv[:1] == ["pins"]:
        print(" ".join(f"{n}=={v}" for n, v in pins.items()))
        return 0
    if len(argv) == 2 and argv[0] in ("check", "prune"):
        try:
            if argv[0] == "prune":
                for p in prune(Path(argv[1]), pins):
                    print(f"removed {p.name} (not pinned)", file=sys.stderr)
                return 0
            print("\n".join(str(p) for p in check_dir(Path(argv[1]), pins)))
            return 0
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    print("usage: gpu_wheels.py pins | check DIR | prune DIR", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
