"""Extraction speed: MRC reader (mmap vs slab reads) × interpolation (separable vs SciPy).

    python benchmarks/bench_extract.py TOMOGRAM.mrc [--points 2000] [--box 32] [--voxel 11.7]

Cold runs first evict the file from the page cache (``posix_fadvise(DONTNEED)``, which works
for clean pages without root); warm runs read it from the cache. Points are uniform inside
the tomogram (a half box from the faces), in random order; the extractor sorts them by z.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from picks.consensus.cnn.boxes import Geometry, iter_boxes
from picks.core.tomograms import read_tomogram


def evict(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def run(points, tomo, geometry, reader, interp) -> float:
    start = time.perf_counter()
    n = 0
    for batch in iter_boxes(points, [tomo], geometry, reader=reader, interp=interp):
        n += len(batch.index)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("tomogram", type=Path)
    parser.add_argument("--points", type=int, default=2000)
    parser.add_argument("--box", type=int, default=32)
    parser.add_argument("--voxel", type=float, default=11.72)
    args = parser.parse_args()
    tomo = read_tomogram(args.tomogram)
    geometry = Geometry(args.box, args.voxel)
    extent = np.asarray(tomo.shape, dtype=float) * tomo.voxel_size
    half = geometry.side / 2
    rng = np.random.default_rng(0)
    xyz = rng.uniform(half, extent - half, size=(args.points, 3))
    points = pd.DataFrame({"tomogram": tomo.name, "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]})
    size_mb = args.tomogram.stat().st_size / 2**20
    print(
        f"{tomo.name}: {tomo.shape} voxels, {size_mb:.0f} MB; {args.points} boxes of "
        f"{args.box}³ at {args.voxel} Å/voxel; {os.cpu_count()} cores"
    )
    print(f"{'reader':6} {'interpolation':16} {'cache':5} {'seconds':>8} {'boxes/s':>8}")
    for interp in ("separable", "map_coordinates"):
        for reader in ("mmap", "slab"):
            for cache in ("cold", "warm"):
                if cache == "cold":
                    evict(args.tomogram)
                seconds = run(points, tomo, geometry, reader, interp)
                print(
                    f"{reader:6} {interp:16} {cache:5} {seconds:8.2f} {args.points / seconds:8.0f}"
                )


if __name__ == "__main__":
    main()
