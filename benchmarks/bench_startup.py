"""Start-up time of the commands people type most: ``picks --help`` (target < 0.3 s) and the
store listings ``picks runs`` / ``picks sources`` (target < 0.5 s).

    python benchmarks/bench_startup.py [--db picks.db] [--repeat 7]

Prints the best of ``--repeat`` runs of each command (a fresh interpreter each time, as a user
gets). The listings need a store: by default a small one is made in a temporary folder
(two CZII CSV imports). Best-of-N, because a busy machine only ever adds time.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def best_of(argv: list[str], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        best = min(best, time.perf_counter() - start)
    return best


def small_store(folder: Path, picks: list[str]) -> Path:
    """A store holding two small imports (CZII CSV files written here)."""
    db = folder / "picks.db"
    for picker in ("a", "b"):
        path = folder / f"{picker}.csv"
        lines = ["experiment,particle_type,x,y,z"]
        lines += [f"TS_1,ribosome,{100 + 7 * i},{200 + 3 * i},{300 + i}" for i in range(200)]
        path.write_text("\n".join(lines) + "\n")
        subprocess.run(
            [
                *picks,
                "import",
                str(path),
                "--picker",
                picker,
                "--voxel-size",
                "10",
                "--db",
                str(db),
            ],
            capture_output=True,
            check=True,
        )
    return db


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", type=Path, help="an existing store (else a small one is made)")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    picks = [sys.executable, "-c", "from picks.cli import main; main()"]
    rows = {"picks --help": best_of([*picks, "--help"], args.repeat)}
    with tempfile.TemporaryDirectory() as tmp:
        db = args.db or small_store(Path(tmp), picks)
        if db.exists():
            for command in ("runs", "sources"):
                rows[f"picks {command}"] = best_of([*picks, command, "--db", str(db)], args.repeat)
    for command, seconds in rows.items():
        print(f"{command:<16} {seconds:.3f} s (best of {args.repeat})")


if __name__ == "__main__":
    main()
