"""Truth-free image statistics of consensus candidates: is a box typical of its class?

Gold beads and contamination are reported as particles by several pickers at once, so the
pickers' agreement cannot reject them. Their images can: a bead is a small, very dense blob
(far more contrast at its centre than any protein), contamination is a large dense mass. This
stage needs no training: for every candidate of class *g* (radius *r*) it extracts a box
covering 2 r around the centre (``box`` voxels a side, memory-mapped and bounded through
:func:`picks.consensus.cnn.boxes.iter_boxes`) and measures, in units of the box's outer shell
(r′ > 1.3 r: the local background) — so the statistics do not depend on the tomogram's scale,
offset or the per-box normalisation:

* ``core``: mean density in r′ < 0.5 r minus the shell mean, over the shell's spread;
* ``body``: the same in 0.5 r ≤ r′ < r;
* ``peak`` / ``trough``: the 99th / 1st percentile inside r′ < r (a bead's centre) the same
  way (which one counts depends on the contrast convention, see :func:`robust_scores`);
* ``profile``: 1 − the correlation of the candidate's radial profile with its class's median
  profile (shape inconsistency with the class average).

Each is turned into a robust z-score against the *likely particles of the same class* (median
and 1.4826 × MAD; :func:`robust_scores`): particles of one class look alike, junk is spread.
:func:`density_veto` marks the candidates whose centre and peak or body are far denser than
that typical particle; the latent-class decision (:mod:`picks.consensus.latent`) rejects them.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from picks.core.errors import PicksError

STATISTICS = ("core", "body", "peak", "profile")
DEFAULT_BOX = 20
# The box covers this many radii on each side of the centre: the shell r' in [1.3 r, 2 r]
# holds the local background (a neighbour may sit there; the shell's median spread is robust).
BOX_RADII = 2.0
SHELL_START = 1.3
PROFILE_BINS = 10
# Robust z beyond this is an extreme outlier (a normal variable exceeds 6 sigmas once in
# 5·10^8); the veto needs two statistics beyond it at once.
EXTREME_Z = 6.0
_MAD = 1.4826


def _masks(box: int) -> tuple[np.ndarray, np.ndarray]:
    """Radius (in particle radii) of every voxel of a ``box``³ cube and its profile bin."""
    half = box / 2.0
    axis = (np.arange(box) + 0.5 - half) / (half / BOX_RADII)
    rr = np.sqrt(axis[:, None, None] ** 2 + axis[None, :, None] ** 2 + axis[None, None, :] ** 2)
    bins = np.minimum((rr / BOX_RADII * PROFILE_BINS).astype(np.int64), PROFILE_BINS)
    return rr, bins


def box_statistics(boxes: np.ndarray) -> pd.DataFrame:
    """``core, body, peak, trough`` and the radial profile (``p0``…) of boxes ``(n, b, b, b)``.

    Vectorised over the boxes; every value is in units of the box's shell (mean 0, spread 1),
    so an affine change of the box's values (the extraction's normalisation) changes nothing.
    """
    boxes = np.asarray(boxes, dtype=np.float32)
    n, b = len(boxes), (boxes.shape[1] if boxes.ndim == 4 else DEFAULT_BOX)
    rr, bins = _masks(b)
    flat = boxes.reshape(n, -1)
    rr, bins = rr.ravel(), bins.ravel()
    shell = flat[:, (rr >= SHELL_START) & (rr <= BOX_RADII)]
    centre = np.median(shell, axis=1)
    # The shell's median absolute deviation: a neighbour in one corner of the shell does not
    # inflate it as a standard deviation would.
    spread = _MAD * np.median(np.abs(shell - centre[:, None]), axis=1)
    spread = np.where(spread > 1e-6, spread, np.nan)
    scaled = (flat - centre[:, None]) / spread[:, None]
    out = {
        "core": scaled[:, rr < 0.5].mean(axis=1),
        "body": scaled[:, (rr >= 0.5) & (rr < 1.0)].mean(axis=1),
    }
    out["trough"], out["peak"] = np.percentile(scaled[:, rr < 1.0], [1, 99], axis=1)
    counts = np.bincount(bins, minlength=PROFILE_BINS + 1)[:PROFILE_BINS]
    one_hot = np.zeros((len(bins), PROFILE_BINS), dtype=np.float32)
    inside = bins < PROFILE_BINS
    one_hot[np.flatnonzero(inside), bins[inside]] = 1.0
    profile = (np.nan_to_num(scaled) @ one_hot) / np.maximum(counts, 1)
    for k in range(PROFILE_BINS):
        out[f"p{k}"] = profile[:, k]
    return pd.DataFrame(out)


def candidate_statistics(
    consensus: pd.DataFrame,
    tomograms,
    radii: Mapping[object, float],
    *,
    box: int = DEFAULT_BOX,
    batch_size: int = 256,
) -> pd.DataFrame:
    """:func:`box_statistics` for every consensus candidate (NaN where it got no box).

    One extraction per class, with a geometry sized to that class's radius (a 60 Å
    apo-ferritin and a 150 Å ribosome both fill the box the same way). Points come from
    ``consensus`` (``tomogram, particle, x, y, z`` in Å); the result is indexed like it.
    """
    from picks.consensus.cnn.boxes import EdgePolicy, Geometry, iter_boxes

    columns = ["core", "body", "peak", "trough", *(f"p{k}" for k in range(PROFILE_BINS))]
    out = pd.DataFrame(np.nan, index=consensus.index, columns=columns)
    if not len(consensus):
        return out
    particle = consensus["particle"].to_numpy(dtype=object)
    keys = pd.Series(particle).astype(str).to_numpy()
    # "reflect" keeps boxes near the faces usable (a wedge-thin slab of 64 voxels is mostly
    # face: gold beads sit on the faces); a box more than 3/4 outside is dropped (NaN).
    edge = EdgePolicy("reflect", 0.75)
    for key in sorted(set(keys.tolist())):
        rows = np.flatnonzero(keys == key)
        radius = radii.get(particle[rows[0]])
        if radius is None or not np.isfinite(radius) or radius <= 0:
            raise PicksError(f"no radius known for class {key!r}: cannot measure its boxes")
        geometry = Geometry(int(box), 2.0 * BOX_RADII * float(radius) / int(box))
        points = consensus.iloc[rows][["tomogram", "x", "y", "z"]].reset_index(drop=True)
        for batch in iter_boxes(points, tomograms, geometry, edge=edge, batch_size=batch_size):
            if len(batch.index):
                stats = box_statistics(batch.boxes)
                out.iloc[rows[batch.index], :] = stats[columns].to_numpy()
    return out


def _robust_z(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    ref = values[reference & np.isfinite(values)]
    if not len(ref):
        return np.full(len(values), np.nan)
    median = np.median(ref)
    spread = _MAD * np.median(np.abs(ref - median))
    if not spread > 1e-9:
        return np.full(len(values), np.nan)
    return (values - median) / spread


def robust_scores(
    stats: pd.DataFrame,
    particle: pd.Series,
    reference: np.ndarray | None = None,
    *,
    min_reference: int = 8,
) -> pd.DataFrame:
    """Per-class robust z of ``core, body, peak`` and of the profile mismatch (``profile``).

    The typical box of a class is that of its ``reference`` candidates (a boolean mask, e.g.
    the ones the pickers' agreement makes likely particles) when the class has at least
    ``min_reference`` of them, else of all its candidates; with fewer than ``min_reference``
    measured candidates in all, the class gets NaN (no typical box to compare with). The
    signs of ``core, body, peak`` are turned so that positive means *denser than the class's
    typical particle* (whatever the tomogram's contrast convention: the sign of the typical
    particle's stronger contrast, core or body, says which way is dense).

    ``profile`` is 1 − Pearson correlation of a candidate's radial profile with its class's
    median profile, then z-scored one-sided the same way (only a *worse* match is atypical).
    """
    out = pd.DataFrame(np.nan, index=stats.index, columns=list(STATISTICS))
    keys = pd.Series(particle.to_numpy(dtype=object), index=stats.index).astype(str)
    prof_cols = [f"p{k}" for k in range(PROFILE_BINS)]
    reference = np.ones(len(stats), dtype=bool) if reference is None else np.asarray(reference)
    measured = np.isfinite(stats[["core", "body", "peak"]].to_numpy(dtype=float)).all(axis=1)
    for key in sorted(set(keys.tolist())):
        rows = np.flatnonzero(keys.to_numpy() == key)
        ref = reference[rows] & measured[rows]
        if ref.sum() < min_reference:
            ref = measured[rows]
        if ref.sum() < min_reference:
            continue
        block = stats.iloc[rows]
        # Which way is dense: the sign of the typical particle's stronger contrast, core or
        # body (the core of a hollow class such as apo-ferritin can be darker than the
        # background; a radius larger than the particle leaves the body at background).
        typical = [np.median(block[c].to_numpy(float)[ref]) for c in ("core", "body")]
        strong = max(typical, key=abs)
        sign = 1.0 if strong >= 0 else -1.0
        for name in ("core", "body", "peak"):
            # dark particles: a bead's extreme is the box's 1st percentile ("trough")
            column = "trough" if (name == "peak" and sign < 0) else name
            values = sign * block[column].to_numpy(float)
            out.iloc[rows, out.columns.get_loc(name)] = _robust_z(values, ref)
        prof = block[prof_cols].to_numpy(dtype=float)
        ok = np.isfinite(prof).all(axis=1)
        if (ok & ref).sum() < min_reference:
            continue
        typical = np.median(prof[ok & ref], axis=0)
        a = prof - prof.mean(axis=1, keepdims=True)
        t = typical - typical.mean()
        denom = np.linalg.norm(a, axis=1) * np.linalg.norm(t)
        with np.errstate(invalid="ignore", divide="ignore"):
            mismatch = 1.0 - (a @ t) / denom
        mismatch = np.where(ok & (denom > 0), mismatch, np.nan)
        z = _robust_z(mismatch, ok & ref)
        out.iloc[rows, out.columns.get_loc("profile")] = np.maximum(z, 0.0)
    return out


def density_veto(
    z: pd.DataFrame, particle: pd.Series, *, limit: float = EXTREME_Z, max_fraction: float = 0.3
) -> tuple[pd.Series, list[str]]:
    """Candidates far denser than their class's typical particle: beads, contamination.

    True where the centre (``core``) is more than ``limit`` robust spreads denser than the
    class's typical particle *and* so is the peak or the whole body: a protein of one class is
    not that much denser than its class's typical particle on two statistics at once; a gold
    bead (dense centre, high peak) or a lump of contamination (dense core and body) is. One
    statistic alone is not enough: on the simulated worlds a true particle next to a
    neighbour reached 7 on one of them, never on two (docs/latent.md). Guard: when more
    than ``max_fraction`` of a class's candidates would be vetoed, the class's typical box is
    not trustworthy (e.g. most of what the pickers agree on is junk), so nothing is vetoed
    there and a warning says so — the veto never wipes out a class.
    """
    values = {k: np.nan_to_num(z[k].to_numpy(dtype=float), nan=-np.inf) for k in STATISTICS}
    veto = (values["core"] > limit) & ((values["peak"] > limit) | (values["body"] > limit))
    warnings: list[str] = []
    keys = pd.Series(particle.to_numpy(dtype=object)).astype(str).to_numpy()
    for key in sorted(set(keys[veto].tolist())):
        rows = keys == key
        share = veto[rows].mean()
        if share > max_fraction:
            veto[rows] = False
            warnings.append(
                f"{key}: {share:.0%} of its candidates look far denser than its typical "
                f"particle (> {max_fraction:.0%}): its typical box is not trusted, no image veto"
            )
    return pd.Series(veto, index=z.index, name="image_veto"), warnings
