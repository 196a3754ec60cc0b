"""The fast paths of consensus/cluster.py equal the plain NumPy they replace."""

import numpy as np
import pandas as pd

from picks.consensus import cluster as cluster_module
from picks.consensus.cluster import _canonical_order, _exact_keys


def _ties(seed: int, n: int = 5000):
    rng = np.random.default_rng(seed)
    names_key = rng.integers(0, 6, n)
    # few distinct coordinates, so that (key, x) ties are common and y, z, score, id decide
    xyz = rng.integers(0, 4, (n, 3)).astype(float) * 10.0
    xyz[rng.random(n) < 0.1, 0] = -0.0  # -0.0 ties with 0.0, as in a comparison sort
    score = rng.integers(0, 3, n).astype(float)
    score[rng.random(n) < 0.2] = np.nan
    ids = rng.permutation(n) + 1
    return names_key, xyz, score, ids


def test_canonical_order_is_the_full_lexsort():
    for seed in range(5):
        names_key, xyz, score, ids = _ties(seed)
        expected = np.lexsort((ids, score, xyz[:, 2], xyz[:, 1], xyz[:, 0], names_key))
        np.testing.assert_array_equal(_canonical_order(names_key, xyz, score, ids), expected)


def test_canonical_order_without_ties():
    rng = np.random.default_rng(9)
    xyz = rng.random((1000, 3))
    key = rng.integers(0, 3, 1000)
    ids = np.arange(1000)
    expected = np.lexsort((ids, np.zeros(1000), xyz[:, 2], xyz[:, 1], xyz[:, 0], key))
    got = _canonical_order(key, xyz, np.zeros(1000), ids)
    np.testing.assert_array_equal(got, expected)


def _codes_equal_unique(columns):
    codes, n = _exact_keys(columns)
    _, inverse = np.unique(np.rec.fromarrays(columns), return_inverse=True)
    inverse = inverse.ravel()
    assert n == inverse.max() + 1
    # the same partition of the rows (the numbering may differ)
    pairs = pd.DataFrame({"a": codes, "b": inverse}).drop_duplicates()
    assert len(pairs) == n


def test_exact_keys_partition_rows_as_unique():
    names_key, xyz, _, _ = _ties(3)
    group = names_key.astype(np.int64)
    _codes_equal_unique([group, group % 2, xyz[:, 0], xyz[:, 1], xyz[:, 2], np.full(5000, 7.5)])


def test_exact_keys_survive_hash_collisions(monkeypatch):
    # every row hashed alike: the check against the columns must catch it and fall back
    monkeypatch.setattr(
        cluster_module.pd.util, "hash_array", lambda values: np.zeros(len(values), np.uint64)
    )
    names_key, xyz, _, _ = _ties(4, n=500)
    _codes_equal_unique([names_key.astype(np.int64), xyz[:, 0], xyz[:, 1]])
