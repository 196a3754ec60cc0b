"""Benchmark: ``picks import`` of one large CZII CSV or RELION 4 STAR file — time and peak
memory (target < 1.5 GB for 5,000,000 lines).

Writes a CZII submission CSV (``--format csv``: 100 tomograms, five classes, a score) or a
RELION 4 particle STAR file (``--format star``: an optics block, then ``rlnTomoName``, pixel
coordinates, three angles, ``rlnAutopickFigureOfMerit`` and ``rlnOpticsGroup`` for 100
tomograms) of ``--lines`` picks into a temporary folder, then runs ``picks import`` on it in a
fresh process under ``/usr/bin/time -v`` (GNU time), so the peak resident memory is that of the
import alone; then imports it again (a no-op: same bytes, same picks).

    python benchmarks/bench_import.py [--lines N] [--format csv|star] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_cluster import machine

CLASSES = ["apo-ferritin", "beta-amylase", "beta-galactosidase", "ribosome", "thyroglobulin"]


def write_csv(path: Path, lines: int, seed: int = 0, block: int = 500_000) -> None:
    """A CZII CSV of ``lines`` picks, written a block at a time (never whole in memory)."""
    import pandas as pd

    from picks.core.csvtext import csv_text

    rng = np.random.default_rng(seed)
    with open(path, "w") as handle:
        for start in range(0, lines, block):
            n = min(block, lines - start)
            table = pd.DataFrame(
                {
                    "id": np.arange(start, start + n),
                    "experiment": np.array([f"TS_{i:03d}" for i in range(100)], dtype=object)[
                        rng.integers(0, 100, n)
                    ],
                    "particle_type": np.array(CLASSES, dtype=object)[rng.integers(0, 5, n)],
                    "x": rng.uniform(0, 6300, n),
                    "y": rng.uniform(0, 6300, n),
                    "z": rng.uniform(0, 1840, n),
                    "score": rng.random(n),
                }
            )
            handle.write(csv_text(table, float_format="%.3f", header=start == 0))


def write_star(path: Path, lines: int, seed: int = 0, block: int = 500_000) -> None:
    """A RELION 4 particle STAR file of ``lines`` picks (tilt-series pixels of 1.35 Å), written
    a block at a time (never whole in memory)."""
    import pandas as pd

    from picks.core.csvtext import csv_text

    rng = np.random.default_rng(seed)
    labels = [
        "rlnTomoName",
        "rlnCoordinateX",
        "rlnCoordinateY",
        "rlnCoordinateZ",
        "rlnAngleRot",
        "rlnAngleTilt",
        "rlnAnglePsi",
        "rlnAutopickFigureOfMerit",
        "rlnOpticsGroup",
    ]
    with open(path, "w") as handle:
        handle.write("# version 30001\n\ndata_optics\n\nloop_\n_rlnOpticsGroup #1\n")
        handle.write("_rlnOpticsGroupName #2\n_rlnTomoTiltSeriesPixelSize #3\n")
        handle.write("1 opticsGroup1 1.350000\n\n\n# version 30001\n\ndata_particles\n\nloop_\n")
        handle.write("".join(f"_{label} #{i}\n" for i, label in enumerate(labels, start=1)))
        for start in range(0, lines, block):
            n = min(block, lines - start)
            table = pd.DataFrame(
                {
                    "tomo": np.array([f"TS_{i:03d}" for i in range(100)], dtype=object)[
                        rng.integers(0, 100, n)
                    ],
                    "x": rng.uniform(0, 4000, n),
                    "y": rng.uniform(0, 4000, n),
                    "z": rng.uniform(0, 1200, n),
                    "rot": rng.uniform(-180, 180, n),
                    "tilt": rng.uniform(0, 180, n),
                    "psi": rng.uniform(-180, 180, n),
                    "fom": rng.random(n),
                    "group": np.ones(n, dtype=int),
                }
            )
            text = csv_text(table, float_format="%.6f", header=False)
            handle.write(text.replace(",", "\t"))


def timed_import(path: Path, db: Path) -> dict:
    """Run ``picks import`` in its own process; wall seconds and peak RSS (GNU time)."""
    command = [sys.executable, "-c", "from picks.cli import main; main()"]
    command += ["import", str(path), "--db", str(db), "--json"]
    if Path("/usr/bin/time").exists():
        command = ["/usr/bin/time", "-v", *command]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        sys.exit(f"picks import failed:\n{done.stderr[-2000:]}")
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    # CPU seconds (user + system) say more than wall seconds on a shared machine
    cpu = [float(m) for m in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", done.stderr)]
    return {
        "seconds": round(seconds, 2),
        "cpu_seconds": round(sum(cpu), 2) if cpu else None,
        "peak_rss_mb": round(int(peak.group(1)) / 1024, 1) if peak else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=5_000_000)
    parser.add_argument("--format", choices=("csv", "star"), default="csv")
    parser.add_argument("--keep", type=Path, help="write the CSV and store here (kept)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="picks-bench-import-") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        path = root / ("submission.csv" if args.format == "csv" else "particles.star")
        if not path.exists():
            (write_csv if args.format == "csv" else write_star)(path, args.lines)
        db = root / "picks.db"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        first = timed_import(path, db)
        again = timed_import(path, db)
        report = {
            "benchmark": f"picks import ({'CZII CSV' if args.format == 'csv' else 'RELION 4 STAR'})",
            "lines": args.lines,
            "file_mb": round(path.stat().st_size / 2**20, 1),
            "import": first,
            "re-import (no-op)": again,
            "load_average": os.getloadavg()[0],
            "machine": machine(),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
