"""Shared parts of the STAR-family adapters: RELION 3–5, Warp/WarpTools, pytom-match-pick, STOPGAP.

Reading. Values are read with the ``starfile`` package; a layout scan (blocks, loops, the
field count of every row) runs first, so a truncated or hand-broken row is an error naming its
line, and every pick keeps the line it came from (``record``) and its text (``original``).
Names (tomograms, classes) are taken from the raw tokens, never from starfile's typed columns,
which would turn a tomogram called ``0002`` into the number 2.

Sniffing. One function, :func:`flavour`, decides which STAR dialect a file is from its header
lines (up to the first loop with coordinates), so the adapters never claim the same file:

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

Options understood by every STAR-family reader: ``score_column=LABEL`` (which column is the
score; default per adapter) and ``class_column=LABEL`` (take the particle class from that
column, e.g. ``rlnClassNumber``; default: ``--particle``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from picks.adapters._euler import relion_angles, relion_matrix
from picks.core import picks as canonical
from picks.plugins.adapter import ReadContext, head

COORDS = ("rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ")
CENTRED = (
    "rlnCenteredCoordinateXAngst",
    "rlnCenteredCoordinateYAngst",
    "rlnCenteredCoordinateZAngst",
)
ANGLES = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")
SUBTOMO_ANGLES = ("rlnTomoSubtomogramRot", "rlnTomoSubtomogramTilt", "rlnTomoSubtomogramPsi")
ORIGINS_ANGST = ("rlnOriginXAngst", "rlnOriginYAngst", "rlnOriginZAngst")
ORIGINS_PX = ("rlnOriginX", "rlnOriginY", "rlnOriginZ")
OPTICS_PIXEL = ("rlnTomoTiltSeriesPixelSize", "rlnMicrographPixelSize", "rlnImagePixelSize")
PARTICLE_PIXEL = ("rlnPixelSize", "rlnDetectorPixelSize", "rlnTomoTiltSeriesPixelSize")
# Scores in order of preference: a picker's figure of merit (what picks' own writers use), then
# RELION's refinement confidence, then pytom's template-matching peak.
SCORES = ("rlnAutopickFigureOfMerit", "rlnMaxValueProbDistribution", "rlnLCCmax")
RELION_CONVENTION = "relion-zyz"
# What starfile reads as missing (its na_values) plus common spellings.
NA_TOKENS = frozenset({"<NA>", "nan", "NaN", "NAN", "NA", "None"})


# -- reading -------------------------------------------------------------------------------


@dataclass
class Table:
    """One ``loop_`` table: starfile's typed values plus the line and text of every row."""

    block: str
    header_line: int
    columns: list[str]
    frame: pd.DataFrame
    lines: list[int]
    texts: list[str]
    tokens: list[list[str]]

    def __len__(self) -> int:
        return len(self.lines)

    def has(self, *labels: str) -> bool:
        return all(label in self.columns for label in labels)

    def require(self, ctx: ReadContext, labels: tuple[str, ...] | list[str], what: str) -> None:
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

    def numbers(self, ctx: ReadContext, label: str, *, allow_missing: bool = False) -> np.ndarray:
        """A column as floats; text (or, unless ``allow_missing``, NaN) is an error naming the line."""
        values = pd.to_numeric(self.frame[label], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values)
        if allow_missing:
            bad &= ~np.isin(np.asarray(self.strings(label), dtype=object), list(NA_TOKENS))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            token = self.strings(label)[row]
            raise ctx.error(f"{label} = {token!r} is not a number", line=self.lines[row])
        return values


@dataclass
class StarData:
    """A parsed STAR file: loop tables and key/value blocks, by block name."""

    path: Path
    tables: dict[str, Table]
    pairs: dict[str, dict[str, str]]

    def table_with(self, ctx: ReadContext, labels: tuple[str, ...], what: str) -> Table:
        """The loop holding ``labels[0]`` (``data_particles`` first), checked for all ``labels``."""
        ordered = sorted(self.tables.values(), key=lambda t: t.block != "particles")
        for table in ordered:
            if labels[0] in table.columns:
                table.require(ctx, labels, what)
                return table
        found = "; ".join(f"data_{t.block}: {', '.join(t.columns)}" for t in self.tables.values())
        raise ctx.error(f"no {what}: no loop has column {labels[0]} ({found or 'no loops'})")


@dataclass
class _Loop:
    columns: list[str]
    header_line: int
    rows: list[tuple[int, str, list[str]]] = field(default_factory=list)


@dataclass
class _Block:
    pairs: dict[str, str] = field(default_factory=dict)
    loops: list[_Loop] = field(default_factory=list)


_TOKEN = re.compile(r"""'[^']*'|"[^"]*"|\S+""")


def _tokens(text: str) -> list[str]:
    """Whitespace-separated fields; quotes group; a field starting with ``#`` ends the line."""
    out = []
    for token in _TOKEN.findall(text):
        if token.startswith("#"):
            break
        out.append(token[1:-1] if len(token) > 1 and token[0] == token[-1] in "'\"" else token)
    return out


def _layout(text: str, ctx: ReadContext) -> dict[str, _Block]:
    """Blocks, loops and rows (with line numbers), checking every row's field count."""
    blocks: dict[str, _Block] = {}
    block: _Block | None = None
    loop: _Loop | None = None
    in_header = False
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("data_"):
            name = stripped[5:].split()[0] if stripped[5:].strip() else ""
            if name in blocks:
                raise ctx.error(f"block data_{name} appears twice", line=number)
            block = blocks[name] = _Block()
            loop, in_header = None, False
            continue
        if block is None:
            raise ctx.error(
                f"expected a data_ block before {stripped[:40]!r}: not a STAR file", line=number
            )
        if stripped.startswith("loop_"):
            loop, in_header = _Loop([], number), True
            block.loops.append(loop)
            continue
        if stripped.startswith("_"):
            if loop is not None and in_header:
                loop.columns.append(stripped.split()[0][1:])
                continue
            fields = _tokens(stripped)
            if len(fields) < 2:
                raise ctx.error(f"{fields[0]} has no value", line=number)
            block.pairs[fields[0][1:]] = " ".join(fields[1:])
            loop = None
            continue
        if loop is None or not loop.columns:
            raise ctx.error(f"data outside a loop_ table: {stripped[:60]!r}", line=number)
        in_header = False
        fields = _tokens(stripped)
        if len(fields) != len(loop.columns):
            raise ctx.error(
                f"expected {len(loop.columns)} fields (one per column of data_ loop at line "
                f"{loop.header_line}), found {len(fields)}: truncated or malformed row",
                line=number,
            )
        loop.rows.append((number, stripped, fields))
    return blocks


def _read_text(path: Path, ctx: ReadContext) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise ctx.error("not a text file (bytes that are not UTF-8)", line=line) from None


def read_star(path: Path, ctx: ReadContext) -> StarData:
    """Parse a STAR file; every problem is an :class:`InputFormatError` naming file and line."""
    import starfile

    text = _read_text(path, ctx)
    if not text.strip():
        raise ctx.error(
            "empty file; expected a STAR file (data_ blocks with a loop_ table)", line=1
        )
    blocks = _layout(text, ctx)
    if not blocks:
        raise ctx.error("no data_ block: this is not a STAR file", line=1)
    try:
        typed = starfile.read(path, always_dict=True)
    except Exception as exc:  # starfile raises pandas/ValueError/TypeError with useful text
        raise ctx.error(f"cannot be read as STAR ({type(exc).__name__}: {exc})") from None
    tables: dict[str, Table] = {}
    pairs: dict[str, dict[str, str]] = {}
    for name, block in blocks.items():
        pairs[name] = dict(block.pairs)
        if not block.loops:
            continue
        if len(block.loops) > 1:
            raise ctx.error(
                f"block data_{name} holds {len(block.loops)} loop_ tables; expected one",
                line=block.loops[1].header_line,
            )
        loop = block.loops[0]
        frame = typed.get(name)
        if (
            not isinstance(frame, pd.DataFrame)
            or len(frame) != len(loop.rows)
            or list(frame.columns) != loop.columns
        ):
            raise ctx.error(
                f"block data_{name} could not be read consistently (malformed rows or quotes)",
                line=loop.header_line,
            )
        tables[name] = Table(
            block=name,
            header_line=loop.header_line,
            columns=list(loop.columns),
            frame=frame.reset_index(drop=True),
            lines=[row[0] for row in loop.rows],
            texts=[row[1] for row in loop.rows],
            tokens=[row[2] for row in loop.rows],
        )
    return StarData(path, tables, pairs)


def optics_column(
    star: StarData, particles: Table, ctx: ReadContext, label: str
) -> np.ndarray | None:
    """Per-particle values of optics column ``label`` (via ``rlnOpticsGroup``), or None."""
    optics = star.tables.get("optics")
    if optics is None or label not in optics.columns or len(optics) == 0:
        return None
    values = optics.numbers(ctx, label)
    if not particles.has("rlnOpticsGroup"):
        if len(optics) == 1:
            return np.full(len(particles), values[0])
        raise ctx.error(
            f"data_optics has {len(optics)} groups but the particles have no rlnOpticsGroup",
            line=particles.header_line,
        )
    optics.require(ctx, ["rlnOpticsGroup"], "optics table")
    by_group = dict(zip(optics.numbers(ctx, "rlnOpticsGroup"), values, strict=True))
    groups = particles.numbers(ctx, "rlnOpticsGroup")
    out = np.empty(len(particles))
    for row, group in enumerate(groups):
        if group not in by_group:
            raise ctx.error(
                f"rlnOpticsGroup {group:g} is not in data_optics "
                f"(groups {', '.join(f'{g:g}' for g in by_group)})",
                line=particles.lines[row],
            )
        out[row] = by_group[group]
    return out


def positive(ctx: ReadContext, table: Table, values: np.ndarray, label: str) -> np.ndarray:
    """Check pixel sizes are > 0 (a 0 pixel size is a common placeholder)."""
    bad = ~(values > 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ctx.error(
            f"{label} = {values[row]:g}; a pixel size must be > 0", line=table.lines[row]
        )
    return values


def user_pixel_size(
    ctx: ReadContext,
    table: Table,
    sizes: np.ndarray | None,
    source: str | None,
    tomograms: list[str],
) -> tuple[np.ndarray, str]:
    """The pixel size (Å) of every row's coordinates, and where it came from.

    ``--voxel-size`` overrides the file (with a warning when they disagree). A file without
    one falls back to the registered tomogram's voxel size × ``--binning``, exactly like a
    voxel format (a :class:`~picks.core.errors.MissingVoxelSize` error when that is unknown
    too). ``--binning`` does not apply to files that state their own pixel size; it is ignored
    with a warning.
    """
    if ctx.binning not in (1, 1.0) and sizes is not None and not ctx.voxel_size:
        ctx.warn(f"--binning {ctx.binning:g} ignored: the file gives its pixel size ({source})")
    if ctx.voxel_size:
        if sizes is not None and np.any(np.abs(sizes - ctx.voxel_size) > 1e-3 * ctx.voxel_size):
            found = ", ".join(f"{v:g}" for v in np.unique(sizes)[:5])
            ctx.warn(
                f"--voxel-size {ctx.voxel_size:g} Å overrides the file's pixel size "
                f"({source} = {found} Å)"
            )
        return np.full(len(table), float(ctx.voxel_size)), "--voxel-size"
    if sizes is None:
        picked = {name: ctx.voxel_sizes(name)[0] for name in dict.fromkeys(tomograms)}
        return np.array([picked[name] for name in tomograms], dtype=float), "registered tomogram"
    return sizes, str(source)


def orientation(
    table: Table, ctx: ReadContext
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """(rot, tilt, psi, A_subtomogram) of every particle in the tomogram frame.

    RELION 5 may store a per-particle pre-rotation of the extracted box
    (``rlnTomoSubtomogramRot/Tilt/Psi``); the orientation in the tomogram is then
    ``A = A_subtomogram · A_particle`` (``ParticleSet::getMatrix3x3``), which is what is
    returned. Angles are NaN when the file has none (all three labels are needed).
    """
    n = len(table)
    sub = None
    if table.has(*SUBTOMO_ANGLES):
        sub = relion_matrix(*(table.numbers(ctx, label) for label in SUBTOMO_ANGLES))
    if table.has(*ANGLES):
        rot, tilt, psi = (table.numbers(ctx, label) for label in ANGLES)
        if sub is not None:
            rot, tilt, psi = relion_angles(sub @ relion_matrix(rot, tilt, psi))
        return rot, tilt, psi, sub
    if sub is not None:
        rot, tilt, psi = relion_angles(sub)
        return rot, tilt, psi, sub
    nan = np.full(n, np.nan)
    return nan, nan.copy(), nan.copy(), None


def origins(
    table: Table, ctx: ReadContext, sub: np.ndarray | None
) -> tuple[np.ndarray, str | None]:
    """Per-particle origin shifts (n×3) rotated into the tomogram frame, and their unit.

    RELION's position is ``coordinate − A_subtomogram · origin`` (``ParticleSet::getPosition``):
    ``rlnOrigin*Angst`` are Å (RELION ≥ 3.1), ``rlnOriginX/Y/Z`` pixels (RELION 3.0, TOMOMAN).
    """
    if table.has(*ORIGINS_ANGST):
        labels, unit = ORIGINS_ANGST, "angstrom"
    elif table.has(*ORIGINS_PX):
        labels, unit = ORIGINS_PX, "pixel"
    else:
        return np.zeros((len(table), 3)), None
    shifts = np.stack([table.numbers(ctx, label) for label in labels], axis=1)
    if sub is not None:
        shifts = np.einsum("nij,nj->ni", sub, shifts)
    return shifts, unit


def scores(
    table: Table, ctx: ReadContext, candidates: tuple[str, ...] = SCORES
) -> tuple[np.ndarray, str | None]:
    """The score column (``--option score_column=LABEL`` or the first candidate present)."""
    chosen = ctx.options.get("score_column")
    if chosen:
        if chosen not in table.columns:
            raise ctx.error(
                f"--option score_column={chosen}: no such column; found {', '.join(table.columns)}",
                line=table.header_line,
            )
    else:
        chosen = next((c for c in candidates if c in table.columns), None)
    if chosen is None:
        return np.full(len(table), np.nan), None
    return table.numbers(ctx, chosen, allow_missing=True), chosen


def classes(table: Table, ctx: ReadContext) -> tuple[list[str | None], str | None]:
    """Particle classes: ``--option class_column=LABEL`` or ``--particle`` for every pick."""
    column = ctx.options.get("class_column")
    if not column:
        return [ctx.particle_name(None)] * len(table), None
    if column not in table.columns:
        raise ctx.error(
            f"--option class_column={column}: no such column; found {', '.join(table.columns)}",
            line=table.header_line,
        )
    labels = []
    for token in table.strings(column):
        labels.append(None if token in NA_TOKENS else ctx.particle_name(_tidy_number(token)))
    return labels, column


def _tidy_number(token: str) -> str:
    """``"2.000000"`` -> ``"2"`` (class numbers are written as floats by some programs)."""
    try:
        value = float(token)
    except ValueError:
        return token
    return str(int(value)) if np.isfinite(value) and value == int(value) else token


def resolve_names(raw: list[str], ctx: ReadContext) -> list[str]:
    """Registered tomogram name for every raw name (each distinct name resolved once)."""
    cache: dict[str, str] = {}
    return [cache.setdefault(name, ctx.resolve_tomogram(name)) for name in raw]


def build(
    table: Table,
    tomograms: list[str],
    xyz: np.ndarray,
    *,
    score: np.ndarray,
    score_field: str | None,
    particle: list[str | None],
    particle_field: str | None,
    angles: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    convention: str | None,
) -> pd.DataFrame:
    """The canonical pick table for ``table``'s rows (record = line, original = line text)."""
    data = {
        "tomogram": tomograms,
        "particle": particle,
        "x": xyz[:, 0],
        "y": xyz[:, 1],
        "z": xyz[:, 2],
        "score": score,
        "record": table.lines,
        "original": table.texts,
    }
    has_angles = angles is not None and bool(np.isfinite(np.asarray(angles[0])).any())
    if has_angles:
        data.update(rot=angles[0], tilt=angles[1], psi=angles[2])
    return canonical.make(
        data,
        score_field=score_field,
        particle_field=particle_field,
        angle_convention=convention if has_angles else None,
    )


# -- sniffing -------------------------------------------------------------------------------


@dataclass
class Head:
    """Block names and column labels seen in a file's first bytes."""

    blocks: dict[str, list[str]]

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
    current: list[str] | None = None
    seen = 0
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            for raw in handle:
                seen += len(raw)
                stripped = raw.strip()
                if stripped.startswith("data_"):
                    name = stripped[5:].split()[0] if stripped[5:].strip() else ""
                    current = blocks.setdefault(name, [])
                elif stripped.startswith("_") and current is not None:
                    current.append(stripped.split()[0][1:])
                elif (
                    stripped
                    and not stripped.startswith(("#", "loop_"))
                    and any(label in (current or ()) for label in _POSITION_LABELS)
                ):
                    break  # first data row of the coordinate loop: the header is complete
                if seen > SNIFF_LIMIT:
                    break
    except OSError:
        return None
    return Head(blocks) if blocks else None


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


def particle_names(picks: pd.DataFrame) -> list[str]:
    """``rlnTomoParticleName`` values: ``<tomogram>/<consensus_id>``, else ``<tomogram>/<n>``.

    The consensus id is used when every pick has one (so ``picks audit`` can follow a RELION
    particle back); otherwise picks are numbered from 1 within each tomogram, as RELION does.
    """
    tomograms = picks["tomogram"].astype(str).to_numpy()
    ids = picks.get("consensus_id")
    if ids is not None and ids.notna().all():
        return [f"{t}/{_tidy_number(str(i))}" for t, i in zip(tomograms, ids, strict=True)]
    counters: dict[str, int] = {}
    names = []
    for tomogram in tomograms:
        counters[tomogram] = counters.get(tomogram, 0) + 1
        names.append(f"{tomogram}/{counters[tomogram]}")
    return names


def writable_angles(picks: pd.DataFrame) -> bool:
    """Angles are written only when every pick has them (RELION cannot read NaN angles)."""
    angles = picks[list(canonical.ANGLES)].to_numpy(dtype=float)
    return bool(len(picks)) and bool(np.isfinite(angles).all())
