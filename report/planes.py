"""Volume reads for the report's pictures: plane means read region by region, so a large
tomogram never sits in memory."""

from __future__ import annotations

import math

import numpy as np


def band(volume, lo: int, hi: int, ny: int, nx: int, max_side: int = 1200) -> np.ndarray:
    """Mean of planes ``lo..hi-1`` (``[y, x]``), read one plane at a time and binned in-plane
    so that the longer side is at most ``max_side`` (a 4k tomogram never sits in memory)."""
    f = max(1, math.ceil(max(nx, ny) / max_side))
    by, bx = ny // f * f or ny, nx // f * f or nx
    total = np.zeros((by // f if f > 1 else ny, bx // f if f > 1 else nx), dtype=np.float64)
    for zz in range(lo, hi):
        plane = volume.region((zz, 0, 0), (zz + 1, ny, nx))[0].astype(np.float64)
        if f > 1:
            plane = plane[:by, :bx].reshape(by // f, f, bx // f, f).mean(axis=(1, 3))
        total += plane
    return total / max(1, hi - lo)


def crop(volume, centre: tuple[float, float, float], half: int, planes: int) -> np.ndarray:
    """The mean of the ``2 × planes + 1`` planes around ``centre`` (voxels, x y z), a
    ``(2 half + 1)²`` window (NaN outside the volume)."""
    nz, ny, nx = volume.shape
    cx, cy, cz = (round(c) for c in centre)
    side = 2 * half + 1
    out = np.full((side, side), np.nan)
    z0, z1 = max(0, cz - planes), min(nz, cz + planes + 1)
    y0, y1 = max(0, cy - half), min(ny, cy + half + 1)
    x0, x1 = max(0, cx - half), min(nx, cx + half + 1)
    if z0 >= z1 or y0 >= y1 or x0 >= x1:
        return out
    block = volume.region((z0, y0, x0), (z1, y1, x1)).astype(np.float64).mean(axis=0)
    out[y0 - (cy - half) : y1 - (cy - half), x0 - (cx - half) : x1 - (cx - half)] = block
    return out
