"""The CNN's score as one more feature of the latent-class model (issue 10 §4).

``picks aggregate --method cnn`` first decides the run with the latent-class model (as the
default does, image veto included), trains the CNN on that model's confident candidates
(:mod:`picks.consensus.cnn.labels`, rule ``posterior``), scores every candidate, then fits the
latent-class model again with the CNN's P(particle) as one more evidence column and decides
by expected F-beta as before. :class:`LatentRefit` is the second fit, built by the aggregate
workflow (which holds the clusters and picks) and called by
:func:`picks.workflows.rescore.rescore_run` (which holds the scores).

Why a feature and not a threshold: the CNN alone accepted nearly every candidate on the
benchmark worlds (docs/cnn.md §6), while the latent model knows each picker's reliability.
As a feature, the CNN's score gets a histogram per class and latent state, so the model
learns from the data how far the network separates particles from junk *for that class* and
weights it accordingly: a network that cannot tell them apart moves no posterior.

Rare classes: a class with fewer than :data:`MIN_FEATURE_POSITIVES` training positives has not been learned by the network, so its candidates get no CNN
feature (NaN: no evidence) and their decision comes from the pickers alone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

FEATURE = "cnn"
DECIDED_BY = "cnn+latent"
# Below this many confident training particles of a class the network has barely seen it, so
# its score is not evidence for that class's candidates. Lower than the threshold rule's 20
# (picks.consensus.cnn.reasons.MIN_CLASS_POSITIVES) because here the latent model itself
# weighs the feature per class by how well it separates that class's particles from its junk
# (a score that does not separate them moves no posterior); the guard only keeps out a class
# the network has not learned, whose particles it would call noise. Measured on sim-11x3
# (two tomograms): 7–17 confident particles per class; at 20 no class used the feature.
MIN_FEATURE_POSITIVES = 10


@dataclass
class LatentRefit:
    """Refit the latent model with a CNN feature; rows of the stored candidates (id order).

    ``fit(extra_features)`` is :func:`picks.consensus.latent.decide_latent` with everything
    but the extra features bound; ``source_rows[j]`` is the row of ``clusters.consensus``
    that stored candidate ``j`` came from (≥ ``len(index)``: a reference-only row, which a
    trusted reference decides and the model never sees).
    """

    fit: Callable
    index: pd.Index
    source_rows: np.ndarray
    decision: object = None  # the LatentDecision of the last call

    def __call__(self, feature: np.ndarray) -> pd.DataFrame:
        """Columns posterior, accepted, reason (NaN/False/None on reference-only rows)."""
        n = len(self.index)
        src = np.asarray(self.source_rows, dtype=np.int64)
        inside = src < n
        column = np.full(n, np.nan)
        column[src[inside]] = np.asarray(feature, dtype=float)[inside]
        self.decision = self.fit(pd.DataFrame({FEATURE: column}, index=self.index))
        votes = self.decision.votes
        out = pd.DataFrame(
            {
                "posterior": np.full(len(src), np.nan),
                "accepted": np.zeros(len(src), dtype=bool),
                "reason": np.full(len(src), None, dtype=object),
            }
        )
        rows = src[inside]
        out.loc[inside, "posterior"] = votes["posterior"].to_numpy(dtype=float)[rows]
        out.loc[inside, "accepted"] = votes["accepted"].to_numpy(dtype=bool)[rows]
        out.loc[inside, "reason"] = votes["reason"].astype(str).to_numpy()[rows]
        return out


def cnn_feature(
    candidates: pd.DataFrame, particle: np.ndarray, models: list[dict]
) -> tuple[np.ndarray, list[str], list[str]]:
    """The CNN feature of each candidate, the classes it is used for and those it is not.

    ``particle``: the network's P(particle) = 1 − P(noise), mean over the models (NaN where
    the box could not be extracted); not the threshold rule's typicality-gated score: the
    latent model learns per class how the score separates particles from junk. The
    feature is NaN (no evidence) for a candidate without a class and for a class with fewer
    than :data:`MIN_FEATURE_POSITIVES` training positives in some model of the ensemble.
    The latent model bins a feature by its quantiles, so the scale (probability or logit)
    does not change the fit.
    """
    names = [
        None if p is None or (isinstance(p, float) and p != p) else str(p)
        for p in candidates["particle"].tolist()
    ]
    present = sorted({p for p in names if p is not None})
    counts = [
        ((m["card"].get("training") or {}).get("counts") or {}).get("positives") for m in models
    ]
    if any(not isinstance(c, dict) for c in counts):
        used = present  # a model without its training counts: trust it for every class
    else:
        used = [
            p for p in present if min(int(c.get(p, 0)) for c in counts) >= MIN_FEATURE_POSITIVES
        ]
    keep = np.array([p in used for p in names], dtype=bool)
    feature = np.where(keep, np.asarray(particle, dtype=float), np.nan)
    return feature, used, [p for p in present if p not in used]


def refit_reasons(
    table: pd.DataFrame, feature: np.ndarray, particle: np.ndarray, used: list[str], names
) -> list[str]:
    """The refit's reason per candidate, saying what decided and what the CNN said."""
    out = []
    for i, reason in enumerate(table["reason"].tolist()):
        if not np.isfinite(particle[i]):
            note = "no CNN score (box not extracted), pickers only"
        elif np.isfinite(feature[i]):
            note = f"CNN {particle[i]:.3f} as evidence"
        else:
            note = (
                f"CNN {particle[i]:.3f} not used: fewer than {MIN_FEATURE_POSITIVES} confident "
                f"training particles of {names[i]}, pickers decide"
            )
        out.append(f"{DECIDED_BY} ({note}): {reason}")
    return out
