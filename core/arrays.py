"""Array helpers that the hot paths of a million-pick run share.

NumPy 2.3+ computes a plain ``np.unique(values)`` (no ``return_*`` argument) by hashing,
then sorts the distinct values: on a million integers that is ≈ 0.4 s, where sorting the
array and keeping the first of each run takes ≈ 0.01 s (measured with NumPy 2.4 on the
project's 2-core machine). :func:`distinct` is the same result, the sorting way.
"""

from __future__ import annotations

import numpy as np


def distinct(values: object) -> np.ndarray:
    """``np.unique(values)``: the sorted distinct values of the flattened array, NaN once
    (last) as ``np.unique``'s ``equal_nan`` default gives it."""
    ordered = np.sort(np.asarray(values).ravel())
    if len(ordered) < 2:
        return ordered
    keep = np.empty(len(ordered), dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    if ordered.dtype.kind in "fc" and np.isnan(ordered[-1]):
        # NaNs sort last and are unequal to each other: keep the first of them only
        nan = np.isnan(ordered)
        keep &= ~nan
        keep[np.argmax(nan)] = True
    return ordered[keep]
