"""Benchmark: ``picks aggregate --method vote`` on 100,000 picks end to end (target < 60 s).

Writes one CZII CSV per picker (4 pickers, 10 tomograms, synthetic picks as in
``bench_cluster.py``) into a temporary folder, then times :func:`aggregate` into a fresh
store: import (read, check, bulk insert), cluster, vote, store consensus and members, write
the accepted picks (one CSV per class) and record the exports. Stage times come from the
progress protocol the CLI uses.

    python benchmarks/bench_aggregate_vote.py [--picks N] [--tomograms T] [--pickers P]
        [--identical]

``--identical``: every pick the same (one tomogram, one class, one position, one score),
split over the pickers: issue 11 item 7's worst case for clustering (every pick within every
other's radius).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pandas as pd
from bench_cluster import CLASSES, machine, synthetic_picks


class StageTimer:
    """A progress factory that records how long each stage (import, cluster, write) takes."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        # CPU seconds of this process per stage: what a shared machine's load does not change
        self.cpu: dict[str, float] = {}
        # the process's peak resident memory when each stage ended (MB; it never goes down)
        self.peak_mb: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, description: str = "", total: int | None = None):
        start, cpu = time.perf_counter(), time.process_time()
        yield lambda n=1, **kw: None
        self.cpu[description] = self.cpu.get(description, 0.0) + time.process_time() - cpu
        self.seconds[description] = self.seconds.get(description, 0.0) + time.perf_counter() - start
        self.peak_mb[description] = peak_rss_mb()


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB (Linux: VmHWM, which
    :func:`reset_peak` sets back to the current size; else ru_maxrss, in KiB)."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def reset_peak() -> bool:
    """Start the peak over from now (Linux: "5" to /proc/self/clear_refs), so that the peak
    reported is the aggregate's, not that of writing the benchmark's input files."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def identical_picks(n_picks: int, n_pickers: int) -> pd.DataFrame:
    """``n_picks`` copies of one pick (tomogram, class, position, score), over the pickers."""
    return pd.DataFrame(
        {
            "tomogram": "TS_000",
            "particle": CLASSES[0],
            "picker": [f"picker{k % n_pickers}" for k in range(n_picks)],
            "x": 1000.0,
            "y": 2000.0,
            "z": 500.0,
            "score": 0.5,
        }
    )


def current_rss_mb() -> float:
    """Resident memory of this process now, in MB (Linux: /proc/self/statm, in pages)."""
    import os

    with open("/proc/self/statm") as handle:
        return round(int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def main() -> None:
    from picks.core.store import Store
    from picks.workflows.aggregate import aggregate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--picks", type=int, default=100_000)
    parser.add_argument("--tomograms", type=int, default=10)
    parser.add_argument("--pickers", type=int, default=4)
    parser.add_argument(
        "--format", action="append", default=None, help="output formats (default csv)"
    )
    parser.add_argument(
        "--identical", action="store_true", help="every pick the same (one position, one class)"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="picks-bench-") as tmp:
        root = Path(tmp)
        picks = (
            identical_picks(args.picks, args.pickers)
            if args.identical
            else synthetic_picks(args.picks, args.tomograms, args.pickers)
        )
        inputs = []
        for k, (label, group) in enumerate(picks.groupby("picker", sort=True)):
            path = root / f"{label}.csv"
            # identical picks: the ids make each picker's file its own (else one source)
            first = k * len(group) if args.identical else 0
            group.assign(id=range(first, first + len(group))).rename(
                columns={"tomogram": "experiment", "particle": "particle_type"}
            )[["id", "experiment", "particle_type", "x", "y", "z", "score"]].to_csv(
                path, index=False
            )
            inputs.append(f"{label}={path}")
        # the synthetic picks are the benchmark's, not the aggregate's: let them go (the
        # peak memory reported is then the aggregate's own, plus the interpreter)
        del picks, group
        gc.collect()
        rss_before = current_rss_mb()
        peak_reset = reset_peak()
        timer = StageTimer()
        start, cpu = time.perf_counter(), time.process_time()
        with Store(root / "picks.db") as store:
            result = aggregate(
                store,
                inputs,
                out=root / "out",
                formats=args.format or ["csv"],
                method="vote",
                progress=timer,
            )
        total = time.perf_counter() - start
        cpu_total = time.process_time() - cpu
    report = {
        "benchmark": "aggregate --method vote",
        "picks": result.n_picks,
        "pickers": len(result.pickers),
        "tomograms": 1 if args.identical else args.tomograms,
        "identical": args.identical,
        "consensus": result.n_consensus,
        "accepted": result.n_accepted,
        "files_written": len(result.outputs),
        "seconds_total": round(total, 3),
        "seconds_by_stage": {
            **{k: round(v, 3) for k, v in timer.seconds.items()},
            "vote+store+summary": round(total - sum(timer.seconds.values()), 3),
        },
        "cpu_seconds_total": round(cpu_total, 3),
        "cpu_seconds_by_stage": {
            **{k: round(v, 3) for k, v in timer.cpu.items()},
            "vote+store+summary": round(cpu_total - sum(timer.cpu.values()), 3),
        },
        "picks_per_second": round(result.n_picks / total),
        "peak_rss_mb_after": {**timer.peak_mb, "end": peak_rss_mb()},
        # resident memory when the aggregate began (interpreter, libraries, freed input data)
        "rss_mb_at_start": rss_before,
        "peak_counts_from_start": peak_reset,
        "machine": machine(),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
