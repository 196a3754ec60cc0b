"""What the RELION-family particle readers and writers share (RELION 3–5, Warp/WarpTools,
pytom-match-pick, STOPGAP); the STAR format itself is :mod:`picks.adapters._star`.

* Pixel sizes: per-particle values from the optics table (:func:`optics_column`), checked to
  be > 0 (:func:`positive`), and the rule for ``--voxel-size``/``--binning`` against the file's
  own pixel size (:func:`user_pixel_size`: the file's value is used unless ``--voxel-size``
  overrides it).
* Orientation (:func:`orientation`): ``rlnAngleRot/Tilt/Psi`` composed with a RELION 5
  subtomogram pre-rotation; origin shifts (:func:`origins`, :func:`origin_pixels`).
* The canonical table (:func:`build`), with the score and class columns every reader takes
  the same way.

Options understood by every STAR-family reader: ``score_column=LABEL`` (which column is the
score; default per adapter), ``class_column=LABEL`` (take the particle class from that column,
e.g. ``rlnClassNumber``; default: ``--particle``), ``labels=1=ribosome,2=…`` (names for the
class numbers; implies ``class_column=rlnClassNumber``) and, where the format has origin shifts,
``origins=ignore`` (skip ``rlnOrigin*``).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from picks.adapters import _labels
from picks.adapters._euler import relion_angles, relion_matrix
from picks.adapters._fields import NA_TOKENS, integer_text
from picks.adapters._options import option_choice
from picks.adapters._star import StarData, Table
from picks.core import picks as canonical
from picks.plugins.adapter import ReadContext

ANGLES = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")
SUBTOMO_ANGLES = ("rlnTomoSubtomogramRot", "rlnTomoSubtomogramTilt", "rlnTomoSubtomogramPsi")
ORIGINS_ANGST = ("rlnOriginXAngst", "rlnOriginYAngst", "rlnOriginZAngst")
ORIGINS_PX = ("rlnOriginX", "rlnOriginY", "rlnOriginZ")
# Scores in order of preference: a picker's figure of merit (what picks' own writers use), then
# RELION's refinement confidence, then pytom's template-matching peak.
SCORES = ("rlnAutopickFigureOfMerit", "rlnMaxValueProbDistribution", "rlnLCCmax")
RELION_CONVENTION = "relion-zyz"
CLASS_NUMBER = "rlnClassNumber"
_ORIGIN_CHOICES = {"apply": True, "yes": True, "on": True, "true": True}
_ORIGIN_CHOICES |= {"ignore": False, "no": False, "off": False, "false": False}


# -- warnings about a whole file, read a chunk at a time ---------------------------------------


class Once:
    """The warnings of a file read a chunk at a time (:meth:`Adapter.read_chunks`), given once
    for the whole file with the words a one-piece read gives.

    Made without ``deferred`` (the default, for one-piece readers) it warns at once, as each
    helper always did; a streamed reader makes one with ``deferred=True`` per file, passes it
    to every chunk, and calls :meth:`flush` after the last: a repeated message is given once,
    the pixel sizes ``--voxel-size`` overrides and the class numbers ``labels`` does not name
    are gathered over all chunks (a few distinct values, never rows).
    """

    def __init__(self, *, deferred: bool = False) -> None:
        self.deferred = deferred
        self._reset()

    def _reset(self) -> None:
        self.messages: dict[str, None] = {}  # in first-seen order
        self.overridden: tuple[str | None, set[float]] | None = None
        self.differs = False
        self.unnamed_column: str | None = None
        self.unnamed_values: set[str] = set()

    def warn(self, message: str) -> None:
        self.messages.setdefault(message)

    def override(self, sizes: np.ndarray, differ: np.ndarray, source: str | None) -> None:
        """The file's pixel sizes under ``--voxel-size``; warned about when any differ."""
        kept = set() if self.overridden is None else self.overridden[1]
        # the five smallest are all the message shows
        kept = set(sorted(kept | set(np.unique(sizes).tolist()))[:5])
        self.overridden = (source, kept)
        self.differs = self.differs or bool(np.any(differ))

    def unnamed(self, column: str, values: set[str]) -> None:
        """Class numbers of ``column`` that ``--option labels`` does not name."""
        if values:
            self.unnamed_column = column
            self.unnamed_values |= values

    def flush(self, ctx: ReadContext, *, last: bool = False) -> None:
        """Give the gathered warnings (unless deferred and this is not the end of the file)."""
        if self.deferred and not last:
            return
        for message in self.messages:
            ctx.warn(message)
        if self.overridden is not None and self.differs:
            source, sizes = self.overridden
            found = ", ".join(f"{v:g}" for v in sorted(sizes))
            ctx.warn(
                f"`voxel_size` {ctx.voxel_size:g} Å overrides the file's pixel size "
                f"({source} = {found} Å)"
            )
        if self.unnamed_values:
            ctx.warn(
                f"{self.unnamed_column} value(s) "
                f"{', '.join(sorted(self.unnamed_values, key=_number_first))} are not in "
                "`options` labels: kept as class names"
            )
        self._reset()


# -- pixel sizes ------------------------------------------------------------------------------


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
    once: Once | None = None,
) -> tuple[np.ndarray, str]:
    """The pixel size (Å) of every row's coordinates, and where it came from.

    ``--voxel-size`` overrides the file (with a warning when they disagree). A file without
    one falls back to the registered tomogram's voxel size × ``--binning``, exactly like a
    voxel format (a :class:`~picks.core.errors.MissingVoxelSize` error when that is unknown
    too). ``--binning`` does not apply to files that state their own pixel size; it is ignored
    with a warning.
    """
    once = once or Once()
    if ctx.binning not in (1, 1.0) and sizes is not None and not ctx.voxel_size:
        once.warn(f"`binning` {ctx.binning:g} ignored: the file gives its pixel size ({source})")
    if ctx.voxel_size:
        if sizes is not None:
            once.override(sizes, np.abs(sizes - ctx.voxel_size) > 1e-3 * ctx.voxel_size, source)
        once.flush(ctx)
        return np.full(len(table), float(ctx.voxel_size)), "`voxel_size`"
    once.flush(ctx)
    if sizes is None:
        picked = {name: ctx.voxel_sizes(name)[0] for name in dict.fromkeys(tomograms)}
        return np.array([picked[name] for name in tomograms], dtype=float), "registered tomogram"
    return sizes, str(source)


def to_angstrom(
    ctx: ReadContext,
    tomograms: list[str],
    coords: np.ndarray,
    pixel_sizes: np.ndarray | None = None,
    *,
    sampling: str = "block",
) -> np.ndarray:
    """(n, 3) indices -> Å: :meth:`ReadContext.pixels_to_angstrom` with the file's
    ``pixel_sizes``, or :meth:`ReadContext.voxels_to_angstrom` when the file states none."""
    frame = pd.DataFrame(
        {"tomogram": tomograms, "x": coords[:, 0], "y": coords[:, 1], "z": coords[:, 2]}
    )
    if pixel_sizes is None:
        ctx.voxels_to_angstrom(frame, sampling=sampling)
    else:
        ctx.pixels_to_angstrom(frame, pixel_sizes, sampling=sampling)
    return frame[canonical.COORDS].to_numpy(dtype=float)


# -- orientation and origins ------------------------------------------------------------------


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
    ``--option origins=ignore`` gives zero shifts (unit None).
    """
    apply = option_choice(
        ctx.options, "origins", _ORIGIN_CHOICES, "apply", expected="'apply' or 'ignore'"
    )
    if apply and table.has(*ORIGINS_ANGST):
        labels, unit = ORIGINS_ANGST, "angstrom"
    elif apply and table.has(*ORIGINS_PX):
        labels, unit = ORIGINS_PX, "pixel"
    else:
        return np.zeros((len(table), 3)), None
    shifts = np.stack([table.numbers(ctx, label) for label in labels], axis=1)
    if sub is not None:
        shifts = np.einsum("nij,nj->ni", sub, shifts)
    return shifts, unit


def origin_pixels(
    table: Table, ctx: ReadContext, sub: np.ndarray | None, pixel_sizes: np.ndarray
) -> np.ndarray:
    """:func:`origins` in pixels of ``pixel_sizes`` (Å shifts divided by the pixel size)."""
    shifts, unit = origins(table, ctx, sub)
    return shifts / pixel_sizes[:, None] if unit == "angstrom" else shifts


# -- the canonical table ----------------------------------------------------------------------


def scores(
    table: Table, ctx: ReadContext, candidates: tuple[str, ...] = SCORES
) -> tuple[np.ndarray, str | None]:
    """The score column (``--option score_column=LABEL`` or the first candidate present)."""
    chosen = ctx.options.get("score_column")
    if chosen:
        if chosen not in table.columns:
            raise ctx.error(
                f"`options` score_column={chosen}: no such column; found {', '.join(table.columns)}",
                line=table.header_line,
            )
    else:
        chosen = next((c for c in candidates if c in table.columns), None)
    if chosen is None:
        return np.full(len(table), np.nan), None
    return table.numbers(ctx, chosen, allow_missing=True), chosen


def classes(
    table: Table, ctx: ReadContext, once: Once | None = None
) -> tuple[list[str | None], str | None]:
    """Particle classes: ``--option class_column=LABEL`` or ``--particle`` for every pick.

    ``--option labels=1=ribosome,2=apo-ferritin`` (inline or a file, :mod:`._labels`) names
    the numbers of the class column; it implies ``class_column=rlnClassNumber`` when no
    column is given. A number the map does not name keeps its number as its class, with a
    warning (the clustering then asks for that class's radius rather than merging it).
    """
    mapping = _labels.class_map(ctx.options.get("labels"))
    column = ctx.options.get("class_column") or (CLASS_NUMBER if mapping else None)
    if not column:
        return [ctx.particle_name(None)] * len(table), None
    if column not in table.columns:
        found = ", ".join(table.columns)
        if ctx.options.get("class_column"):
            message = f"`options` class_column={column}: no such column; found {found}"
        else:
            message = (
                f"`options` labels: no {column} column to take the class numbers from; found "
                f"{found} (name the column with `options` class_column=LABEL)"
            )
        raise ctx.error(message, line=table.header_line)
    labels: list[str | None] = []
    unnamed: set[str] = set()
    for token in table.strings(column):
        if token in NA_TOKENS:
            labels.append(ctx.particle_name(None))
            continue
        text = integer_text(token)
        if mapping:
            number = int(text) if text.lstrip("-").isdigit() else None
            if number in mapping:
                labels.append(mapping[number])
                continue
            unnamed.add(text)
        labels.append(ctx.particle_name(text))
    once = once or Once()
    once.unnamed(column, unnamed)
    once.flush(ctx)
    return labels, column


def _number_first(text: str) -> tuple[int, str]:
    return (int(text), "") if text.lstrip("-").isdigit() else (1 << 62, text)


def build(
    table: Table,
    ctx: ReadContext,
    tomograms: list[str],
    xyz: np.ndarray,
    *,
    angles: tuple[np.ndarray, np.ndarray, np.ndarray] | None,
    convention: str | None,
    score_columns: tuple[str, ...] = SCORES,
    once: Once | None = None,
) -> pd.DataFrame:
    """The canonical pick table for ``table``'s rows (record = line, original = line text),
    with the score (:func:`scores`, from ``score_columns``) and class (:func:`classes`)."""
    score, score_field = scores(table, ctx, score_columns)
    particle, particle_field = classes(table, ctx, once)
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


def joined(chunks: Iterable[pd.DataFrame]) -> pd.DataFrame:
    """The chunks of a streamed read as one table (``read`` of a streaming reader)."""
    frames = list(chunks)
    return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)


# -- writing ----------------------------------------------------------------------------------


def particle_names(picks: pd.DataFrame) -> list[str]:
    """``rlnTomoParticleName`` values: ``<tomogram>/<consensus_id>``, else ``<tomogram>/<n>``.

    The consensus id is used when every pick has one (so ``picks audit`` can follow a RELION
    particle back); otherwise picks are numbered from 1 within each tomogram, as RELION does.
    """
    tomograms = picks["tomogram"].astype(str).to_numpy()
    ids = picks.get("consensus_id")
    if ids is not None and ids.notna().all():
        return [f"{t}/{integer_text(i)}" for t, i in zip(tomograms, ids, strict=True)]
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
