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


# -- harder tables: every path of the fast writer (coded columns, columns joined before the
# rows, floats formatted within the row's format) against pandas' own text -----------------
HARD_FLOATS = [
    np.nan,
    -0.0,
    0.0,
    1e-7,
    -1e-7,
    1e20,
    -1e20,
    1e16 + 2,
    123456.5,
    999999.5,
    0.0005,
    0.00015,
    2.5,
    -2.5,
    1.0,
    3.0,
    np.inf,
    -np.inf,
    5e-324,
    1.7976931348623157e308,
]


def _hard_table(rng: np.random.Generator, n: int) -> pd.DataFrame:
    special = np.array(HARD_FLOATS)
    many = rng.normal(0, 10.0 ** rng.integers(-8, 21), n)  # distinct values: the row path
    swap = rng.random(n) < 0.05
    many[swap] = special[rng.integers(0, len(special), int(swap.sum()))]
    few = special[rng.integers(0, len(special), n)]  # repeated values: coded
    ints_as_floats = rng.integers(-3, 4, n).astype(float)  # 1.0 as "%.6g" is "1"
    words = np.array(["TS_01", "ribo,some", 'a"b', "", "β-amylase", "line\nbreak", "x"])
    text = words[rng.integers(0, len(words), n)].astype(object)
    text[rng.random(n) < 0.1] = None
    text[rng.random(n) < 0.05] = np.nan
    names = np.array([f"pick {i}" + ("," if i % 7 == 0 else "") for i in range(n)], dtype=object)
    names[rng.random(n) < 0.1] = None  # distinct texts, some quoted: not coded
    labels = pd.Series(words[rng.integers(0, 3, n)], dtype="str")
    labels[rng.random(n) < 0.1] = None
    return pd.DataFrame(
        {
            "id": np.arange(n, dtype=np.int64) * 7 - 10**15,
            "few_ints": rng.integers(0, 4, n),
            "big": rng.integers(2**63, 2**64 - 1, n, dtype=np.uint64, endpoint=True),
            "flag": rng.random(n) < 0.3,
            "text": text,
            "label": labels,
            "names": names,
            "few": few,
            "whole": ints_as_floats,
            "many": many,
            "x": rng.uniform(-5000, 5000, n),  # no NaN: formatted within the row's format
            "status": rng.choice(["positive", "negative", "noise"], n),
        }
    )


@pytest.mark.parametrize("n", [0, 1, 2, 5, 600, 1100, 2500])
@pytest.mark.parametrize(
    "float_format",
    ["%.6g", "%.3f", "%.4f", "%.6f", "%e", "%+.2f", "%10.3f", "%-9.1f", "%.0f", "%#.3g", "%.2f%%"],
)
def test_hard_tables_same_text_as_pandas(n: int, float_format: str) -> None:
    rng = np.random.default_rng(n)
    table = _hard_table(rng, n)
    for na_rep in ("", "nan", "NA"):
        expected = table.to_csv(index=False, float_format=float_format, na_rep=na_rep)
        assert csv_text(table, float_format=float_format, na_rep=na_rep) == expected
    # the columns one by one beside an id (each path alone), and in another order
    for column in table.columns[1:]:
        part = table[["id", column]]
        assert csv_text(part, float_format=float_format) == part.to_csv(
            index=False, float_format=float_format
        )
    backwards = table[table.columns[::-1]]
    assert csv_text(backwards, float_format=float_format, header=False) == backwards.to_csv(
        index=False, float_format=float_format, header=False
    )


def test_repeats_after_the_sample_and_distinct_after_repeats() -> None:
    """Whether a column is formatted per distinct value is judged on its first rows: a column
    that changes after them is written the same either way."""
    n = 3000
    first = np.r_[np.zeros(600), np.random.default_rng(1).normal(size=n - 600)]
    second = np.r_[np.arange(600, dtype=float), np.ones(n - 600)]
    third = np.r_[np.full(600, -0.0), np.zeros(n - 600)]
    table = pd.DataFrame({"a": first, "b": second, "c": third, "d": np.arange(n) % 3})
    for float_format in ("%.6g", "%.3f"):
        for na_rep in ("", "nan"):
            assert csv_text(table, float_format=float_format, na_rep=na_rep) == table.to_csv(
                index=False, float_format=float_format, na_rep=na_rep
            )


def test_fields_to_quote_and_odd_formats() -> None:
    """na_rep and formats whose own text needs quotes; formats pandas reads as str.format
    (no "%"); object columns pandas must format (unhashable values, numbers)."""
    rng = np.random.default_rng(5)
    n = 1200
    floats = rng.normal(size=n)
    floats[rng.random(n) < 0.2] = np.nan
    table = pd.DataFrame(
        {
            "a": floats,
            "b": np.round(floats, 1),
            "c": rng.choice(["x", "y,z"], n).astype(object),
        }
    )
    for float_format in ("%.3f", "%.2f,", '%.1f"', "{:.2f}", "%.1f\n"):
        for na_rep in ("", "x,y", 'q"', "nan"):
            assert csv_text(table, float_format=float_format, na_rep=na_rep) == table.to_csv(
                index=False, float_format=float_format, na_rep=na_rep
            ), (float_format, na_rep)
    odd = pd.DataFrame({"a": [[1], [2]] * 300, "b": [0.5, 1.5] * 300})
    assert csv_text(odd, float_format="%.3f") == odd.to_csv(index=False, float_format="%.3f")
    mixed = pd.DataFrame({"a": [1, "1", 1.0, True] * 200, "b": np.arange(800)})
    assert csv_text(mixed) == mixed.to_csv(index=False)


@pytest.mark.parametrize("block", [1, 333, 100_000])
def test_hard_table_in_blocks_same_bytes(tmp_path, block: int) -> None:
    table = _hard_table(np.random.default_rng(3), 1500)
    path, other = tmp_path / "t.csv", tmp_path / "p.csv"
    write_csv(table, path, float_format="%.6g", na_rep="nan", block=block)
    table.to_csv(other, index=False, float_format="%.6g", na_rep="nan")
    assert path.read_bytes() == other.read_bytes()
