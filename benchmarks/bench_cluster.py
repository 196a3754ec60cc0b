"""Benchmark: cluster 1,000,000 picks from 4 pickers over 100 tomograms (target < 15 s).

Synthetic but realistic: per tomogram (630 × 630 × 184 voxels at 10 Å, the CZII size) about
2,800 particles of five classes; each picker finds 80 % of them with a 12 Å position error,
reports 5 % of its finds twice, and fills up with false positives. Only
:func:`picks.consensus.cluster.cluster` is timed (no store, no files).

    python benchmarks/bench_cluster.py [--picks N] [--tomograms T] [--pickers P] [--repeat R]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import pandas as pd

CLASSES = ["apo-ferritin", "beta-galactosidase", "ribosome", "thyroglobulin", "virus-like-particle"]
EXTENT = np.array([6300.0, 6300.0, 1840.0])


def synthetic_picks(n_picks: int, n_tomograms: int, n_pickers: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    per_picker = n_picks // (n_tomograms * n_pickers)
    n_particles = int(per_picker / 0.9)
    frames = []
    for t in range(n_tomograms):
        centres = rng.uniform(0, 1, (n_particles, 3)) * EXTENT
        classes = rng.choice(CLASSES, n_particles)
        for k in range(n_pickers):
            found = rng.random(n_particles) < 0.8
            xyz = centres[found] + rng.normal(0, 12.0, (int(found.sum()), 3))
            cls = classes[found]
            twice = rng.random(len(xyz)) < 0.05
            xyz = np.vstack([xyz, xyz[twice] + rng.normal(0, 15.0, (int(twice.sum()), 3))])
            cls = np.r_[cls, cls[twice]]
            n_fp = max(per_picker - len(xyz), 0)
            xyz = np.vstack([xyz, rng.uniform(0, 1, (n_fp, 3)) * EXTENT])[:per_picker]
            cls = np.r_[cls, rng.choice(CLASSES, n_fp)][:per_picker]
            frames.append(
                pd.DataFrame(
                    {
                        "tomogram": f"TS_{t:03d}",
                        "particle": cls,
                        "picker": f"picker{k}",
                        "x": xyz[:, 0],
                        "y": xyz[:, 1],
                        "z": xyz[:, 2],
                        "score": rng.random(len(xyz)),
                    }
                )
            )
    picks = pd.concat(frames, ignore_index=True)
    picks["id"] = np.arange(1, len(picks) + 1)
    return picks


def machine() -> dict:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
    }


def main() -> None:
    from picks.consensus.cluster import ClusterOptions, cluster, resolve_radii
    from picks.core.particles import Catalog

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--picks", type=int, default=1_000_000)
    parser.add_argument("--tomograms", type=int, default=100)
    parser.add_argument("--pickers", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--representative", default="centroid")
    args = parser.parse_args()

    picks = synthetic_picks(args.picks, args.tomograms, args.pickers)
    radii = resolve_radii(picks["particle"].unique(), Catalog())
    options = ClusterOptions(representative=args.representative)
    times = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        result = cluster(picks, radii, options)
        times.append(time.perf_counter() - start)
    best = min(times)
    report = {
        "benchmark": "cluster",
        "picks": len(picks),
        "tomograms": args.tomograms,
        "pickers": args.pickers,
        "seconds_best": round(best, 3),
        "seconds_all": [round(t, 3) for t in times],
        "picks_per_second": round(len(picks) / best),
        "stats": result.stats,
        "support_histogram": result.consensus["n_pickers"].value_counts().sort_index().to_dict(),
        "machine": machine(),
    }
    print(json.dumps(report, indent=2, default=int))


if __name__ == "__main__":
    main()
