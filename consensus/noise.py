"""Random background positions ("noise") for training the CNN against, and ``picks noise``.

A noise sample lies

* inside its tomogram, at least half a box from every face (voxel-centre range
  ``[hb, (n − 1)·v − hb]`` per axis), so a box around it needs no padding;
* strictly farther than an *evasion radius* from every pick of every picker and every
  trusted reference in that tomogram. The radius of a pick is ``evasion_factor`` × its
  class radius (default 2.0: a particle-sized sphere at the sample does not overlap the
  picked particle), or one ``evasion`` distance in Å for all.

Sampling is vectorised: candidates are drawn uniformly in batches and checked against one
KD-tree per distinct evasion radius. It is seeded per tomogram
(``SeedSequence([seed, crc32(name)])``), so a tomogram's samples do not depend on which other
tomograms are in the run. It is bounded: after ``max_batches`` batches it stops and returns
fewer samples with a warning (a crowded tomogram has little background) instead of looping.

The number of samples per tomogram is ``noise_ratio`` × the positive consensus picks there
(Xmipp's deep consensus also trains against as many noise boxes as positives).
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from picks.core.tomograms import Tomogram

DEFAULT_NOISE_RATIO = 1.0
DEFAULT_EVASION_FACTOR = 2.0
# Half box = this × the largest class radius: the usual extraction box of diameter + 25 %.
DEFAULT_HALF_BOX_FACTOR = 1.25
DEFAULT_MAX_BATCHES = 20
MIN_BATCH = 256
MAX_BATCH = 1 << 20
_EPS = 1e-9


@dataclass
class NoiseResult:
    """Samples (``tomogram, x, y, z`` in Å) with requested/obtained counts and warnings."""

    samples: pd.DataFrame
    requested: dict[str, int] = field(default_factory=dict)
    obtained: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def as_rows(self) -> list[dict]:
        return [
            {"tomogram": t, "requested": self.requested[t], "sampled": self.obtained.get(t, 0)}
            for t in sorted(self.requested)
        ]


def tomogram_rng(seed: int, name: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(name.encode())]))


def sample_positions(
    lo: np.ndarray,
    hi: np.ndarray,
    avoid: np.ndarray,
    radii: np.ndarray,
    count: int,
    rng: np.random.Generator,
    *,
    max_batches: int = DEFAULT_MAX_BATCHES,
) -> tuple[np.ndarray, int]:
    """Up to ``count`` uniform points in the box [lo, hi] farther than ``radii[i]`` from
    ``avoid[i]`` for every i. Returns the points (in draw order) and the batches used."""
    found: list[np.ndarray] = []
    if count <= 0 or np.any(hi < lo):
        return np.zeros((0, 3)), 0
    trees = [(float(r), cKDTree(avoid[radii == r])) for r in np.unique(radii) if len(avoid)]
    remaining = count
    rate = 1.0
    batches = 0
    while remaining > 0 and batches < max_batches:
        size = int(min(MAX_BATCH, max(MIN_BATCH, np.ceil(1.5 * remaining / max(rate, 0.01)))))
        cand = lo + rng.random((size, 3)) * (hi - lo)
        ok = np.ones(size, dtype=bool)
        for radius, tree in trees:
            d, _ = tree.query(cand[ok], k=1, distance_upper_bound=radius * (1 + _EPS) + _EPS)
            sub = np.flatnonzero(ok)
            ok[sub[d <= radius]] = False
        batches += 1
        rate = max(ok.mean(), 0.0)
        good = cand[ok][:remaining]
        found.append(good)
        remaining -= len(good)
    return (np.vstack(found) if found else np.zeros((0, 3))), batches


def sample_noise(
    tomograms: Iterable[Tomogram],
    avoid: pd.DataFrame,
    counts: Mapping[str, int],
    *,
    half_box: float,
    seed: int = 0,
    max_batches: int = DEFAULT_MAX_BATCHES,
) -> NoiseResult:
    """Noise samples for each tomogram in ``counts``.

    ``avoid`` has columns ``tomogram, x, y, z, evasion`` (Å): a sample is kept only if it is
    farther than ``evasion`` from every such point of its tomogram.
    """
    by_name = {t.name: t for t in tomograms}
    frames = []
    result = NoiseResult(pd.DataFrame(columns=["tomogram", "x", "y", "z"]))
    groups = {str(k): g for k, g in avoid.groupby("tomogram", sort=True)} if len(avoid) else {}
    for name in sorted(counts):
        count = int(counts[name])
        result.requested[name] = count
        tomo = by_name.get(name)
        if count <= 0:
            result.obtained[name] = 0
            continue
        if tomo is None or tomo.shape is None or not tomo.voxel_size:
            result.warnings.append(
                f"tomogram {name!r}: shape unknown (not registered with `tomograms`), no noise sampled"
            )
            result.obtained[name] = 0
            continue
        lo = np.full(3, float(half_box))
        hi = (np.asarray(tomo.shape, dtype=float) - 1) * tomo.voxel_size - half_box
        if np.any(hi < lo):
            result.warnings.append(
                f"tomogram {name!r}: a box of half-size {half_box:g} Å does not fit inside it, "
                "no noise sampled"
            )
            result.obtained[name] = 0
            continue
        group = groups.get(name)
        points = (
            group[["x", "y", "z"]].to_numpy(dtype=float) if group is not None else np.zeros((0, 3))
        )
        radii = group["evasion"].to_numpy(dtype=float) if group is not None else np.zeros(0)
        xyz, batches = sample_positions(
            lo, hi, points, radii, count, tomogram_rng(seed, name), max_batches=max_batches
        )
        result.obtained[name] = len(xyz)
        if len(xyz) < count:
            result.warnings.append(
                f"tomogram {name!r}: only {len(xyz)} of {count} noise samples found after "
                f"{batches} batches (little background away from the picks); continuing with fewer"
            )
        if len(xyz):
            frames.append(
                pd.DataFrame({"tomogram": name, "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]})
            )
    if frames:
        result.samples = pd.concat(frames, ignore_index=True)
    return result


def evasion_radii(
    particles: Iterable[object],
    radii: Mapping[object, float],
    *,
    evasion: float | None = None,
    factor: float = DEFAULT_EVASION_FACTOR,
) -> np.ndarray:
    """Per-point evasion radius: ``evasion`` Å, else ``factor`` × class radius (the largest
    known radius for classes without one). A point without a class (None or NaN) takes the
    radius of ``radii[None]`` (unlabelled picks), else the largest."""
    values = particles if isinstance(particles, pd.Series) else pd.Series(list(particles))
    if evasion is not None:
        return np.full(len(values), float(evasion))
    largest = max(radii.values()) if radii else 0.0
    # one look-up per distinct class (millions of points, a handful of classes); code -1
    # (no class) takes the last entry
    codes, classes = pd.factorize(values.astype(object))
    per_class = [radii.get(c, largest) for c in classes] + [radii.get(None, largest)]
    return factor * np.array(per_class, dtype=float)[codes]
