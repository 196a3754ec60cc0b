"""Empty boxes: candidates whose image shows nothing but background.

The density veto (:mod:`picks.consensus.image_features`) rejects what is far *denser* than a
class's particles. This module rejects the opposite: a candidate whose box is no denser than
the tomogram's empty background, where the class's particles are unmistakable objects.
Image-based pickers report noise peaks, and two pickers can share one (on the independent
polnet fixture, 101 of the 194 beta-galactosidase candidates are on no particle, and deepfinder
and yolo-slices agree on 12 of them), so the agreement cannot reject them all; the image can.

How, without truth:

1. **Background boxes** (:func:`background_points`, :func:`summarise_background`): per
   tomogram, :data:`BACKGROUND_PER_TOMOGRAM` uniform positions farther than a class radius
   from every candidate (the noise sampler of :mod:`picks.consensus.noise`, seeded per
   tomogram), measured with every class's box geometry. Their median and robust spread per
   (tomogram, class) say what an empty box of that class looks like there.
2. **Contrast** (:func:`object_contrast`): each candidate's ``core``, ``body`` and ``peak``
   (turned so that larger is denser, the way the class's well-supported candidates are) in
   robust spreads above the empty boxes of its tomogram and class; the largest of the three.
3. **The rule** (:func:`empty_veto`): where a class's well-supported candidates (reported by
   a majority of the pickers that report the class, at least two, not vetoed as dense) have
   a median contrast of at least :data:`CLEAR_CONTRAST`, its particles stand far out of the
   noise. A candidate there whose contrast is below a third of that median
   (:data:`EMPTY_FRACTION`) and below :data:`EMPTY_CAP` is a noise peak: rejected.

Why these numbers (docs/accuracy.md, "Empty boxes"; 16 simulated worlds): on the polnet
fixture the classes where the rule applies have levels 17–42, their true particles are never
below 0.46 of it (15 spreads), and the candidates on no particle sit at 2–6. In picks' own
worlds particles are faint (levels at most 12.4) and true particles reach down to 0.23 of
their class's level: there the image cannot tell a particle from a noise peak, and the level
condition keeps the rule off (it changes nothing on those twelve worlds). Where it is on, it
only rejects what is three times fainter than the class's particles and within
:data:`EMPTY_CAP` spreads of empty background.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from picks.consensus.image_features import (
    STATISTICS,
    contrast_sign,
    robust_location,
    signed_statistic,
)

# 64 boxes per (tomogram, class): the median and spread move the decisions by at most ±0.005
# F4 between 50 and 100 boxes and two seeds; a large class's box costs 2–5 ms.
BACKGROUND_PER_TOMOGRAM = 64
# A class's well-supported candidates must be at least this many background spreads above
# empty boxes for the rule to apply (polnet's classes: 17–42; picks' own worlds: ≤ 12.4;
# 12 instead, with 100 boxes: the same decisions on all 16 measured worlds).
CLEAR_CONTRAST = 15.0
# ... and a candidate below this fraction of their median, and below EMPTY_CAP spreads, is
# empty (polnet's true particles: ≥ 0.46 of their class's median, ≥ 15 spreads).
EMPTY_FRACTION = 1.0 / 3.0
EMPTY_CAP = 8.0
MIN_SUPPORTED = 5
# Fewer measured empty boxes than this in a (tomogram, class) (a crowded or thin tomogram):
# no background there, so its candidates are never called empty (a spread from a handful of
# boxes could be anything).
MIN_BACKGROUND = 20


def background_points(
    consensus: pd.DataFrame,
    tomograms: Iterable,
    radii: Mapping[object, float],
    *,
    per_tomogram: int = BACKGROUND_PER_TOMOGRAM,
    seed: int = 0,
) -> pd.DataFrame:
    """Empty positions (``tomogram, x, y, z`` in Å): per tomogram of ``consensus``,
    ``per_tomogram`` uniform points farther than its class radius from every candidate,
    at least the largest radius from every face. Seeded per tomogram, so a tomogram's points
    do not depend on the others. A tomogram with no known shape, or no room, gets fewer (or
    none: its candidates then get no contrast and are never called empty)."""
    from picks.consensus.noise import sample_noise

    columns = ["tomogram", "x", "y", "z"]
    if not len(consensus):
        return pd.DataFrame(columns=columns)
    radius = consensus["particle"].map(lambda p: radii.get(p, np.nan)).astype(float)
    known = np.isfinite(radius.to_numpy())
    avoid = consensus.loc[known, ["tomogram", "x", "y", "z"]].assign(
        tomogram=lambda f: f["tomogram"].astype(str), evasion=radius[known].to_numpy()
    )
    names = sorted(set(consensus["tomogram"].astype(str)))
    finite = [float(r) for r in radii.values() if r is not None and np.isfinite(r)]
    half_box = max(finite, default=0.0)
    result = sample_noise(
        tomograms, avoid, dict.fromkeys(names, int(per_tomogram)), half_box=half_box, seed=seed
    )
    return result.samples[columns].reset_index(drop=True)


def background_probes(points: pd.DataFrame, classes: Iterable, radii: Mapping) -> pd.DataFrame:
    """Every empty point once per class with a known radius (``tomogram, particle, x, y, z``):
    the boxes :func:`summarise_background` needs, measured like candidates."""
    classes = [c for c in classes if radii.get(c) is not None and np.isfinite(radii.get(c))]
    if not len(points) or not classes:
        return pd.DataFrame(columns=["tomogram", "particle", "x", "y", "z"])
    frames = [points[["tomogram", "x", "y", "z"]].assign(particle=c) for c in classes]
    return pd.concat(frames, ignore_index=True)[["tomogram", "particle", "x", "y", "z"]]


def summarise_background(probes: pd.DataFrame, stats: pd.DataFrame) -> pd.DataFrame:
    """Median and robust spread of each box statistic of the ``probes`` (their
    :func:`~picks.consensus.image_features.candidate_statistics`, row for row), per
    (tomogram, class): columns ``tomogram, particle`` and ``<statistic>_median``,
    ``<statistic>_spread`` for ``core, body, peak, trough``; NaN (no background) where fewer
    than :data:`MIN_BACKGROUND` boxes were measured."""
    names = ["core", "body", "peak", "trough"]
    columns = ["tomogram", "particle"] + [f"{s}_{k}" for s in names for k in ("median", "spread")]
    if not len(probes):
        return pd.DataFrame(columns=columns)
    measured = probes.reset_index(drop=True).join(stats[names].reset_index(drop=True))
    out = []
    for (tomogram, particle), group in measured.groupby(["tomogram", "particle"], sort=True):
        row: dict = {"tomogram": tomogram, "particle": particle}
        for s in names:
            values = group[s].to_numpy(dtype=float)
            if np.isfinite(values).sum() >= MIN_BACKGROUND:
                row[f"{s}_median"], row[f"{s}_spread"] = robust_location(values)
            else:
                row[f"{s}_median"] = row[f"{s}_spread"] = np.nan
        out.append(row)
    return pd.DataFrame(out, columns=columns)


def empty_probes(
    consensus: pd.DataFrame,
    tomograms: list,
    radii: Mapping[object, float],
    *,
    per_tomogram: int = BACKGROUND_PER_TOMOGRAM,
    seed: int = 0,
) -> pd.DataFrame:
    """The :func:`background_probes` of the :func:`background_points` of ``consensus``,
    for every class it holds: the empty boxes to measure."""
    points = background_points(consensus, tomograms, radii, per_tomogram=per_tomogram, seed=seed)
    classes = sorted(set(consensus["particle"].dropna().tolist()), key=str)
    return background_probes(points, classes, radii)


def empty_background(
    consensus: pd.DataFrame,
    tomograms,
    radii: Mapping[object, float],
    *,
    per_tomogram: int = BACKGROUND_PER_TOMOGRAM,
    seed: int = 0,
) -> pd.DataFrame:
    """What an empty box of each class looks like in each tomogram of ``consensus``
    (:func:`summarise_background` of the :func:`empty_probes`, measured in this process)."""
    from picks.consensus.image_features import candidate_statistics

    tomograms = list(tomograms or ())
    probes = empty_probes(consensus, tomograms, radii, per_tomogram=per_tomogram, seed=seed)
    return summarise_background(probes, candidate_statistics(probes, tomograms, radii))


def well_supported(consensus: pd.DataFrame, pickers_per_class: Mapping[object, int]) -> np.ndarray:
    """Candidates reported by a majority of the pickers that report their class, and by two
    at least: the ones the agreement is surest of, whatever the fitted model says."""
    need = consensus["particle"].map(lambda p: pickers_per_class.get(p, 0)).to_numpy(dtype=int)
    need = np.maximum(2, need // 2 + 1)
    return consensus["n_pickers"].to_numpy(dtype=int) >= need


def object_contrast(
    stats: pd.DataFrame,
    consensus: pd.DataFrame,
    background: pd.DataFrame,
    reference: np.ndarray,
) -> pd.Series:
    """How far each candidate's box stands out of its tomogram's empty boxes of its class:
    the largest of ``core, body, peak`` in robust background spreads, each turned so that
    larger means denser the way the class's ``reference`` candidates are (dark or bright
    particles, hollow or solid: :func:`picks.consensus.image_features.contrast_sign`). NaN without
    a background for its (tomogram, class) or without a measured box."""
    out = np.full(len(consensus), np.nan)
    if not len(consensus) or not len(background):
        return pd.Series(out, index=consensus.index, name="contrast")
    keys = consensus["particle"].astype(str).to_numpy()
    names = consensus["tomogram"].astype(str).to_numpy()
    measured = np.isfinite(stats[list(STATISTICS)].to_numpy(dtype=float)).all(axis=1)
    reference = np.asarray(reference, bool)
    by_key = {(str(r.tomogram), str(r.particle)): r for r in background.itertuples(index=False)}
    for key in sorted(set(keys.tolist())):
        rows = np.flatnonzero(keys == key)
        block = stats.iloc[rows]
        polarity = measured[rows] & reference[rows]
        if not polarity.any():
            polarity = measured[rows]
        if not polarity.any():
            continue
        sign = contrast_sign(block, polarity)
        signed = {s: signed_statistic(block, s, sign) for s in STATISTICS}
        for tomogram in sorted(set(names[rows].tolist())):
            bg = by_key.get((tomogram, key))
            if bg is None:
                continue
            here = names[rows] == tomogram
            best = np.full(here.sum(), -np.inf)
            for s in STATISTICS:
                column = "trough" if (s == "peak" and sign < 0) else s
                median = sign * getattr(bg, f"{column}_median")
                spread = getattr(bg, f"{column}_spread")
                if not (np.isfinite(median) and np.isfinite(spread) and spread > 1e-9):
                    continue
                best = np.maximum(best, (signed[s][here] - median) / spread)
            best[~np.isfinite(best)] = np.nan
            out[rows[here]] = best
    return pd.Series(out, index=consensus.index, name="contrast")


def empty_veto(
    contrast: pd.Series,
    particle: pd.Series,
    reference: np.ndarray,
    *,
    clear: float | None = None,
    fraction: float | None = None,
    cap: float | None = None,
    min_reference: int | None = None,
) -> tuple[pd.Series, dict[str, tuple[float, float]]]:
    """Candidates whose box is empty background in a class whose particles are clear objects.

    ``reference``: the class's well-supported candidates not vetoed otherwise. A class applies
    the rule when at least ``min_reference`` of them have a contrast and their median is at
    least ``clear``; a candidate of it is then empty when its contrast is below both
    ``fraction`` × that median and ``cap``. Returns the mask and, per class that applied the
    rule, (that median, its cut) for the reasons. The defaults are the module's constants,
    read at call time."""
    clear = CLEAR_CONTRAST if clear is None else clear
    fraction = EMPTY_FRACTION if fraction is None else fraction
    cap = EMPTY_CAP if cap is None else cap
    min_reference = MIN_SUPPORTED if min_reference is None else min_reference
    values = contrast.to_numpy(dtype=float)
    keys = pd.Series(particle.to_numpy(dtype=object)).astype(str).to_numpy()
    reference = np.asarray(reference, bool) & np.isfinite(values)
    empty = np.zeros(len(values), dtype=bool)
    cuts: dict[str, tuple[float, float]] = {}
    for key in sorted(set(keys.tolist())):
        rows = keys == key
        ref = values[rows & reference]
        if len(ref) < min_reference:
            continue
        level = float(np.median(ref))
        if not level >= clear:
            continue
        cut = min(fraction * level, cap)
        cuts[key] = (level, cut)
        empty |= rows & np.isfinite(values) & (values < cut)
    return pd.Series(empty, index=contrast.index, name="empty"), cuts
