"""Empty boxes: noise peaks that pickers report are rejected where particles stand out."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from picks.consensus import background
from picks.consensus.background import (
    background_points,
    empty_background,
    empty_veto,
    object_contrast,
    well_supported,
)
from picks.consensus.image_features import candidate_statistics
from picks.core.store import Store
from picks.core.tomograms import Tomogram, read_tomogram
from picks.workflows.aggregate import aggregate
from tests.test_image_features import RADIUS, _lone_world, _near

RADII = {"ribosome": RADIUS}


def _candidates(truth: pd.DataFrame, junk) -> pd.DataFrame:
    """Every particle reported by three pickers, every junk spot by one."""
    rows = [(*p, 3) for p in truth[["x", "y", "z"]].itertuples(index=False)]
    rows += [(*j, 1) for j in junk]
    table = pd.DataFrame(rows, columns=["x", "y", "z", "n_pickers"])
    return table.assign(tomogram="TS_1", particle="ribosome")


def _contrast(tmp_path, negate: bool = False):
    import mrcfile

    path, truth, junk, _ = _lone_world(tmp_path / "world")
    if negate:
        with mrcfile.open(path, mode="r+") as mrc:
            mrc.set_data(-mrc.data)
    tomograms = [read_tomogram(path)]
    consensus = _candidates(truth, junk)
    stats = candidate_statistics(consensus, tomograms, RADII)
    empty = empty_background(consensus, tomograms, RADII, seed=0)
    reference = well_supported(consensus, {"ribosome": 3})
    return consensus, object_contrast(stats, consensus, empty, reference), len(truth)


def test_empty_boxes_are_told_from_particles_bright_or_dark(tmp_path):
    consensus, bright, n_true = _contrast(tmp_path / "bright")
    _, dark, _ = _contrast(tmp_path / "dark", negate=True)
    # dark particles (real cryo-ET) give the same contrast as bright ones
    np.testing.assert_allclose(dark.to_numpy(), bright.to_numpy(), rtol=1e-3, atol=1e-3)
    particles, junk = bright.to_numpy()[:n_true], bright.to_numpy()[n_true:]
    assert np.median(particles) >= 15 > junk.max()
    mask, cuts = empty_veto(
        bright, consensus["particle"], well_supported(consensus, {"ribosome": 3})
    )
    level, cut = cuts["ribosome"]
    assert level == pytest.approx(np.median(particles)) and cut <= background.EMPTY_CAP
    assert not mask.to_numpy()[:n_true].any() and mask.to_numpy()[n_true:].all()


def test_the_rule_needs_clear_particles_and_enough_of_them():
    contrast = pd.Series([20.0, 22.0, 25.0, 21.0, 30.0, 6.0, 7.9, 9.0, 2.0])
    particle = pd.Series(["a"] * 9)
    reference = np.array([True] * 5 + [False] * 4)
    mask, cuts = empty_veto(contrast, particle, reference)
    # level 22: cut min(22/3, 8) = 7.33; 9.0 is kept (≥ the cut) and so is 7.9
    assert cuts == {"a": (22.0, pytest.approx(22.0 / 3))}
    assert mask.tolist() == [False] * 5 + [True, False, False, True]
    # faint particles (level 11 < 15): the image cannot tell a particle from a noise peak
    faint, cuts = empty_veto(contrast / 2, particle, reference)
    assert not faint.any() and cuts == {}
    # four well-supported candidates are too few to say what the class looks like
    few, _ = empty_veto(contrast, particle, reference & (np.arange(9) != 0))
    assert not few.any()
    # the cap: bright classes (level 60) still reject only what is near empty background
    capped, cuts = empty_veto(contrast * 3, particle, reference)
    assert cuts["a"][1] == background.EMPTY_CAP
    assert capped.tolist() == [False] * 8 + [True]


def test_background_points_avoid_candidates_and_do_not_depend_on_their_order():
    tomo = Tomogram("TS_1", None, 10.0, (100, 100, 40))
    rng = np.random.default_rng(3)
    consensus = pd.DataFrame(
        {
            "tomogram": "TS_1",
            "particle": rng.choice(["ribosome", "apo"], 60),
            "x": rng.uniform(0, 1000, 60),
            "y": rng.uniform(0, 1000, 60),
            "z": rng.uniform(0, 400, 60),
        }
    )
    radii = {"ribosome": 60.0, "apo": 30.0}
    points = background_points(consensus, [tomo], radii, per_tomogram=50, seed=1)
    assert len(points) == 50
    xyz = points[["x", "y", "z"]].to_numpy()
    for cls, radius in radii.items():
        mine = consensus[consensus["particle"] == cls][["x", "y", "z"]].to_numpy()
        d = np.linalg.norm(xyz[:, None] - mine[None], axis=2)
        assert d.min() > radius
    assert (xyz >= 60.0).all() and (xyz[:, 2] <= 39 * 10.0 - 60.0).all()  # a radius from faces
    shuffled = background_points(
        consensus.sample(frac=1, random_state=0), [tomo], radii, per_tomogram=50, seed=1
    )
    pd.testing.assert_frame_equal(points, shuffled)
    # a tomogram whose shape is unknown gets none (its candidates are never called empty)
    unknown = Tomogram("TS_1", None, 10.0, None)
    assert not len(background_points(consensus, [unknown], radii, per_tomogram=50))


def test_a_handful_of_empty_boxes_is_no_background(tmp_path):
    # a crowded tomogram leaves little room: too few boxes give no median or spread at all
    path, truth, junk, _ = _lone_world(tmp_path / "world")
    tomograms = [read_tomogram(path)]
    consensus = _candidates(truth, junk)
    few = empty_background(consensus, tomograms, RADII, per_tomogram=background.MIN_BACKGROUND - 1)
    assert len(few) == 1 and few.drop(columns=["tomogram", "particle"]).isna().all(axis=None)
    enough = empty_background(consensus, tomograms, RADII, per_tomogram=background.MIN_BACKGROUND)
    assert enough.drop(columns=["tomogram", "particle"]).notna().all(axis=None)


def test_a_candidate_without_background_is_never_empty():
    consensus = pd.DataFrame({"tomogram": ["TS_1"] * 6, "particle": ["a"] * 6})
    stats = pd.DataFrame(
        {"core": [5.0] * 6, "body": [1.0] * 6, "peak": [9.0] * 6, "trough": [-2.0] * 6}
    )
    contrast = object_contrast(stats, consensus, pd.DataFrame(), np.ones(6, bool))
    assert contrast.isna().all()
    mask, _ = empty_veto(contrast, consensus["particle"], np.ones(6, bool))
    assert not mask.any()


@pytest.mark.slow
def test_aggregate_rejects_the_noise_peaks_pickers_report(tmp_path, monkeypatch):
    path, truth, junk, inputs = _lone_world(tmp_path / "world")

    def run(name):
        with Store(tmp_path / f"{name}.db") as store:
            result = aggregate(
                store, inputs, out=tmp_path / name, tomograms=[path], formats=["csv"]
            )
            return store.consensus(result.run_id)

    table = run("default")
    on_junk = _near(table, junk, 30.0)
    on_particle = _near(table, truth[["x", "y", "z"]].to_numpy(), 30.0)
    accepted = table["accepted"].astype(bool).to_numpy()
    assert on_junk.sum() == len(junk) and on_particle.sum() == len(truth)
    # no particle is called empty (lone ones are left to the agreement)
    assert not table.loc[on_particle, "reason"].str.contains("empty box").any()
    assert accepted[on_particle].sum() >= len(truth) - 3
    assert not accepted[on_junk].any()
    assert table.loc[on_junk, "reason"].str.startswith("image: an empty box").all()
    # without the rule the agreement alone accepts lone junk: the test can fail
    monkeypatch.setattr(background, "CLEAR_CONTRAST", np.inf)
    off = run("off")
    assert off["accepted"].astype(bool).to_numpy()[_near(off, junk, 30.0)].sum() > 0
