"""The CZII CryoET Object Identification metric, exactly as the Kaggle scoring code computes it.

Definition (``shared/reference/metric-and-data.md`` §A.2; ``docs/metric.md``):

1. Picks in tomograms that the truth does not contain are dropped. A pick whose class is not
   one of the known classes (the keys of ``radii``) is an error; so is a duplicate truth row
   (same tomogram and x, y, z).
2. For every truth tomogram × every class present anywhere in the truth, a pick *hits* a true
   particle of the same class when their distance is ``<= multiplier × radius`` (inclusive).
   Matching is **not one-to-one**: TP = number of distinct true particles hit by at least one
   pick, FP = number of picks − TP, FN = number of true particles − TP. (Two picks on one
   particle give 1 TP + 1 FP; one pick hitting two particles gives 2 TP, and FP may go
   negative.) No true particle of that class in that tomogram: TP 0, FP = picks, FN 0.
3. TP, FP, FN are summed per class over tomograms (micro average).
4. Per class P = TP/(TP+FP), R = TP/(TP+FN) (0 when the denominator is 0),
   F = (1+β²)·P·R/(β²·P + R) (0 when P + R = 0).
5. Overall = Σ over classes in the truth of weight × F, divided by the sum of **all** weights
   (7 for the CZII weights), so an unscored class still counts in the denominator.

Picks of a known class that the truth does not contain at all are ignored (the reference code
only loops over the truth's classes); :attr:`Score.ignored` counts them.

Inputs are canonical pick tables (``tomogram, particle, x, y, z`` in Å); CZII-style tables
(``experiment, particle_type``) are accepted too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from picks.core.errors import PicksError
from picks.core.fbeta import fbeta
from picks.core.particles import CZII

DEFAULT_MULTIPLIER = 0.5
DEFAULT_BETA = 4.0


def default_radii() -> dict[str, float]:
    return {name: p.radius for name, p in CZII.items()}


def default_weights() -> dict[str, float]:
    return {name: p.weight for name, p in CZII.items()}


@dataclass
class ClassScore:
    """Counts and scores of one class, summed over tomograms."""

    particle: str
    tp: int
    fp: int
    fn: int
    precision: float
    recall: float
    fbeta: float
    weight: float
    n_truth: int
    n_picks: int


@dataclass
class Score:
    """The metric for one set of picks: per-class rows and the weighted overall F-beta."""

    classes: list[ClassScore]
    overall: float
    beta: float
    multiplier: float
    ignored: int = 0  # picks of a known class absent from the truth (not scored)
    dropped: int = 0  # picks in tomograms the truth does not contain
    per_tomogram: dict[str, dict[str, tuple[int, int, int]]] = field(default_factory=dict)

    def by_class(self) -> dict[str, ClassScore]:
        return {c.particle: c for c in self.classes}

    def as_dict(self) -> dict:
        return {
            "overall": self.overall,
            "beta": self.beta,
            "multiplier": self.multiplier,
            "ignored": self.ignored,
            "dropped": self.dropped,
            "classes": [asdict(c) for c in self.classes],
        }


def _standard(frame: pd.DataFrame, what: str) -> pd.DataFrame:
    """tomogram, particle, x, y, z (+ score) from a canonical or CZII-style table."""
    renamed = frame.rename(columns={"experiment": "tomogram", "particle_type": "particle"})
    missing = [c for c in ("tomogram", "particle", "x", "y", "z") if c not in renamed]
    if missing:
        raise PicksError(f"{what} lacks column(s) {missing}")
    out = renamed[["tomogram", "particle", "x", "y", "z"]].copy()
    out["score"] = renamed["score"].to_numpy(dtype=float) if "score" in renamed else np.nan
    out["tomogram"] = out["tomogram"].astype(str)
    return out.reset_index(drop=True)


def _check_classes(frame: pd.DataFrame, radii: Mapping[str, float], what: str) -> None:
    particles = frame["particle"]
    if particles.isna().any():
        raise PicksError(
            f"{what}: {int(particles.isna().sum())} picks have no particle class; the metric "
            "scores classes",
            hint="Import them with `particle` NAME.",
        )
    unknown = sorted(set(particles.astype(str)) - set(radii))
    if unknown:
        raise PicksError(
            f"{what}: unknown particle class(es) {unknown}; the metric knows {sorted(radii)}",
            hint="Give its size with `radii` NAME=ÅNGSTROM.",
        )


def hits(reference: np.ndarray, candidates: np.ndarray, threshold: float) -> list[list[int]]:
    """For every candidate, the reference indices within ``threshold`` (inclusive ``<=``)."""
    if len(reference) == 0 or len(candidates) == 0:
        return [[] for _ in range(len(candidates))]
    return cKDTree(reference).query_ball_point(candidates, r=threshold)


def _prepare(
    truth: pd.DataFrame,
    picks: pd.DataFrame,
    radii: Mapping[str, float],
) -> tuple[pd.DataFrame, pd.DataFrame, int, int]:
    truth = _standard(truth, "truth")
    picks = _standard(picks, "picks")
    _check_classes(truth, radii, "truth")
    duplicated = truth.duplicated(["tomogram", "x", "y", "z"])
    if duplicated.any():
        row = truth[duplicated].iloc[0]
        raise PicksError(
            f"truth has {int(duplicated.sum())} duplicate positions (first: {row['tomogram']} "
            f"{row['x']:g}, {row['y']:g}, {row['z']:g})"
        )
    known_tomograms = set(truth["tomogram"])
    in_split = picks["tomogram"].isin(known_tomograms)
    dropped = int((~in_split).sum())
    picks = picks[in_split].reset_index(drop=True)
    _check_classes(picks, radii, "picks")
    classes = set(truth["particle"])
    in_truth = picks["particle"].isin(classes)
    ignored = int((~in_truth).sum())
    return truth, picks[in_truth].reset_index(drop=True), ignored, dropped


def score(
    truth: pd.DataFrame,
    picks: pd.DataFrame,
    *,
    multiplier: float = DEFAULT_MULTIPLIER,
    beta: float = DEFAULT_BETA,
    radii: Mapping[str, float] | None = None,
    weights: Mapping[str, float] | None = None,
) -> Score:
    """The CZII score of ``picks`` against ``truth`` (see the module docstring)."""
    radii = dict(radii) if radii is not None else default_radii()
    weights = dict(weights) if weights is not None else default_weights()
    truth, picks, ignored, dropped = _prepare(truth, picks, radii)
    classes = list(dict.fromkeys(truth["particle"]))
    totals = {c: [0, 0, 0] for c in classes}
    per_tomogram: dict[str, dict[str, tuple[int, int, int]]] = {}
    truth_groups = {k: g for k, g in truth.groupby(["tomogram", "particle"], sort=False)}
    pick_groups = {k: g for k, g in picks.groupby(["tomogram", "particle"], sort=False)}
    for tomogram in dict.fromkeys(truth["tomogram"]):
        for particle in classes:
            ref = truth_groups.get((tomogram, particle))
            cand = pick_groups.get((tomogram, particle))
            ref_xyz = (
                ref[["x", "y", "z"]].to_numpy(dtype=float) if ref is not None else np.zeros((0, 3))
            )
            cand_xyz = (
                cand[["x", "y", "z"]].to_numpy(dtype=float)
                if cand is not None
                else np.zeros((0, 3))
            )
            matched = {
                i for row in hits(ref_xyz, cand_xyz, multiplier * radii[particle]) for i in row
            }
            tp = len(matched)
            counts = (tp, len(cand_xyz) - tp, len(ref_xyz) - tp)
            per_tomogram.setdefault(tomogram, {})[particle] = counts
            for k in range(3):
                totals[particle][k] += counts[k]
    rows = []
    weighted = 0.0
    n_truth = truth["particle"].value_counts()
    n_picks = picks["particle"].value_counts()
    for particle in sorted(classes):
        tp, fp, fn = totals[particle]
        p, r, f = fbeta(tp, fp, fn, beta)
        weight = float(weights.get(particle, 1.0))
        weighted += weight * f
        rows.append(
            ClassScore(
                particle,
                tp,
                fp,
                fn,
                p,
                r,
                f,
                weight,
                int(n_truth.get(particle, 0)),
                int(n_picks.get(particle, 0)),
            )
        )
    denominator = sum(float(w) for w in weights.values()) or 1.0
    return Score(rows, weighted / denominator, beta, multiplier, ignored, dropped, per_tomogram)


def threshold_curve(
    truth: pd.DataFrame,
    picks: pd.DataFrame,
    *,
    thresholds: Sequence[float] | None = None,
    multiplier: float = DEFAULT_MULTIPLIER,
    beta: float = DEFAULT_BETA,
    radii: Mapping[str, float] | None = None,
    weights: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Precision, recall (pooled over classes) and overall F-beta keeping picks with score ≥ t.

    Exact for every threshold without rescoring: a true particle counts as found at ``t`` when
    the best score among the picks that hit it is ``>= t``. Picks without a score count as
    score +inf (always kept). Returns columns threshold, n_picks, tp, fp, fn, precision,
    recall, fbeta (weighted overall, the metric's final score).
    """
    radii = dict(radii) if radii is not None else default_radii()
    weights = dict(weights) if weights is not None else default_weights()
    truth, picks, _, _ = _prepare(truth, picks, radii)
    scores = picks["score"].to_numpy(dtype=float)
    scores = np.where(np.isnan(scores), np.inf, scores)
    if thresholds is None:
        finite = np.unique(scores[np.isfinite(scores)])
        thresholds = list(np.quantile(finite, np.linspace(0, 1, 41))) if len(finite) else [0.0]
    thresholds = np.asarray(sorted(set(float(t) for t in thresholds)))
    classes = list(dict.fromkeys(truth["particle"]))
    # Per class: best score reaching each true particle; scores of the class's picks.
    best_hit: dict[str, list[float]] = {c: [] for c in classes}
    pick_scores: dict[str, np.ndarray] = {}
    for particle in classes:
        pick_scores[particle] = scores[(picks["particle"] == particle).to_numpy()]
        for tomogram, ref in truth[truth["particle"] == particle].groupby("tomogram", sort=False):
            mask = ((picks["tomogram"] == tomogram) & (picks["particle"] == particle)).to_numpy()
            ref_xyz = ref[["x", "y", "z"]].to_numpy(dtype=float)
            best = np.full(len(ref_xyz), -np.inf)
            for s, row in zip(
                scores[mask],
                hits(
                    ref_xyz,
                    picks.loc[mask, ["x", "y", "z"]].to_numpy(dtype=float),
                    multiplier * radii[particle],
                ),
                strict=True,
            ):
                for i in row:
                    best[i] = max(best[i], s)
            best_hit[particle].extend(best.tolist())
    denominator = sum(float(w) for w in weights.values()) or 1.0
    rows = []
    for t in thresholds:
        tp_all = fp_all = fn_all = n_all = 0
        weighted = 0.0
        for particle in classes:
            best = np.asarray(best_hit[particle])
            tp = int((best >= t).sum())
            n = int((pick_scores[particle] >= t).sum())
            fp, fn = n - tp, len(best) - tp
            weighted += float(weights.get(particle, 1.0)) * fbeta(tp, fp, fn, beta)[2]
            tp_all, fp_all, fn_all, n_all = tp_all + tp, fp_all + fp, fn_all + fn, n_all + n
        p, r, _ = fbeta(tp_all, fp_all, fn_all, beta)
        rows.append(
            {
                "threshold": float(t),
                "n_picks": n_all,
                "tp": tp_all,
                "fp": fp_all,
                "fn": fn_all,
                "precision": p,
                "recall": r,
                "fbeta": weighted / denominator,
            }
        )
    return pd.DataFrame(rows)


@dataclass
class Evaluated:
    """One scored set of picks."""

    label: str
    kind: str  # picker | consensus | consensus-candidates | file
    picks: pd.DataFrame = field(repr=False)
    score: Score
    run_id: int | None = None

    def row(self) -> dict:
        out = {"source": self.label, "kind": self.kind, "n": len(self.picks)}
        for c in self.score.classes:
            out[c.particle] = c.fbeta
        out["overall"] = self.score.overall
        return out

    def as_dict(self) -> dict:
        return {
            "source": self.label,
            "kind": self.kind,
            "run_id": self.run_id,
            "n_picks": len(self.picks),
            **self.score.as_dict(),
        }
