"""The content digest's text built by numpy (core/picks.py) is the csv_text one, byte for byte,
and the digests are those of the earlier code (stored identities depend on them)."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from picks.core import picks as canonical
from picks.core.csvtext import csv_text
from picks.core.picks import (
    DIGEST_COLUMNS,
    ContentDigest,
    _digest_records,
    _digest_table,
    _digest_text,
    _fixed6_bytes,
    _int_bytes,
    _plain_digest_text,
    content_digest,
)

WORDS = ["TS_01", "TS_2", "β-amylase", "a b", " x ", "", "ribo,some", 'a"b', "line\nbreak", "r\r"]


def _reference_digest(frames: list[pd.DataFrame]) -> str:
    """The digest as the code before the numpy text computed it: the digest table sorted, as
    csv_text writes it (``%.6f``, NaN ``nan``), hashed."""
    digest = hashlib.sha256()
    table = pd.concat([_reference_table(f) for f in frames]) if frames else None
    if table is None or not len(table):
        table = _reference_table(canonical.empty())
    digest.update(csv_text(table, float_format="%.6f", na_rep="nan").encode())
    return digest.hexdigest()[:16]


def _reference_table(frame: pd.DataFrame) -> pd.DataFrame:
    particle = frame["particle"].to_numpy(dtype=object).copy()
    particle[pd.isna(particle)] = ""
    if set(map(type, particle.tolist())) - {str}:
        particle = np.array([str(p) for p in particle.tolist()], dtype=object)
    table = pd.DataFrame(
        {
            "record": pd.to_numeric(frame["record"]).to_numpy(dtype="int64"),
            "tomogram": pd.Series(
                frame["tomogram"].astype(str).to_numpy(dtype=object), dtype=object
            ),
            "particle": pd.Series(particle, dtype=object),
        }
    )
    for column in ("x", "y", "z", "score", "rot", "tilt", "psi"):
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
        table[column] = np.round(values, 4 if column in canonical.COORDS else 6) + 0.0
    return table.sort_values(list(DIGEST_COLUMNS), kind="stable")


def _floats(rng: np.random.Generator, n: int, *, odd: bool) -> np.ndarray:
    values = rng.normal(0, 10.0 ** rng.integers(-8, 10), n)
    # values on and next to the grids, halves of the last printed place, small and large
    grid = rng.random(n) < 0.1
    values[grid] = np.round(rng.uniform(-1e4, 1e4, int(grid.sum())), 4)
    pick = rng.random(n)
    values[pick < 0.05] = rng.integers(-(10**6), 10**6, n)[pick < 0.05] / 1e6 + 5e-7
    values[(pick >= 0.05) & (pick < 0.08)] = -0.0
    values[(pick >= 0.08) & (pick < 0.12)] = np.nan
    values[(pick >= 0.12) & (pick < 0.14)] = 2.0**33 * rng.choice([-0.999999, 0.999999])
    if odd:  # left to csv_text: not below 2**33
        values[(pick >= 0.12) & (pick < 0.13)] = 2.0**33 * rng.choice([-1, 1])
        values[(pick >= 0.14) & (pick < 0.16)] = rng.choice([np.inf, -np.inf, 1e300, -1e20])
    return values


def _frame(rng: np.random.Generator, n: int, *, odd: bool, ascending: bool = True) -> pd.DataFrame:
    words = WORDS if odd else WORDS[:6]
    records = np.cumsum(rng.integers(1, 10 ** rng.integers(1, 15), n)) - 10**6
    if not ascending:
        records = rng.permutation(records)
    particle = np.array(words, dtype=object)[rng.integers(0, len(words), n)]
    particle[rng.random(n) < 0.2] = None
    frame = canonical.make(
        {
            "tomogram": np.array(words, dtype=object)[rng.integers(0, len(words), n)],
            "particle": particle,
            "x": _floats(rng, n, odd=odd),
            "y": rng.uniform(0, 6000, n),
            "z": np.round(rng.uniform(0, 2000, n), 3),
            "score": _floats(rng, n, odd=odd) if rng.random() < 0.7 else np.full(n, np.nan),
            "rot": np.full(n, np.nan) if rng.random() < 0.5 else rng.uniform(-180, 180, n),
            "record": records,
        }
    )
    return frame


@pytest.mark.parametrize("seed", range(40))
def test_numpy_text_is_csv_text(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    for odd in (False, True):
        frame = _frame(rng, n, odd=odd)
        for header in (True, False):
            fast = _plain_digest_text(frame, _digest_records(frame), header)
            expected = _digest_text(_digest_table(frame), header)
            assert (
                expected
                == csv_text(
                    _digest_table(frame), header=header, float_format="%.6f", na_rep="nan"
                ).encode()
            )
            if fast is not None:
                assert fast == expected
            elif not odd:
                pytest.fail("a plain table was not written by the numpy path")


def _printed(values: np.ndarray) -> list[str] | None:
    out = _fixed6_bytes(values)
    return None if out is None else [bytes(r).replace(b"\x00", b"").decode() for r in out]


def test_numpy_text_of_any_double() -> None:
    """Not only values on the 6-decimal grid: whatever is written is "%.6f" % v, exactly;
    values on the grid below 2**33 are all written by numpy."""
    rng = np.random.default_rng(7)
    on_grid = [
        np.round(rng.uniform(-8e9, 8e9, 20_000), 6),
        np.round(rng.uniform(-8e9, 8e9, 20_000), 4),
        np.round(rng.uniform(-1e3, 1e3, 20_000), 6),
        np.round(rng.normal(0, 1, 20_000) * 10.0 ** rng.integers(-7, 9, 20_000), 6),
        np.array([0.0, -0.0, 1e-6, -1e-6, np.nextafter(2.0**33, 0), 8589934591.999999]),
    ]
    for values in on_grid:
        assert _printed(values) == ["%.6f" % v for v in values.tolist()]  # noqa: UP031
    anywhere = np.concatenate(
        [
            rng.normal(0, 1, 20_000) * 10.0 ** rng.integers(-12, 12, 20_000),
            (np.arange(20_000) + 0.5) / 1e6,  # halves of the last place
            np.array([5e-7, -5e-7, 2.0**33, 1e-300, np.inf, np.nan]),
        ]
    )
    anywhere[::3] = np.round(anywhere[::3], 6)  # some parts on the grid: printed
    printed = 0
    for part in np.array_split(anywhere, len(anywhere) // 2):
        text = _printed(part)
        if text is not None:
            assert text == ["nan" if v != v else "%.6f" % v for v in part.tolist()]  # noqa: UP031
            printed += len(part)
    assert printed > 0


def test_integers() -> None:
    values = np.array([0, 1, 9, 10, 99, 100, -1, -10, -99, 2**62, -(2**62), 10**18 - 1, 123456])
    out = _int_bytes(np.abs(values), values < 0)
    assert [bytes(r).replace(b"\x00", b"").decode() for r in out] == [str(v) for v in values]


@pytest.mark.parametrize("seed", range(12))
def test_digest_values_unchanged(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(0, 600))
    odd = bool(seed % 3 == 2)
    frame = _frame(rng, n, odd=odd, ascending=seed % 4 != 3) if n else canonical.empty()
    assert content_digest(frame) == _reference_digest([frame])
    # in chunks, as a streamed import gives them
    step = int(rng.integers(1, 60))
    chunks = [frame.iloc[start : start + step] for start in range(0, n, step)]
    digest = ContentDigest()
    for chunk in chunks:
        digest.update(chunk)
    if not digest.broken:
        assert digest.hexdigest() == _reference_digest([frame])
    kept = ContentDigest(keep=True)
    for chunk in chunks:
        kept.update(chunk)
    assert kept.hexdigest() == _reference_digest([frame])


def test_digest_of_a_known_table() -> None:
    """A fixed table's digest, as the code before this one computed it."""
    frame = canonical.make(
        {
            "tomogram": ["TS_01", "TS_01", "TS_02"],
            "particle": ["ribosome", None, "apo-ferritin"],
            "x": [1.23456789, -0.00001, 6300.5],
            "y": [2.0, 3.5, -4.25],
            "z": [0.0, 1e-9, 1234.56785],
            "score": [0.5, np.nan, 0.1234561],
            "record": [2, 3, 5],
        }
    )
    assert content_digest(frame) == _reference_digest([frame])
    text = _plain_digest_text(frame, _digest_records(frame), True)
    assert text == (
        b"record,tomogram,particle,x,y,z,score,rot,tilt,psi\n"
        b"2,TS_01,ribosome,1.234600,2.000000,0.000000,0.500000,nan,nan,nan\n"
        b"3,TS_01,,0.000000,3.500000,0.000000,nan,nan,nan,nan\n"
        b"5,TS_02,apo-ferritin,6300.500000,-4.250000,1234.567800,0.123456,nan,nan,nan\n"
    )
