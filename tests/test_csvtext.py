"""core/csvtext writes exactly the bytes pandas' to_csv writes, fast path or not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from picks.core.csvtext import csv_text, write_csv


def _table(rng: np.random.Generator, n: int) -> pd.DataFrame:
    floats = rng.normal(0, 10.0 ** rng.integers(-6, 12), n)
    floats[rng.random(n) < 0.1] = np.nan
    floats[rng.random(n) < 0.02] = np.inf
    floats[rng.random(n) < 0.02] = -0.0
    words = np.array(["TS_01", "ribo,some", 'a"b', "line\nbreak", "", "β-amylase", " x "])
    text = words[rng.integers(0, len(words), n)].astype(object)
    text[rng.random(n) < 0.1] = None
    return pd.DataFrame(
        {
            "id": rng.integers(-(10**12), 10**12, n),
            "name": text,
            "tomogram": pd.Series(words[rng.integers(0, 2, n)]).astype(str),
            "value": floats,
            "accepted": rng.random(n) < 0.5,
            # few distinct values: each formatted once (NaN, inf, 0 among them)
            "support": rng.choice([0.25, 0.5, 1 / 3, 1.0, np.nan, np.inf, -np.inf, 0.0], n),
            # few distinct values with a -0.0 ("-0", not "0"): formatted one by one
            "signed": rng.choice([0.5, 0.0, -0.0, 2.0], n),
        }
    )


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("float_format", ["%.6g", "%.4f", "%.3f", "%.6f"])
def test_same_text_as_pandas(seed: int, float_format: str) -> None:
    rng = np.random.default_rng(seed)
    table = _table(rng, int(rng.integers(0, 300)))
    for na_rep in ("", "nan"):
        for header in (True, False):
            expected = table.to_csv(
                index=False, float_format=float_format, na_rep=na_rep, header=header
            )
            assert csv_text(table, float_format=float_format, na_rep=na_rep, header=header) == (
                expected
            )


def test_unusual_tables_fall_back_to_pandas(tmp_path) -> None:
    tables = [
        pd.DataFrame({"x": [1.5, np.nan]}),  # one column: the csv module quotes empty rows
        pd.DataFrame({"a,b": [1, 2], "c": [3, 4]}),  # a name that needs quotes
        pd.DataFrame({"a": pd.array([1, None], dtype="Int64"), "b": [1.0, 2.0]}),
        pd.DataFrame({"a": [1, "x"], "b": [0.1, 0.2]}),  # mixed object column
        pd.DataFrame({"a": [0.1, 0.2], "b": np.array([1, 2], dtype=np.float32)}),
        pd.DataFrame({"a": [0.1, 0.2], "b": [3.0, 4.0]}),  # floats without float_format
    ]
    for table in tables:
        for float_format in (None, "%.3f"):
            path = tmp_path / "t.csv"
            write_csv(table, path, float_format=float_format)
            other = tmp_path / "p.csv"
            table.to_csv(other, index=False, float_format=float_format)
            assert path.read_bytes() == other.read_bytes()


@pytest.mark.parametrize("block", [1, 7, 1000])
def test_written_in_blocks_same_bytes(tmp_path, block: int) -> None:
    rng = np.random.default_rng(11)
    tables = [_table(rng, 53), _table(rng, 0), pd.DataFrame({"x": [1.5, np.nan, 2.0]})]
    tables.append(pd.DataFrame({"a": [1, "x", None], "b": [0.1, 0.2, -0.0]}))  # pandas' path
    for table in tables:
        path, other = tmp_path / "t.csv", tmp_path / "p.csv"
        write_csv(table, path, float_format="%.6g", block=block)
        table.to_csv(other, index=False, float_format="%.6g")
        assert path.read_bytes() == other.read_bytes()
