"""Query results as DataFrames, column by column.

``DataFrame.from_records`` over a million rows builds a 2-D object array and infers every
column from it; the float columns are then parsed again by ``pd.to_numeric``. Transposing
the rows (``zip(*rows)``, in C) and building the float columns straight into ``float64``
arrays gives the same frame (same dtypes, same values) in a fraction of the time.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Sequence

import numpy as np
import pandas as pd


def read_frame(cursor: sqlite3.Cursor, floats: Collection[str] = ()) -> pd.DataFrame:
    """All rows of ``cursor`` as a DataFrame named by its columns; ``floats`` become
    ``float64`` (NULL and text that is not a number -> NaN, as ``pd.to_numeric(...,
    errors="coerce")``); every other column is inferred as ``from_records`` would."""
    names = [d[0] for d in cursor.description]
    rows = cursor.fetchall()
    if not rows:
        frame = pd.DataFrame.from_records(rows, columns=names)
        for name in floats:
            if name in frame:
                frame[name] = frame[name].astype(float)
        return frame
    return frame_from_columns(dict(zip(names, zip(*rows, strict=True), strict=True)), floats)


def read_frame_blocks(
    cursor: sqlite3.Cursor, floats: Collection[str] = (), block: int = 200_000
) -> pd.DataFrame:
    """:func:`read_frame` for millions of rows: fetched ``block`` rows at a time, the float
    columns parsed per block and every other value shared between the rows that hold it
    (a query makes a new str per row and cell: two text columns of 2 M rows were ≈ 400 MB
    of Python objects at once). Same frame as :func:`read_frame`."""
    names = [d[0] for d in cursor.description]
    parts: dict[str, list[np.ndarray]] = {name: [] for name in names}
    shared: dict[object, object] = {}
    while rows := cursor.fetchmany(block):
        for name, values in zip(names, zip(*rows, strict=True), strict=True):
            if name in floats:
                parts[name].append(_floats(values))
            else:
                part = np.empty(len(values), dtype=object)
                part[:] = [shared.setdefault(v, v) for v in values]
                parts[name].append(part)
        del rows
    if not parts[names[0]]:
        return read_frame(cursor, floats)  # no rows: the empty frame read_frame gives
    columns = {}
    for name in names:
        joined = np.concatenate(parts.pop(name))
        # a list (of the same, shared objects) is inferred as a query's tuple is (an object
        # array of ints would stay object)
        columns[name] = joined if name in floats else joined.tolist()
    return frame_from_columns(columns, floats)


def frame_from_columns(columns: dict[str, Sequence], floats: Collection[str] = ()) -> pd.DataFrame:
    """A frame from column values as a query gives them (Python objects: None for NULL),
    with :func:`read_frame`'s dtypes. A float column may come as a ``float64`` array."""
    data: dict[str, object] = {}
    for name, values in columns.items():
        if name in floats:
            data[name] = values if isinstance(values, np.ndarray) else _floats(values)
        else:
            data[name] = pd.Series(values)
    return pd.DataFrame(data)


def _floats(values: tuple) -> np.ndarray:
    try:
        # None -> NaN; numbers (and numeric text, as to_numeric reads it) -> float
        return np.array(values, dtype=float)
    except (TypeError, ValueError):  # text that is not a number: NaN, as to_numeric coerces
        return pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float)
