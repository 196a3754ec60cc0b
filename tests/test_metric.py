"""The CZII metric against the hand-computed vectors of metric-and-data.md §A.2 and edge cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from picks.core.errors import PicksError
from picks.evaluate import metric


def table(rows, particle="apo-ferritin", tomogram="TS_1", score=None):
    frame = pd.DataFrame(rows, columns=["x", "y", "z"], dtype=float)
    frame.insert(0, "particle", particle)
    frame.insert(0, "tomogram", tomogram)
    if score is not None:
        frame["score"] = score
    return frame


GT = table([(0, 0, 0), (1000, 0, 0)])


def test_t1_duplicate_pick_is_a_false_positive_and_boundary_is_inclusive():
    result = metric.score(GT, table([(29, 0, 0), (31, 0, 0), (1000, 0, 30)]))
    apo = result.by_class()["apo-ferritin"]
    assert (apo.tp, apo.fp, apo.fn) == (2, 1, 0)
    assert apo.fbeta == pytest.approx(34 / 35)
    assert result.overall == pytest.approx(0.138776, abs=1e-6)
    assert result.overall == pytest.approx(apo.fbeta / 7)


def test_t2_two_picks_on_one_particle():
    result = metric.score(GT, table([(10, 0, 0), (-10, 0, 0)]))
    apo = result.by_class()["apo-ferritin"]
    assert (apo.tp, apo.fp, apo.fn) == (1, 1, 1)
    assert apo.fbeta == pytest.approx(0.5)
    assert result.overall == pytest.approx(0.071429, abs=1e-6)


def test_t3_one_pick_hitting_two_particles_counts_twice():
    result = metric.score(table([(0, 0, 0), (40, 0, 0)]), table([(20, 0, 0)]))
    apo = result.by_class()["apo-ferritin"]
    assert (apo.tp, apo.fp, apo.fn) == (2, -1, 0)
    assert apo.fbeta == pytest.approx(1.030303, abs=1e-6)
    assert result.overall == pytest.approx(0.147186, abs=1e-6)


# The polnet truth the worked cases score: kept in tests/data (21 kB) so that the metric's
# worked cases run without ../shared (tests/data/SOURCES.md).
POLNET_TRUTH = Path(__file__).parent / "data" / "polnet_ground_truth.csv"


@pytest.fixture(scope="module")
def polnet_truth():
    return pd.read_csv(POLNET_TRUTH)


def test_the_kept_polnet_truth_is_the_shared_one(polnet_dir):
    assert POLNET_TRUTH.read_bytes() == (polnet_dir / "ground_truth.csv").read_bytes()


def test_t4_truth_against_itself_is_perfect(polnet_truth):
    result = metric.score(polnet_truth, polnet_truth)
    assert result.overall == pytest.approx(1.0)
    assert all(c.fbeta == pytest.approx(1.0) for c in result.classes)


def test_t5_missing_thyroglobulin(polnet_truth):
    picks = polnet_truth[polnet_truth["particle_type"] != "thyroglobulin"]
    result = metric.score(polnet_truth, picks)
    assert result.by_class()["thyroglobulin"].fbeta == 0.0
    assert result.overall == pytest.approx(5 / 7, abs=1e-6)


def test_t6_ribosomes_of_one_tomogram_only(polnet_truth):
    picks = polnet_truth[
        (polnet_truth["particle_type"] == "ribosome")
        & (polnet_truth["experiment"] == "polnet_czii_01")
    ]
    ribosome = metric.score(polnet_truth, picks).by_class()["ribosome"]
    assert (ribosome.tp, ribosome.fp, ribosome.fn) == (14, 0, 13)
    assert ribosome.fbeta == pytest.approx(0.533632, abs=1e-6)


def test_no_predictions_scores_zero():
    result = metric.score(GT, GT.iloc[:0])
    apo = result.by_class()["apo-ferritin"]
    assert (apo.tp, apo.fp, apo.fn, apo.fbeta) == (0, 0, 2, 0.0)
    assert result.overall == 0.0


def test_counts_are_summed_over_tomograms():
    truth = pd.concat([GT, table([(0, 0, 0)], tomogram="TS_2")], ignore_index=True)
    picks = pd.concat([table([(0, 0, 0)]), table([(500, 0, 0), (0, 0, 5)], tomogram="TS_2")])
    apo = metric.score(truth, picks).by_class()["apo-ferritin"]
    # TS_1: 1 TP, 0 FP, 1 FN; TS_2: 1 TP, 1 FP, 0 FN -> micro sums.
    assert (apo.tp, apo.fp, apo.fn) == (2, 1, 1)
    p, r = 2 / 3, 2 / 3
    assert apo.fbeta == pytest.approx(17 * p * r / (16 * p + r))


def test_class_absent_from_a_tomogram_counts_its_picks_as_false_positives():
    truth = pd.concat(
        [GT, table([(0, 0, 0)], particle="ribosome", tomogram="TS_2")], ignore_index=True
    )
    picks = table([(0, 0, 0), (300, 0, 0)], particle="ribosome", tomogram="TS_1")
    ribosome = metric.score(truth, picks).by_class()["ribosome"]
    assert (ribosome.tp, ribosome.fp, ribosome.fn) == (0, 2, 1)


def test_class_absent_from_the_truth_is_ignored_but_counts_in_the_denominator():
    picks = pd.concat([GT, table([(0, 0, 0)], particle="ribosome")], ignore_index=True)
    result = metric.score(GT, picks)
    assert [c.particle for c in result.classes] == ["apo-ferritin"]
    assert result.ignored == 1
    assert result.overall == pytest.approx(1 / 7)


def test_picks_in_unknown_tomograms_are_dropped():
    result = metric.score(GT, pd.concat([GT, table([(0, 0, 0)], tomogram="other")]))
    assert result.dropped == 1
    assert result.by_class()["apo-ferritin"].fp == 0


def test_unknown_class_is_an_error():
    with pytest.raises(PicksError, match="unknown particle class"):
        metric.score(GT, table([(0, 0, 0)], particle="proteasome"))


def test_pick_without_class_is_an_error():
    picks = table([(0, 0, 0)])
    picks["particle"] = None
    with pytest.raises(PicksError, match="no particle class"):
        metric.score(GT, picks)


def test_duplicate_truth_is_an_error():
    with pytest.raises(PicksError, match="duplicate"):
        metric.score(pd.concat([GT, GT]), GT)


def test_parameters_change_the_result():
    picks = table([(40, 0, 0), (1000, 0, 0)])
    assert metric.score(GT, picks).by_class()["apo-ferritin"].tp == 1
    wider = metric.score(GT, picks, multiplier=0.7)
    assert wider.by_class()["apo-ferritin"].tp == 2
    custom = metric.score(GT, picks, beta=1.0, weights={"apo-ferritin": 1.0})
    assert custom.overall == pytest.approx(0.5)  # P = R = 1/2, a single class of weight 1
    extra = metric.score(
        table([(0, 0, 0)], particle="proteasome"),
        table([(9, 0, 0)], particle="proteasome"),
        radii={"proteasome": 20.0},
        weights={"proteasome": 1.0},
    )
    assert extra.overall == pytest.approx(1.0)


def test_czii_column_names_are_accepted():
    czii = GT.rename(columns={"tomogram": "experiment", "particle": "particle_type"})
    assert metric.score(czii, GT).overall == pytest.approx(1 / 7)


def test_threshold_curve_matches_rescoring_at_each_threshold():
    rng = np.random.default_rng(3)
    truth = table(rng.uniform(0, 5000, size=(30, 3)))
    noise = rng.uniform(0, 5000, size=(20, 3))
    near = truth[["x", "y", "z"]].to_numpy()[:25] + rng.normal(0, 8, size=(25, 3))
    picks = table(np.vstack([near, noise]), score=rng.uniform(0, 1, 45))
    curve = metric.threshold_curve(truth, picks, thresholds=[0.0, 0.3, 0.6, 0.9])
    for row in curve.itertuples():
        direct = metric.score(truth, picks[picks["score"] >= row.threshold])
        apo = direct.by_class()["apo-ferritin"]
        assert (row.tp, row.fp, row.fn) == (apo.tp, apo.fp, apo.fn)
        assert row.fbeta == pytest.approx(direct.overall)
