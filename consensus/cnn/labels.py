"""Which consensus candidates label the CNN's training data (no store, no TensorFlow).

Two families of rules:

* **support** (``auto``, ``full``, ``status``): positives are the picks many pickers agree on
  (see :func:`positive_selection`); the only candidates used as negatives are the ones the
  image veto rejects.
* **posterior** (what ``picks aggregate --method cnn`` uses): the latent-class model's
  posterior P(particle) labels both sides. A candidate with P ≥ :data:`P_HIGH` is a positive,
  one with P ≤ :data:`P_LOW` is a negative (confident junk, whatever its support: the model
  has seen that its pickers agree on junk there, or the image veto set P = 0), and the
  doubtful ones in between are never labels: they are what the network is asked about.

A trusted reference's decision always wins over both rules: a forced positive is a positive,
a forced negative is never one, and neither is ever a posterior negative.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from picks.consensus.cnn.options import CnnOptions
from picks.core.errors import PicksError
from picks.core.particles import Catalog

POSITIVE_RULES = ("auto", "full", "status", "posterior")
MIN_FULL_POSITIVES = 50  # "auto": below this many full-support picks, allow one missing picker
# Posterior thresholds (on the stored, tempered posterior: the probability the latent decision
# uses, docs/latent.md). 0.9 keeps the positives about as clean as full support was on the
# benchmark worlds (≈ 1 in 10 wrong at worst) while taking in the particles that most but not
# all pickers found; 0.1 takes as junk what the model is as sure of. The expected-F-beta
# decision accepts down to P ≈ 0.06 (β = 4), so the band in between is exactly where its
# decisions are uncertain and where a label would only teach the network the model's guess.
P_HIGH = 0.9
MIN_POOL = 2048  # the smallest hard-negative pool pool_per_positive may leave (mining_sizes)
P_LOW = 0.1


def is_trusted(candidates: pd.DataFrame) -> np.ndarray:
    """Consensus picks whose decision a trusted reference forced (kept whatever the CNN says):
    the stored ``forced`` flag (m006), and reference-only picks."""
    forced = (
        candidates["forced"].fillna(False).astype(bool).to_numpy()
        if "forced" in candidates
        else np.zeros(len(candidates), dtype=bool)
    )
    return forced | (candidates["status"] == "reference").to_numpy()


def positive_selection(candidates: pd.DataFrame, rule: str = "auto") -> tuple[np.ndarray, str]:
    """Which consensus picks are training positives, and the rule that chose them.

    ``full``: every picker that reports the class found it (vote score 1) and at least two
    pickers did — the Xmipp "AND" set; ``status``: every pick with status ``positive`` (the
    run's ``--min-support``, e.g. all but one picker); ``auto``: ``full``, but when
    that gives fewer than :data:`MIN_FULL_POSITIVES` picks (small data: a class-confusing or
    conservative picker leaves few locations that *every* picker found), positive picks that
    all pickers but one found (and at least two) are added — one rule, never weaker; a
    doubtful pick (below the run's ``--min-support``) is never a label. ``posterior``: the
    latent-class posterior is at least :data:`P_HIGH` (needs a ``posterior`` column). All
    rules include status ``reference`` and picks a trusted positive reference forced.
    """
    if rule not in POSITIVE_RULES:
        raise PicksError(f"positives rule {rule!r}: expected one of {', '.join(POSITIVE_RULES)}")
    mask, text = _positive_rule(candidates, rule)
    # Junk every picker agrees on (a gold bead) must not teach the network what a particle is:
    # an ``image_veto`` column (picks.consensus.image_features.density_veto) takes those out;
    # a trusted reference's decision still stands.
    veto = image_vetoed(candidates)
    if veto.any():
        mask = mask & (~veto | _forced_positive(candidates))
    return mask, text


def negative_selection(candidates: pd.DataFrame, rule: str = "auto") -> np.ndarray:
    """Consensus picks that train as negatives: the image veto's candidates, and under the
    ``posterior`` rule every candidate with posterior ≤ :data:`P_LOW`. Never a trusted
    reference's pick, never a positive."""
    positive, _ = positive_selection(candidates, rule)
    junk = image_vetoed(candidates)
    if rule == "posterior":
        junk = junk | (_posterior(candidates) <= P_LOW)
    return junk & ~positive & ~is_trusted(candidates)


def image_vetoed(candidates: pd.DataFrame) -> np.ndarray:
    if "image_veto" not in candidates:
        return np.zeros(len(candidates), dtype=bool)
    return candidates["image_veto"].fillna(False).to_numpy(dtype=bool)


def _forced_positive(candidates: pd.DataFrame) -> np.ndarray:
    status = candidates["status"].astype(str)
    return (is_trusted(candidates) & (status == "positive")).to_numpy() | (
        status == "reference"
    ).to_numpy()


def _posterior(candidates: pd.DataFrame) -> np.ndarray:
    if "posterior" not in candidates:
        raise PicksError(
            "positives rule 'posterior': the run has no latent-class posteriors",
            hint="Decide the run with `method` latent (or cnn) first, or use positives auto.",
        )
    # NaN (no posterior: a reference-only row) is neither confident side
    return candidates["posterior"].to_numpy(dtype=float)


def _positive_rule(candidates: pd.DataFrame, rule: str) -> tuple[np.ndarray, str]:
    status = candidates["status"].astype(str)
    forced = _forced_positive(candidates)
    if rule == "posterior":
        p = _posterior(candidates)
        with np.errstate(invalid="ignore"):
            confident = (p >= P_HIGH) & ~is_trusted(candidates)
        return confident | forced, f"latent posterior ≥ {P_HIGH:g}"
    if rule == "status":
        return (status == "positive").to_numpy() | forced, "status positive (the run's support)"
    n_pickers = (
        candidates["pickers"]
        .fillna("")
        .astype(str)
        .map(lambda s: len({p for p in s.split(",") if p.strip()}))
        .to_numpy()
    )
    vote = candidates["vote_score"].fillna(0).to_numpy(dtype=float)
    # only among the run's positives: a doubtful pick is never a label, whatever its support
    found = (status == "positive").to_numpy() & ~is_trusted(candidates)
    full = (status == "positive").to_numpy() & (vote >= 1 - 1e-9) & (n_pickers >= 2)
    if rule == "full" or int(full.sum()) >= MIN_FULL_POSITIVES:
        return full | forced, "full support (every picker)"
    support = candidates["support"].fillna(0).to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        total = np.where(vote > 0, support / np.maximum(vote, 1e-9), np.inf)
    relaxed = found & (n_pickers >= 2) & (total - support <= 1.0 + 1e-6)  # one (unit) picker
    return (
        full | relaxed | forced,
        f"all pickers but one (only {int(full.sum())} full-support picks, fewer than "
        f"{MIN_FULL_POSITIVES})",
    )


def match_radius(catalog: Catalog, particles: pd.Series) -> np.ndarray:
    """Half the class radius (the CZII match distance); the smallest radius for unknown classes."""
    radii = {}
    smallest = min((p.radius for p in catalog), default=50.0)
    out = np.empty(len(particles))
    for i, name in enumerate(particles.tolist()):
        if name not in radii:
            radii[name] = (
                catalog.radius(name) if isinstance(name, str) and name in catalog else smallest
            )
        out[i] = 0.5 * radii[name]
    return out


def mining_sizes(n_noise: int, n_positives: int, options: CnnOptions) -> tuple[int, int]:
    """``(wanted, pool)``: how many hard negatives to keep, out of how many background boxes.

    Unbounded, ``hard_negatives`` per noise sample (``n_noise``, at least the minimum) are
    kept out of a pool ``pool_factor`` times larger. ``pool_per_positive`` caps the pool at that many boxes per training positive
    (sampling, extracting and scoring it was a third of the run's time on 2 cores) and the
    kept ones at the pool's top 1/``pool_factor``, so that they stay as hard as unbounded.
    The bound never goes below :data:`MIN_POOL` boxes.
    """
    wanted = round(options.hard_negatives * n_noise)
    pool = wanted * options.pool_factor
    if options.pool_per_positive is not None:
        # small runs keep a pool of MIN_POOL (seconds to score): with few positives a bound of
        # a few per positive leaves too few hard negatives (measured: more empty candidates
        # accepted on the test world)
        pool = min(pool, max(round(options.pool_per_positive * n_positives), MIN_POOL))
        wanted = min(wanted, max(1, pool // options.pool_factor))
    return wanted, pool


def mining_room(table: pd.DataFrame, options: CnnOptions, min_noise: int) -> int:
    """The most hard negatives :func:`mining_sizes` can ask for after ``table``'s extraction.

    Extraction only drops rows and ``wanted`` grows with both counts, so the table's own counts
    bound it: training keeps this many rows free after its boxes. 0 without mining.
    """
    if options.hard_negatives <= 0:
        return 0
    n_noise = max(int((table["kind"] == "noise").sum()), min_noise)
    n_positives = int((table["label"].to_numpy(dtype=np.int64) > 0).sum())
    return mining_sizes(n_noise, n_positives, options)[0]
