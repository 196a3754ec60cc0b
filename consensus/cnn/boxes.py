"""Subtomogram extraction: cubic boxes around points, resampled to the network input.

Conventions
-----------
* Points are in Å in the canonical frame: ``x_Å = i × voxel_size`` for the 0-based voxel
  index ``i`` (origin at the centre of voxel 0). Volumes are indexed ``[z, y, x]`` (MRC order,
  x fastest); boxes come out in the same ``[z, y, x]`` order.
* **One working voxel size.** Every tomogram is resampled to :attr:`Geometry.voxel_size`
  (Å per box voxel), so tomograms with different voxel sizes look alike to the network. By
  default the box covers the largest particle of the run: ``side = 2 × radius × margin`` and
  ``voxel_size = side / box`` (:func:`geometry_for`).
* **Resampling** is trilinear on floating-point coordinates (no rounding of the pick
  position). Because the sample grid is axis-aligned, trilinear interpolation is separable:
  three 1-D linear interpolations (x, then y, then z) on the small region the box needs give
  exactly the values of ``scipy.ndimage.map_coordinates(order=1)`` about six times faster
  (``interp="map_coordinates"`` uses SciPy itself; tests check both agree). When the box is
  coarser than the tomogram by more than 25 %, the region is first smoothed with a Gaussian of
  σ = (step − 1)/2 voxels (the anti-aliasing rule of scikit-image's ``rescale``).
* **Normalisation:** each box gets zero mean and unit standard deviation.
* **Edges** (:class:`EdgePolicy`): a sample is outside when it lies beyond the outer faces of
  the edge voxels (``< −0.5`` or ``> n − 0.5`` in voxel units). ``pad`` fills outside samples
  with the mean of the inside samples of the same box; ``reflect`` mirrors the volume at its
  faces; ``drop`` drops every box that is not entirely inside. Under every policy a box with
  more than ``max_outside`` of its volume outside is dropped, and so is a point whose centre
  is outside the tomogram. Drops are never silent: each one comes back with its reason in
  :attr:`Batch.dropped`, for the caller to store in the ``dropped`` table.
* **Lazy, bounded reading** (the readers are in :mod:`picks.consensus.cnn.volumes`). Only the
  regions the boxes need are read: MRC through ``mrcfile.mmap`` (``reader="mmap"``) or with explicit positioned reads of the rows needed
  (``reader="slab"``); OME-Zarr through zarr (the pyramid level closest to, but not coarser
  than, the working voxel size). Points are processed per tomogram in z order, in chunks of
  at most ``batch_size`` points whose region holds at most ``max_region_voxels`` voxels (a
  chunk that would need more is split), so memory stays bounded whatever the tomogram size.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage

# the volume readers moved to volumes.py; ``X as X`` keeps them importable from here
from picks.consensus.cnn.volumes import READERS as READERS
from picks.consensus.cnn.volumes import MrcMmapVolume as MrcMmapVolume
from picks.consensus.cnn.volumes import MrcSlabVolume as MrcSlabVolume
from picks.consensus.cnn.volumes import Volume, open_volume
from picks.consensus.cnn.volumes import ZarrVolume as ZarrVolume
from picks.core.errors import PicksError
from picks.core.tomograms import Tomogram, TomogramSet

EDGE_MODES = ("pad", "reflect", "drop")
INTERPOLATIONS = ("separable", "map_coordinates")
DEFAULT_BOX = 32
DEFAULT_MARGIN = 1.25
DEFAULT_MAX_OUTSIDE = 0.5
DEFAULT_MAX_REGION_VOXELS = 32 * 1024 * 1024  # 128 MB as float32


# -- geometry ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Geometry:
    """What one box looks like: ``box`` voxels a side at ``voxel_size`` Å each.

    ``border`` extra voxels on every side are extracted for shift augmentation (training
    crops a random ``box``³ window out of the ``box + 2·border`` cube).
    """

    box: int = DEFAULT_BOX
    voxel_size: float = 10.0
    border: int = 0

    @property
    def size(self) -> int:
        """Edge length of the extracted cube in voxels (box plus borders)."""
        return self.box + 2 * self.border

    @property
    def side(self) -> float:
        """Edge length in Å of the network input."""
        return self.box * self.voxel_size

    def with_border(self, border: int) -> Geometry:
        return Geometry(self.box, self.voxel_size, int(border))

    @classmethod
    def of_card(cls, card: dict) -> Geometry:
        """The box a saved model was trained on (its card's ``box`` and ``voxel_size``)."""
        return cls(int(card["box"]), float(card["voxel_size"]), 0)

    def as_dict(self) -> dict:
        return {"box": self.box, "voxel_size": self.voxel_size, "side_angstrom": self.side}


def geometry_for(
    radii: Iterable[float],
    *,
    box: int = DEFAULT_BOX,
    margin: float = DEFAULT_MARGIN,
    working_voxel_size: float | None = None,
    border: int = 0,
) -> Geometry:
    """The box for particles of the given radii (Å).

    The box side covers the largest diameter times ``margin``; ``working_voxel_size`` (Å)
    overrides that, fixing the sampling instead (the side is then ``box × working_voxel_size``
    and may not cover the largest particle).
    """
    box = int(box)
    if box < 8:
        raise PicksError(f"box size {box} is too small: use at least 8 voxels (default 32)")
    if working_voxel_size is not None:
        if working_voxel_size <= 0:
            raise PicksError(f"working voxel size {working_voxel_size} Å must be > 0")
        return Geometry(box, float(working_voxel_size), border)
    radii = [float(r) for r in radii]
    if not radii:
        raise PicksError("no particle radius known: cannot size the extraction box")
    if margin <= 0:
        raise PicksError(f"box margin {margin} must be > 0 (1.25 = diameter plus 25 %)")
    side = 2.0 * max(radii) * float(margin)
    return Geometry(box, side / box, border)


@dataclass(frozen=True)
class EdgePolicy:
    """How boxes that cross the tomogram edge are handled (see the module docstring)."""

    mode: str = "pad"
    max_outside: float = DEFAULT_MAX_OUTSIDE

    def __post_init__(self) -> None:
        if self.mode not in EDGE_MODES:
            raise PicksError(f"edge policy {self.mode!r}: expected one of {', '.join(EDGE_MODES)}")
        if not 0.0 <= self.max_outside <= 1.0:
            raise PicksError(f"max outside fraction {self.max_outside} must lie in 0..1")

    @property
    def limit(self) -> float:
        return 0.0 if self.mode == "drop" else self.max_outside


# -- extraction -------------------------------------------------------------------------------
@dataclass
class Batch:
    """Boxes for some points of the input table.

    ``index`` holds row positions (0-based) into the points table; ``boxes`` has shape
    ``(len(index), size, size, size)`` in ``[z, y, x]`` order; ``dropped`` lists
    ``(position, reason)`` for points of this batch that got no box.
    """

    index: np.ndarray
    boxes: np.ndarray
    dropped: list[tuple[int, str]] = field(default_factory=list)


@dataclass
class Extracted:
    """All boxes of a points table in memory (see :func:`extract`)."""

    index: np.ndarray
    boxes: np.ndarray
    dropped: list[tuple[int, str]]


def tomogram_lookup(tomograms) -> dict[str, Tomogram]:
    """Name → :class:`Tomogram` from a TomogramSet, Tomograms, a dict, or volume paths."""
    if isinstance(tomograms, dict):
        return dict(tomograms)
    from picks.core.tomograms import read_tomogram

    out: dict[str, Tomogram] = {}
    for item in tomograms or ():
        tomo = item if isinstance(item, Tomogram) else read_tomogram(item)
        out[tomo.name] = tomo
    return out


def iter_boxes(
    points: pd.DataFrame,
    tomograms: TomogramSet | Iterable[Tomogram] | dict,
    geometry: Geometry,
    *,
    edge: EdgePolicy | None = None,
    batch_size: int = 128,
    reader: str = "mmap",
    interp: str = "separable",
    dtype: np.dtype | type = np.float32,
    max_region_voxels: int = DEFAULT_MAX_REGION_VOXELS,
) -> Iterator[Batch]:
    """Stream normalised boxes for ``points`` (columns ``tomogram, x, y, z`` in Å).

    Yields one :class:`Batch` per chunk of at most ``batch_size`` points; tomograms in name
    order, points in z order within a tomogram. Every input row appears exactly once, either
    in a batch's ``index`` or in its ``dropped`` list.
    """
    edge = edge or EdgePolicy()
    if interp not in INTERPOLATIONS:
        raise PicksError(f"interpolation {interp!r}: expected one of {', '.join(INTERPOLATIONS)}")
    if batch_size < 1:
        raise PicksError(f"batch size {batch_size} must be ≥ 1")
    lookup = tomogram_lookup(tomograms)
    names = points["tomogram"].astype(str).to_numpy()
    xyz = points[["x", "y", "z"]].to_numpy(dtype=float)
    for name in sorted(set(names.tolist())):
        rows = np.flatnonzero(names == name)
        bad = ~np.isfinite(xyz[rows]).all(axis=1)
        if bad.any():
            yield _empty(
                geometry, dtype, [(int(i), "coordinate is not a finite number") for i in rows[bad]]
            )
            rows = rows[~bad]
        if not len(rows):
            continue
        tomo = lookup.get(name)
        if tomo is None or not tomo.path:
            reason = (
                f"no tomogram volume registered for {name!r}"
                if tomo is None
                else f"tomogram {name!r} has no file path registered"
            )
            for start in range(0, len(rows), batch_size):
                yield _empty(
                    geometry, dtype, [(int(i), reason) for i in rows[start : start + batch_size]]
                )
            continue
        with open_volume(tomo, reader=reader, target_voxel_size=geometry.voxel_size) as volume:
            yield from _tomogram_batches(
                volume,
                rows,
                xyz[rows],
                geometry,
                edge,
                batch_size,
                interp,
                np.dtype(dtype),
                max_region_voxels,
            )


def extract(
    points: pd.DataFrame,
    tomograms: TomogramSet | Iterable[Tomogram] | dict,
    geometry: Geometry,
    *,
    dtype: np.dtype | type = np.float16,
    progress=None,
    out: np.ndarray | None = None,
    **options,
) -> Extracted:
    """All boxes in one array (``dtype`` float16 by default: half the memory of float32).

    ``index`` is sorted so ``boxes[k]`` belongs to row ``index[k]`` of ``points``.
    ``progress`` is an ``advance(n)`` callable or None. ``out``: an array of at least
    ``len(points)`` boxes of the geometry's size (its dtype is used) to fill instead of a new
    one; the returned boxes are its first rows (a caller that appends boxes later, such as
    the hard negatives, leaves room after them and needs no copy).
    """
    size = geometry.size
    if out is None:
        boxes = np.empty((len(points), size, size, size), dtype=dtype)
    elif out.shape[0] < len(points) or out.shape[1:] != (size, size, size):
        raise PicksError(
            f"extract: `out` holds {out.shape}, needs at least {len(points)} boxes of {size}³"
        )
    else:
        boxes = out
    kept = np.zeros(len(points), dtype=bool)
    dropped: list[tuple[int, str]] = []
    for batch in iter_boxes(points, tomograms, geometry, dtype=np.float32, **options):
        # each box goes to its row's slot at once: no sorted copy of every box at the end
        boxes[batch.index] = batch.boxes
        kept[batch.index] = True
        dropped.extend(batch.dropped)
        if progress is not None:
            progress(len(batch.index) + len(batch.dropped))
    index = np.flatnonzero(kept)
    _close_gaps(boxes, index)
    return Extracted(index, boxes[: len(index)], sorted(dropped))


def _close_gaps(boxes: np.ndarray, index: np.ndarray) -> None:
    """Move the boxes of rows ``index`` (ascending) to slots ``0..len(index)-1``, in place.

    Row ``index[j] >= j``, so slot ``j`` is never a source still to be read: moving them in
    ascending order is safe. Only the rows after the first dropped one move (few boxes are
    dropped, usually at the edges), one box at a time so no run needs a temporary copy.
    """
    moved = np.flatnonzero(index != np.arange(len(index)))
    for j in moved:
        boxes[j] = boxes[index[j]]


def _empty(geometry: Geometry, dtype, dropped: list[tuple[int, str]]) -> Batch:
    s = geometry.size
    return Batch(np.zeros(0, dtype=np.int64), np.zeros((0, s, s, s), dtype=dtype), dropped)


def _axis_coordinates(volume: Volume, xyz: np.ndarray, geometry: Geometry) -> list[np.ndarray]:
    """Per axis (z, y, x): sample coordinates in level voxels, shape ``(m, size)``."""
    step = geometry.voxel_size / volume.voxel_size
    offsets = (np.arange(geometry.size) - (geometry.size - 1) / 2.0) * step
    centre = (xyz[:, ::-1] - volume.origin) / volume.voxel_size  # z, y, x
    return [centre[:, a, None] + offsets[None, :] for a in range(3)]


def _fold(coords: np.ndarray, n: int, mode: str) -> np.ndarray:
    """Bring coordinates into ``[0, n-1]``: mirror at the faces (reflect) or clamp."""
    if mode == "reflect":
        period = 2.0 * n
        c = np.mod(coords + 0.5, period)
        c = np.where(c >= n, period - c, c) - 0.5
        return np.clip(c, 0.0, n - 1.0)
    return np.clip(coords, 0.0, n - 1.0)


def _tomogram_batches(
    volume: Volume,
    rows: np.ndarray,
    xyz: np.ndarray,
    geometry: Geometry,
    edge: EdgePolicy,
    batch_size: int,
    interp: str,
    dtype: np.dtype,
    max_region_voxels: int,
) -> Iterator[Batch]:
    shape = volume.shape
    coords = _axis_coordinates(volume, xyz, geometry)
    core = slice(geometry.border, geometry.border + geometry.box)
    # fraction of the core box outside the volume (the grid is separable: a product per axis)
    inside = [(c >= -0.5) & (c <= n - 0.5) for c, n in zip(coords, shape, strict=True)]
    frac_in = np.prod([ins[:, core].mean(axis=1) for ins in inside], axis=0)
    outside = 1.0 - frac_in
    centre = (xyz[:, ::-1] - volume.origin) / volume.voxel_size
    centre_out = ((centre < -0.5) | (centre > np.asarray(shape) - 0.5)).any(axis=1)
    drop_reason: dict[int, str] = {}
    for k in np.flatnonzero(centre_out):
        drop_reason[k] = f"centre outside the tomogram {volume.name!r}"
    for k in np.flatnonzero(~centre_out & (outside > edge.limit + 1e-9)):
        drop_reason[k] = (
            f"box {outside[k]:.0%} outside the tomogram (edge policy {edge.mode}, "
            f"limit {edge.limit:.0%})"
        )
    folded = [_fold(c, n, edge.mode) for c, n in zip(coords, shape, strict=True)]
    step = geometry.voxel_size / volume.voxel_size
    sigma = (step - 1.0) / 2.0 if step > 1.25 else 0.0
    pad = int(np.ceil(3 * sigma)) + 1 if sigma else 0
    lo = np.stack([np.floor(f.min(axis=1)).astype(np.int64) - pad for f in folded], axis=1)
    hi = np.stack([np.floor(f.max(axis=1)).astype(np.int64) + 2 + pad for f in folded], axis=1)
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, np.asarray(shape))
    keep = np.array(
        [k for k in np.argsort(centre[:, 0], kind="stable") if k not in drop_reason], dtype=np.int64
    )
    dropped_order = sorted(drop_reason)
    scratch = _Scratch()
    for start in range(0, max(len(keep), 1), batch_size):
        chunk = keep[start : start + batch_size]
        dropped = [(int(rows[k]), drop_reason[k]) for k in dropped_order] if start == 0 else []
        if not len(chunk):
            if dropped:
                yield _empty(geometry, dtype, dropped)
            continue
        out_index: list[int] = []
        s = geometry.size
        # Each normalised box is written straight into the batch (no list of boxes to stack:
        # that copy, and its allocation, cost as much as a third of the sampling).
        boxes = np.empty((len(chunk), s, s, s), dtype=dtype)
        for part in _split(chunk, lo, hi, max_region_voxels):
            r_lo = lo[part].min(axis=0)
            r_hi = hi[part].max(axis=0)
            region = volume.region(r_lo, r_hi)
            for k in part:
                folded_k = [f[k] for f in folded]
                box = _sample(region, r_lo, lo[k], hi[k], folded_k, sigma, interp, scratch)
                # the 3-D mask only for a box that crosses a face (most do not)
                if edge.mode == "pad" and not all(ins[k].all() for ins in inside):
                    mask = (
                        inside[0][k][:, None, None]
                        & inside[1][k][None, :, None]
                        & inside[2][k][None, None, :]
                    )
                    box[~mask] = box[mask].mean()
                mean = box[core, core, core].mean()
                sd = box[core, core, core].std()
                if not np.isfinite(sd) or sd < 1e-6 * max(1.0, abs(mean)):
                    dropped.append((int(rows[k]), "box has no contrast (constant values)"))
                    continue
                # (box - mean) / sd in float32 as before, then stored as ``dtype``: in place
                # when the batch is float32, else through the box (_sample's own array)
                target = boxes[len(out_index)]
                work = target if boxes.dtype == np.float32 else box
                np.subtract(box, mean, out=work)
                np.divide(work, sd, out=work)
                if work is not target:
                    target[...] = work
                out_index.append(int(rows[k]))
        boxes = boxes[: len(out_index)]
        yield Batch(np.asarray(out_index, dtype=np.int64), boxes, dropped)


def _split(chunk: np.ndarray, lo: np.ndarray, hi: np.ndarray, limit: int) -> list[np.ndarray]:
    """Split a chunk of points until the region each part needs holds ≤ ``limit`` voxels."""
    extent = hi[chunk].max(axis=0) - lo[chunk].min(axis=0)
    if len(chunk) == 1 or int(np.prod(extent)) <= limit:
        return [chunk]
    axis = int(np.argmax(extent))
    centre = (lo[chunk, axis] + hi[chunk, axis]) / 2.0
    order = chunk[np.argsort(centre, kind="stable")]
    half = len(order) // 2
    return _split(order[:half], lo, hi, limit) + _split(order[half:], lo, hi, limit)


class _Scratch:
    """Three float32 work arrays that :func:`_sample` reuses from one box to the next.

    Each pass of the separable interpolation needs two arrays of a few hundred kB; made fresh
    for every box they came, in the long ``aggregate`` process, with ~11 million page faults
    and 20 s of system time on the bench7 run (0.1 million and 1 s reused; docs/cnn.md §6).
    Grown to the largest box seen, then reused.
    """

    def __init__(self) -> None:
        self._flat = [np.empty(0, dtype=np.float32) for _ in range(3)]

    def array(self, k: int, shape: tuple[int, ...]) -> np.ndarray:
        n = int(np.prod(shape))
        if self._flat[k].size < n:
            self._flat[k] = np.empty(n, dtype=np.float32)
        return self._flat[k][:n].reshape(shape)


def _sample(
    region: np.ndarray,
    origin: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    coords: list[np.ndarray],
    sigma: float,
    interp: str,
    scratch: _Scratch | None = None,
) -> np.ndarray:
    """Trilinear samples of ``region`` on the separable grid ``coords`` (z, y, x), float32.

    The separable result lives in ``scratch``'s arrays (fresh ones when None): it is
    overwritten by the next call with the same scratch, so the caller uses (or copies) it
    first.
    """
    sub = region[
        lo[0] - origin[0] : hi[0] - origin[0],
        lo[1] - origin[1] : hi[1] - origin[1],
        lo[2] - origin[2] : hi[2] - origin[2],
    ]
    if sigma:
        sub = ndimage.gaussian_filter(sub, sigma, mode="nearest")
    local = [c - o for c, o in zip(coords, lo, strict=True)]
    if interp == "map_coordinates":
        grid = np.meshgrid(*local, indexing="ij")
        return ndimage.map_coordinates(sub, grid, order=1, mode="nearest").astype(np.float32)
    scratch = scratch if scratch is not None else _Scratch()
    out = sub
    # scratch arrays per pass (lower, upper): each pass reads the previous pass's result,
    # so it never writes the array it reads
    slots = ((0, 1), (2, 1), (0, 1))
    for axis, (a, b) in zip((2, 1, 0), slots, strict=True):
        c = local[axis]
        n = out.shape[axis]
        i0 = np.clip(np.floor(c).astype(np.intp), 0, max(n - 2, 0))
        w = (c - i0).astype(np.float32)
        i1 = np.minimum(i0 + 1, n - 1)
        shape = [1, 1, 1]
        shape[axis] = len(c)
        w = w.reshape(shape)
        # the indices are in range, so "clip" changes nothing (take() with out= would
        # buffer its result under the default "raise")
        size = list(out.shape)
        size[axis] = len(c)
        lower = np.take(out, i0, axis=axis, out=scratch.array(a, tuple(size)), mode="clip")
        upper = np.take(out, i1, axis=axis, out=scratch.array(b, tuple(size)), mode="clip")
        # a·(1 − w) + b·w: the same float32 operations in the same order as the plain
        # expression, in place
        np.multiply(lower, 1.0 - w, out=lower)
        np.multiply(upper, w, out=upper)
        np.add(lower, upper, out=lower)
        out = lower
    return out


# -- identity of the data ---------------------------------------------------------------------
def fingerprint(path: str | Path, *, chunks: int = 16, chunk_size: int = 65536) -> str:
    """A cheap content fingerprint of a tomogram file or folder (sha256 hex).

    Hashes the size and ``chunks`` evenly spaced blocks of ``chunk_size`` bytes (the header
    included) instead of the whole file, so a many-GB tomogram costs milliseconds. For a
    folder (OME-Zarr) it hashes the sorted relative names and sizes of its files and the
    metadata files' contents. Recorded in model cards to say which data a model saw.
    """
    import hashlib

    digest = hashlib.sha256()
    path = Path(path)
    if path.is_dir():
        for item in sorted(p for p in path.rglob("*") if p.is_file()):
            rel = item.relative_to(path).as_posix()
            digest.update(f"{rel}\0{item.stat().st_size}\0".encode())
            if item.name in (".zattrs", ".zgroup", ".zarray", "zarr.json"):
                digest.update(item.read_bytes())
        return digest.hexdigest()
    size = path.stat().st_size
    digest.update(str(size).encode())
    with open(path, "rb") as handle:
        for k in range(chunks):
            handle.seek(int(k * max(size - chunk_size, 0) / max(chunks - 1, 1)))
            digest.update(handle.read(chunk_size))
    return digest.hexdigest()


def describe(tomograms: Iterable[Tomogram]) -> list[dict]:
    """Name, voxel size, shape and fingerprint of tomograms, for model cards."""
    out = []
    for t in tomograms:
        entry = {"name": t.name, "voxel_size": t.voxel_size, "shape": list(t.shape or ())}
        if t.path and Path(t.path).exists():
            entry["fingerprint"] = fingerprint(t.path)
        out.append(entry)
    return json.loads(json.dumps(out))
