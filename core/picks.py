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

import operator
from collections.abc import Mapping
from itertools import repeat
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
    filled = set()  # columns made canonical here
    for key, value in constants.items():
        if n and COLUMNS.get(key) == "object" and key not in _TEXT and _plain(value):
            # what normalise makes of [value] * n: an object column, without the text dtype
            # pandas would infer first
            frame[key] = _filled(n, value, frame.index)
            filled.add(key)
            continue
        frame[key] = [value] * n if n else pd.Series(dtype=COLUMNS.get(key, "object"))
    missing = [c for c in ("tomogram", "x", "y", "z", "record") if c not in frame]
    if missing:
        raise ValueError(f"canonical pick table is missing required columns {missing}")
    for column, default in _DEFAULTS.items():
        if column in frame:
            continue
        if n and column not in _TEXT:
            # what normalise makes of [default] * n (NaN: float64; None: an object column)
            frame[column] = _filled(n, default, frame.index)
            filled.add(column)
            continue
        frame[column] = [default] * n if n else pd.Series(dtype=COLUMNS[column])
    return _normalise(frame, filled)


def _filled(n: int, value: Any, index: pd.Index) -> pd.Series:
    """A column of ``n`` times ``value`` (``None``, text or NaN) with its canonical dtype."""
    if isinstance(value, float):
        return pd.Series(np.full(n, value), index=index)
    return pd.Series(np.full(n, value, dtype=object), index=index, dtype=object)


_TEXT = ("tomogram", "original")
# pandas 3 always copies on write: a selection of columns changes independently of its frame
_COPY_ON_WRITE = int(pd.__version__.split(".")[0]) >= 3


def _plain(value: object) -> bool:
    return value is None or type(value) is str


def normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """Return ``frame`` restricted to :data:`COLUMNS`, in order, with canonical dtypes."""
    return _normalise(frame, set())


def _normalise(frame: pd.DataFrame, canonical: set[str]) -> pd.DataFrame:
    """:func:`normalise`; the columns in ``canonical`` are known to be canonical already."""
    out = frame.loc[:, list(COLUMNS)]
    if not _COPY_ON_WRITE:  # (with copy on write the selection acts as a copy already)
        out = out.copy()
    for column, dtype in COLUMNS.items():
        if column in canonical:
            continue
        series = out[column]
        if column in _TEXT:
            if _all_text(series):
                continue  # normalised already (a checked chunk): spare a pass over every value
        elif series.dtype == dtype and (dtype != "object" or _none_for_missing(series)):
            continue  # normalised already: the conversions below would give the same values
        if dtype == "object":
            values = out[column].astype(object)
            out[column] = values.where(pd.notna(values), None)
            if column in ("tomogram", "original"):
                out[column] = out[column].map(lambda v: "" if v is None else str(v))
        else:
            out[column] = pd.to_numeric(out[column], errors="raise").astype(dtype)
    return out.reset_index(drop=True)


def _none_for_missing(series: pd.Series) -> bool:
    """Whether every missing value of an object column is ``None`` (what normalise puts)."""
    values = series.to_numpy()
    if set(map(type, values.tolist())) <= {str, type(None)}:
        return True  # (a quick test first: no value of these types is missing but None)
    missing = values[pd.isna(values)].tolist()
    return all(map(operator.is_, missing, repeat(None)))


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


def _digest_columns(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The columns :func:`content_digest` hashes, rounded, in the frame's order."""
    particle = frame["particle"].to_numpy(dtype=object).copy()
    particle[pd.isna(particle)] = ""
    if set(map(type, particle.tolist())) - {str}:
        particle = np.array([str(p) for p in particle.tolist()], dtype=object)
    columns = {
        "record": _digest_records(frame),
        # object columns (not pandas' arrow text): sorted the same, hashed much faster
        "tomogram": frame["tomogram"].astype(str).to_numpy(dtype=object),
        "particle": particle,
    }
    for column in _DIGEST_FLOATS:
        columns[column] = _digest_floats(frame, column)
    return columns


_DIGEST_FLOATS = ("x", "y", "z", "score", "rot", "tilt", "psi")


def _digest_floats(frame: pd.DataFrame, column: str) -> np.ndarray:
    values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
    return np.round(values, 4 if column in COORDS else 6) + 0.0  # no "-0"


def _digest_records(frame: pd.DataFrame) -> np.ndarray:
    return pd.to_numeric(frame["record"]).to_numpy(dtype="int64")


def _sorted_table(columns: dict[str, np.ndarray]) -> pd.DataFrame:
    """The digest columns as a table sorted by record (then the other columns)."""
    table = pd.DataFrame({c: pd.Series(columns[c], dtype=columns[c].dtype) for c in columns})
    return table.sort_values(list(DIGEST_COLUMNS), kind="stable")


def _digest_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns :func:`content_digest` hashes, rounded and sorted."""
    return _sorted_table(_digest_columns(frame))


def _digest_text(table: pd.DataFrame, header: bool) -> bytes:
    """What the digest hashes of a sorted table: its CSV text (``%.6f``, NaN ``nan``)."""
    return csv_text(table, header=header, float_format="%.6f", na_rep="nan").encode()


# -- the digest's CSV text, vectorised ----------------------------------------------------------
# The text :func:`_digest_text` gives, built as bytes by numpy for tables whose values are plain
# (text without characters CSV quotes, floats below 2**33 on the 6-decimal grid): each field
# is written into a fixed-width slot of a row of bytes, 0 where a slot has no character, and
# the 0 bytes are dropped at the end. Anything else is left to csv_text.
_SPECIAL = (",", '"', "\n", "\r", "\x00")  # CSV quotes the first four; 0 is our filler
_POW10 = 10 ** np.arange(19, dtype=np.int64)
# "00" .. "99" as the 2-byte (native order) integers their ASCII text is
_PAIRS = np.array([[48 + i // 10, 48 + i % 10] for i in range(100)], dtype=np.uint8).view(
    np.uint16
)[:, 0]
_NAN = np.frombuffer(b"nan", dtype=np.uint8)
_FLOAT_LIMIT = 2.0**33  # below it, a value on the 6-decimal grid prints as its grid point


def _digits(values: np.ndarray, width: int) -> np.ndarray:
    """Non-negative int64 ``values`` (below 10**width) as ``width`` ASCII digits each, with
    leading zeros: (N, width) bytes."""
    pairs = (width + 1) // 2
    out = np.empty((len(values), pairs), dtype=np.uint16)
    rest = values
    for at in range(pairs - 1, -1, -1):  # two digits at a time
        rest, pair = np.divmod(rest, 100)
        out[:, at] = _PAIRS[pair]
    return out.view(np.uint8)[:, 2 * pairs - width :]


def _int_bytes(values: np.ndarray, negative: np.ndarray | None) -> np.ndarray:
    """Non-negative int64 ``values`` as their decimal digits, right-aligned in (N, width)
    bytes after a sign slot (``-`` where ``negative``); 0 bytes where there is no character."""
    width = len(str(int(values.max()))) if len(values) else 1
    out = np.zeros((len(values), width + 1), dtype=np.uint8)
    out[:, 1:] = _digits(values, width)
    for at in range(1, width):  # leading zeros are no characters (a lone 0 stays)
        out[:, at] *= (values >= _POW10[width - at]).view(np.uint8)
    if negative is not None:
        out[negative, 0] = ord("-")
    return out


def _fixed6_bytes(values: np.ndarray) -> np.ndarray | None:
    """``"%.6f" % v`` (``nan`` for NaN) of float64 ``values``, as (N, width) bytes; None when a
    value is not plain (infinite, over 2**33, or not printed exactly by its nearest 6-decimal
    grid point)."""
    missing = np.isnan(values)
    if missing.all():
        return np.broadcast_to(_NAN, (len(values), 3))
    magnitude = np.where(missing, 0.0, np.abs(values))
    if not (magnitude < _FLOAT_LIMIT).all():
        return None
    scaled = np.rint(magnitude * 1e6)
    # magnitude is the double nearest scaled / 10**6 and below 2**33, so within half a unit
    # of its last place (< 5e-7) of it: "%.6f" prints that grid point (no tie)
    if not (scaled / 1e6 == magnitude).all():
        return None
    whole, fraction = np.divmod(scaled.astype(np.int64), 1_000_000)
    head = _int_bytes(whole, np.signbit(values) & ~missing)
    width = head.shape[1]
    out = np.empty((len(values), width + 7), dtype=np.uint8)
    out[:, :width] = head
    out[:, width] = ord(".")
    out[:, width + 1 :] = _digits(fraction, 6)
    if missing.any():
        out[missing] = 0
        out[missing, :3] = _NAN
    return out


def _text_bytes(codes: np.ndarray, texts: list) -> np.ndarray | None:
    """Text ``texts[code]`` (code -1: empty) as UTF-8 bytes, left-aligned in (N, width)
    bytes; None when a text is not ``str`` or holds a character CSV quotes (or a NUL)."""
    if any(type(t) is not str for t in texts):
        return None
    if any(c in "\x01".join(texts) for c in _SPECIAL):
        return None
    try:
        encoded = [t.encode() for t in texts]
    except UnicodeEncodeError:
        return None
    # one row per text, and a last one of no bytes (code -1)
    table = np.zeros((len(encoded) + 1, max(map(len, encoded), default=0)), dtype=np.uint8)
    for row, text in enumerate(encoded):
        table[row, : len(text)] = np.frombuffer(text, dtype=np.uint8)
    return table[codes]


def _plain_digest_text(frame: pd.DataFrame, record: np.ndarray, header: bool) -> bytes | None:
    """:func:`_digest_text` of :func:`_digest_table` of a frame whose records (``record``,
    as :func:`_digest_columns` reads them) ascend, or None when a value is not plain."""
    if record.min() == np.iinfo(np.int64).min:
        return None
    # the tomogram's text (as _digest_columns: astype(str)), each distinct one encoded once
    codes, names = pd.factorize(frame["tomogram"].astype(str))
    if (codes < 0).any():
        return None  # a missing name ("nan" in csv_text): left to it
    tomogram = _text_bytes(codes, list(names))
    # the class: missing is "" (as _digest_columns)
    values = frame["particle"].to_numpy(dtype=object)
    codes, names = pd.factorize(values)
    if not np.array_equal(codes < 0, pd.isna(values)):
        return None  # (factorize and isna disagree on what is missing: left to csv_text)
    particle = _text_bytes(codes, list(names))
    pieces = [_int_bytes(np.abs(record), record < 0), tomogram, particle]
    pieces += [_fixed6_bytes(_digest_floats(frame, column)) for column in _DIGEST_FLOATS]
    if any(piece is None for piece in pieces):
        return None
    rows = np.zeros((len(record), sum(p.shape[1] + 1 for p in pieces)), dtype=np.uint8)
    at = 0
    for piece in pieces:
        rows[:, at : at + piece.shape[1]] = piece
        at += piece.shape[1]
        rows[:, at] = ord(",")
        at += 1
    rows[:, -1] = ord("\n")
    text = rows.tobytes().translate(None, b"\x00")
    return (",".join(DIGEST_COLUMNS) + "\n").encode() + text if header else text


class ContentDigest:
    """:func:`content_digest` computed over the chunks of a streamed read, in order.

    The digest hashes the picks sorted by record (then the other columns). Chunks whose
    records all come after the previous chunks' (a text reader's line numbers) are hashed as
    they come, so memory stays one chunk. A chunk that breaks that order sets :attr:`broken`:
    the caller reads the file again with ``keep=True``, which keeps the (small) digest columns
    of every chunk and sorts them at the end. Either way the result equals ``content_digest``
    of all the chunks concatenated: a streamed import of a file is the same source as a
    one-shot one (re-importing it is a no-op).

    What is hashed is the CSV text of the sorted columns (:func:`_digest_text`); a chunk
    whose records ascend is in that order already, and its text is built by numpy
    (:func:`_plain_digest_text`) when its values are plain.
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
        if self._kept is not None:
            self._kept.append(_digest_table(frame))
            return
        records = _digest_records(frame)
        if self._last is not None and int(records.min()) <= self._last:
            self.broken = True
            return
        self._last = int(records.max())
        text = None
        if (records[1:] > records[:-1]).all():  # sorted already (records are distinct)
            text = _plain_digest_text(frame, records, self._header)
        if text is None:
            text = _digest_text(_digest_table(frame), self._header)
        self._header = False
        self._hash.update(text)

    def _emit(self, table: pd.DataFrame) -> None:
        self._hash.update(_digest_text(table, self._header))
        self._header = False

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
