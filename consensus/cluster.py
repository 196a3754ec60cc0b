"""Cluster the picks of several pickers into consensus picks (pure NumPy/SciPy, no store).

Input: a pick table with columns ``id, picker, tomogram, particle, x, y, z`` (Å, canonical
frame) and optionally ``score, rot, tilt, psi``. Output (:class:`Clusters`): one row per
consensus pick and one member row per input pick: every input pick belongs to exactly one
consensus pick, so nothing disappears.

Guarantees (per tomogram, and per particle class unless ``class_agnostic``):

1. **Duplicates within a picker** closer than the match distance are merged first, by
   non-maximum suppression in order of score (best first; ties by the canonical order
   below). The kept pick is the picker's *primary* member; the suppressed ones become
   members too, with ``duplicate_of`` naming the kept pick. Every duplicate lies within the
   match distance of its primary, and the primaries of one picker are pairwise farther apart
   than the match distance.
2. **At most one primary pick per picker** in a consensus pick.
3. **No chaining**: no two primary members of a consensus pick are farther apart than the
   match distance (complete linkage). Clusters are grown greedily over candidate pairs
   (KD-tree ``query_pairs`` over the primaries of step 1) in order of increasing distance; a pair merges its two clusters
   only if the pickers are disjoint and *every* cross pair is within the match distance.
4. **Order independence**: picks are first sorted by the stable key (tomogram, particle,
   picker, x, y, z, score, id); ties between pair distances are broken by that order, so
   the result does not depend on the order of the input rows or files.

Match distance: ``match_distance`` Å if given, else ``match_fraction`` × the class radius
(default :data:`DEFAULT_MATCH_FRACTION` = 1.0). Why 1.0 and not the CZII metric's 0.5: the
metric counts a pick as a hit within 0.5 r of the particle centre, so two hits on the same
particle may be up to 0.5 r + 0.5 r = r apart — a pick-to-pick threshold of r is the smallest
that can merge every pair of hits. Two particles of one class do not overlap (centres ≥ 2 r
apart), so hits on two different particles are ≥ r apart and are never merged. A threshold
of 0.5 r would split many correct matches (pickers off by ~0.3 r in opposite directions)
into two weak consensus picks. In ``class_agnostic`` mode the threshold of a pair is
``match_fraction × max(r_i, r_j)``, which stays below r_i + r_j (no overlap) for fractions ≤ 1.

Support = Σ weights of the distinct pickers among the primaries (weight 1 unless given), so
it equals the number of pickers by default. The representative position is computed from
the primaries (one position per picker): ``centroid`` (mean), ``weighted`` (weights ×
normalised score) or ``best`` (highest normalised score). Scores of different pickers use
different scales, so they are normalised per picker to their percentile rank in (0, 1]
(picks without a score get 1.0). Orientation (rot, tilt, psi) is taken from the best-scoring
primary that has one; angles are never averaged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from picks.core.arrays import distinct
from picks.core.errors import PicksError
from picks.core.particles import Catalog

DEFAULT_MATCH_FRACTION = 1.0
REPRESENTATIVES = ("centroid", "weighted", "best")
# Candidate search radius slack: scipy's own distance rounding must never drop a pair that our
# exact check (``distance <= threshold``) would keep.
_SLACK = 1e-9

CONSENSUS_COLUMNS = [
    "tomogram",
    "particle",
    "x",
    "y",
    "z",
    "support",
    "n_pickers",
    "n_members",
    "pickers",
    "member_score",
    "match_distance",
    "rot",
    "tilt",
    "psi",
]
MEMBER_COLUMNS = ["consensus", "pick_id", "picker", "distance", "duplicate_of", "primary"]


@dataclass(frozen=True)
class ClusterOptions:
    """How to cluster; see the module docstring for the meaning of each field."""

    match_fraction: float = DEFAULT_MATCH_FRACTION
    match_distance: float | None = None
    representative: str = "centroid"
    class_agnostic: bool = False
    weights: Mapping[str, float] = field(default_factory=dict)

    def check(self) -> None:
        if self.representative not in REPRESENTATIVES:
            raise PicksError(
                f"representative {self.representative!r}: expected one of {', '.join(REPRESENTATIVES)}"
            )
        if self.match_distance is not None and not self.match_distance >= 0:
            raise PicksError(f"match distance {self.match_distance!r} Å must be ≥ 0")
        if self.match_distance is None and not self.match_fraction > 0:
            raise PicksError(f"match fraction {self.match_fraction!r} must be > 0")
        for label, weight in self.weights.items():
            if not weight >= 0:
                raise PicksError(f"weight of picker {label!r} must be ≥ 0, got {weight!r}")


@dataclass
class Clusters:
    """Consensus picks (row ``i`` is consensus pick ``i``) and their member picks."""

    consensus: pd.DataFrame
    members: pd.DataFrame
    stats: dict = field(default_factory=dict)


def resolve_radii(
    particles: object, catalog: Catalog, *, box_size: float | None = None
) -> dict[str | None, float]:
    """Radius in Å of every class in ``particles`` (``None`` = unlabelled picks).

    Classes unknown to ``catalog`` (and unlabelled picks) take ``box_size / 2`` when a box
    size is given (the box encloses the particle, so this is an upper bound); otherwise they
    are an error that names them and how to give a radius.
    """
    radii: dict[str | None, float] = {}
    unknown: list[str] = []
    for name in sorted({p for p in particles if p is not None}) + (
        [None] if any(p is None for p in particles) else []
    ):
        if name is not None and name in catalog:
            radii[name] = catalog.radius(name)
        elif box_size:
            radii[name] = float(box_size) / 2.0
        else:
            unknown.append("(no class)" if name is None else name)
    if unknown:
        raise PicksError(
            f"no radius known for particle class(es) {', '.join(unknown)}",
            hint="Give `radii` CLASS=ÅNGSTROM (or `box_size`), or assign unlabelled picks a class "
            "with `particle` NAME / `input_options` LABEL:particle=NAME.",
        )
    return radii


def _empty() -> Clusters:
    consensus = pd.DataFrame({c: pd.Series(dtype=object) for c in CONSENSUS_COLUMNS})
    members = pd.DataFrame({c: pd.Series(dtype=object) for c in MEMBER_COLUMNS})
    return Clusters(consensus, members, {"n_picks": 0, "n_consensus": 0})


def cluster(
    picks: pd.DataFrame,
    radii: Mapping[str | None, float],
    options: ClusterOptions | None = None,
    *,
    scores: np.ndarray | None = None,
) -> Clusters:
    """Cluster ``picks`` into consensus picks (see the module docstring for the guarantees).

    ``scores``: the normalised scores (:func:`normalised_scores`) of ``picks``' rows when they
    were computed over a larger table, i.e. when ``picks`` is one tomogram of a run clustered
    on its own (workflows/per_tomogram.py): a percentile rank depends on every pick of the
    picker, so the tomograms' results then equal those of the whole run clustered at once.
    """
    options = options or ClusterOptions()
    options.check()
    n = len(picks)
    if n == 0:
        return _empty()

    # -- canonical order ------------------------------------------------------------------
    # Names are factorised from the pandas columns: no Python str per pick (three arrays of
    # 2 M objects held through the whole function were most of a 2 M-pick run's peak).
    # The class key is "" for a pick without one.
    particle = picks["particle"]
    t_codes, t_names = pd.factorize(picks["tomogram"].astype(str), sort=True)
    p_codes, p_names = pd.factorize(particle.where(particle.notna(), "").astype(str), sort=True)
    k_codes, k_names = pd.factorize(picks["picker"].astype(str), sort=True)
    xyz_in = picks[["x", "y", "z"]].to_numpy(dtype=float)
    score_in = picks["score"].to_numpy(dtype=float) if "score" in picks else np.full(n, np.nan)
    ids_in = picks["id"].to_numpy(dtype=np.int64)
    names_key = (t_codes.astype(np.int64) * len(p_names) + p_codes) * len(k_names) + k_codes
    order = _canonical_order(names_key, xyz_in, score_in, ids_in)
    t = t_codes[order]
    pc = p_codes[order]
    pk = k_codes[order]
    xyz = np.ascontiguousarray(xyz_in[order])
    score = score_in[order]
    ids = ids_in[order]
    n_pickers_total = len(k_names)
    if n_pickers_total > 52:
        raise PicksError(f"{n_pickers_total} picker labels: at most 52 are supported in one run")

    nscore = (
        normalised_scores(pk, score) if scores is None else np.asarray(scores, dtype=float)[order]
    )
    weight_of = np.array([float(options.weights.get(str(k), 1.0)) for k in k_names])
    w = weight_of[pk]

    # Per-pick match distance.
    p_name_of = [None if name == "" else str(name) for name in p_names]
    try:
        radius_of = np.array([float(radii[name]) for name in p_name_of])
    except KeyError as exc:
        raise PicksError(f"no radius for particle class {exc.args[0]!r}") from None
    if options.match_distance is not None:
        thr = np.full(n, float(options.match_distance))
    else:
        thr = options.match_fraction * radius_of[pc]

    # -- 1. duplicates within a picker: non-maximum suppression -------------------------
    # Done first and without listing same-picker pairs: 10,000 coincident picks of one picker
    # are 50 million pairs, so pairs are only ever looked for among the kept (primary) picks,
    # of which one picker has a bounded number within one match distance (they are pairwise
    # farther apart than it).
    group = t if options.class_agnostic else t.astype(np.int64) * len(p_names) + pc
    dup_of = _suppress_duplicates(group, pk, xyz, thr, nscore)
    primary = dup_of < 0

    # -- candidate pairs between primaries, per group (tomogram, or tomogram × class) -----
    prim_all = np.flatnonzero(primary)
    pgroup = group[prim_all]
    starts = np.flatnonzero(np.r_[True, pgroup[1:] != pgroup[:-1]])
    ends = np.r_[starts[1:], len(prim_all)]
    pair_i: list[np.ndarray] = []
    pair_j: list[np.ndarray] = []
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        if b - a < 2:
            continue
        index = prim_all[a:b]
        r = float(thr[index].max())
        found = cKDTree(xyz[index]).query_pairs(r * (1 + _SLACK) + _SLACK, output_type="ndarray")
        if len(found):
            pair_i.append(index[found[:, 0]])
            pair_j.append(index[found[:, 1]])
    if pair_i:
        pi = np.concatenate(pair_i)
        pj = np.concatenate(pair_j)
        lo, hi = np.minimum(pi, pj), np.maximum(pi, pj)
        pi, pj = lo, hi
        dist = np.sqrt(((xyz[pi] - xyz[pj]) ** 2).sum(axis=1))
        keep = (dist <= np.maximum(thr[pi], thr[pj])) & (pk[pi] != pk[pj])
        pi, pj, dist = pi[keep], pj[keep], dist[keep]
    else:
        pi = pj = np.zeros(0, dtype=np.int64)
        dist = np.zeros(0)

    # -- 2./3. complete-linkage clusters across pickers ----------------------------------
    ci, cj, cd = pi, pj, dist
    root, n_complex = _link(n, ci, cj, cd, primary, pk)
    root[~primary] = root[dup_of[~primary]]

    # Cluster index per pick, consensus rows in canonical order below.
    uniq_root, cidx = np.unique(root, return_inverse=True)
    k = len(uniq_root)
    prim_idx = np.flatnonzero(primary)
    pc_prim = cidx[prim_idx]
    n_pick = np.bincount(pc_prim, minlength=k)
    support = np.bincount(pc_prim, weights=w[prim_idx], minlength=k)
    n_members = np.bincount(cidx, minlength=k)
    member_score = np.bincount(pc_prim, weights=nscore[prim_idx], minlength=k) / n_pick
    mask = np.bincount(pc_prim, weights=np.ldexp(1.0, pk[prim_idx]), minlength=k)
    match_d = np.zeros(k)
    np.maximum.at(match_d, pc_prim, thr[prim_idx])
    cons_t = np.empty(k, dtype=np.int64)
    cons_t[pc_prim] = t[prim_idx]

    # Representative position.
    rep = _representative(options.representative, k, prim_idx, pc_prim, xyz, w, nscore)

    # Class: the class of every member, or the (weighted) majority class when agnostic.
    cons_pc = np.empty(k, dtype=np.int64)
    if options.class_agnostic:
        cons_pc[:] = _majority_class(
            pc_prim, pc[prim_idx], w[prim_idx], nscore[prim_idx], p_name_of
        )
    else:
        cons_pc[pc_prim] = pc[prim_idx]

    # Orientation of the best-scoring primary that has one.
    angles = np.full((k, 3), np.nan)
    if {"rot", "tilt", "psi"} <= set(picks.columns):
        ang = picks[["rot", "tilt", "psi"]].to_numpy(dtype=float)[order]
        has = np.isfinite(ang).all(axis=1)[prim_idx]
        pick_order = np.lexsort((prim_idx, -nscore[prim_idx], ~has, pc_prim))
        first = pick_order[np.r_[True, pc_prim[pick_order][1:] != pc_prim[pick_order][:-1]]]
        chosen = first[has[first]]
        angles[pc_prim[chosen]] = ang[prim_idx[chosen]]

    # Canonical consensus order: tomogram, class, position (then the root as a last tie).
    cons_order = np.lexsort((uniq_root, rep[:, 2], rep[:, 1], rep[:, 0], cons_pc, cons_t))
    new_index = np.empty(k, dtype=np.int64)
    new_index[cons_order] = np.arange(k)

    mask_int = mask.astype(np.int64)
    unique_masks, mask_inv = np.unique(mask_int, return_inverse=True)
    labels = np.array(
        [
            ",".join(str(k_names[b]) for b in range(n_pickers_total) if m >> b & 1)
            for m in unique_masks.tolist()
        ],
        dtype=object,
    )
    consensus = (
        pd.DataFrame(
            {
                "tomogram": np.asarray(t_names, dtype=object)[cons_t],
                "particle": np.asarray(p_name_of, dtype=object)[cons_pc],
                "x": rep[:, 0],
                "y": rep[:, 1],
                "z": rep[:, 2],
                "support": support,
                "n_pickers": n_pick,
                "n_members": n_members,
                "pickers": labels[mask_inv],
                "member_score": member_score,
                "match_distance": match_d,
                "rot": angles[:, 0],
                "tilt": angles[:, 1],
                "psi": angles[:, 2],
            }
        )
        .iloc[cons_order]
        .reset_index(drop=True)
    )

    member_cons = new_index[cidx]
    distance = np.sqrt(((xyz - rep[cidx]) ** 2).sum(axis=1))
    dup_ids = np.where(primary, -1, ids[np.where(primary, 0, dup_of)])
    # Built in its final order (consensus, pick id), not built then reordered (a copy of
    # 2 M rows); duplicate_of masked without a Python int per pick.
    by_member = np.lexsort((ids, member_cons))
    dup_ids = dup_ids[by_member]
    members = pd.DataFrame(
        {
            "consensus": member_cons[by_member],
            "pick_id": ids[by_member],
            "picker": np.asarray(k_names, dtype=object)[pk[by_member]],
            "distance": distance[by_member],
            "duplicate_of": pd.arrays.IntegerArray(dup_ids.astype(np.int64), dup_ids < 0),
            "primary": primary[by_member],
        }
    )
    stats = {
        "n_picks": n,
        "n_consensus": k,
        "n_duplicates": int((~primary).sum()),
        # cross-picker pairs of primaries within the match distance (duplicates are found
        # without listing pairs, so they are not counted here)
        "n_candidate_pairs": len(pi),
        "n_complex_components": n_complex,
    }
    return Clusters(consensus, members, stats)


def normalised_scores(picker: object, score: object) -> np.ndarray:
    """Per-picker percentile rank of the score in (0, 1]; no score -> 1.0. A rank depends on
    values only (ties take the highest rank), not on the order of the rows."""
    return (
        pd.Series(np.asarray(score, dtype=float))
        .groupby(np.asarray(picker))
        .rank(method="max", pct=True)
        .fillna(1.0)
        .to_numpy(dtype=float)
    )


def _canonical_order(
    names_key: np.ndarray, xyz: np.ndarray, score: np.ndarray, ids: np.ndarray
) -> np.ndarray:
    """``np.lexsort((ids, score, z, y, x, names_key))``, sorting by the first two keys only
    and the rest only among picks that tie on them (a picker's exact duplicates): a six-key
    lexsort of a million picks took over a second, two keys take a fifth of that."""
    x = xyz[:, 0]
    order = np.lexsort((x, names_key))
    xs, ks = x[order], names_key[order]
    tie = (xs[1:] == xs[:-1]) & (ks[1:] == ks[:-1])
    if tie.any():
        run = np.cumsum(np.r_[True, ~tie])  # runs of equal (names_key, x), in order
        at = np.flatnonzero(np.r_[tie, False] | np.r_[False, tie])
        sub = order[at]
        # the runs stay where they are (run numbers increase along ``at``); within a run,
        # the remaining keys decide, as the full lexsort would
        order[at] = sub[np.lexsort((ids[sub], score[sub], xyz[sub, 2], xyz[sub, 1], run[at]))]
    return order


def _exact_keys(columns: list[np.ndarray]) -> tuple[np.ndarray, int]:
    """A code per row, equal for rows equal in every column (numbers compared by value),
    and the number of codes. Rows are hashed, not sorted (``np.unique`` over records of a
    million rows took a second); the codes are then checked against the columns, so a hash
    collision cannot merge two keys: it falls back to the sort."""
    columns = [c + 0 if c.dtype.kind == "f" else c for c in columns]  # -0.0 is 0.0
    hashed = pd.util.hash_array(columns[0])
    for column in columns[1:]:
        hashed = hashed * np.uint64(0x100000001B3) ^ pd.util.hash_array(column)
    codes, uniques = pd.factorize(hashed)
    first = np.empty(len(uniques), dtype=np.int64)
    first[codes[::-1]] = np.arange(len(codes))[::-1]
    if all(np.array_equal(c, c[first][codes]) for c in columns):
        return codes.astype(np.int64), len(uniques)
    _, inverse = np.unique(np.rec.fromarrays(columns), return_inverse=True)  # a collision
    inverse = inverse.ravel()
    return inverse.astype(np.int64), int(inverse.max()) + 1


def _suppress_duplicates(
    group: np.ndarray, pk: np.ndarray, xyz: np.ndarray, thr: np.ndarray, nscore: np.ndarray
) -> np.ndarray:
    """Non-maximum suppression within each (group, picker); returns the keeper index or -1.

    Picks are visited best score first (ties: canonical order) and a kept pick suppresses
    every not yet visited pick of its picker and group within ``max(thr)`` of the pair, as
    before, but without materialising pairs, so memory stays linear:

    * exact duplicates (same group, picker, position and threshold) share every neighbour, so
      they collapse to their first member, which alone takes part below; the others follow
      its fate (suppressed by its keeper, or by it when it is kept);
    * a pick with no other pick of its picker within the largest threshold is its own
      keeper (one vectorised nearest-neighbour query), no Python work;
    * each kept pick asks the KD-tree for its ball once; kept picks are pairwise farther
      apart than the threshold, so a pick lies in the balls of a bounded number of them and
      the total work is linear in the number of picks.
    """
    n = len(pk)
    dup_of = np.full(n, -1, dtype=np.int64)
    if n < 2:
        return dup_of
    # Exact duplicates: picks are in canonical order (group, picker, x, y, z, score, id), so
    # the best-scoring member of a run of identical keys is found by a stable sort on -score.
    inverse, n_keys = _exact_keys(
        [group.astype(np.int64), pk.astype(np.int64), xyz[:, 0], xyz[:, 1], xyz[:, 2], thr]
    )
    best = np.full(n_keys, -1, dtype=np.int64)
    by_score = np.argsort(-nscore, kind="stable")  # best first, ties by canonical order
    best[inverse[by_score[::-1]]] = by_score[::-1]  # the last write per key is its best
    lead = best[inverse]
    reps = distinct(best)  # one representative per exact position
    # Near duplicates among the representatives, per (group, picker).
    rg = group[reps].astype(np.int64) * (int(pk.max()) + 1) + pk[reps]
    order = np.argsort(rg, kind="stable")
    reps = reps[order]
    rg = rg[order]
    starts = np.flatnonzero(np.r_[True, rg[1:] != rg[:-1]])
    ends = np.r_[starts[1:], len(reps)]
    rep_keeper = np.full(n, -1, dtype=np.int64)  # for representatives: keeper, or -1 (kept)
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        if b - a < 2:
            continue
        index = reps[a:b]
        points = xyz[index]
        r = float(thr[index].max()) * (1 + _SLACK) + _SLACK
        tree = cKDTree(points)
        nearest, _ = tree.query(points, k=2, distance_upper_bound=r)
        involved = np.flatnonzero(np.isfinite(nearest[:, 1]))
        if len(involved) == 0:
            continue
        visit = involved[np.lexsort((index[involved], -nscore[index[involved]]))]
        done = np.zeros(len(index), dtype=bool)
        for u in visit.tolist():
            if done[u]:
                continue
            done[u] = True
            nb = np.asarray(tree.query_ball_point(points[u], r), dtype=np.int64)
            nb = nb[~done[nb]]
            if len(nb) == 0:
                continue
            d = np.sqrt(((points[nb] - points[u]) ** 2).sum(axis=1))
            nb = nb[d <= np.maximum(thr[index[u]], thr[index[nb]])]
            rep_keeper[index[nb]] = index[u]
            done[nb] = True
    # Every pick: its exact-duplicate lead's keeper; the lead itself if the lead was kept
    # (then the other members are its duplicates).
    keeper = rep_keeper[lead]
    dup_of = np.where(keeper >= 0, keeper, np.where(lead == np.arange(n), -1, lead))
    return dup_of


def _link(
    n: int, ci: np.ndarray, cj: np.ndarray, cd: np.ndarray, primary: np.ndarray, pk: np.ndarray
) -> tuple[np.ndarray, int]:
    """Cluster roots (smallest member index) for the primaries; see module docstring §2–3.

    Connected components of the candidate graph that are already cliques of distinct pickers
    are final clusters (vectorised). Only the other components go through the greedy merge,
    which visits their pairs in order of (distance, i, j).
    """
    root = np.arange(n, dtype=np.int64)
    if len(ci) == 0:
        return root, 0
    graph = coo_matrix((np.ones(len(ci), dtype=np.int8), (ci, cj)), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    prim = np.flatnonzero(primary)
    n_comp = int(comp.max()) + 1
    size = np.bincount(comp[prim], minlength=n_comp)
    n_edges = np.bincount(comp[ci], minlength=n_comp)
    n_distinct = np.bincount(distinct(comp[prim] * 64 + pk[prim]) // 64, minlength=n_comp)
    simple = (n_edges == size * (size - 1) // 2) & (n_distinct == size)
    comp_min = np.full(n_comp, n, dtype=np.int64)
    np.minimum.at(comp_min, comp[prim], prim)
    simple_pts = prim[simple[comp[prim]]]
    root[simple_pts] = comp_min[comp[simple_pts]]

    hard = ~simple[comp[ci]]
    n_complex = len(distinct(comp[ci[hard]])) if hard.any() else 0
    if not hard.any():
        return root, 0
    hi_, hj_, hd_ = ci[hard], cj[hard], cd[hard]
    visit = np.lexsort((hj_, hi_, hd_))
    hi_l, hj_l = hi_[visit].tolist(), hj_[visit].tolist()
    edges = set(zip(hi_l, hj_l, strict=True))
    pk_l = pk.tolist()
    owner: dict[int, int] = {}
    members: dict[int, list[int]] = {}
    masks: dict[int, int] = {}
    for u, v in zip(hi_l, hj_l, strict=True):
        a = owner.get(u, u)
        b = owner.get(v, v)
        if a == b:
            continue
        ma = members.get(a) or [a]
        mb = members.get(b) or [b]
        mask_a = masks.get(a, 1 << pk_l[a])
        mask_b = masks.get(b, 1 << pk_l[b])
        if mask_a & mask_b:
            continue
        if not all(((x, y) if x < y else (y, x)) in edges for x in ma for y in mb):
            continue
        keep, gone = (a, b) if a < b else (b, a)
        merged = ma + mb
        members[keep] = merged
        masks[keep] = mask_a | mask_b
        members.pop(gone, None)
        masks.pop(gone, None)
        for x in merged:
            owner[x] = keep
    for x, r in owner.items():
        root[x] = r
    return root, n_complex


def _representative(
    method: str,
    k: int,
    prim_idx: np.ndarray,
    pc_prim: np.ndarray,
    xyz: np.ndarray,
    w: np.ndarray,
    nscore: np.ndarray,
) -> np.ndarray:
    rep = np.empty((k, 3))
    count = np.bincount(pc_prim, minlength=k).astype(float)
    if method == "best":
        pick_order = np.lexsort((prim_idx, -nscore[prim_idx], pc_prim))
        sorted_c = pc_prim[pick_order]
        first = pick_order[np.r_[True, sorted_c[1:] != sorted_c[:-1]]]
        rep[pc_prim[first]] = xyz[prim_idx[first]]
        return rep
    if method == "weighted":
        weight = w[prim_idx] * nscore[prim_idx]
        total = np.bincount(pc_prim, weights=weight, minlength=k)
        zero = total <= 0
        # A cluster whose members all have weight 0 falls back to the plain centroid.
        weight = np.where(zero[pc_prim], 1.0, weight)
        total = np.where(zero, count, total)
    else:
        weight = np.ones(len(prim_idx))
        total = count
    for axis in range(3):
        rep[:, axis] = (
            np.bincount(pc_prim, weights=weight * xyz[prim_idx, axis], minlength=k) / total
        )
    return rep


def _majority_class(
    pc_prim: np.ndarray,
    classes: np.ndarray,
    weights: np.ndarray,
    nscore: np.ndarray,
    p_name_of: list[str | None],
) -> np.ndarray:
    """Per cluster: the class with the largest picker weight, then the larger summed
    normalised score, then the alphabetically first name; unlabelled picks vote only when
    no member has a class."""
    frame = pd.DataFrame({"c": pc_prim, "p": classes, "w": weights, "s": nscore})
    votes = frame.groupby(["c", "p"], sort=True).agg(w=("w", "sum"), s=("s", "sum")).reset_index()
    unlabelled = np.array([p_name_of[p] is None for p in votes["p"].to_numpy()])
    order = np.lexsort(
        (
            votes["p"].to_numpy(),
            -votes["s"].to_numpy(),
            -votes["w"].to_numpy(),
            unlabelled,
            votes["c"].to_numpy(),
        )
    )
    votes = votes.iloc[order]
    first = votes.drop_duplicates("c", keep="first")
    out = np.empty(int(pc_prim.max()) + 1, dtype=np.int64)
    out[first["c"].to_numpy()] = first["p"].to_numpy()
    return out
