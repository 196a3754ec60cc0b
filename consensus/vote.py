"""Partition consensus picks by support and decide by vote; apply trusted reference picks.

Partition (per particle class, like Xmipp's deep consensus, which trains on the picks that
*all* pickers agree on (AND), scores the ones that only *some* found (OR minus AND) and
takes negatives from random noise):

* **positive** – support ≥ ``min_support``. Default: all pickers but one when three or more
  pickers report the class, else all of them (with two pickers that is Xmipp's AND). The
  words ``all``, ``all-but-one`` and ``majority`` are accepted instead of a number.
* **doubtful** – found by at least ``doubtful_support`` pickers (default 2), but below
  ``min_support``;
* **negative** – the rest (usually picks a single picker reported).

"Pickers" of a class are those that reported the class anywhere in the run, so a
single-class picker does not count against the other classes; with per-picker weights,
support and thresholds are sums of weights ("all but one" = total minus the smallest
weight; "majority" = the smallest sum of weights above half the total).

Voting accepts the positives; ``vote_score`` = support / total weight of the class's pickers.

Trusted references (sources with role ``positive`` or ``negative``): a consensus pick within
its match distance of a reference of the same class (or of a reference without a class) is
forced: positive reference → status positive, accepted; negative reference (e.g. a gold
bead) → status negative, rejected. When both kinds are in range, the nearer one decides
(a tie goes to the negative one). The reason names the reference pick. A positive reference
that matches no consensus pick becomes a consensus pick of its own (status ``reference``,
support 0, accepted), so a hand-picked particle is never lost.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from picks.core.errors import PicksError

RULES = ("all", "all-but-one", "majority")
AGNOSTIC = "*"  # class key when clustering is class-agnostic
_EPS = 1e-9


@dataclass(frozen=True)
class SupportRule:
    """Pickers of one class and the support a positive needs."""

    pickers: tuple[str, ...]
    total: float
    min_support: float
    rule: str  # the rule or number the threshold came from

    def as_dict(self) -> dict:
        return dict(asdict(self), pickers=list(self.pickers))


def parse_min_support(value: object) -> float | str | None:
    """``None`` (default rule), a number, or one of :data:`RULES`."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    else:
        text = str(value).strip().lower().replace("_", "-")
        if text in RULES:
            return text
        try:
            number = float(text)
        except ValueError:
            raise PicksError(
                f"`min_support` {value!r}: expected a number or one of {', '.join(RULES)}"
            ) from None
    if number <= 0:
        raise PicksError(f"`min_support` {value!r} must be > 0")
    return number


def threshold(weights: Sequence[float], min_support: float | str | None) -> tuple[float, str]:
    """The support a positive needs among pickers with ``weights``, and the rule's name."""
    weights = [float(w) for w in weights]
    total = sum(weights)
    if isinstance(min_support, float | int):
        return float(min_support), f"{min_support:g}"
    rule = min_support or ("all-but-one" if len(weights) >= 3 else "all")
    if rule == "all":
        return total, rule
    if rule == "all-but-one":
        return (total - min(weights) if len(weights) > 1 else total), rule
    # majority: the smallest achievable sum of weights strictly above half the total
    if all(w == 1.0 for w in weights):
        return float(len(weights) // 2 + 1), rule
    if len(weights) > 16:
        return total / 2 + _EPS, rule
    sums = {sum(c) for r in range(1, len(weights) + 1) for c in itertools.combinations(weights, r)}
    return min(s for s in sums if s > total / 2 + _EPS), rule


def support_rules(
    picks: pd.DataFrame,
    *,
    weights: Mapping[str, float] | None = None,
    min_support: float | str | None = None,
    class_agnostic: bool = False,
) -> dict[object, SupportRule]:
    """One :class:`SupportRule` per class key (the class, or :data:`AGNOSTIC`)."""
    weights = weights or {}
    rules: dict[object, SupportRule] = {}
    if picks.empty:
        return rules
    if class_agnostic:
        groups = {AGNOSTIC: sorted(set(picks["picker"].astype(str)))}
    else:
        frame = pd.DataFrame(
            {"p": picks["particle"].astype(object), "k": picks["picker"].astype(str)}
        )
        frame["p"] = frame["p"].where(frame["p"].notna(), "\0none")
        groups = {
            (None if p == "\0none" else p): sorted(set(g["k"]))
            for p, g in frame.drop_duplicates().groupby("p", sort=True)
        }
    for key, pickers in groups.items():
        ws = [float(weights.get(k, 1.0)) for k in pickers]
        needed, rule = threshold(ws, min_support)
        rules[key] = SupportRule(tuple(pickers), float(sum(ws)), needed, rule)
    return rules


def partition(
    consensus: pd.DataFrame,
    rules: Mapping[object, SupportRule],
    *,
    doubtful_support: int = 2,
    class_agnostic: bool = False,
) -> pd.DataFrame:
    """Status, vote score, acceptance and reason for every consensus pick (same index)."""
    n = len(consensus)
    if n == 0:
        return pd.DataFrame(
            {c: pd.Series(dtype=object) for c in ("status", "vote_score", "accepted", "reason")}
        )
    # The rule of each distinct class, looked up once (not once per candidate)
    if class_agnostic:
        codes, keys = np.zeros(n, dtype=np.int64), [AGNOSTIC]
    else:
        codes, uniques = pd.factorize(consensus["particle"].astype(object))  # None: -1
        keys = list(uniques)
        if (codes < 0).any():
            codes = np.where(codes < 0, len(keys), codes)
            keys.append(None)
    total = np.array([rules[k].total for k in keys], dtype=float)[codes]
    needed = np.array([rules[k].min_support for k in keys], dtype=float)[codes]
    n_all = np.array([len(rules[k].pickers) for k in keys])[codes]
    support = consensus["support"].to_numpy(dtype=float)
    n_pickers = consensus["n_pickers"].to_numpy(dtype=int)
    positive = support >= needed - _EPS
    doubtful = ~positive & (n_pickers >= doubtful_support)
    status = np.where(positive, "positive", np.where(doubtful, "doubtful", "negative"))
    with np.errstate(invalid="ignore", divide="ignore"):
        vote = np.where(total > 0, support / total, 0.0)
    # Each distinct reason is formatted once: a run has a few dozen, not a million. The
    # reason is a function of (class, support, pickers), so those three, as integer codes
    # hashed together, name it (hashing: np.unique over records of text sorted for seconds).
    support_code, supports = pd.factorize(support, use_na_sentinel=False)
    key = (codes.astype(np.int64) * len(supports) + support_code) * (
        int(n_pickers.max()) + 1
    ) + n_pickers
    inverse, distinct = pd.factorize(key)
    first = np.empty(len(distinct), dtype=np.int64)
    first[inverse[::-1]] = np.arange(n)[::-1]  # each distinct key's first candidate
    fields = (support, total, n_pickers, n_all, positive, needed, status)
    texts = np.array(
        [
            f"support {s:g}/{t:g} ({m} of {a} pickers), {'≥' if p else '<'} {need:g}: {st}"
            for s, t, m, a, p, need, st in zip(*(f[first].tolist() for f in fields), strict=True)
        ],
        dtype=object,
    )
    reason = texts[inverse]
    return pd.DataFrame(
        {"status": status, "vote_score": vote, "accepted": positive, "reason": reason},
        index=consensus.index,
    )


def match_references(
    consensus: pd.DataFrame, references: pd.DataFrame, *, class_agnostic: bool = False
) -> tuple[pd.DataFrame, np.ndarray]:
    """Nearest trusted reference within each consensus pick's match distance.

    ``references`` has columns ``id, role, picker, tomogram, particle, x, y, z``. Returns a
    frame aligned with ``consensus`` (``ref_id``, ``ref_role``, ``ref_picker``,
    ``ref_distance``; NaN/None where no reference is in range) and the ids of the positive
    references that matched no consensus pick.
    """
    n = len(consensus)
    out = pd.DataFrame(
        {
            "ref_id": pd.arrays.IntegerArray(np.zeros(n, np.int64), np.ones(n, bool)),
            "ref_role": np.full(n, None, dtype=object),
            "ref_picker": np.full(n, None, dtype=object),
            "ref_distance": np.full(n, np.nan),
        },
        index=consensus.index,
    )
    if references.empty:
        return out, np.zeros(0, dtype=np.int64)
    cons_xyz = consensus[["x", "y", "z"]].to_numpy(dtype=float)
    cons_thr = consensus["match_distance"].to_numpy(dtype=float)
    cons_particle = consensus["particle"].astype(object).to_numpy()
    cons_tomo = consensus["tomogram"].astype(str).to_numpy()
    ref_xyz = references[["x", "y", "z"]].to_numpy(dtype=float)
    ref_particle = references["particle"].astype(object).to_numpy()
    ref_tomo = references["tomogram"].astype(str).to_numpy()
    ref_ids = references["id"].to_numpy(dtype=np.int64)
    ref_neg = (references["role"].astype(str) == "negative").to_numpy()
    pairs_c: list[np.ndarray] = []
    pairs_r: list[np.ndarray] = []
    for name in np.unique(ref_tomo):
        ci = np.flatnonzero(cons_tomo == name)
        ri = np.flatnonzero(ref_tomo == name)
        if len(ci) == 0:
            continue
        radius = float(cons_thr[ci].max()) if len(ci) else 0.0
        hits = cKDTree(cons_xyz[ci]).query_ball_point(ref_xyz[ri], r=radius * (1 + _EPS) + _EPS)
        lengths = np.array([len(h) for h in hits], dtype=np.int64)
        if lengths.sum() == 0:
            continue
        pairs_r.append(np.repeat(ri, lengths))
        pairs_c.append(ci[np.concatenate([np.asarray(h, dtype=np.int64) for h in hits])])
    matched_pos = np.zeros(len(references), dtype=bool)
    if pairs_c:
        pc = np.concatenate(pairs_c)
        pr = np.concatenate(pairs_r)
        d = np.sqrt(((cons_xyz[pc] - ref_xyz[pr]) ** 2).sum(axis=1))
        same_class = np.array(
            [
                class_agnostic or rp is None or (isinstance(rp, float) and np.isnan(rp)) or rp == cp
                for rp, cp in zip(ref_particle[pr], cons_particle[pc], strict=True)
            ],
            dtype=bool,
        )
        ok = (d <= cons_thr[pc]) & same_class
        pc, pr, d = pc[ok], pr[ok], d[ok]
        matched_pos[pr[~ref_neg[pr]]] = True
        # nearest first; on equal distance the negative reference, then the lower id, wins
        order = np.lexsort((ref_ids[pr], ~ref_neg[pr], d, pc))
        pc, pr, d = pc[order], pr[order], d[order]
        first = np.r_[True, pc[1:] != pc[:-1]]
        pc, pr, d = pc[first], pr[first], d[first]
        out.iloc[pc, out.columns.get_loc("ref_id")] = ref_ids[pr]
        out.iloc[pc, out.columns.get_loc("ref_role")] = np.where(
            ref_neg[pr], "negative", "positive"
        )
        out.iloc[pc, out.columns.get_loc("ref_picker")] = (
            references["picker"].astype(str).to_numpy()[pr]
        )
        out.iloc[pc, out.columns.get_loc("ref_distance")] = d
    unmatched = ref_ids[~ref_neg & ~matched_pos]
    return out, np.sort(unmatched)


def apply_references(votes: pd.DataFrame, matches: pd.DataFrame) -> pd.DataFrame:
    """Force the decisions of consensus picks that a reference is in range of (copy)."""
    votes = votes.copy()
    if votes.empty:
        votes["forced"] = pd.Series(dtype=bool)
        return votes
    forced = matches["ref_role"].notna().to_numpy()
    votes["forced"] = forced
    for i in np.flatnonzero(forced):
        role = matches["ref_role"].iat[i]
        label = matches["ref_picker"].iat[i]
        text = (
            f"{role} reference pick #{int(matches['ref_id'].iat[i])} ({label}) "
            f"{matches['ref_distance'].iat[i]:.1f} Å away; by support it was "
            f"{votes['status'].iat[i]} ({votes['reason'].iat[i]})"
        )
        votes.iat[i, votes.columns.get_loc("status")] = role
        votes.iat[i, votes.columns.get_loc("accepted")] = role == "positive"
        votes.iat[i, votes.columns.get_loc("reason")] = text
    return votes
