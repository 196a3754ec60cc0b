"""Noise sampling: distance guarantee, bounds, determinism, bounded time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree

from picks.consensus.noise import evasion_radii, sample_noise, sample_positions
from picks.core.tomograms import Tomogram

TOMO = Tomogram("TS_1", None, 10.0, (200, 200, 80))  # 1990 × 1990 × 790 Å of voxel centres


def avoid_frame(
    xyz: np.ndarray, evasion: float | np.ndarray, tomogram: str = "TS_1"
) -> pd.DataFrame:
    return pd.DataFrame(
        {"tomogram": tomogram, "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2], "evasion": evasion}
    )


def test_samples_keep_their_distance_and_stay_inside():
    rng = np.random.default_rng(0)
    picks = rng.uniform(0, [1990, 1990, 790], (150, 3))
    radii = np.where(np.arange(150) % 2 == 0, 120.0, 60.0)  # two classes, two evasion radii
    result = sample_noise([TOMO], avoid_frame(picks, radii), {"TS_1": 200}, half_box=75.0, seed=3)
    samples = result.samples[["x", "y", "z"]].to_numpy()
    assert len(samples) == 200 and result.obtained == {"TS_1": 200} and not result.warnings
    assert (samples >= 75.0).all() and (samples <= np.array([1990, 1990, 790]) - 75.0).all()
    d = np.linalg.norm(samples[:, None, :] - picks[None, :, :], axis=2)
    assert (d > radii[None, :]).all()
    # and the constraint is not vacuous: some samples lie close to the 60 Å picks
    assert (d[:, radii == 60.0] < 120.0).any()


def test_sampling_is_deterministic_per_seed_and_per_tomogram():
    picks = np.random.default_rng(1).uniform(0, 1900, (50, 3)) * [1, 1, 0.4]
    avoid = avoid_frame(picks, 100.0)
    one = sample_noise([TOMO], avoid, {"TS_1": 50}, half_box=50.0, seed=7).samples
    two = sample_noise([TOMO], avoid, {"TS_1": 50}, half_box=50.0, seed=7).samples
    other = sample_noise([TOMO], avoid, {"TS_1": 50}, half_box=50.0, seed=8).samples
    pd.testing.assert_frame_equal(one, two)
    assert not np.allclose(one[["x", "y", "z"]].to_numpy(), other[["x", "y", "z"]].to_numpy())
    # adding a second tomogram does not change the first one's samples
    tomo2 = Tomogram("TS_2", None, 10.0, (100, 100, 50))
    both = sample_noise(
        [TOMO, tomo2], avoid, {"TS_1": 50, "TS_2": 10}, half_box=50.0, seed=7
    ).samples
    pd.testing.assert_frame_equal(both[both["tomogram"] == "TS_1"].reset_index(drop=True), one)
    assert (both["tomogram"] == "TS_2").sum() == 10


def test_crowded_tomogram_returns_fewer_with_a_warning():
    # Picks on a 100 Å grid with a 80 Å evasion radius leave almost no background.
    grid = np.stack(
        np.meshgrid(*(np.arange(0, 2001, 100.0),) * 2, np.arange(0, 801, 100.0), indexing="ij"), -1
    )
    picks = grid.reshape(-1, 3)
    result = sample_noise(
        [TOMO], avoid_frame(picks, 80.0), {"TS_1": 5000}, half_box=10.0, seed=0, max_batches=3
    )
    assert 0 < result.obtained["TS_1"] < 5000
    assert any("only" in w and "after 3 batches" in w for w in result.warnings)
    tree = cKDTree(picks)
    d, _ = tree.query(result.samples[["x", "y", "z"]].to_numpy())
    assert (d > 80.0).all()


def test_sample_positions_stops_after_max_batches():
    avoid = np.zeros((1, 3))
    xyz, batches = sample_positions(
        np.zeros(3),
        np.full(3, 10.0),
        avoid,
        np.array([100.0]),
        10,
        np.random.default_rng(0),
        max_batches=4,
    )
    assert len(xyz) == 0 and batches == 4


def test_unknown_shape_and_too_small_tomograms_are_warnings():
    unknown = Tomogram("TS_3", None, None, None)
    tiny = Tomogram("TS_4", None, 10.0, (10, 10, 10))
    result = sample_noise(
        [unknown, tiny], avoid_frame(np.zeros((0, 3)), 1.0), {"TS_3": 5, "TS_4": 5}, half_box=60.0
    )
    assert result.obtained == {"TS_3": 0, "TS_4": 0}
    assert len(result.warnings) == 2 and "shape unknown" in result.warnings[0]
    assert "does not fit" in result.warnings[1]


def test_evasion_radii():
    radii = {"ribosome": 150.0, "apo-ferritin": 60.0}
    assert list(evasion_radii(["ribosome", "apo-ferritin", None, "gold"], radii)) == [
        300.0,
        120.0,
        300.0,
        300.0,
    ]
    assert list(evasion_radii(["ribosome", None], radii, evasion=42.0)) == [42.0, 42.0]
    assert list(evasion_radii(["apo-ferritin"], radii, factor=1.0)) == [60.0]


@pytest.mark.parametrize("count", [0, 1])
def test_small_counts(count: int):
    result = sample_noise(
        [TOMO], avoid_frame(np.zeros((0, 3)), 1.0), {"TS_1": count}, half_box=0.0, seed=0
    )
    assert len(result.samples) == count
