"""core/arrays.py: ``distinct`` is ``np.unique`` (values, order, dtype), faster."""

import numpy as np
import pytest

from picks.core.arrays import distinct


@pytest.mark.parametrize(
    "values",
    [
        [],
        [3],
        [2, 2, 2],
        [5, -1, 5, 3, -1, 0],
        np.arange(1000)[::-1] % 37,
        [0.5, np.nan, -0.0, 0.0, np.nan, 2.5, 0.5],
        [np.nan, np.nan],
        [np.inf, -np.inf, 1.0, np.inf],
        np.array([[4, 1], [1, 9]], dtype=np.int32),
        np.array([True, False, True]),
        np.array(["b", "a", "b"], dtype=object),
    ],
)
def test_distinct_is_unique(values):
    expected = np.unique(np.asarray(values))
    got = distinct(values)
    assert got.dtype == expected.dtype
    np.testing.assert_array_equal(got, expected)


def test_distinct_random_integers_and_floats():
    rng = np.random.default_rng(4)
    ints = rng.integers(-50, 50, 10_000)
    np.testing.assert_array_equal(distinct(ints), np.unique(ints))
    floats = np.round(rng.normal(size=10_000), 1)
    floats[rng.random(10_000) < 0.05] = np.nan
    np.testing.assert_array_equal(distinct(floats), np.unique(floats))
