"""Clustering guarantees: one pick per picker, no chaining, duplicates, classes, order."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from picks.consensus.cluster import ClusterOptions, cluster, resolve_radii
from picks.core.errors import PicksError
from picks.core.particles import Catalog

RADII = {"ribosome": 150.0, "apo-ferritin": 60.0, None: 100.0}
D = 150.0  # default match distance for ribosomes (1.0 × radius)


def frame(rows: list[tuple]) -> pd.DataFrame:
    """rows: (picker, x, y, z[, score[, particle[, tomogram]]])"""
    out = []
    for i, row in enumerate(rows, start=1):
        picker, x, y, z, *rest = row
        score = rest[0] if len(rest) > 0 else np.nan
        particle = rest[1] if len(rest) > 1 else "ribosome"
        tomogram = rest[2] if len(rest) > 2 else "TS_1"
        out.append(
            dict(
                id=i,
                picker=picker,
                tomogram=tomogram,
                particle=particle,
                x=x,
                y=y,
                z=z,
                score=score,
            )
        )
    return pd.DataFrame(out)


def check_invariants(picks: pd.DataFrame, result, thr: float) -> None:
    members = result.members.merge(picks[["id", "x", "y", "z"]], left_on="pick_id", right_on="id")
    # every pick is a member exactly once
    assert sorted(members["pick_id"]) == sorted(picks["id"])
    prim = members[members["primary"]]
    for _, group in prim.groupby("consensus"):
        assert group["picker"].is_unique  # at most one primary per picker
        xyz = group[["x", "y", "z"]].to_numpy()
        for a, b in itertools.combinations(range(len(xyz)), 2):
            assert np.linalg.norm(xyz[a] - xyz[b]) <= thr + 1e-9  # no chaining
    # duplicates lie within the match distance of their primary, in the same consensus pick
    by_id = members.set_index("pick_id")
    for _, dup in members[~members["primary"]].iterrows():
        keeper = by_id.loc[int(dup["duplicate_of"])]
        assert keeper["consensus"] == dup["consensus"] and keeper["picker"] == dup["picker"]
        assert (
            np.linalg.norm(
                keeper[["x", "y", "z"]].to_numpy(float) - dup[["x", "y", "z"]].to_numpy(float)
            )
            <= thr + 1e-9
        )
    # primaries of one picker are pairwise farther apart than the match distance
    for _, group in prim.groupby("picker"):
        xyz = group[["x", "y", "z"]].to_numpy()
        if len(xyz) > 1:
            d = np.linalg.norm(xyz[:, None] - xyz[None], axis=2)
            assert (d[np.triu_indices(len(xyz), 1)] > thr).all()
    assert result.consensus["n_members"].sum() == len(picks)


def test_one_pick_per_picker_and_support():
    picks = frame([("a", 0, 0, 0), ("b", 20, 0, 0), ("c", 0, 30, 0), ("a", 5000, 0, 0)])
    result = cluster(picks, RADII)
    cons = result.consensus
    assert len(cons) == 2
    main = cons.iloc[0]
    assert main["support"] == 3 and main["n_pickers"] == 3 and main["pickers"] == "a,b,c"
    assert main["x"] == pytest.approx(20 / 3) and main["y"] == pytest.approx(10)
    assert cons.iloc[1]["support"] == 1 and cons.iloc[1]["pickers"] == "a"
    check_invariants(picks, result, D)


def test_no_chaining_in_a_line_of_picks():
    # Picks every 0.9 d along x, pickers cycling a, b, c, d: each neighbour pair is within the
    # match distance, but the line as a whole is 9 d long and must not become one cluster.
    picks = frame([("abcd"[i % 4], i * 0.9 * D, 0, 0) for i in range(11)])
    result = cluster(picks, RADII)
    assert len(result.consensus) >= 5
    assert result.consensus["n_pickers"].max() <= 2
    check_invariants(picks, result, D)


def test_crowded_ribosomes_stay_separate():
    # Two ribosomes 300 Å apart (touching); each picker reports both within 0.5 r.
    rng = np.random.default_rng(1)
    rows = []
    for picker in "abcd":
        for centre in (0.0, 300.0):
            rows.append((picker, centre + rng.uniform(-70, 70), rng.uniform(-20, 20), 0.0))
    picks = frame(rows)
    result = cluster(picks, RADII)
    assert len(result.consensus) == 2
    assert list(result.consensus["n_pickers"]) == [4, 4]
    assert result.consensus["x"].iloc[0] < 150 < result.consensus["x"].iloc[1]


def test_greedy_prefers_the_closest_pair():
    # b is 100 Å from a and 120 Å from c; a and c are 220 Å apart: b joins a (closer).
    picks = frame([("a", 0, 0, 0), ("b", 100, 0, 0), ("c", 220, 0, 0)])
    members = cluster(picks, RADII).members
    consensus_of = dict(zip(members["picker"], members["consensus"], strict=True))
    assert consensus_of["a"] == consensus_of["b"] != consensus_of["c"]


def test_match_distance_is_inclusive_and_configurable():
    at = frame([("a", 0, 0, 0), ("b", 150, 0, 0)])
    beyond = frame([("a", 0, 0, 0), ("b", 150.001, 0, 0)])
    assert len(cluster(at, RADII).consensus) == 1
    assert len(cluster(beyond, RADII).consensus) == 2
    assert len(cluster(at, RADII, ClusterOptions(match_fraction=0.5)).consensus) == 2
    assert len(cluster(at, RADII, ClusterOptions(match_distance=149.0)).consensus) == 2
    assert len(cluster(beyond, RADII, ClusterOptions(match_distance=151.0)).consensus) == 1


def test_duplicates_of_one_picker_are_merged_into_the_best_pick():
    picks = frame(
        [("a", 0, 0, 0, 0.3), ("a", 40, 0, 0, 0.9), ("a", 60, 0, 0, 0.5), ("b", 30, 0, 0, 0.1)]
    )
    result = cluster(picks, RADII, ClusterOptions(representative="best"))
    cons = result.consensus
    assert len(cons) == 1
    assert cons.iloc[0]["n_members"] == 4 and cons.iloc[0]["support"] == 2
    members = result.members.set_index("pick_id")
    assert members.loc[2, "primary"] and members.loc[4, "primary"]
    assert members.loc[1, "duplicate_of"] == 2 and members.loc[3, "duplicate_of"] == 2
    # best = the highest *normalised* score: a's 0.9 is its top pick (1.0), b's only pick is 1.0
    # too; the tie goes to the canonical order (picker a first).
    assert cons.iloc[0]["x"] == 40
    check_invariants(picks, result, D)


def test_duplicates_far_apart_stay_separate_picks():
    picks = frame([("a", 0, 0, 0), ("a", 400, 0, 0)])
    assert len(cluster(picks, RADII).consensus) == 2


def test_classes_never_merge_unless_class_agnostic():
    picks = frame([("a", 0, 0, 0, 0.5, "ribosome"), ("b", 10, 0, 0, 0.5, "apo-ferritin")])
    assert sorted(cluster(picks, RADII).consensus["particle"]) == ["apo-ferritin", "ribosome"]
    agnostic = cluster(picks, RADII, ClusterOptions(class_agnostic=True)).consensus
    assert len(agnostic) == 1


def test_tomograms_never_merge():
    picks = frame(
        [("a", 0, 0, 0, 0.5, "ribosome", "TS_1"), ("b", 0, 0, 0, 0.5, "ribosome", "TS_2")]
    )
    assert list(cluster(picks, RADII).consensus["tomogram"]) == ["TS_1", "TS_2"]


def test_class_agnostic_reports_the_majority_class_with_deterministic_ties():
    picks = frame(
        [
            ("a", 0, 0, 0, 1, "ribosome"),
            ("b", 10, 0, 0, 1, "ribosome"),
            ("c", 0, 10, 0, 1, "apo-ferritin"),
        ]
    )
    cons = cluster(picks, RADII, ClusterOptions(class_agnostic=True)).consensus
    assert list(cons["particle"]) == ["ribosome"]
    tie = frame([("a", 0, 0, 0, 1, "ribosome"), ("b", 10, 0, 0, 1, "apo-ferritin")])
    for rows in (tie, tie.iloc[::-1]):
        cons = cluster(rows, RADII, ClusterOptions(class_agnostic=True)).consensus
        assert list(cons["particle"]) == ["apo-ferritin"]  # equal votes and scores: by name
    weighted = cluster(
        tie, RADII, ClusterOptions(class_agnostic=True, weights={"a": 2.0})
    ).consensus
    assert list(weighted["particle"]) == ["ribosome"]
    unlabelled = frame(
        [("a", 0, 0, 0, 1, None), ("b", 10, 0, 0, 1, None), ("c", 0, 5, 0, 1, "ribosome")]
    )
    cons = cluster(unlabelled, RADII, ClusterOptions(class_agnostic=True)).consensus
    assert list(cons["particle"]) == ["ribosome"]  # unlabelled picks do not outvote a class


def test_class_agnostic_pair_threshold_uses_the_larger_radius():
    # 100 Å apart: within the ribosome's 150 Å, beyond apo-ferritin's 60 Å.
    picks = frame([("a", 0, 0, 0, 1, "ribosome"), ("b", 100, 0, 0, 1, "apo-ferritin")])
    assert len(cluster(picks, RADII, ClusterOptions(class_agnostic=True)).consensus) == 1


def test_weights_scale_support():
    picks = frame([("a", 0, 0, 0), ("b", 10, 0, 0), ("c", 5000, 0, 0)])
    cons = cluster(picks, RADII, ClusterOptions(weights={"a": 2.0, "c": 0.5})).consensus
    assert list(cons["support"]) == [3.0, 0.5]
    assert list(cons["n_pickers"]) == [2, 1]


def test_representatives():
    picks = frame([("a", 0, 0, 0, 10.0), ("a", 3000, 0, 0, 1.0), ("b", 90, 0, 0, 5.0)])
    # normalised scores: a's 10 -> 1.0, a's 1 -> 0.5, b's 5 -> 1.0
    centroid = cluster(picks, RADII).consensus.iloc[0]
    assert centroid["x"] == pytest.approx(45)
    weighted = cluster(
        picks, RADII, ClusterOptions(representative="weighted", weights={"b": 2.0})
    ).consensus
    assert weighted.iloc[0]["x"] == pytest.approx(60)  # (1·0 + 2·90) / 3
    best = cluster(picks, RADII, ClusterOptions(representative="best")).consensus.iloc[0]
    assert best["x"] == 0  # tie at 1.0 -> canonical order (picker a)


def test_angles_come_from_the_best_scoring_member_with_angles():
    picks = frame([("a", 0, 0, 0, 0.9), ("b", 10, 0, 0, 0.2)])
    picks["rot"] = [np.nan, 10.0]
    picks["tilt"] = [np.nan, 20.0]
    picks["psi"] = [np.nan, 30.0]
    cons = cluster(picks, RADII).consensus.iloc[0]
    assert (cons["rot"], cons["tilt"], cons["psi"]) == (10.0, 20.0, 30.0)


def random_picks(seed: int, n_particles: int = 60, pickers: str = "abcd") -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 2000, (n_particles, 3))
    rows = []
    for picker in pickers:
        for c in centres[rng.random(n_particles) < 0.8]:
            rows.append((picker, *(c + rng.normal(0, 40, 3)), rng.random()))
            if rng.random() < 0.1:  # a duplicate report
                rows.append((picker, *(c + rng.normal(0, 30, 3)), rng.random()))
        for c in rng.uniform(0, 2000, (10, 3)):  # false positives
            rows.append((picker, *c, rng.random()))
    return frame(rows)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_invariants_on_random_crowded_data(seed: int):
    picks = random_picks(seed)
    result = cluster(picks, RADII)
    check_invariants(picks, result, D)
    assert result.stats["n_duplicates"] > 0


@pytest.mark.parametrize("seed", [0, 3])
def test_result_does_not_depend_on_input_order(seed: int):
    picks = random_picks(seed, n_particles=80)
    reference = cluster(picks, RADII)
    rng = np.random.default_rng(seed + 100)
    shuffled = picks.iloc[rng.permutation(len(picks))].reset_index(drop=True)
    again = cluster(shuffled, RADII)
    pd.testing.assert_frame_equal(reference.consensus, again.consensus)
    pd.testing.assert_frame_equal(reference.members, again.members)
    # Re-imported in another order, the raw picks get other ids: same consensus picks.
    relabelled = shuffled.assign(id=np.arange(1000, 1000 + len(shuffled)))
    other = cluster(relabelled, RADII)
    pd.testing.assert_frame_equal(reference.consensus, other.consensus)
    mapping = dict(zip(shuffled["id"], relabelled["id"], strict=True))
    left = reference.members.assign(pick_id=reference.members["pick_id"].map(mapping))
    left = left.drop(columns="duplicate_of").sort_values("pick_id").reset_index(drop=True)
    right = other.members.drop(columns="duplicate_of").sort_values("pick_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(left, right)


def test_empty_input():
    empty = frame([]).reindex(
        columns=["id", "picker", "tomogram", "particle", "x", "y", "z", "score"]
    )
    result = cluster(empty, RADII)
    assert result.consensus.empty and result.members.empty


def test_resolve_radii():
    catalog = Catalog().with_radii({"gold": 50})
    assert resolve_radii(["ribosome", "gold"], catalog) == {"gold": 50.0, "ribosome": 150.0}
    with pytest.raises(PicksError, match=r"no radius known.*mystery"):
        resolve_radii(["mystery"], catalog)
    with pytest.raises(PicksError, match=r"\(no class\)"):
        resolve_radii([None], catalog)
    assert resolve_radii(["mystery", None], catalog, box_size=240) == {
        "mystery": 120.0,
        None: 120.0,
    }


def test_bad_options_are_errors():
    picks = frame([("a", 0, 0, 0)])
    with pytest.raises(PicksError, match="representative"):
        cluster(picks, RADII, ClusterOptions(representative="median"))
    with pytest.raises(PicksError, match="fraction"):
        cluster(picks, RADII, ClusterOptions(match_fraction=0))
