"""Support partition, voting thresholds and trusted references."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from picks.consensus.cluster import ClusterOptions, cluster
from picks.consensus.vote import (
    AGNOSTIC,
    apply_references,
    match_references,
    parse_min_support,
    partition,
    support_rules,
    threshold,
)
from picks.core.errors import PicksError

RADII = {"ribosome": 150.0, "apo-ferritin": 60.0}


def picks_frame(rows: list[tuple]) -> pd.DataFrame:
    """rows: (picker, particle, x, y, z)"""
    return pd.DataFrame(
        [
            dict(id=i, picker=k, tomogram="TS_1", particle=p, x=x, y=y, z=z, score=np.nan)
            for i, (k, p, x, y, z) in enumerate(rows, start=1)
        ]
    )


@pytest.mark.parametrize(
    ("n", "rule", "expected"),
    [
        (1, None, 1),
        (2, None, 2),
        (3, None, 2),
        (4, None, 3),
        (5, None, 4),
        (4, "all", 4),
        (4, "majority", 3),
        (5, "majority", 3),
        (2, "majority", 2),
        (4, 2.0, 2),
    ],
)
def test_default_thresholds(n, rule, expected):
    assert threshold([1.0] * n, rule)[0] == expected


def test_weighted_thresholds():
    assert threshold([2.0, 1.0, 1.0], None) == (3.0, "all-but-one")  # total 4 minus the smallest
    assert threshold([3.0, 1.0, 1.0], "majority")[0] == 3.0  # smallest sum above 2.5
    assert threshold([1.0, 1.0, 1.5, 0.5], "majority")[0] == 2.5  # above 2.0: 1.5 + 1.0


def test_parse_min_support():
    assert parse_min_support(None) is None
    assert parse_min_support("3") == 3.0
    assert parse_min_support("All_But_One") == "all-but-one"
    with pytest.raises(PicksError, match="expected a number"):
        parse_min_support("most")
    with pytest.raises(PicksError, match="> 0"):
        parse_min_support(0)


def test_partition_positive_doubtful_negative():
    picks = picks_frame(
        [
            ("a", "ribosome", 0, 0, 0),
            ("b", "ribosome", 5, 0, 0),
            ("c", "ribosome", 0, 5, 0),
            ("d", "ribosome", 0, 0, 5),
            ("a", "ribosome", 2000, 0, 0),
            ("b", "ribosome", 2005, 0, 0),
            ("c", "ribosome", 4000, 0, 0),
        ]
    )
    cons = cluster(picks, RADII).consensus
    rules = support_rules(picks)
    assert rules["ribosome"].min_support == 3 and rules["ribosome"].total == 4
    votes = partition(cons, rules)
    assert list(votes["status"]) == ["positive", "doubtful", "negative"]
    assert list(votes["accepted"]) == [True, False, False]
    assert list(votes["vote_score"]) == [1.0, 0.5, 0.25]
    assert "support 4/4" in votes["reason"].iloc[0] and "positive" in votes["reason"].iloc[0]
    lenient = partition(cons, support_rules(picks, min_support=2))
    assert list(lenient["accepted"]) == [True, True, False]
    strict = partition(cons, rules, doubtful_support=3)
    assert list(strict["status"]) == ["positive", "negative", "negative"]


def test_pickers_are_counted_per_class():
    # "d" reports only apo-ferritin: ribosomes need 2 of a, b, c, not 3 of 4.
    picks = picks_frame(
        [
            ("a", "ribosome", 0, 0, 0),
            ("b", "ribosome", 5, 0, 0),
            ("c", "ribosome", 5000, 0, 0),
            ("d", "apo-ferritin", 3000, 0, 0),
        ]
    )
    rules = support_rules(picks)
    assert rules["ribosome"].pickers == ("a", "b", "c") and rules["ribosome"].min_support == 2
    assert rules["apo-ferritin"].min_support == 1
    agnostic = support_rules(picks, class_agnostic=True)
    assert set(agnostic) == {AGNOSTIC} and agnostic[AGNOSTIC].min_support == 3


def test_weighted_support_partition():
    picks = picks_frame(
        [("a", "ribosome", 0, 0, 0), ("b", "ribosome", 5000, 0, 0), ("c", "ribosome", 9000, 0, 0)]
    )
    weights = {"a": 3.0}
    cons = cluster(picks, RADII, ClusterOptions(weights=weights)).consensus
    votes = partition(cons, support_rules(picks, weights=weights, min_support="majority"))
    assert list(votes["accepted"]) == [True, False, False]  # a alone outweighs b + c


def refs_frame(rows: list[tuple]) -> pd.DataFrame:
    """rows: (id, role, particle, x, y, z)"""
    return pd.DataFrame(
        [
            dict(id=i, role=r, picker=f"{r}-refs", tomogram="TS_1", particle=p, x=x, y=y, z=z)
            for i, r, p, x, y, z in rows
        ]
    )


def test_references_force_decisions_and_name_themselves():
    picks = picks_frame(
        [
            ("a", "ribosome", 0, 0, 0),
            ("b", "ribosome", 5, 0, 0),
            ("c", "ribosome", 0, 5, 0),  # positive
            ("a", "ribosome", 3000, 0, 0),  # negative by support
            ("b", "apo-ferritin", 6000, 0, 0),
        ]  # negative by support
    )
    cons = cluster(picks, RADII).consensus
    votes = partition(cons, support_rules(picks, min_support=3))
    assert list(votes["accepted"]) == [False, True, False]  # apo-ferritin first (by class name)
    refs = refs_frame(
        [
            (101, "negative", None, 10, 0, 0),  # a gold bead on the positive ribosome pick
            (102, "positive", "ribosome", 3050, 0, 0),  # a hand-picked ribosome on the singleton
            (103, "positive", "ribosome", 6000, 0, 0),  # wrong class for the apo-ferritin pick
            (104, "positive", None, 9000, 0, 0),
        ]  # nothing there
    )
    matches, unmatched = match_references(cons, refs)
    forced = apply_references(votes, matches)
    assert list(forced["accepted"]) == [False, False, True]
    assert list(forced["status"]) == ["negative", "negative", "positive"]
    assert list(forced["forced"]) == [False, True, True]
    assert (
        forced["reason"]
        .iloc[1]
        .startswith("negative reference pick #101 (negative-refs) 8.5 Å away")
    )
    assert "by support it was positive" in forced["reason"].iloc[1]
    assert forced["reason"].iloc[2].startswith("positive reference pick #102")
    assert list(unmatched) == [103, 104]


def test_nearest_reference_wins_and_ties_go_to_negative():
    picks = picks_frame([("a", "ribosome", 0, 0, 0)])
    cons = cluster(picks, RADII).consensus
    near_positive = refs_frame([(1, "negative", None, 100, 0, 0), (2, "positive", None, 50, 0, 0)])
    matches, _ = match_references(cons, near_positive)
    assert matches["ref_role"].iloc[0] == "positive" and matches["ref_id"].iloc[0] == 2
    tie = refs_frame([(1, "positive", None, 50, 0, 0), (2, "negative", None, 0, 50, 0)])
    matches, _ = match_references(cons, tie)
    assert matches["ref_role"].iloc[0] == "negative"
    far = refs_frame([(1, "negative", None, 150.5, 0, 0)])
    matches, _ = match_references(cons, far)
    assert matches["ref_role"].isna().all()


def test_references_in_other_tomograms_are_ignored():
    picks = picks_frame([("a", "ribosome", 0, 0, 0)])
    cons = cluster(picks, RADII).consensus
    refs = refs_frame([(1, "negative", None, 0, 0, 0)]).assign(tomogram="TS_2")
    matches, unmatched = match_references(cons, refs)
    assert matches["ref_role"].isna().all() and len(unmatched) == 0
