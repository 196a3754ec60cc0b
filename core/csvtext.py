"""CSV text of a DataFrame, byte for byte what ``DataFrame.to_csv(index=False, ...)`` writes, fast.

pandas formats every float of ``to_csv(float_format=...)`` through a Python call with a missing-
value test per cell (≈ 5 µs a cell): writing a million candidates, or hashing a million picks
(:func:`picks.core.picks.content_digest`), took longer than clustering them. Here each column is
formatted in one pass (``"%.6g" % value`` over a list) and the rows joined once. Only plain
columns take this path (numpy integers, booleans and floats; object columns of ``str``/``None``);
anything else (categoricals, dates, nullable integers, a single column, odd column names) is
left to pandas, so the text is always the one pandas writes. ``tests/test_csvtext.py`` compares
the two over many tables.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

_SPECIAL = (",", '"', "\n", "\r")


def _needs_quotes(text: str) -> bool:
    return any(c in text for c in _SPECIAL)


def _quote(text: str) -> str:
    """A field as the csv module writes it under QUOTE_MINIMAL (pandas' default)."""
    return '"' + text.replace('"', '""') + '"' if _needs_quotes(text) else text


def _column(series: pd.Series, float_format: str | None, na_rep: str) -> list[str] | None:
    """One column's fields, or None when pandas must format it."""
    dtype = series.dtype
    if isinstance(dtype, np.dtype):
        values = series.to_numpy()
        if dtype.kind in "iu":
            return list(map(str, values.tolist()))
        if dtype.kind == "b":
            return ["True" if v else "False" for v in values.tolist()]
        if dtype == np.float64 and float_format is not None:
            return _floats(values, float_format, na_rep)
        if dtype.kind != "O":
            return None
    elif not isinstance(dtype, pd.StringDtype):
        return None
    values = series.to_numpy(dtype=object, copy=True)  # one conversion (arrow text too)
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
    return out


def _floats(values: np.ndarray, float_format: str, na_rep: str) -> list[str]:
    """Each float as ``float_format`` gives it (NaN: ``na_rep``). A column of few distinct
    values (support, vote scores, a class's constant) formats each distinct value once."""
    distinct, inverse = np.unique(values, return_inverse=True)  # NaNs: one entry, last
    # -0.0 and 0.0 are one distinct value but two texts ("-0", "0"): formatted one by one
    if len(distinct) * 4 > len(values) or np.signbit(values[values == 0]).any():
        return [na_rep if v != v else float_format % v for v in values.tolist()]  # v != v: NaN
    texts = np.array(
        [na_rep if v != v else float_format % v for v in distinct.tolist()], dtype=object
    )
    return texts[inverse.ravel()].tolist()


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
    lines = [",".join(names)] if header else []
    lines.extend(map(",".join, zip(*columns, strict=True)))
    return "\n".join(lines) + "\n" if lines else ""


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
