"""The canonical pick table every adapter returns and every later stage consumes.

One row per pick, as a :class:`pandas.DataFrame` with exactly the columns in
:data:`COLUMNS`:

=================  ========  ==================================================================
column             dtype     meaning
=================  ========  ==================================================================
tomogram           str       tomogram name (matched against registered tomograms)
particle           str/None  particle class (e.g. ``ribosome``); ``None`` when the picker has none
x, y, z            float64   position in Ångström, full-tomogram frame: ``x = i × voxel_size``
                             where ``i`` is the 0-based voxel index along the MRC x axis (the
                             fastest axis), i.e. the origin is the *centre* of voxel 0
score              float64   picker confidence, NaN when the format has none
score_field        str/None  name of the field the score came from (scales differ per picker)
particle_field     str/None  name of the field the class came from
rot, tilt, psi     float64   orientation as ZYZ Euler angles in degrees (RELION convention), NaN
                             when the format has none
angle_convention   str/None  what the angles were in the source (e.g. ``relion-zyz``)
record             int64     where the pick is in the source: 1-based line number for text
                             files, 0-based element index otherwise (see ``record_kind``)
original           str       the source record as written (line text or JSON of the fields)
=================  ========  ==================================================================

The frame is the one copick, the CryoET Data Portal and the CZII metric use; see
``docs/conventions.md`` for how each format maps onto it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from picks.core.csvtext import csv_text

COORDS = ["x", "y", "z"]
ANGLES = ["rot", "tilt", "psi"]

COLUMNS: dict[str, str] = {
    "tomogram": "object",
    "particle": "object",
    "x": "float64",
    "y": "float64",
    "z": "float64",
    "score": "float64",
    "score_field": "object",
    "particle_field": "object",
    "rot": "float64",
    "tilt": "float64",
    "psi": "float64",
    "angle_convention": "object",
    "record": "int64",
    "original": "object",
}

_DEFAULTS: dict[str, Any] = {
    "particle": None,
    "score": np.nan,
    "score_field": None,
    "particle_field": None,
    "rot": np.nan,
    "tilt": np.nan,
    "psi": np.nan,
    "angle_convention": None,
    "original": "",
}


def empty() -> pd.DataFrame:
    """An empty canonical pick table with the right columns and dtypes."""
    return pd.DataFrame({c: pd.Series(dtype=d) for c, d in COLUMNS.items()})


def make(data: Mapping[str, Any] | pd.DataFrame, **constants: Any) -> pd.DataFrame:
    """Build a canonical table from columns, filling optional columns with their defaults.

    ``data`` must provide ``tomogram``, ``x``, ``y``, ``z`` and ``record`` (as columns or as
    keyword constants); everything else is optional. Extra columns are dropped.
    """
    frame = pd.DataFrame(dict(data)) if not isinstance(data, pd.DataFrame) else data.copy()
    n = len(frame)
    for key, value in constants.items():
        frame[key] = [value] * n if n else pd.Series(dtype=COLUMNS.get(key, "object"))
    missing = [c for c in ("tomogram", "x", "y", "z", "record") if c not in frame]
    if missing:
        raise ValueError(f"canonical pick table is missing required columns {missing}")
    for column, default in _DEFAULTS.items():
        if column not in frame:
            frame[column] = [default] * n if n else pd.Series(dtype=COLUMNS[column])
    return normalise(frame)


def normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """Return ``frame`` restricted to :data:`COLUMNS`, in order, with canonical dtypes."""
    out = frame.loc[:, list(COLUMNS)].copy()
    for column, dtype in COLUMNS.items():
        if column in ("tomogram", "original") and _all_text(out[column]):
            continue  # normalised already (a checked chunk): spare a pass over every value
        if dtype == "object":
            values = out[column].astype(object)
            out[column] = values.where(pd.notna(values), None)
            if column in ("tomogram", "original"):
                out[column] = out[column].map(lambda v: "" if v is None else str(v))
        else:
            out[column] = pd.to_numeric(out[column], errors="raise").astype(dtype)
    return out.reset_index(drop=True)


def _all_text(series: pd.Series) -> bool:
    """Whether a column is pandas text without a missing value (what normalise makes of
    ``tomogram`` and ``original``)."""
    return isinstance(series.dtype, pd.StringDtype) and not series.isna().any()


def validate(frame: pd.DataFrame) -> None:
    """Raise ``ValueError`` if ``frame`` is not a well-formed canonical table."""
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"missing columns {missing}")
    coords = frame[COORDS].to_numpy(dtype=float)
    if coords.size and not np.isfinite(coords).all():
        bad = int(np.flatnonzero(~np.isfinite(coords).all(axis=1))[0])
        raise ValueError(f"non-finite coordinate in record {frame['record'].iloc[bad]}")
    if (frame["tomogram"].astype(str) == "").any():
        raise ValueError("a pick has no tomogram name")


DIGEST_COLUMNS = ("record", "tomogram", "particle", "x", "y", "z", "score", "rot", "tilt", "psi")


def _digest_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns :func:`content_digest` hashes, rounded and sorted."""
    particle = frame["particle"].to_numpy(dtype=object).copy()
    particle[pd.isna(particle)] = ""
    if set(map(type, particle.tolist())) - {str}:
        particle = np.array([str(p) for p in particle.tolist()], dtype=object)
    table = pd.DataFrame(
        {
            "record": pd.to_numeric(frame["record"]).to_numpy(dtype="int64"),
            # object columns (not pandas' arrow text): sorted the same, hashed much faster
            "tomogram": pd.Series(
                frame["tomogram"].astype(str).to_numpy(dtype=object), dtype=object
            ),
            "particle": pd.Series(particle, dtype=object),
        }
    )
    for column in ("x", "y", "z", "score", "rot", "tilt", "psi"):
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
        table[column] = np.round(values, 4 if column in COORDS else 6) + 0.0  # no "-0"
    return table.sort_values(list(DIGEST_COLUMNS), kind="stable")


class ContentDigest:
    """:func:`content_digest` computed over the chunks of a streamed read, in order.

    The digest hashes the picks sorted by record (then the other columns). Chunks whose
    records all come after the previous chunks' (a text reader's line numbers) are hashed as
    they come, so memory stays one chunk. A chunk that breaks that order sets :attr:`broken`:
    the caller reads the file again with ``keep=True``, which keeps the (small) digest columns
    of every chunk and sorts them at the end. Either way the result equals ``content_digest``
    of all the chunks concatenated: a streamed import of a file is the same source as a
    one-shot one (re-importing it is a no-op).
    """

    def __init__(self, *, keep: bool = False) -> None:
        import hashlib

        self._hash = hashlib.sha256()
        self._header = True
        self._last: int | None = None
        self._kept: list[pd.DataFrame] | None = [] if keep else None
        self.broken = False

    def update(self, frame: pd.DataFrame) -> None:
        if not len(frame) or self.broken:
            return
        table = _digest_table(frame)
        if self._kept is not None:
            self._kept.append(table)
            return
        records = table["record"].to_numpy()
        if self._last is not None and int(records.min()) <= self._last:
            self.broken = True
            return
        self._last = int(records.max())
        self._emit(table)

    def _emit(self, table: pd.DataFrame) -> None:
        text = csv_text(table, header=self._header, float_format="%.6f", na_rep="nan")
        self._header = False
        self._hash.update(text.encode())

    def hexdigest(self) -> str:
        if self.broken:
            raise ValueError("chunks out of record order: digest them again with keep=True")
        if self._kept:
            tables, self._kept = self._kept, None
            self._emit(pd.concat(tables).sort_values(list(DIGEST_COLUMNS), kind="stable"))
        if self._header:  # no picks: the digest of the header alone, as content_digest's
            self._emit(_digest_table(empty()))
        return self._hash.hexdigest()[:16]


def content_digest(frame: pd.DataFrame) -> str:
    """A short hash of what an import produced: per record, the tomogram, class, position
    (to 1e-4 Å), score and angles. Two reads of the same bytes that give the same picks (an
    option the file did not need) hash alike; another binning, voxel size or class does not."""
    digest = ContentDigest()
    digest.update(frame)
    return digest.hexdigest()
