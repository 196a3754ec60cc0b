"""Truth-free image statistics of consensus candidates: is a box typical of its class?

Gold beads and contamination are reported as particles by several pickers at once, so the
pickers' agreement cannot reject them. Their images can: a bead is a small, very dense blob
(far more contrast at its centre than any protein), contamination is a large dense mass. This
stage needs no training: for every candidate of class *g* (radius *r*) it extracts a box
covering 2 r around the centre (``box`` voxels a side, memory-mapped and bounded through
:func:`picks.consensus.cnn.boxes.iter_boxes`) and measures, in units of the box's outer shell
(r′ > 1.3 r: the local background) — so the statistics do not depend on the tomogram's scale,
offset or the per-box normalisation:

* ``core``: mean density in r′ < 0.5 r minus the shell median, over the shell's spread;
* ``body``: the same in 0.5 r ≤ r′ < r;
* ``peak`` / ``trough``: the 99th / 1st percentile inside r′ < r (a bead's centre) the same
  way (which one counts depends on the contrast convention, see :func:`robust_scores`).

Each is turned into a robust z-score against the typical box *of the same class* (median and
1.4826 × MAD over its candidates; :func:`robust_scores`). :func:`density_veto` marks the
candidates far denser than that; the latent-class decision (:mod:`picks.consensus.latent`)
rejects them whatever the pickers' agreement.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from picks.core.errors import PicksError

STATISTICS = ("core", "body", "peak")
DEFAULT_BOX = 20
# The box covers this many radii on each side of the centre: the shell r' in [1.3 r, 2 r]
# holds the local background (a neighbour may sit there; the shell's median spread is robust).
BOX_RADII = 2.0
SHELL_START = 1.3
# Robust z beyond these is a veto (density_veto): against a class's typical candidate, 4.5
# robust spreads (a normal variable exceeds it once in 3·10^5; no true particle of five
# simulated worlds passed 3.3, gold beads reach 5–40); against its likely particles (a
# tighter group, which beads agreed on by every picker may dominate), 3. Measured on
# sim-11x3/12x3/13x5/14x7 and polnet (docs/latent.md): no true particle vetoed, 114 of 117
# beads.
EXTREME_Z = 4.5
LIKELY_Z = 3.0
# typical_of_another_class: a larger class vouches up to the lower quartile of its likely
# particles, so beads would have to be three quarters of them to vouch for other beads (the
# median vouched for the same true particles and one bead more on 16 worlds).
REFERENCE_QUANTILE = 0.25
_MAD = 1.4826


def _radii(box: int) -> np.ndarray:
    """Distance of every voxel of a ``box``³ cube from its centre, in particle radii."""
    half = box / 2.0
    axis = (np.arange(box) + 0.5 - half) / (half / BOX_RADII)
    return np.sqrt(axis[:, None, None] ** 2 + axis[None, :, None] ** 2 + axis[None, None, :] ** 2)


def box_statistics(boxes: np.ndarray) -> pd.DataFrame:
    """``core, body, peak, trough`` of boxes ``(n, b, b, b)`` (see the module docstring).

    Vectorised over the boxes; every value is in units of the box's shell (median 0, spread
    1), so an affine change of the box's values (the extraction's normalisation) changes
    nothing.
    """
    boxes = np.asarray(boxes, dtype=np.float32)
    n, b = len(boxes), (boxes.shape[1] if boxes.ndim == 4 else DEFAULT_BOX)
    rr = _radii(b).ravel()
    flat = boxes.reshape(n, -1)
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

    columns = ["core", "body", "peak", "trough"]
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


def robust_location(values: np.ndarray) -> tuple[float, float]:
    """Median and robust spread (1.4826 × MAD) of the finite ``values``; NaN for none."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if not len(values):
        return np.nan, np.nan
    median = float(np.median(values))
    return median, float(_MAD * np.median(np.abs(values - median)))


def _robust_z(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    median, spread = robust_location(values[reference])
    if not spread > 1e-9:  # NaN too: no reference
        return np.full(len(values), np.nan)
    return (values - median) / spread


def robust_scores(
    stats: pd.DataFrame,
    particle: pd.Series,
    likely: np.ndarray | None = None,
    *,
    typical: np.ndarray | None = None,
    min_candidates: int = 8,
) -> pd.DataFrame:
    """Per-class robust z of ``core, body, peak``: how far from the class's typical box.

    The typical box is the median over *all* measured candidates of the class, the spread
    1.4826 × their MAD: most candidates of a class are its particles and the pickers' usual
    junk, and a bead is an outlier against both, whereas the likely particles alone can be
    dominated by the beads themselves (on sim-13x5 the pickers agree on more beads than
    beta-amylase particles, and against those the beads look typical). ``likely`` (a boolean
    mask: the candidates the pickers' agreement makes likely particles) only says which way
    is dense: the signs are turned so that positive means *denser than the typical
    particle* — the sign of the likely particles' stronger median contrast, core or body
    (the core of a hollow class such as apo-ferritin is darker than the background; a radius
    larger than the particle leaves the body at background). ``typical`` (a boolean mask)
    replaces "all candidates" as the reference where it holds at least ``min_candidates`` of
    the class. A class with fewer than ``min_candidates`` measured candidates gets NaN (no
    typical box to compare with).
    """
    out = pd.DataFrame(np.nan, index=stats.index, columns=list(STATISTICS))
    keys = pd.Series(particle.to_numpy(dtype=object), index=stats.index).astype(str).to_numpy()
    likely = np.ones(len(stats), dtype=bool) if likely is None else np.asarray(likely, bool)
    measured = np.isfinite(stats[["core", "body", "peak"]].to_numpy(dtype=float)).all(axis=1)
    typical = np.ones(len(stats), dtype=bool) if typical is None else np.asarray(typical, bool)
    for key in sorted(set(keys.tolist())):
        rows = np.flatnonzero(keys == key)
        ref = measured[rows] & typical[rows]
        if ref.sum() < min_candidates:  # too few to be typical: against all candidates
            ref = measured[rows]
        if ref.sum() < min_candidates:
            continue
        block = stats.iloc[rows]
        polarity = measured[rows] & likely[rows]
        if polarity.sum() < min_candidates:
            polarity = ref
        sign = contrast_sign(block, polarity)
        for name in STATISTICS:
            values = signed_statistic(block, name, sign)
            out.iloc[rows, out.columns.get_loc(name)] = _robust_z(values, ref)
    return out


def contrast_sign(block: pd.DataFrame, polarity: np.ndarray) -> float:
    """+1 where ``polarity``'s boxes are denser than their background, −1 where darker: the
    sign of their stronger median contrast, core or body (see :func:`robust_scores`)."""
    contrast = [np.median(block[c].to_numpy(float)[polarity]) for c in ("core", "body")]
    return 1.0 if max(contrast, key=abs) >= 0 else -1.0


def signed_statistic(block: pd.DataFrame, name: str, sign: float) -> np.ndarray:
    """Statistic ``name`` turned so that larger means denser than the background."""
    # dark particles: a bead's extreme is the box's 1st percentile ("trough")
    column = "trough" if (name == "peak" and sign < 0) else name
    return sign * block[column].to_numpy(float)


def typical_of_another_class(
    stats: pd.DataFrame,
    particle: pd.Series,
    likely: np.ndarray,
    sizes: Mapping[object, float],
    *,
    min_candidates: int = 8,
) -> pd.Series:
    """Candidates no denser than the likely particles of some *larger* class.

    The veto compares a candidate with its own class. Where the pickers' agreement has
    mistaken a class's junk for its particles (two pickers agree on a flood of faint lone
    reports: the independent polnet world with picker seeds 2 and 3), the class's "typical"
    and "likely" boxes are both junk, and its few true particles stand out as far denser. A
    gold bead is denser than the particles of every class; a true particle is not: it looks
    like the likely particles of the bigger, denser classes (polnet's true thyroglobulins,
    centre 4.8–5.1 shell spreads, against its likely ribosomes' median 9.9). So a candidate
    whose centre *and* peak are no denser than the lower quartile
    (:data:`REFERENCE_QUANTILE`) of the likely particles of a class with a larger size
    (``sizes``: class → radius, or anything proportional to it; at least ``min_candidates``
    likely particles measured; signs turned as in :func:`robust_scores`) is spared. Only
    larger classes count, and only their lower quartile: beads are small and denser than
    any particle, so a class whose likely particles are partly beads must not vouch for the
    beads of the other classes. Measured on 16 simulated worlds (docs/accuracy.md): the four
    true particles the veto rejected are kept, and the same 327 of 336 bead candidates are
    rejected as without this guard.
    """
    keys = pd.Series(particle.to_numpy(dtype=object), index=stats.index).astype(str).to_numpy()
    likely = np.asarray(likely, bool)
    size_of = {str(k): float(v) for k, v in sizes.items()}
    own_size = np.array([size_of.get(k, np.nan) for k in keys], dtype=float)
    measured = np.isfinite(stats[["core", "body", "peak"]].to_numpy(dtype=float)).all(axis=1)
    values = np.full((len(stats), 2), np.nan)
    reference: dict[str, tuple[float, float]] = {}
    for key in sorted(set(keys.tolist())):
        rows = np.flatnonzero(keys == key)
        block = stats.iloc[rows]
        own = measured[rows] & likely[rows]
        polarity = own if own.sum() >= min_candidates else measured[rows]
        if not polarity.any():
            continue
        sign = contrast_sign(block, polarity)
        values[rows, 0] = signed_statistic(block, "core", sign)
        values[rows, 1] = signed_statistic(block, "peak", sign)
        if own.sum() >= min_candidates and np.isfinite(size_of.get(key, np.nan)):
            reference[key] = (
                float(np.quantile(values[rows, 0][own], REFERENCE_QUANTILE)),
                float(np.quantile(values[rows, 1][own], REFERENCE_QUANTILE)),
            )
    spared = np.zeros(len(stats), dtype=bool)
    for key, (core, peak) in reference.items():
        smaller = own_size < size_of[key]  # NaN (size unknown) compares False: not spared
        spared |= smaller & (values[:, 0] <= core) & (values[:, 1] <= peak)
    return pd.Series(spared, index=stats.index, name="typical_of_another_class")


def density_veto(
    z: pd.DataFrame,
    z_likely: pd.DataFrame,
    particle: pd.Series,
    *,
    limit: float = EXTREME_Z,
    likely_limit: float = LIKELY_Z,
    max_fraction: float = 0.3,
) -> tuple[pd.Series, list[str]]:
    """Candidates far denser than their class's typical box: beads, contamination.

    True where a statistic (centre, body or peak) is more than ``limit`` robust spreads
    denser than the class's typical candidate (``z``: :func:`robust_scores` against all its
    candidates) *and* one is more than ``likely_limit`` denser than its likely particles
    (``z_likely``: against the candidates the pickers' agreement makes likely particles).
    The first alone would reject a class's true particles where most candidates are faint
    junk (on polnet the true ribosomes are 7–12 spreads denser than the typical ribosome
    candidate, but typical of the likely ribosomes); the second alone fails where the pickers
    agree on more beads than particles (sim-13x5's beta-amylase: against those the beads
    look typical). Where a class has no typical box (too few candidates), NaN: no veto.
    Guard: when more than ``max_fraction`` of a class's candidates would be vetoed, the
    class's typical box is not trustworthy, so nothing is vetoed there and a warning says so
    — the veto never wipes out a class.
    """
    dense = np.nan_to_num(z[list(STATISTICS)].to_numpy(dtype=float), nan=-np.inf)
    dense_likely = np.nan_to_num(z_likely[list(STATISTICS)].to_numpy(dtype=float), nan=-np.inf)
    veto = (dense > limit).any(axis=1) & (dense_likely > likely_limit).any(axis=1)
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


def veto_from_statistics(
    stats: pd.DataFrame,
    particle: pd.Series,
    likely: np.ndarray,
    sizes: Mapping[object, float] | None = None,
) -> tuple[pd.Series, pd.DataFrame, list[str]]:
    """:func:`density_veto` from :func:`candidate_statistics` and the likely particles mask.

    With ``sizes`` (class → radius), a candidate no denser than the likely particles of a
    larger class is not vetoed (:func:`typical_of_another_class`). Returns the veto, the
    z-scores against the class's typical candidate (for the reasons) and the warnings.
    """
    z = robust_scores(stats, particle, likely)
    z_likely = robust_scores(stats, particle, likely, typical=likely)
    veto, notes = density_veto(z, z_likely, particle)
    if veto.any() and sizes is not None:
        # Not a warning: sparing them is the normal case where a class's likely particles are
        # junk (the built-in demo has some); those candidates are decided by the agreement.
        veto = veto & ~typical_of_another_class(stats, particle, likely, sizes)
    return veto, z, notes
