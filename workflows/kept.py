"""The picks an aggregate has just imported, kept instead of read back from the store.

A streamed import (:func:`picks.workflows.importing.import_file`) inserts a file chunk by
chunk; reading the million picks it wrote back (``Store.picks``: one Python object per cell)
cost ≈ 5 s at 1 M picks. :class:`KeptPicks` keeps the columns the aggregate's stages read
while the chunks stream into the store, and :meth:`KeptPicks.frame` gives what
``Store.picks`` would read: same columns, order, dtypes and values, SQLite's conversions
included (NaN and None → NULL → NaN or None, -0.0 → 0.0, TEXT). A source it cannot stand for
exactly (one stored before this run, or a chunk holding text columns that are not text) makes
:meth:`frame` return None, and the caller reads the store as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from picks.core.store import Store
from picks.core.store.frames import frame_from_columns

TEXT = ("tomogram", "particle")
FLOATS = ("x", "y", "z", "score", "rot", "tilt", "psi")
# the dtype a TEXT column read from the store gets (pandas' default for a list of str)
_TEXT_DTYPE = pd.Series(["text"]).dtype


class KeptPicks:
    """Per source id, the chunks of the picks this run stored (only ``columns``)."""

    def __init__(self, columns: Sequence[str]) -> None:
        self.columns = list(columns)
        self.chunks: dict[int, list[pd.DataFrame]] = {}
        self.labels: dict[int, tuple[str, str]] = {}  # source id -> (picker, role) as stored
        self.broken: set[int] = set()

    def collector(self) -> list[pd.DataFrame]:
        """A list for :func:`import_file`'s ``keep``: it holds only ``columns`` of each
        chunk (not the source lines a chunk also carries)."""
        return _Columns(self.columns)

    def add(self, source_id: int, picker: str, role: str, chunks: list[pd.DataFrame]) -> None:
        """Keep a stored source's chunks (in the order they were inserted)."""
        kept = []
        for part in chunks:
            for column in TEXT:
                if column not in part:
                    continue
                if isinstance(part[column].dtype, pd.StringDtype):
                    continue  # pandas text: every value present is a str
                values = part[column].to_numpy(dtype=object)
                if set(map(type, values.tolist())) <= {str, type(None)}:
                    continue  # (a quick test first)
                present = values[~pd.isna(values)]
                # SQLite's TEXT affinity turns a number into its own text: not reproduced here
                if any(type(v) is not str for v in present.tolist()):
                    self.broken.add(source_id)
            kept.append(part)
        self.chunks[source_id] = kept
        self.labels[source_id] = (picker, role)

    def frame(self, store: Store, source_ids: Sequence[int]) -> pd.DataFrame | None:
        """``store.picks(source_ids=..., columns=self.columns)`` from the kept chunks, or
        None when any of the sources was not kept whole."""
        ids = sorted(int(s) for s in source_ids)
        if not ids or any(s not in self.chunks or s in self.broken for s in ids):
            return None
        pick_ids, parts, owner = [], [], []
        for source_id in ids:
            stored = store.pick_ids(source_id)  # in insertion order: the chunks' order
            chunks = self.chunks[source_id]
            if len(stored) != sum(len(c) for c in chunks):
                return None  # not what this run inserted: read the store
            pick_ids.append(stored)
            parts.extend(chunks)
            owner.append(np.full(len(stored), source_id, dtype=np.int64))
        all_ids = np.concatenate(pick_ids)
        table = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
        source = np.concatenate(owner)
        order = None if np.all(all_ids[1:] > all_ids[:-1]) else np.argsort(all_ids, kind="stable")

        def take(values: np.ndarray) -> np.ndarray:
            return values if order is None else values[order]

        # Arrays, not lists: a Series of int64 (or of text) is what a list of Python ints
        # (or str) would give, without 2 M Python objects per column at once.
        columns: dict[str, object] = {"id": take(all_ids), "source_id": take(source)}
        pickers = {s: self.labels[s] for s in ids}
        src = take(source)
        owner_index = np.searchsorted(ids, src)
        for key, index in (("picker", 0), ("role", 1)):
            # a take of the few names, as the column of a million (the same dtype: the names
            # are inferred as the whole object column would be, without a million objects)
            names = pd.Series(np.array([pickers[s][index] for s in ids], dtype=object))
            columns[key] = names.take(owner_index).reset_index(drop=True)
        for column in self.columns:
            if column in ("id", "source_id"):
                continue
            series = table[column]
            if column in FLOATS:
                # NaN is stored as NULL (read as NaN), -0.0 comes back as 0.0
                columns[column] = take(series.to_numpy(dtype=float)) + 0.0
            elif column == "record":
                columns[column] = take(series.to_numpy(dtype=np.int64))
            elif series.dtype == _TEXT_DTYPE:
                # already pandas text (NaN for NULL, as a read gives): taken as it is
                kept = series if order is None else series.iloc[order]
                columns[column] = kept.reset_index(drop=True)
            else:
                values = take(series.to_numpy(dtype=object)).copy()
                values[pd.isna(values)] = None
                columns[column] = values
        return frame_from_columns(columns, floats=FLOATS)


class _Columns(list):
    """A list of chunks that keeps only some of their columns."""

    def __init__(self, columns: list[str]) -> None:
        super().__init__()
        self.columns = columns

    def append(self, chunk: pd.DataFrame) -> None:
        super().append(chunk[[c for c in self.columns if c in chunk]].copy())
