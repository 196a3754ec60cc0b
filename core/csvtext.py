"""CSV text of a DataFrame, byte for byte what ``DataFrame.to_csv(index=False, ...)`` writes, fast.

pandas formats every float of ``to_csv(float_format=...)`` through a Python call with a missing-
value test per cell (≈ 5 µs a cell): writing a million candidates, or hashing a million picks
(:func:`picks.core.picks.content_digest`), took longer than clustering them. Here each column is
formatted in one pass and the rows joined once. Only plain columns take this path (numpy
integers, booleans and floats; object columns of ``str``/``None``); anything else (categoricals,
dates, nullable integers, a single column, odd column names) is left to pandas, so the text is
always the one pandas writes. ``tests/test_csvtext.py`` compares the two over many tables.

A column of few distinct values (a class, a status, a support, a reason) is formatted once per
distinct value (its *codes* index its texts: pandas' ``factorize``, floats by their bits), and
neighbouring such columns are joined into one field per distinct combination before the rows
are: a candidates table's ten columns of decisions become one. The other columns' numbers are
formatted with their row, by one ``%`` per row (``"%d,%s,%.6g,..."``: the integers' ``str``, the
float format itself), which is what joining their texts would give, with no list per column.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

_SPECIAL = (",", '"', "\n", "\r")
# A column is coded (texts per distinct value) when a sample of its first rows repeats values:
# at most half of them distinct. Either way the text is the same; only the work differs.
_SAMPLE = 512


def _needs_quotes(text: str) -> bool:
    return any(c in text for c in _SPECIAL)


def _quote(text: str) -> str:
    """A field as the csv module writes it under QUOTE_MINIMAL (pandas' default)."""
    return '"' + text.replace('"', '""') + '"' if _needs_quotes(text) else text


class _Coded:
    """A column (or neighbouring columns, joined by commas) as ``texts[codes]``."""

    __slots__ = ("codes", "texts")

    def __init__(self, codes: np.ndarray, texts: list[str]) -> None:
        self.codes = codes  # int64, 0 <= code < len(texts)
        self.texts = texts

    def join(self, other: _Coded, limit: int) -> _Coded | None:
        """The two side by side, one text per combination present; None when there are more
        than ``limit`` combinations (nothing is saved by joining them first)."""
        pairs = self.codes * len(other.texts) + other.codes  # < rows × rows: no overflow
        codes, combos = pd.factorize(pairs)
        if len(combos) > limit:
            return None
        left, right = np.divmod(combos, len(other.texts))
        texts = [
            a + "," + b
            for a, b in zip(
                map(self.texts.__getitem__, left.tolist()),
                map(other.texts.__getitem__, right.tolist()),
                strict=True,
            )
        ]
        return _Coded(codes.astype(np.int64, copy=False), texts)

    def rows(self) -> list[str]:
        return np.array(self.texts, dtype=object)[self.codes].tolist()


class _Raw:
    """A column's values (Python objects) and the ``%`` format of one of its fields."""

    __slots__ = ("format", "values")

    def __init__(self, format: str, values: list) -> None:
        self.format = format
        self.values = values


# a float format that takes exactly one float and nothing else: put into the row's format
_ONE_FLOAT = re.compile(r"%[-+ #0]*[0-9]*(\.[0-9]+)?[eEfFgG]")


def _coded(values: np.ndarray | pd.Series) -> tuple[np.ndarray, list] | None:
    """``(codes, distinct values)`` of a column that repeats its values (judged on a sample of
    its first rows), else None. Missing values (objects, text) get code -1."""
    sample = values[:_SAMPLE]
    if len(pd.unique(sample)) * 2 > len(sample):
        return None
    codes, uniques = pd.factorize(values)
    return codes.astype(np.int64, copy=False), list(uniques.tolist())


def _with_missing(codes: np.ndarray, texts: list[str], na_rep: str) -> _Coded:
    """Codes -1 (missing) point at ``na_rep``, appended to the texts when needed."""
    if len(codes) and codes.min() < 0:
        codes = np.where(codes < 0, len(texts), codes)
        texts = [*texts, _quote(na_rep)]
    return _Coded(codes, texts)


def _column(series: pd.Series, float_format: str | None, na_rep: str) -> _Coded | _Raw | None:
    """One column's fields (coded, or values with their format), or None when pandas must
    format it."""
    dtype = series.dtype
    if isinstance(dtype, np.dtype):
        values = series.to_numpy()
        if dtype.kind in "iu":
            coded = _coded(values)
            if coded is None:
                return _Raw("%d", values.tolist())  # (str(v) of a Python int)
            codes, uniques = coded
            return _Coded(codes, list(map(str, uniques)))
        if dtype.kind == "b":
            return _Coded(values.astype(np.int64), ["False", "True"])
        # (a format without "%" is a str.format one to pandas: left to it)
        if dtype == np.float64 and isinstance(float_format, str) and "%" in float_format:
            return _floats(values, float_format, na_rep)
        if dtype.kind != "O":
            return None
    elif not isinstance(dtype, pd.StringDtype):
        return None
    else:
        # pandas' text (arrow): factorized as it is, without a Python object per row
        codes, uniques = pd.factorize(series)
        return _with_missing(codes.astype(np.int64, copy=False), _texts(uniques.tolist()), na_rep)
    values = series.to_numpy(dtype=object)
    try:
        coded = _coded(values)
    except TypeError:  # objects that cannot be hashed (lists): pandas' rules
        return None
    if coded is not None:
        texts = _texts(coded[1])
        return None if texts is None else _with_missing(coded[0], texts, na_rep)
    values = values.copy()
    missing = pd.isna(values)
    if set(map(type, values[~missing].tolist())) - {str}:
        return None  # numbers or objects in an object column: pandas' rules
    values[missing] = na_rep
    out = values.tolist()
    # one scan of all the text for a character that needs quotes (rarely there)
    if any(c in na_rep for c in _SPECIAL) or any(c in "\x00".join(out) for c in _SPECIAL):
        # quoted once per distinct text (a column such as "a,b,c" pickers repeats a few)
        quoted = {v: _quote(v) for v in dict.fromkeys(out)}
        out = list(map(quoted.__getitem__, out))
    return _Raw("%s", out)


def _texts(uniques: list) -> list[str] | None:
    """The fields of a text column's distinct values, or None when one is not a ``str``
    (numbers or objects in an object column: pandas' rules)."""
    if any(type(u) is not str for u in uniques):
        return None
    return [_quote(u) for u in uniques]


def _floats(values: np.ndarray, float_format: str, na_rep: str) -> _Coded | _Raw:
    """Each float as ``float_format`` gives it (NaN: ``na_rep``). A column of few distinct
    values (support, vote scores, a class's constant) formats each distinct value once:
    distinct by their bits, so that -0.0 ("-0") is not 0.0 ("0"). The others are formatted
    with their row (one ``%`` per row) when the format alone gives their text: a format of
    one float, no field to quote, and no NaN (or ``na_rep`` is the format's own "nan")."""
    coded = _coded(values.view(np.int64))
    quoted = _needs_quotes(float_format) or _needs_quotes(na_rep)  # (only their text can)
    inline = coded is None and not quoted and _ONE_FLOAT.fullmatch(float_format) is not None
    if inline and (float_format % float("nan") == na_rep or not np.isnan(values).any()):
        return _Raw(float_format, values.tolist())
    floats = values if coded is None else np.array(coded[1], dtype=np.int64).view(np.float64)
    texts = [na_rep if v != v else float_format % v for v in floats.tolist()]  # v != v: NaN
    if quoted:
        texts = [_quote(t) for t in texts]
    return _Raw("%s", texts) if coded is None else _Coded(coded[0], texts)


def _segments(columns: list, n_rows: int) -> list[_Raw]:
    """The columns' fields, neighbouring coded columns joined first (while they have at most
    half as many combinations as rows)."""
    out: list[_Raw] = []
    current: _Coded | None = None
    for column in columns:
        if isinstance(column, _Coded):
            joined = current.join(column, n_rows // 2) if current is not None else None
            if joined is not None:
                current = joined
                continue
            if current is not None:
                out.append(_Raw("%s", current.rows()))
            current = column
            continue
        if current is not None:
            out.append(_Raw("%s", current.rows()))
            current = None
        out.append(column)
    if current is not None:
        out.append(_Raw("%s", current.rows()))
    return out


def csv_text(
    frame: pd.DataFrame,
    *,
    float_format: str | None = None,
    na_rep: str = "",
    header: bool = True,
) -> str:
    """``frame.to_csv(index=False, float_format=..., na_rep=..., header=...)`` as text."""
    names = [str(c) for c in frame.columns]
    plain = (
        len(names) > 1
        and all(isinstance(c, str) and not _needs_quotes(c) for c in frame.columns)
        and frame.columns.is_unique
    )
    columns = [_column(frame[c], float_format, na_rep) for c in frame.columns] if plain else []
    if not plain or any(c is None for c in columns):
        return frame.to_csv(index=False, float_format=float_format, na_rep=na_rep, header=header)
    segments = _segments(columns, len(frame))
    head = ",".join(names) + "\n" if header else ""
    if len(segments) == 1 and segments[0].format == "%s":
        return head + "".join(text + "\n" for text in segments[0].values)
    # one format per row: the fields' texts (%s) and the raw numbers (%d, the float format)
    row = ",".join(s.format for s in segments) + "\n"
    fields = zip(*(s.values for s in segments), strict=True)
    return head + "".join([row % values for values in fields])


def write_csv(
    frame: pd.DataFrame,
    path: str | Path,
    *,
    float_format: str | None = None,
    na_rep: str = "",
    block: int = 100_000,
) -> None:
    """``frame.to_csv(path, index=False, ...)``, the same bytes (see :func:`csv_text`),
    ``block`` rows at a time: the text of a million rows is never whole in memory (each row
    is formatted on its own, so the blocks' texts joined are the whole table's)."""
    with open(path, "w", encoding="utf-8") as handle:  # as Path.write_text: "\n" is os.linesep
        for start in range(0, max(len(frame), 1), block):
            part = frame.iloc[start : start + block]
            handle.write(
                csv_text(part, float_format=float_format, na_rep=na_rep, header=start == 0)
            )
