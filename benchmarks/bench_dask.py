"""Benchmark: the per-tomogram stages on Dask (``aggregate --scheduler local:N``) vs one process.

A synthetic world: ``--tomograms`` tomograms (sparse memory-mapped MRC volumes: the header
says 630 × 630 × 184 voxels of 10 Å, the disk holds almost nothing) and ``--picks`` picks from
``--pickers`` pickers (``bench_cluster.synthetic_picks``, one CZII CSV per picker). Each mode
(``serial`` and ``local:N``) runs in its own child process, so the driver's peak memory
(``ru_maxrss``) is that mode's alone:

* per stage, on the same tables: the tomogram headers, the clustering, the noise sampling, as
  today (one process) and through :mod:`picks.workflows.per_tomogram` on the cluster;
* the scheduler's cost per task (a trivial task per tomogram) and the cluster's start-up;
* ``aggregate --method vote`` end to end (import, headers, cluster, vote, noise, outputs).

From the measured per-tomogram cost it predicts the wall time on 16 and 64 workers: the
driver's own work (import, vote, store writes, outputs) stays, the fan-out stages divide by
the workers, the measured per-task overhead of the driver and scheduler stays.

    python benchmarks/bench_dask.py [--picks 2000000] [--tomograms 200] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_aggregate_vote import StageTimer, peak_rss_mb, reset_peak
from bench_cluster import EXTENT, machine, synthetic_picks

VOXEL = 10.0


def _write_world(root: Path, n_picks: int, n_tomograms: int, n_pickers: int) -> None:
    import mrcfile
    import numpy as np

    picks = synthetic_picks(n_picks, n_tomograms, n_pickers)
    # Jittered picks near a face would lie outside the volume: keep them inside.
    picks[["x", "y", "z"]] = np.clip(picks[["x", "y", "z"]].to_numpy(), 0.0, EXTENT - VOXEL)
    picks.to_pickle(root / "picks.pkl")
    for label, group in picks.groupby("picker", sort=True):
        group.assign(id=range(len(group))).rename(
            columns={"tomogram": "experiment", "particle": "particle_type"}
        )[["id", "experiment", "particle_type", "x", "y", "z", "score"]].to_csv(
            root / f"{label}.csv", index=False
        )
    volumes = root / "tomograms"
    volumes.mkdir()
    nx, ny, nz = (int(v) for v in np.ceil(EXTENT / VOXEL))
    for name in sorted(set(picks["tomogram"])):
        # new_mmap leaves the data unwritten: a sparse file, as large as the header says.
        with mrcfile.new_mmap(volumes / f"{name}.mrc", shape=(nz, ny, nx), mrc_mode=0) as mrc:
            mrc.voxel_size = VOXEL


def _stages(executor, picks, paths, radii, options, stages: dict, report: dict) -> None:
    """Time the fan-out stages one by one on the same tables (headers, clustering, noise)."""
    import numpy as np

    from picks.consensus.cluster import cluster
    from picks.consensus.noise import evasion_radii, sample_noise
    from picks.core.tomograms import read_tomogram
    from picks.workflows.per_tomogram import (
        cluster_per_tomogram,
        read_headers,
        sample_noise_per_tomogram,
    )

    t = time.perf_counter()
    tomos = [read_tomogram(p) for p in paths] if executor is None else read_headers(executor, paths)
    stages["headers"] = time.perf_counter() - t

    t = time.perf_counter()
    if executor is None:
        clusters = cluster(picks, radii, options)
    else:
        clusters = cluster_per_tomogram(executor, picks, radii, options)
    stages["cluster"] = time.perf_counter() - t

    avoid = picks[["tomogram", "particle", "x", "y", "z"]].copy()
    avoid["evasion"] = evasion_radii(list(avoid["particle"]), radii)
    counts = clusters.consensus.groupby("tomogram").size().to_dict()
    half_box = 1.25 * max(radii.values())
    t = time.perf_counter()
    if executor is None:
        noise = sample_noise(tomos, avoid, counts, half_box=half_box, max_batches=20)
    else:
        noise = sample_noise_per_tomogram(
            executor, tomos, avoid, counts, half_box=half_box, max_batches=20
        )
    stages["noise"] = time.perf_counter() - t
    report["noise_samples"] = len(noise.samples)

    if executor is not None:  # the scheduler's own cost: one trivial task per tomogram
        items = [(p.name, i) for i, p in enumerate(paths)]
        t = time.perf_counter()
        executor.map(np.square, items, label="noop")
        report["per_task_overhead_ms"] = round(1000 * (time.perf_counter() - t) / len(items), 3)


def _child(root: Path, scheduler: str | None, stages_too: bool = True) -> dict:
    import gc

    from picks.consensus.cluster import ClusterOptions, resolve_radii
    from picks.core.particles import Catalog
    from picks.core.store import Store
    from picks.workflows.aggregate import aggregate
    from picks.workflows.parallel import open_executor

    picks = __import__("pandas").read_pickle(root / "picks.pkl")
    paths = sorted((root / "tomograms").glob("*.mrc"))
    radii = resolve_radii(picks["particle"].unique(), Catalog())
    options = ClusterOptions()
    report: dict = {"mode": scheduler or "serial", "stages": {}}
    started = time.perf_counter()
    with open_executor(scheduler) as executor:
        report["startup_s"] = round(time.perf_counter() - started, 3)
        stages = report["stages"]
        if stages_too:
            _stages(executor, picks, paths, radii, options, stages, report)
        del picks
        gc.collect()
        # the aggregate's own peak, not that of the stage-by-stage timings above
        peak_reset = reset_peak()

        timer = StageTimer()
        if executor is not None:
            executor.progress = timer  # the distributed stages report through the executor
        out = root / f"out-{report['mode'].replace(':', '-')}"
        t = time.perf_counter()
        with Store(root / f"{out.name}.db") as store:
            result = aggregate(
                store,
                [f"{p.stem}={p}" for p in sorted(root.glob("picker*.csv"))],
                out=out,
                tomograms=[root / "tomograms"],
                formats=["csv"],
                method="vote",
                report=False,
                progress=timer,
                executor=executor,
            )
        report["end_to_end_s"] = round(time.perf_counter() - t, 3)
        report["end_to_end_stages_s"] = {k: round(v, 3) for k, v in timer.seconds.items()}
        report["picks"] = result.n_picks
        report["consensus"] = result.n_consensus
    report["stages"] = {k: round(v, 3) for k, v in report["stages"].items()}
    report["driver_peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    if peak_reset:  # the driver's peak during `aggregate` alone (MiB as /proc gives it)
        report["aggregate_peak_rss_mib"] = round(peak_rss_mb())
    return report


def _predict(serial: dict, dask: dict, n_tomograms: int, workers: int) -> dict:
    fan = ("headers", "cluster", "noise")
    s_fan = sum(serial["stages"][k] for k in fan)
    driver = max(serial["end_to_end_s"] - s_fan, 0.0)
    # What the distributed stages cost beyond their share of the work: shipping the tables,
    # the scheduler, joining the results. Measured on `workers`, assumed constant.
    overhead = sum(max(dask["stages"][k] - serial["stages"][k] / workers, 0.0) for k in fan)
    per_tomogram_ms = 1000 * s_fan / n_tomograms
    task_overhead = len(fan) * n_tomograms * dask.get("per_task_overhead_ms", 0.0) / 1000
    return {
        "per_tomogram_fanout_ms": round(per_tomogram_ms, 2),
        "driver_only_s": round(driver, 2),
        "fanout_overhead_s": round(overhead, 2),
        **{
            f"predicted_{w}_workers_s": round(driver + s_fan / w + overhead + dask["startup_s"], 1)
            for w in (16, 64)
        },
        # The same with only the scheduler's measured cost per task as the overhead (what a
        # cluster whose workers do not share cores with the driver comes close to).
        **{
            f"predicted_{w}_workers_task_overhead_only_s": round(
                driver + s_fan / w + task_overhead + dask["startup_s"], 1
            )
            for w in (16, 64)
        },
    }


def run_modes(script: str, root: Path, modes, extra: tuple[str, ...] = ()) -> dict[str, dict]:
    """Run ``script --child MODE --root ROOT`` once per mode, each in its own process (so each
    pays its own imports and reports its own peak memory); the JSON each prints last."""
    runs = {}
    for mode in modes:
        proc = subprocess.run(
            [sys.executable, script, "--child", mode, "--root", str(root), *extra],
            capture_output=True,
            text=True,
        )
        if proc.returncode:
            sys.exit(f"{mode} failed:\n{proc.stderr[-3000:]}")
        runs[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--picks", type=int, default=2_000_000)
    parser.add_argument("--tomograms", type=int, default=200)
    parser.add_argument("--pickers", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--end-to-end-only",
        action="store_true",
        help="only the aggregate end to end (its time and driver memory), not each stage",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode = None if args.child == "serial" else args.child
        print(json.dumps(_child(Path(args.root), mode, stages_too=not args.end_to_end_only)))
        return
    with tempfile.TemporaryDirectory(prefix="picks-bench-dask-") as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        _write_world(root, args.picks, args.tomograms, args.pickers)
        setup = time.perf_counter() - t
        extra = ("--end-to-end-only",) if args.end_to_end_only else ()
        runs = run_modes(__file__, root, ("serial", f"local:{args.workers}"), extra)
    serial, dask = runs["serial"], runs[f"local:{args.workers}"]
    report = {
        "benchmark": "aggregate per-tomogram stages: serial vs Dask LocalCluster",
        "picks": serial["picks"],
        "tomograms": args.tomograms,
        "pickers": args.pickers,
        "workers": args.workers,
        "world_setup_s": round(setup, 1),
        "serial": serial,
        "dask": dask,
        "speedup_by_stage": {
            k: round(serial["stages"][k] / dask["stages"][k], 2) if dask["stages"][k] else None
            for k in serial["stages"]
        },
        "speedup_end_to_end": round(serial["end_to_end_s"] / dask["end_to_end_s"], 2),
        "prediction": (
            None if args.end_to_end_only else _predict(serial, dask, args.tomograms, args.workers)
        ),
        "machine": machine(),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
