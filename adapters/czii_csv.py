"""CZII CryoET Object Identification submission CSV (what YOLO-style Kaggle pipelines write).

Convention (``shared/reference/formats.md`` §4; the organisers' ``score.py``):

* header ``id,experiment,particle_type,x,y,z`` (an optional ``score`` column is kept);
* ``experiment`` is the tomogram (run) name, ``particle_type`` one of the six CZII classes;
* ``x, y, z`` are **Ångström** in the copick frame, i.e. voxel index × voxel size with the
  origin at the centre of voxel 0 — already the canonical frame, so no conversion is applied.

Trap: submitting voxel indices instead of Å (the real file in
``fixtures/formats/czii_kaggle_submission/submission_voxel_grid_not_angstrom.csv`` does this).
The reader warns when every coordinate would fit inside the tomogram *in voxels* (or, with no
tomogram registered, when the whole set spans less than 1,000 Å). ``--option units=voxel``
reads such a file as voxels and converts it with the tomogram's voxel size.

Writer (``layout="file"``, one CSV for all tomograms): ``id`` (0..N−1, the row number the metric
expects), ``experiment``, ``particle_type`` (empty for picks without a class), ``x, y, z`` in Å
with 4 decimals, then ``score`` when any pick has one and ``consensus_id``/``support`` when the
picks carry them (the metric ignores extra columns).
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from itertools import repeat
from pathlib import Path

import numpy as np
import pandas as pd

from picks.adapters._fields import NA_TOKENS, number, read_text
from picks.adapters._options import units_are_voxels
from picks.core import picks as canonical
from picks.core.csvtext import write_csv
from picks.plugins.adapter import CHUNK_ROWS, Adapter, ReadContext, WriteContext, head

REQUIRED = ("experiment", "particle_type", "x", "y", "z")
# Smallest plausible tomogram edge in Å when nothing is registered to compare with.
MIN_PLAUSIBLE_EXTENT = 1000.0


class CziiCsvAdapter(Adapter):
    name = "czii-csv"
    picker = "YOLO / CZII submission"
    patterns = ("*.csv",)
    extension = ".csv"
    layout = "file"
    class_field = "required"  # particle_type is what the CZII metric scores by

    def sniff(self, path: Path) -> float:
        first = head(path).splitlines()[:1]
        if not first:
            return 0.0
        columns = {c.strip().lower() for c in first[0].split(",")}
        return 0.9 if set(REQUIRED) <= columns else 0.0

    def read(self, path: Path, ctx: ReadContext) -> pd.DataFrame:
        # one code path for both: the whole file is one (large) chunk
        chunks = list(self.read_chunks(path, ctx, chunk_size=sys.maxsize))
        return chunks[0] if len(chunks) == 1 else pd.concat(chunks, ignore_index=True)

    def read_chunks(
        self, path: Path, ctx: ReadContext, chunk_size: int = CHUNK_ROWS
    ) -> Iterator[pd.DataFrame]:
        """The file line by line (never whole in memory), ``chunk_size`` picks at a time."""
        try:
            # newline=None: CR-only and CRLF endings read as lines (as points-csv reads them);
            # utf-8-sig: a byte order mark (Excel's "CSV UTF-8") is not content
            with open(path, encoding="utf-8-sig", newline=None) as handle:
                lines = _Lines(handle)
                reader = csv.reader(lines)
                try:
                    yield from self._read_rows(reader, lines, ctx, chunk_size)
                except csv.Error as exc:
                    # a field over csv's limit (131,072 characters), a quote left open...
                    raise ctx.error(
                        f"not a valid CSV line ({exc})", line=max(lines.number, 1)
                    ) from None
        except UnicodeDecodeError:
            read_text(path, ctx)  # raises the error naming the line of the bad bytes
            raise

    def _read_rows(
        self, reader, lines: _Lines, ctx: ReadContext, chunk_size: int
    ) -> Iterator[pd.DataFrame]:
        first = next(reader, None)
        blank = first is None or all(not f.strip() for f in first)
        # a blank first line: the file is empty if every line is (else the header is missing)
        if blank and (first is None or all(all(not f.strip() for f in r) for r in reader)):
            raise ctx.error(
                "empty file; expected a header 'id,experiment,particle_type,x,y,z'", line=1
            )
        header = [c.strip() for c in first]
        lower = [c.lower() for c in header]
        missing = [c for c in REQUIRED if c not in lower]
        if missing:
            raise ctx.error(f"header lacks column(s) {missing}; found {header}", line=1)
        index = {c: lower.index(c) for c in lower}
        columns = [index[c] for c in ("experiment", "particle_type", "x", "y", "z")]
        score_at = index.get("score")
        has_score = score_at is not None
        rows = _Rows()
        voxels = units_are_voxels(ctx.options, "angstrom")
        extent = _Extent()
        while lines.fill():
            # a block of plain lines is split at once (the fields csv.reader gives them)
            block = _plain_block(lines, len(header), columns, score_at)
            if block is not None:
                rows.extend(block)
                while len(rows.record) >= chunk_size:
                    chunk, rows = rows.split(chunk_size)
                    yield self._convert(chunk.frame(ctx, has_score), ctx, voxels, extent)
                continue
            # anything else line by line, as csv.reader reads it, to the end of the block
            while lines.pending():
                fields = next(reader, None)
                if fields is None:
                    break
                lineno = lines.number  # the physical line (a quoted field may span lines)
                if not fields or all(not f.strip() for f in fields):
                    continue
                if len(fields) != len(header):
                    rows.frame(ctx, has_score)  # an earlier line's error comes first
                    raise ctx.error(
                        f"expected {len(header)} fields, found {len(fields)}", line=lineno
                    )
                rows.add(fields, columns, score_at, lineno)
                if len(rows.record) >= chunk_size:
                    yield self._convert(rows.frame(ctx, has_score), ctx, voxels, extent)
                    rows = _Rows()
        if rows.record or not extent.seen:
            yield self._convert(rows.frame(ctx, has_score), ctx, voxels, extent)
        if not voxels:
            extent.warn_if_voxels(ctx)

    @staticmethod
    def _convert(
        frame: pd.DataFrame, ctx: ReadContext, voxels: bool, extent: _Extent
    ) -> pd.DataFrame:
        extent.seen = True
        if voxels:
            return ctx.voxels_to_angstrom(frame)
        extent.add(frame)
        return frame

    def write(self, picks: pd.DataFrame, path: Path, ctx: WriteContext) -> None:
        out = pd.DataFrame(
            {
                "id": np.arange(len(picks)),
                "experiment": picks["tomogram"].to_numpy(),
                "particle_type": picks["particle"].fillna("").to_numpy(),
                "x": picks["x"].to_numpy(dtype=float),
                "y": picks["y"].to_numpy(dtype=float),
                "z": picks["z"].to_numpy(dtype=float),
            }
        )
        if picks["score"].notna().any():
            out["score"] = picks["score"].to_numpy(dtype=float)
        for extra in ("consensus_id", "support"):
            if extra in picks:
                out[extra] = picks[extra].to_numpy()
        write_csv(out, path, float_format="%.4f")  # to_csv's bytes, faster


class _Rows:
    """The raw fields of one chunk's lines, as lists of strings (parsed a column at a time)."""

    FIELDS = ("tomogram", "particle", "x", "y", "z", "score", "record", "original")

    def __init__(self) -> None:
        self.tomogram: list[str] = []
        self.particle: list[str] = []
        self.x: list[str] = []
        self.y: list[str] = []
        self.z: list[str] = []
        self.score: list[str] = []
        self.record: list[int] = []
        self.original: list[str] = []

    def extend(self, block: _Rows) -> None:
        for name in _Rows.FIELDS:
            getattr(self, name).extend(getattr(block, name))

    def split(self, n: int) -> tuple[_Rows, _Rows]:
        """The first ``n`` lines, and the rest."""
        head, rest = _Rows(), _Rows()
        for name in _Rows.FIELDS:
            values = getattr(self, name)
            setattr(head, name, values[:n])
            setattr(rest, name, values[n:])
        return head, rest

    def add(self, fields: list[str], columns: list[int], score_at: int | None, line: int) -> None:
        experiment, particle, x, y, z = columns
        self.tomogram.append(fields[experiment].strip())
        self.particle.append(fields[particle])
        self.x.append(fields[x].strip())
        self.y.append(fields[y].strip())
        self.z.append(fields[z].strip())
        self.score.append(fields[score_at].strip() if score_at is not None else "")
        self.record.append(line)
        self.original.append(",".join(fields))

    def frame(self, ctx: ReadContext, has_score: bool) -> pd.DataFrame:
        """The canonical table of these lines. Numbers are parsed a column at a time; a bad one
        is an error naming its line: the first bad line, and on it the first bad field, as a
        line-by-line reader finds it."""
        parsed = {}
        bad = np.zeros(len(self.record), dtype=bool)
        for axis in ("x", "y", "z", "score"):
            tokens = np.array(getattr(self, axis), dtype=object)
            values = np.array(pd.to_numeric(tokens, errors="coerce"), dtype=float)
            unread = ~np.isfinite(values)
            if axis == "score" and unread.any():  # an empty score or a missing-value token
                rows = np.flatnonzero(unread)  # is no score
                empty = pd.Series(tokens[rows], dtype=object)
                unread[rows] = ~(empty.eq("") | empty.isin(NA_TOKENS)).to_numpy()
            parsed[axis] = (values, unread)
            bad |= unread
        for row in np.flatnonzero(bad):
            for axis, (values, unread) in parsed.items():
                if unread[row]:
                    token = getattr(self, axis)[row]
                    line = self.record[row]
                    values[row] = number(token, ctx, line, axis, allow_na=axis == "score")
        # one look-up per distinct label and tomogram name, not per line
        particles, labels = _codes(self.particle)
        names = np.array([ctx.particle_name(raw) for raw in labels], dtype=object)
        tomograms, seen = _codes(self.tomogram)
        resolved = ctx.resolve_tomograms(seen)  # in the order they first appear
        return canonical.make(
            {
                # the text column pandas makes of the names, line by line
                "tomogram": pd.Series(pd.Series(resolved).array.take(tomograms))
                if len(tomograms)
                else [],
                # text and None as an object column: what make gives it (not text first)
                "particle": pd.Series(names[particles], dtype=object),
                **{axis: parsed[axis][0] for axis in ("x", "y", "z", "score")},
                "record": np.array(self.record, dtype=np.int64),
                "original": self.original,
            },
            particle_field="particle_type",
            score_field="score" if has_score else None,
        )


def _shared(values: list[str]) -> list[str]:
    """``values`` with equal texts as one object (names repeat on every line: later passes
    over them touch a few objects, not one per line)."""
    first: dict[str, str] = {}
    return list(map(first.setdefault, values, values))


def _codes(values: list[str]) -> tuple[np.ndarray, list[str]]:
    """Each value's index into the distinct values, which are in the order they first appear."""
    codes, distinct = pd.factorize(np.array(values, dtype=object), use_na_sentinel=False)
    return codes, list(distinct)


# Lines read from the file at a time (the fast path splits them together).
BLOCK_LINES = 16_384
# What a plain block holds: printable ASCII, tabs and line ends; no quote (csv.reader would
# unquote), no other control character (csv.reader's NUL, str.strip's other whitespace).
_PLAIN = bytes([ord("\t"), ord("\n"), *range(0x20, 0x7F)]).replace(b'"', b"")


class _Lines:
    """The lines of a text file (newlines translated), read ``BLOCK_LINES`` at a time: handed
    to csv.reader one by one (it iterates this), or taken a block at a time by the fast path.
    :attr:`number` counts the lines handed out: the physical line of the last one.

    Lines are read from the file one by one, as csv.reader read them: bytes that are not
    UTF-8 raise when the line they are in is reached (after the lines before it are used),
    so errors come in the order a line-by-line read gives them."""

    def __init__(self, handle) -> None:
        self.handle = handle
        self.block: list[str] = []
        self.at = 0  # lines of the block handed out
        self.number = 0
        self.failure: UnicodeDecodeError | None = None

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self.at < len(self.block):
            line = self.block[self.at]
            self.at += 1
        else:
            self._raise()
            line = next(self.handle)
        self.number += 1
        return line

    def _raise(self) -> None:
        if self.failure is not None:
            failure, self.failure = self.failure, None
            raise failure

    def pending(self) -> bool:
        """Whether lines of the block are still to be handed out."""
        return self.at < len(self.block)

    def fill(self) -> bool:
        """Read the next block if this one is used up; False at the end of the file."""
        if self.pending():
            return True
        self._raise()
        block: list[str] = []
        try:
            for line in self.handle:
                block.append(line)
                if len(block) == BLOCK_LINES:
                    break
        except UnicodeDecodeError as exc:
            if not block:
                raise
            self.failure = exc  # raised once the lines before it are used
        self.block, self.at = block, 0
        return bool(block)

    def take(self) -> list[str]:
        """The rest of the block, handed out at once."""
        lines = self.block[self.at :]
        self.at = len(self.block)
        self.number += len(lines)
        return lines


def _plain_block(
    lines: _Lines, width: int, columns: list[int], score_at: int | None
) -> _Rows | None:
    """The rest of the block as :class:`_Rows` when every line is plain, with the fields
    ``csv.reader`` gives it: printable ASCII (no quote), ``width`` fields, under csv's field
    size limit; blank lines are skipped. Then the block is taken; otherwise None, and nothing
    is taken (csv.reader reads it)."""
    rest = lines.block[lines.at :]
    text = "".join(rest)
    if not text.isascii() or text.encode("ascii").translate(None, _PLAIN):
        return None  # (what is left once the plain characters are deleted is not plain)
    # without quotes and control characters csv.reader's fields are the line split at commas
    body = text[:-1] if text.endswith("\n") else text
    originals = body.split("\n")
    if max(map(len, originals)) >= csv.field_size_limit():
        return None
    first = lines.number + 1
    numbers: list[int] | range = range(first, first + len(originals))
    commas = width - 1
    counts = list(map(str.count, originals, repeat(",")))
    experiment, particle, x, y, z = columns
    if counts.count(commas) != len(counts):
        # blank lines (all fields blank: only spaces, tabs and commas) are skipped
        kept = [i for i, line in enumerate(originals) if line.strip(" \t,")]
        if any(counts[i] != commas for i in kept):
            return None  # a line of another width: csv.reader's path names it
        originals = [originals[i] for i in kept]
        numbers = [first + i for i in kept]
        body = "\n".join(originals)
        if not originals:
            lines.take()
            return _Rows()
    flat = body.replace("\n", ",").split(",")
    padded = " " in text or "\t" in text

    def column(at: int, strip: bool = True) -> list[str]:
        values = flat[at::width]
        return list(map(str.strip, values)) if strip and padded else values

    block = _Rows()
    block.x = column(x)
    if "" in block.x:
        return None  # a line with no x: csv.reader's path names it
    block.tomogram = _shared(column(experiment))
    block.particle = _shared(column(particle, strip=False))
    block.y = column(y)
    block.z = column(z)
    block.score = column(score_at) if score_at is not None else [""] * len(originals)
    block.record = list(numbers)
    block.original = originals
    lines.take()
    return block


class _Extent:
    """The largest coordinates seen, per tomogram and overall, for the voxel warning, which
    judges the whole file (not each chunk)."""

    def __init__(self) -> None:
        self.seen = False
        self.largest = np.zeros(3)
        self.maxima: dict[str, np.ndarray] = {}

    def add(self, frame: pd.DataFrame) -> None:
        if frame.empty:
            return
        coords = frame[["x", "y", "z"]]
        self.largest = np.maximum(self.largest, coords.abs().max().to_numpy())
        for name, top in coords.groupby(frame["tomogram"]).max().iterrows():
            known = self.maxima.get(name)
            top = top.to_numpy()
            self.maxima[name] = top if known is None else np.maximum(known, top)

    def warn_if_voxels(self, ctx: ReadContext) -> None:
        if not self.maxima:
            return
        tomo = None
        for name in sorted(self.maxima):
            tomo = ctx.tomograms.get(str(name))
            if (
                tomo is not None
                and tomo.shape is not None
                and tomo.voxel_size
                and tomo.voxel_size > 1.5
                and (self.maxima[name] <= np.asarray(tomo.shape) + 1).all()
            ):
                ctx.warn(
                    f"every coordinate of tomogram {name!r} fits inside its size in voxels "
                    f"{tomo.shape}: the values look like voxels, not Å. If so, re-import "
                    "with `options` units=voxel"
                )
                return
        # as a one-shot read judged it: by the last tomogram (in name order)
        if tomo is None and self.largest.max() < MIN_PLAUSIBLE_EXTENT:
            ctx.warn(
                f"the largest coordinate is {self.largest.max():g}, less than "
                f"{MIN_PLAUSIBLE_EXTENT:g} Å: the values look like voxels, not Å. If so, "
                "re-import with `options` units=voxel and `voxel_size` or `tomograms`"
            )
