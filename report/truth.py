"""The report's ground-truth section (``--truth``): measured precision, recall and F-beta
next to what the decision expected, the curves against the threshold, the reliability
diagram."""

from __future__ import annotations

import numpy as np
import pandas as pd

from picks.report import figures
from picks.report.context import SectionContext
from picks.report.page import Image, Section, Table, Text


class TruthSection(SectionContext):
    # -- ground truth ------------------------------------------------------------------------
    def truth(self, truth: pd.DataFrame) -> Section:
        from picks.evaluate import metric

        d = self.data
        f = d.frame
        truth = truth.rename(columns={"experiment": "tomogram", "particle_type": "particle"})
        truth = truth[truth["tomogram"].astype(str).isin(set(f["tomogram"]))]
        truth = truth[truth["particle"].notna()]
        blocks: list = [
            Text(
                "Against the ground truth given with --truth, restricted to this run's "
                "tomograms (the CZII metric: a candidate hits a particle of its class within "
                "half the class radius).",
                "note",
            )
        ]
        known = {k: v for k, v in d.radii.items() if k != "None"}
        absent = sorted(set(truth["particle"].astype(str)) - set(known))
        if absent:
            blocks.append(
                self._warn(
                    f"truth classes with no candidates in this run, not scored: {', '.join(absent)}"
                )
            )
        truth = truth[truth["particle"].astype(str).isin(set(known))]
        if truth.empty:
            blocks.append(self._warn("the truth has no particle of this run's classes"))
            return Section("truth", "Against the ground truth", blocks)
        picks = f[f["particle"].notna()][["tomogram", "particle", "x", "y", "z", "score"]]
        accepted = f[f["accepted"] & f["particle"].notna()]
        score = metric.score(
            truth, accepted, radii=known, weights=dict.fromkeys(known, 1.0)
        ).by_class()
        expected = {str(r.particle): r for r in d.classes.itertuples()} if len(d.classes) else {}
        rows = []
        curves, thresholds = {}, {}
        for name in sorted(set(truth["particle"].astype(str))):
            s = score.get(name)
            e = expected.get(name)
            rows.append(
                [
                    name,
                    s.n_truth if s else 0,
                    s.n_picks if s else 0,
                    s.precision if s else None,
                    s.recall if s else None,
                    s.fbeta if s else None,
                    e.expected_precision if e is not None else None,
                    e.expected_recall if e is not None else None,
                    e.expected_fbeta if e is not None else None,
                ]
            )
            curves[name] = metric.threshold_curve(
                truth[truth["particle"].astype(str) == name],
                picks[picks["particle"].astype(str) == name],
                radii=known,
                weights={name: 1.0},
            )
            threshold, _ = self._threshold(name, f[f["cls"] == name])
            if threshold is not None:
                thresholds[name] = threshold
        blocks.append(
            Table(
                [
                    "class",
                    "particles",
                    "accepted",
                    "precision",
                    "recall",
                    "F4",
                    "expected precision",
                    "expected recall",
                    "expected F-β",
                ],
                rows,
                caption="Measured (accepted candidates against the truth) next to what the "
                "decision expected without it",
            )
        )
        path = figures.truth_curves(curves, thresholds, self.files / "truth-curves.png", beta=4.0)
        blocks.append(
            Image(
                self._rel(path),
                "precision, recall and F-beta against the threshold",
                "Per class: precision, recall and F4 of the candidates with score ≥ t; dotted "
                "line: the run's threshold",
            )
        )
        posterior = f["posterior"].to_numpy(dtype=float)
        if np.isfinite(posterior).any():
            # per class too: a class the model gets wrong hides in the pooled diagram
            bins = {"all classes": reliability_bins(f, truth, known)}
            for name in sorted(set(truth["particle"].astype(str))):
                bins[name] = reliability_bins(f[f["cls"] == name], truth, known)
            path = figures.reliability_diagram(bins, self.files / "reliability.png")
            blocks.append(
                Image(
                    self._rel(path),
                    "reliability diagram",
                    "Candidates binned by P(particle) (10 bins), all classes and per class: "
                    "mean prediction against the fraction that hit a true particle; on the "
                    "diagonal the posterior means what it says, below it the model is "
                    "over-confident (numbers: candidates per bin)",
                )
            )
        return Section("truth", "Against the ground truth", blocks)


def reliability_bins(
    frame: pd.DataFrame, truth: pd.DataFrame, radii: dict[str, float], n_bins: int = 10
) -> pd.DataFrame:
    """Per posterior bin: mean posterior, fraction of candidates within half a radius of a
    true particle of their class (the metric's hit), and the count."""
    from picks.evaluate.metric import DEFAULT_MULTIPLIER, hits

    frame = frame[frame["particle"].notna() & np.isfinite(frame["posterior"])]
    hit = np.zeros(len(frame), dtype=bool)
    truth_groups = {
        k: g[["x", "y", "z"]].to_numpy(dtype=float)
        for k, g in truth.groupby([truth["tomogram"].astype(str), truth["particle"].astype(str)])
    }
    positions = np.arange(len(frame))
    for (tomo, cls), group in frame.groupby(["tomogram", "cls"], sort=True):
        ref = truth_groups.get((str(tomo), str(cls)))
        if ref is None or str(cls) not in radii:
            continue
        found = hits(
            ref, group[["x", "y", "z"]].to_numpy(dtype=float), DEFAULT_MULTIPLIER * radii[str(cls)]
        )
        hit[positions[frame.index.get_indexer(group.index)]] = [bool(h) for h in found]
    p = frame["posterior"].to_numpy(dtype=float)
    index = np.minimum((p * n_bins).astype(int), n_bins - 1)
    rows = []
    for b in range(n_bins):
        sel = index == b
        if sel.any():
            rows.append(
                {
                    "predicted": float(p[sel].mean()),
                    "measured": float(hit[sel].mean()),
                    "n": int(sel.sum()),
                }
            )
    return pd.DataFrame(rows, columns=["predicted", "measured", "n"])
