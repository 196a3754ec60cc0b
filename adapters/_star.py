"""The STAR format: one scanner for every STAR-family adapter, a sniffer and a writer.

Used by crYOLO (CBOX, STAR output), RELION 3–5, Warp/WarpTools, pytom-match-pick and STOPGAP;
what the RELION-family particle readers share beyond the format is in
:mod:`picks.adapters._relion_family`.

Reading (:func:`parse`, :func:`read_star`). ``data_NAME`` blocks, ``_key value`` pairs and
``loop_`` tables, each row checked against its loop's column count, so a truncated or
hand-broken row is an error naming its line. Fields are split on whitespace; single or double
quotes group a field with spaces; a field starting with ``#`` starts a comment (so do lines
starting with ``#``, and the ``#N`` index crYOLO and RELION put after column names). Values are
kept as the tokens written: names (tomograms, classes) are never retyped, so a tomogram called
``0002`` stays ``0002``; numbers are read from the tokens by :meth:`Table.numbers` with the
rules of :mod:`picks.adapters._fields` (``<NA>`` and the other :data:`~picks.adapters._fields.
NA_TOKENS` are missing values where a column may have them; anything else that is not a finite
number is an error naming line, column and token). Every row keeps its line number and text,
which become ``record`` and ``original``.

Streaming (:func:`scan_star`, :meth:`StarData.chunks`): the RELION 3/4/5 and pytom readers
scan the file line by line with the same checks but keep no rows of the particle loop (a loop
with a :data:`PARTICLE_LABELS` column), only their count and the lines of the first and last;
the rows are then read again, a chunk at a time, so a file of millions of particles is never
whole in memory. Blocks before and after the particle loop are kept whole (they are small:
optics groups, a general block); quoted fields with spaces and comments inside the loop are
read as the whole-file scan reads them.

Sniffing. :func:`read_head` reads only header lines; :func:`flavour` decides which STAR
dialect a file is from them, so the adapters never claim the same file:

==================  ===========================================================================
flavour             rule (first match wins)
==================  ===========================================================================
``stopgap``         block ``data_stopgap_motivelist``, or columns ``orig_x`` and ``tomo_num``
``relion5``         particle loop has ``rlnCenteredCoordinateXAngst`` (pytom's
                    ``--relion5-compat`` output included)
(none)              no ``rlnCoordinateX/Y/Z`` in any loop (tomograms.star, optimisation sets)
``pytom``           ``rlnLCCmax`` in the particle loop
``warp2``           ``rlnTomoName`` and (a ``data_general`` block or ``rlnTomoVisibleFrames``):
                    WarpTools writes both, RELION 4 neither, RELION 5 drops rlnCoordinate*
``relion4``         ``rlnTomoName``, or a pixel size (optics ``rlnTomoTiltSeriesPixelSize`` /
                    ``rlnMicrographPixelSize`` / ``rlnImagePixelSize``, or per-particle
                    ``rlnPixelSize`` / ``rlnDetectorPixelSize``)
``relion-named``    only ``rlnMicrographName`` links the tomogram and no pixel size is given:
                    RELION ≤3.0 style or crYOLO's STAR; relion4 claims it weakly (0.3) so that
                    ``cryolo-star`` (higher) wins bare coordinate lists
``bare``            coordinates with neither a tomogram link nor a pixel size: not ours (0)
==================  ===========================================================================

Writing (:func:`write_star`) uses the ``starfile`` package.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from picks.adapters._fields import numbered_lines, numbers, read_text
from picks.plugins.adapter import ReadContext, head

COORDS = ("rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ")
CENTRED = (
    "rlnCenteredCoordinateXAngst",
    "rlnCenteredCoordinateYAngst",
    "rlnCenteredCoordinateZAngst",
)
OPTICS_PIXEL = ("rlnTomoTiltSeriesPixelSize", "rlnMicrographPixelSize", "rlnImagePixelSize")
PARTICLE_PIXEL = ("rlnPixelSize", "rlnDetectorPixelSize", "rlnTomoTiltSeriesPixelSize")
# A loop with one of these columns holds particles: :func:`scan_star` streams it.
PARTICLE_LABELS = ("rlnCoordinateX", "rlnCenteredCoordinateXAngst")


# -- reading -------------------------------------------------------------------------------


@dataclass
class Table:
    """One ``loop_`` table: its columns and, for every row, line number, text and tokens."""

    block: str
    header_line: int
    columns: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    tokens: list[list[str]] = field(default_factory=list)
    # A streamed loop (:func:`scan_star`) keeps no rows, only their count and the lines of its
    # first and last row; :meth:`StarData.chunks` reads them.
    streamed: bool = False
    count: int = 0
    first_row: int = 0
    last_row: int = 0

    def __len__(self) -> int:
        return self.count if self.streamed else len(self.lines)

    def has(self, *labels: str) -> bool:
        return all(label in self.columns for label in labels)

    def require(self, ctx: ReadContext, labels: Iterable[str], what: str) -> None:
        """Error naming the missing columns (and what was found) unless all ``labels`` exist."""
        missing = [label for label in labels if label not in self.columns]
        if missing:
            raise ctx.error(
                f"the {what} (data_{self.block}) lacks column(s) {', '.join(missing)}; "
                f"found {', '.join(self.columns)}",
                line=self.header_line,
            )

    def strings(self, label: str) -> list[str]:
        """The raw tokens of a column (exactly as written, quotes removed)."""
        index = self.columns.index(label)
        return [row[index] for row in self.tokens]

    def numbers(
        self, ctx: ReadContext, label: str, *, allow_missing: bool = False, what: str | None = None
    ) -> np.ndarray:
        """A column as floats (:func:`picks.adapters._fields.numbers`); missing values (NaN)
        only when ``allow_missing``. ``what`` names the column in errors (default: its label)."""
        return numbers(self.strings(label), self.lines, ctx, what or label, allow_na=allow_missing)

    def xyz(self, ctx: ReadContext, labels: tuple[str, str, str]) -> np.ndarray:
        """Three columns as an (n, 3) array of floats."""
        return np.stack([self.numbers(ctx, label) for label in labels], axis=1)


@dataclass
class Block:
    """One ``data_NAME`` block: its ``_key value`` pairs and its loops, in file order."""

    name: str
    line: int
    pairs: dict[str, str] = field(default_factory=dict)
    loops: list[Table] = field(default_factory=list)


@dataclass
class StarData:
    """A scanned STAR file: its blocks by name (``""`` for a bare ``data_``)."""

    path: Path
    blocks: dict[str, Block]

    @property
    def tables(self) -> dict[str, Table]:
        """The first loop of every block that has one, by block name."""
        return {name: block.loops[0] for name, block in self.blocks.items() if block.loops}

    def find(self, label: str, prefer: tuple[str, ...] = ("particles",)) -> Table | None:
        """The first loop with column ``label``, looking in the ``prefer`` blocks first."""
        ordered = [self.blocks[n] for n in prefer if n in self.blocks] + [
            b for n, b in self.blocks.items() if n not in prefer
        ]
        for block in ordered:
            for table in block.loops:
                if label in table.columns:
                    return table
        return None

    def table_with(self, ctx: ReadContext, labels: tuple[str, ...], what: str) -> Table:
        """The loop holding ``labels[0]`` (``data_particles`` first), checked for all ``labels``."""
        table = self.find(labels[0])
        if table is None:
            found = "; ".join(
                f"data_{t.block}: {', '.join(t.columns)}" for t in self.tables.values()
            )
            raise ctx.error(f"no {what}: no loop has column {labels[0]} ({found or 'no loops'})")
        table.require(ctx, labels, what)
        return table

    def rows(self, ctx: ReadContext, labels: tuple[str, ...], what: str) -> Table | None:
        """:meth:`table_with`, or None (with a warning) when that table has no rows."""
        table = self.table_with(ctx, labels, what)
        if len(table) == 0:
            ctx.warn(f"the {what} has no rows")
            return None
        return table

    def chunks(self, table: Table, ctx: ReadContext, chunk_size: int) -> Iterator[Table]:
        """``table``'s rows, ``chunk_size`` at a time, as tables of their own (same block,
        header line and columns). A streamed table's rows are read from the file again, from
        its first row to its last: :func:`scan_star` has checked every line between them, so
        each non-blank, non-comment one is a row of this loop."""
        if not table.streamed:
            for start in range(0, len(table), chunk_size):
                stop = start + chunk_size
                yield dataclasses.replace(
                    table,
                    lines=table.lines[start:stop],
                    texts=table.texts[start:stop],
                    tokens=table.tokens[start:stop],
                )
            return
        part = Table(table.block, table.header_line, table.columns)
        for number, raw in numbered_lines(self.path, ctx):
            if number < table.first_row:
                continue
            stripped = raw.strip()
            if stripped and not stripped.startswith("#"):
                part.lines.append(number)
                part.texts.append(stripped)
                part.tokens.append(_tokens(stripped))
                if len(part.lines) >= chunk_size:
                    yield part
                    part = Table(table.block, table.header_line, table.columns)
            if number >= table.last_row:
                break
        if len(part):
            yield part


_TOKEN = re.compile(r"""'[^']*'|"[^"]*"|\S+""")


def _tokens(text: str) -> list[str]:
    """Whitespace-separated fields; quotes group; a field starting with ``#`` ends the line."""
    if "'" not in text and '"' not in text and "#" not in text:
        return text.split()  # what the pattern finds on such a line, several times faster
    out = []
    for token in _TOKEN.findall(text):
        if token.startswith("#"):
            break
        out.append(token[1:-1] if len(token) > 1 and token[0] == token[-1] in "'\"" else token)
    return out


def _block_name(stripped: str) -> str:
    rest = stripped[5:]
    return rest.split()[0] if rest.strip() else ""


class _Scanner:
    """The line-by-line state of a STAR scan (:func:`parse`, :func:`scan_star`).

    Every problem (data before the first block, a block named twice, a key without value, data
    outside a loop, a row whose field count differs from its loop's) is an
    :class:`~picks.core.errors.InputFormatError` naming the line. A loop whose columns
    ``streamed`` picks keeps no rows: they are checked and counted only.
    """

    def __init__(self, ctx: ReadContext, streamed: Callable[[list[str]], bool] | None = None):
        self.ctx, self.streamed = ctx, streamed
        self.blocks: dict[str, Block] = {}
        self.block: Block | None = None
        self.loop: Table | None = None
        self.in_header = False
        self.content = False  # a line that is not blank

    def feed(self, number: int, raw: str) -> None:
        ctx = self.ctx
        stripped = raw.strip()
        if not stripped:
            return
        self.content = True
        if stripped.startswith("#"):
            return
        loop = self.loop
        if stripped.startswith("data_"):
            name = _block_name(stripped)
            if name in self.blocks:
                raise ctx.error(f"block data_{name} appears twice", line=number)
            self.block = self.blocks[name] = Block(name, number)
            self.loop, self.in_header = None, False
            return
        block = self.block
        if block is None:
            raise ctx.error(
                f"expected a data_ block before {stripped[:40]!r}: not a STAR file", line=number
            )
        if stripped.startswith("loop_"):
            self.loop, self.in_header = Table(block.name, number), True
            block.loops.append(self.loop)
            return
        if stripped.startswith("_"):
            if loop is not None and self.in_header:
                loop.columns.append(stripped.split()[0][1:])
                return
            fields = _tokens(stripped)
            if len(fields) < 2:
                raise ctx.error(f"{fields[0]} has no value", line=number)
            block.pairs[fields[0][1:]] = " ".join(fields[1:])
            self.loop = None  # a key-value pair ends a loop
            return
        if loop is None or not loop.columns:
            raise ctx.error(f"data outside a loop_ table: {stripped[:60]!r}", line=number)
        if self.in_header:
            self.in_header = False
            loop.streamed = self.streamed is not None and self.streamed(loop.columns)
        fields = _tokens(stripped)
        if len(fields) != len(loop.columns):
            raise ctx.error(
                f"expected {len(loop.columns)} fields (one per column of data_ loop at line "
                f"{loop.header_line}), found {len(fields)}: truncated or malformed row",
                line=number,
            )
        if loop.streamed:
            loop.count += 1
            loop.first_row = loop.first_row or number
            loop.last_row = number
            return
        loop.lines.append(number)
        loop.texts.append(stripped)
        loop.tokens.append(fields)


def parse(text: str, ctx: ReadContext) -> StarData:
    """Scan STAR text: blocks, pairs and loops, with the line number of everything (errors as
    :class:`_Scanner` raises them)."""
    scanner = _Scanner(ctx)
    for number, raw in enumerate(text.splitlines(), start=1):
        scanner.feed(number, raw)
    return StarData(Path(ctx.path), scanner.blocks)


def read_star(path: Path, ctx: ReadContext) -> StarData:
    """Read and scan a STAR file of the RELION family (one loop per block)."""
    text = read_text(path, ctx)
    if not text.strip():
        raise ctx.error(
            "empty file; expected a STAR file (data_ blocks with a loop_ table)", line=1
        )
    return _checked(parse(text, ctx), ctx)


def scan_star(path: Path, ctx: ReadContext, streamed: tuple[str, ...]) -> StarData:
    """:func:`read_star` line by line, keeping no rows of the loops that have a column of
    ``streamed`` (the particles): every line is checked as :func:`read_star` checks it, and
    those loops' rows are read later, a chunk at a time (:meth:`StarData.chunks`). Memory is
    the other loops (optics, a RELION 5 file's general block) and one chunk."""

    def is_streamed(columns: list[str]) -> bool:
        return any(label in columns for label in streamed)

    scanner = _Scanner(ctx, is_streamed)
    for number, raw in numbered_lines(path, ctx):
        scanner.feed(number, raw)
    if not scanner.content:
        raise ctx.error(
            "empty file; expected a STAR file (data_ blocks with a loop_ table)", line=1
        )
    return _checked(StarData(Path(ctx.path), scanner.blocks), ctx)


def _checked(star: StarData, ctx: ReadContext) -> StarData:
    if not star.blocks:
        raise ctx.error("no data_ block: this is not a STAR file", line=1)
    for name, block in star.blocks.items():
        if len(block.loops) > 1:
            raise ctx.error(
                f"block data_{name} holds {len(block.loops)} loop_ tables; expected one",
                line=block.loops[1].header_line,
            )
    return star


# -- sniffing -------------------------------------------------------------------------------


@dataclass
class Head:
    """Block names with the labels (pair keys and columns) seen in a file's first bytes, and
    the columns of each loop in file order."""

    blocks: dict[str, list[str]]
    loops: list[list[str]] = field(default_factory=list)

    def labels(self) -> set[str]:
        return {label for labels in self.blocks.values() for label in labels}

    def particle_labels(self) -> list[str] | None:
        for name in sorted(self.blocks, key=lambda n: n != "particles"):
            labels = self.blocks[name]
            if "rlnCenteredCoordinateXAngst" in labels or "rlnCoordinateX" in labels:
                return labels
        return None


# Sniffing stops at the first loop holding coordinates, or after this many bytes: a RELION 5
# file may carry one optics row per tomogram before its particle header.
SNIFF_LIMIT = 1 << 20
_POSITION_LABELS = ("rlnCoordinateX", "rlnCenteredCoordinateXAngst", "orig_x")


def read_head(path: Path) -> Head | None:
    """Block names and labels up to the first loop with coordinates (None if not STAR-like).

    Only header lines are kept; data rows are skipped without being parsed, so this stays cheap
    on large files.
    """
    first = head(path)
    if "data_" not in first:
        return None
    blocks: dict[str, list[str]] = {}
    loops: list[list[str]] = []
    current: list[str] | None = None
    loop: list[str] | None = None
    seen = 0
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as handle:
            for raw in handle:
                seen += len(raw)
                stripped = raw.strip()
                if stripped.startswith("data_"):
                    current, loop = blocks.setdefault(_block_name(stripped), []), None
                elif stripped.startswith("loop_"):
                    loop = []
                    loops.append(loop)
                elif stripped.startswith("_") and current is not None:
                    current.append(stripped.split()[0][1:])
                    if loop is not None:
                        loop.append(stripped.split()[0][1:])
                elif stripped and not stripped.startswith("#"):
                    loop = None  # a data row ends the loop's header
                    if any(label in (current or ()) for label in _POSITION_LABELS):
                        break  # first data row of the coordinate loop: the header is complete
                if seen > SNIFF_LIMIT:
                    break
    except OSError:
        return None
    return Head(blocks, loops) if blocks else None


def flavour(path: Path) -> str | None:
    """Which STAR dialect ``path`` is (see the module docstring); None when not STAR-family."""
    found = read_head(path)
    if found is None:
        return None
    labels = found.labels()
    if "stopgap_motivelist" in found.blocks or {"orig_x", "tomo_num"} <= labels:
        return "stopgap"
    particle = found.particle_labels()
    if particle is None:
        return None
    if "rlnCenteredCoordinateXAngst" in particle:
        return "relion5"
    if not set(COORDS) <= set(particle):
        return None
    if "rlnLCCmax" in particle:
        return "pytom"
    if "rlnTomoName" in particle and (
        "general" in found.blocks or "rlnTomoVisibleFrames" in particle
    ):
        return "warp2"
    optics = found.blocks.get("optics", [])
    has_pixel = any(label in optics for label in OPTICS_PIXEL) or any(
        label in particle for label in PARTICLE_PIXEL
    )
    if "rlnTomoName" in particle or has_pixel:
        return "relion4"
    if "rlnMicrographName" in particle:
        return "relion-named"
    return "bare"


# -- writing --------------------------------------------------------------------------------


def write_star(path: Path, blocks: dict[str, pd.DataFrame | dict], comment: str) -> None:
    """Write STAR blocks with starfile (10 significant digits), under a fixed comment line.

    starfile's own banner carries the time of writing; it is replaced so that the same picks
    always give the same bytes.
    """
    from starfile.writer import StarWriter

    writer = StarWriter(blocks, None, float_format="%.10g", separator="\t", na_rep="nan")
    lines = list(writer.lines())[1:]
    Path(path).write_text("\n".join([f"# {comment}", *lines]) + "\n", encoding="utf-8")
