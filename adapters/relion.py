"""RELION particle STAR files: RELION 5 (centred Å) and RELION 3.0–4.x (pixels); readers and writers.

Sources: 3dem/relion ``src/jaz/tomography/particle_set.cpp`` (``getPosition``,
``getParticleCoordDecenteredPixel``), ``tomogram_set.cpp`` (``loadTomogram``: the centre),
``programs/reconstruct_tomogram.cpp`` and ``projection/real_backprojection.h`` (which tilt-series
position each tomogram voxel samples); ``shared/reference/formats.md`` §7.1–7.2.

**Which tilt-series position is which voxel (the convention everything below rests on).**
RELION reconstructs voxel ``i`` of a tomogram binned by ``b`` at tilt-series pixel position
``x0 + i·b`` with ``x0 = 0`` (RELION ≥ 4.1; 4.0 used ``x0 = 1`` and added the same +1 to every
particle, which cancels). So voxel 0 of every binning is centred on tilt-series pixel 0 and a
position ``p`` in tilt-series pixels is, in the canonical frame (origin at the centre of voxel 0
of the registered tomogram, whatever its binning), ``x_Å = p · rlnTomoTiltSeriesPixelSize``.
This is the ``"point"`` sampling of :func:`picks.core.frame.index_to_angstrom`; it differs
from the block-binning reading ``(p + 0.5)·Pts − 0.5·V`` by ``(V − Pts)/2`` (4.3 Å for the
tutorial data) — tools disagree at this level (3dem/relion#1137, #1280, #1353; pytom#250), so
consensus tolerances must absorb ±1 tilt-series pixel anyway.

``relion5`` reader — ``rlnCenteredCoordinateX/Y/ZAngst`` are Å from the tomogram centre.
RELION decentres with ``p = centred / rlnTomoTiltSeriesPixelSize + rlnTomoSizeX / 2.0`` (float
division; sizes in unbinned tilt-series pixels from ``tomograms.star``), then subtracts the
rotated origin shift, so ``x_Å = (centred − A_sub·origin_Å)/Pts_optics · Pts + SizeX/2 · Pts``
(``Pts_optics`` from the particle file's optics group, ``Pts`` from tomograms.star; equal in
practice). The tomogram table comes from ``--option tomograms_star=PATH``, else from the only
``*tomograms.star`` next to the file (a warning says so; ``tomograms_star=none`` disables this). Without one the centre is taken from
the registered tomogram: ``n·V/2`` Å (``n`` voxels of ``V`` Å — the same centre, since RELION
writes ``n = SizeX/b``), or from ``--option tomo_size=NX,NY,NZ`` (voxels of ``--voxel-size`` or of
the registered tomogram). ``--option origins=ignore`` skips the ``rlnOrigin*Angst`` shifts.
pytom's ``--relion5-compat`` files (centred with the binned size, pixel size as a particle
column) are read here too; use the registered-tomogram centre for them.

``relion4`` reader — ``rlnCoordinateX/Y/Z`` are pixels; the tomogram is ``rlnTomoName`` (RELION
≥ 4, TOMOMAN) or ``rlnMicrographName`` (≤ 3.1, Warp 1). The pixel size of the coordinates is, in
order: optics ``rlnTomoTiltSeriesPixelSize`` (RELION 4: *unbinned* tilt-series pixels),
``rlnMicrographPixelSize``, ``rlnImagePixelSize`` (RELION 3.1), per-particle ``rlnPixelSize``
(TOMOMAN, Warp 1), ``rlnDetectorPixelSize × 10⁴ / rlnMagnification`` (RELION 3.0, Warp 1).
``--voxel-size`` overrides it (with a warning when they differ); a file with none uses the
registered tomogram's voxel size × ``--binning``. It is never inferred from a file name (Warp 1
names a 10.73 Å reconstruction while its coordinates are 5.364 Å pixels).
Position = coordinate − origin (``rlnOriginX/Y/Z`` pixels, or ``rlnOrigin*Angst`` / pixel size).
RELION 4 files (tilt-series pixel size in optics) use the point sampling above; the others
(Warp/TOMOMAN exports) use picks' default block binning — both are ``i·v`` when the registered
tomogram has the coordinates' pixel size.

Both readers: angles ``rlnAngleRot/Tilt/Psi`` (ZYZ, ``relion-zyz``), composed with a RELION 5
``rlnTomoSubtomogramRot/Tilt/Psi`` pre-rotation when present (``A = A_sub · A_particle``, as
RELION does) so they describe the particle in the tomogram. Score: ``rlnAutopickFigureOfMerit``,
else ``rlnMaxValueProbDistribution`` (refinement confidence, 0..1), else ``rlnLCCmax``;
``--option score_column=LABEL`` chooses. Class: ``--particle`` unless
``--option class_column=LABEL`` (e.g. ``rlnClassNumber``); ``--option labels=1=ribosome,2=…``
names the class numbers (and reads ``rlnClassNumber`` when no column is named).

Writers. ``relion5`` writes ``data_general``/``data_optics``/``data_particles`` with
``rlnTomoName``, centred Å (centre ``SizeX/2 · Pts``), angles (only when every pick has them:
RELION cannot read NaN), ``rlnAutopickFigureOfMerit`` = score, and ``rlnTomoParticleName`` =
``<tomogram>/<consensus_id>`` (RELION keeps that column through its jobs, so results can be
traced back; picks are numbered 1.. per tomogram when there is no consensus id), plus a matching
``<name>_tomograms.star`` (``--to-option tomograms_star=PATH`` names it, relative to the
output's folder; ``picks aggregate`` and ``picks export`` write one ``tomograms.star`` per
folder instead, listing the tomograms of every particle file there) with ``rlnTomoSizeX/Y/Z``, ``rlnTomoTiltSeriesPixelSize`` and
``rlnTomoTomogramBinning``. Knowing no tilt series, picks treats the registered tomogram as one:
``Pts = V``, binning 1, sizes = its shape (``--to-option tilt_series_pixel_size=Å`` states the
real pixel size; sizes become ``round(n·V/Pts)``; ``--to-option tomo_size=NX,NY,NZ`` with
``--to-voxel-size`` replaces an unregistered tomogram). That file lacks voltage and CTF
columns; the particles can be used with your own RELION project's ``tomograms.star`` when its
``SizeX·Pts`` equals the registered extent (the centre is the same). Particle classes are not
written (RELION keeps one species per file; re-import with ``--particle``).
``relion4`` writes ``rlnTomoName``, ``rlnCoordinateX/Y/Z`` in pixels of ``--voxel-size`` (or the
registered voxel size × ``--binning``) with the point sampling above, angles, score,
``rlnTomoParticleName`` and ``data_optics`` with that pixel size as ``rlnTomoTiltSeriesPixelSize``.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from picks.adapters._options import option_file, option_number, option_numbers, option_text
from picks.adapters._relion_family import (
    RELION_CONVENTION,
    Once,
    build,
    joined,
    optics_column,
    orientation,
    origin_pixels,
    origins,
    particle_names,
    positive,
    to_angstrom,
    user_pixel_size,
    writable_angles,
)
from picks.adapters._star import (
    CENTRED,
    COORDS,
    PARTICLE_LABELS,
    StarData,
    Table,
    flavour,
    read_star,
    scan_star,
    write_star,
)
from picks.core import picks as canonical
from picks.core.errors import MissingVoxelSize, PicksError
from picks.core.files import atomic_path
from picks.core.tomograms import name_key
from picks.plugins.adapter import CHUNK_ROWS, Adapter, ReadContext, WriteContext

# The tomogram table of a folder of particle files written together (aggregate, export).
SHARED_TOMOGRAMS_STAR = "tomograms.star"

TOMOGRAM_COLUMNS = (
    "rlnTomoName",
    "rlnTomoSizeX",
    "rlnTomoSizeY",
    "rlnTomoSizeZ",
    "rlnTomoTiltSeriesPixelSize",
)


@dataclasses.dataclass(frozen=True)
class TomoGeometry:
    """One row of a tomograms.star: size in unbinned tilt-series pixels and that pixel size."""

    size: np.ndarray
    pixel_size: float
    binning: float


# -- options shared by reader and writer ----------------------------------------------------


def _tomo_size_option(options: dict, where: str) -> np.ndarray | None:
    size = option_numbers(options, "tomo_size", 3, expected="NX,NY,NZ (voxels)", where=where)
    return None if size is None else np.array(size)


# -- RELION 5 -------------------------------------------------------------------------------


def read_tomograms_star(path: Path, ctx: ReadContext) -> dict[str, TomoGeometry]:
    """rlnTomoName -> geometry from a RELION (or WarpTools) tomograms.star."""
    sub = dataclasses.replace(ctx, path=path)
    star = read_star(path, sub)
    table = star.table_with(sub, TOMOGRAM_COLUMNS, "tomogram table")
    sizes = np.stack([table.numbers(sub, f"rlnTomoSize{a}") for a in "XYZ"], axis=1)
    pixel = positive(
        sub, table, table.numbers(sub, "rlnTomoTiltSeriesPixelSize"), "rlnTomoTiltSeriesPixelSize"
    )
    binning = (
        table.numbers(sub, "rlnTomoTomogramBinning")
        if table.has("rlnTomoTomogramBinning")
        else np.ones(len(table))
    )
    return {
        name: TomoGeometry(sizes[i], float(pixel[i]), float(binning[i]))
        for i, name in enumerate(table.strings("rlnTomoName"))
    }


def _find_tomograms_star(path: Path, ctx: ReadContext) -> Path | None:
    option = option_text(ctx.options, "tomograms_star")
    if option and option.lower() in ("none", "off", "no"):
        return None
    if option:
        return option_file(ctx, "tomograms_star")
    candidates = sorted(p for p in path.parent.glob("*tomograms.star") if p != path)
    if len(candidates) == 1:
        ctx.warn(
            f"decentring with {candidates[0].name}, the tomograms.star next to the file "
            "(choose another with `options` tomograms_star=PATH)"
        )
        return candidates[0]
    if len(candidates) > 1:
        ctx.warn(
            f"{len(candidates)} *tomograms.star files next to the file; none used "
            "(choose one with `options` tomograms_star=PATH)"
        )
    return None


def _geometry_for(raw: str, table: dict[str, TomoGeometry], source: Path) -> TomoGeometry:
    if raw in table:
        return table[raw]
    matches = [name for name in table if name_key(name) == name_key(raw)]
    if len(matches) == 1:
        return table[matches[0]]
    raise PicksError(
        f"{source}: tomogram {raw!r} is not in the tomogram table "
        f"({', '.join(sorted(table)[:10])})",
        hint="Give the tomograms.star of the same RELION project with `options` tomograms_star=PATH.",
    )


def _registered_centre(name: str, ctx: ReadContext) -> np.ndarray:
    """Tomogram centre in Å (``n·V/2``) from ``tomo_size`` or the registered tomogram."""
    size = _tomo_size_option(ctx.options, "`options`")
    tomo = ctx.tomograms.get(name)
    voxel = ctx.voxel_size or (tomo.voxel_size if tomo else None)
    if size is not None and voxel:
        return size * voxel / 2.0
    if tomo is not None and tomo.shape is not None and tomo.voxel_size:
        return np.asarray(tomo.shape, dtype=float) * tomo.voxel_size / 2.0
    raise MissingVoxelSize(
        f"{ctx.path}: RELION 5 coordinates are centred on the tomogram, and the size of "
        f"tomogram {name!r} is unknown",
        hint=(
            "Give RELION's tomograms.star with `options` tomograms_star=PATH, register the "
            "tomogram with `tomograms`, or give `options` tomo_size=NX,NY,NZ with `voxel_size`."
        ),
    )


def _check_registered(name: str, geometry: TomoGeometry, ctx: ReadContext, done: set) -> None:
    tomo = ctx.tomograms.get(name)
    if name in done or tomo is None or tomo.shape is None or not tomo.voxel_size:
        return
    done.add(name)
    star_extent = geometry.size * geometry.pixel_size
    registered = np.asarray(tomo.shape, dtype=float) * tomo.voxel_size
    if np.any(np.abs(star_extent - registered) > tomo.voxel_size):
        ctx.warn(
            f"tomogram {name!r}: tomograms.star gives an extent of "
            f"{' × '.join(f'{v:g}' for v in star_extent)} Å but the registered tomogram is "
            f"{' × '.join(f'{v:g}' for v in registered)} Å; decentring uses tomograms.star"
        )


@dataclasses.dataclass
class _Relion5State:
    """What a RELION 5 read carries from chunk to chunk: the tomogram table, the tomograms
    checked against their registration, and the warnings given once per file."""

    table_path: Path | None
    geometry: dict[str, TomoGeometry] | None
    checked: set[str] = dataclasses.field(default_factory=set)
    warned_pixel: bool = False
    once: Once = dataclasses.field(default_factory=lambda: Once(deferred=True))


class Relion5Adapter(Adapter):
    name = "relion5"
    picker = "RELION 5"
    patterns = ("*.star",)
    extension = ".star"
    layout = "file"

    def sniff(self, path: Path) -> float:
        return 0.9 if flavour(path) == "relion5" else 0.0

    def read(self, path: Path, ctx: ReadContext) -> pd.DataFrame:
        return joined(self.read_chunks(path, ctx, chunk_size=sys.maxsize))

    def read_chunks(
        self, path: Path, ctx: ReadContext, chunk_size: int = CHUNK_ROWS
    ) -> Iterator[pd.DataFrame]:
        """The particle loop ``chunk_size`` rows at a time (:func:`scan_star`); the optics and
        the tomograms.star are read once, before the first chunk."""
        star = scan_star(path, ctx, PARTICLE_LABELS)
        parts = star.rows(ctx, (*CENTRED, "rlnTomoName"), "particle table")
        if parts is None:
            yield canonical.empty()
            return
        if ctx.binning not in (1, 1.0):
            ctx.warn(f"`binning` {ctx.binning:g} ignored: RELION 5 coordinates are in Å")
        table_path = _find_tomograms_star(path, ctx)
        geometry = read_tomograms_star(table_path, ctx) if table_path else None
        state = _Relion5State(table_path, geometry)
        for chunk in star.chunks(parts, ctx, chunk_size):
            yield self._convert(star, chunk, ctx, state)
        state.once.flush(ctx, last=True)

    def _convert(
        self, star: StarData, parts: Table, ctx: ReadContext, state: _Relion5State
    ) -> pd.DataFrame:
        centred = parts.xyz(ctx, CENTRED)
        raw = parts.strings("rlnTomoName")
        rot, tilt, psi, sub = orientation(parts, ctx)
        shifts, unit = origins(parts, ctx, sub)
        pts = self._pixel_sizes(star, parts, ctx)
        if unit == "pixel":
            if pts is None:
                raise ctx.error(
                    "rlnOriginX/Y/Z are in pixels but no rlnTomoTiltSeriesPixelSize is given",
                    line=parts.header_line,
                )
            shifts = shifts * pts[:, None]
        names = ctx.resolve_tomograms(raw)
        xyz = np.empty_like(centred)
        raw_array = np.asarray(raw, dtype=object)
        differ = np.zeros(len(parts), dtype=bool)
        star_pixel = np.empty(len(parts))
        for raw_name in dict.fromkeys(raw):
            rows = np.flatnonzero(raw_array == raw_name)
            name = names[rows[0]]
            position = centred[rows] - shifts[rows]
            if state.geometry is None:
                xyz[rows] = position + _registered_centre(name, ctx)
                continue
            geo = _geometry_for(raw_name, state.geometry, state.table_path)
            _check_registered(name, geo, ctx, state.checked)
            pixel = pts[rows] if pts is not None else np.full(len(rows), geo.pixel_size)
            differ[rows] = np.abs(pixel - geo.pixel_size) > 1e-4 * geo.pixel_size
            star_pixel[rows] = geo.pixel_size
            tilt_series_px = position / pixel[:, None] + geo.size / 2.0
            xyz[rows] = tilt_series_px * geo.pixel_size
        if differ.any() and not state.warned_pixel:
            state.warned_pixel = True
            row = int(np.flatnonzero(differ)[0])  # the file's first such particle
            state.once.warn(
                f"the particles' rlnTomoTiltSeriesPixelSize ({pts[row]:g} Å) differs from "
                f"the tomograms.star one ({star_pixel[row]:g} Å); decentring as RELION does"
            )
        return build(
            parts,
            ctx,
            names,
            xyz,
            angles=(rot, tilt, psi),
            convention=RELION_CONVENTION,
            once=state.once,
        )

    @staticmethod
    def _pixel_sizes(star: StarData, parts: Table, ctx: ReadContext) -> np.ndarray | None:
        pts = optics_column(star, parts, ctx, "rlnTomoTiltSeriesPixelSize")
        if pts is None and parts.has("rlnTomoTiltSeriesPixelSize"):  # pytom --relion5-compat
            pts = parts.numbers(ctx, "rlnTomoTiltSeriesPixelSize")
        if pts is not None:
            positive(ctx, parts, pts, "rlnTomoTiltSeriesPixelSize")
        return pts

    def companions(self, target: Path, options: dict) -> list[Path]:
        if options.get("shared"):  # one tomograms.star for the folder: shared_companions
            return []
        named = options.get("tomograms_star")
        return [
            target.parent / Path(named).expanduser()  # absolute paths stay absolute
            if named
            else target.with_name(f"{target.name.removesuffix('.star')}_tomograms.star")
        ]

    def shared_companions(self, folder: Path, options: dict) -> list[Path]:
        """One ``tomograms.star`` per output folder, for every particle file in it: RELION 5
        imports one tomogram set per project, and picks' reader finds it next to them."""
        return [folder / SHARED_TOMOGRAMS_STAR]

    def write(self, picks: pd.DataFrame, path: Path, ctx: WriteContext) -> None:
        target = Path(ctx.options.get("target") or path)
        shared = bool(ctx.options.get("shared"))
        companion = (
            self.shared_companions(target.parent, ctx.options)[0]
            if shared
            else self.companions(target, ctx.options)[0]
        )
        geometry = self._geometry(picks, ctx)
        tomograms = picks["tomogram"].astype(str).to_numpy()
        centre = np.array(
            [geometry[t].size / 2.0 * geometry[t].pixel_size for t in tomograms], dtype=float
        ).reshape(-1, 3)
        xyz = picks[list(canonical.COORDS)].to_numpy(dtype=float).reshape(-1, 3) - centre
        particles = pd.DataFrame(
            {
                "rlnTomoName": tomograms,
                "rlnCenteredCoordinateXAngst": xyz[:, 0],
                "rlnCenteredCoordinateYAngst": xyz[:, 1],
                "rlnCenteredCoordinateZAngst": xyz[:, 2],
            }
        )
        optics = _add_common_columns(
            particles, picks, {t: g.pixel_size for t, g in geometry.items()}
        )
        write_star(
            path,
            {
                "general": {"rlnTomoSubTomosAre2DStacks": 0},
                "optics": optics,
                "particles": particles,
            },
            "RELION 5 particles written by picks; decentre with " + companion.name,
        )
        if not shared:  # else the caller writes the folder's one with write_shared
            self._write_tomograms_star(companion, ctx, geometry)

    def write_shared(self, picks: pd.DataFrame, folder: Path, ctx: WriteContext) -> list[Path]:
        """The folder's ``tomograms.star``: every tomogram of ``picks`` (all the particle
        files of the folder together)."""
        path = self.shared_companions(folder, ctx.options)[0]
        self._write_tomograms_star(path, ctx, self._geometry(picks, ctx))
        return [path]

    @staticmethod
    def _write_tomograms_star(
        path: Path, ctx: WriteContext, geometry: dict[str, TomoGeometry]
    ) -> None:
        names = sorted(geometry)
        table = pd.DataFrame(
            {
                "rlnTomoName": names,
                "rlnTomoSizeX": [int(geometry[t].size[0]) for t in names],
                "rlnTomoSizeY": [int(geometry[t].size[1]) for t in names],
                "rlnTomoSizeZ": [int(geometry[t].size[2]) for t in names],
                "rlnTomoTiltSeriesPixelSize": [geometry[t].pixel_size for t in names],
                "rlnTomoTomogramBinning": [geometry[t].binning for t in names],
            }
        )
        with atomic_path(path, force=bool(ctx.options.get("force"))) as tmp:
            write_star(tmp, {"global": table}, "RELION 5 tomogram set written by picks")

    @staticmethod
    def _geometry(picks: pd.DataFrame, ctx: WriteContext) -> dict[str, TomoGeometry]:
        size_option = _tomo_size_option(ctx.options, "`to_options`")
        pts_option = option_number(
            ctx.options,
            "tilt_series_pixel_size",
            expected="a positive number (Å)",
            positive=True,
            where="`to_options`",
        )
        geometry = {}
        for name in dict.fromkeys(picks["tomogram"].astype(str)):
            tomo = ctx.tomograms.get(name)
            voxel = tomo.voxel_size if tomo and tomo.voxel_size else ctx.voxel_size
            shape = (
                size_option
                if size_option is not None
                else (np.asarray(tomo.shape, dtype=float) if tomo and tomo.shape else None)
            )
            if voxel is None or shape is None:
                raise MissingVoxelSize(
                    f"cannot write RELION 5 centred coordinates for tomogram {name!r}: "
                    "its size or voxel size is unknown",
                    hint=(
                        "Register the tomogram with `tomograms`, or give `to_options` "
                        "tomo_size=NX,NY,NZ with `to_voxel_size`."
                    ),
                )
            pts = pts_option or float(voxel)
            size = np.round(shape * voxel / pts)
            geometry[name] = TomoGeometry(size, pts, float(voxel) / pts)
        return geometry


# -- RELION 3.0 - 4.x --------------------------------------------------------------------------


class Relion4Adapter(Adapter):
    name = "relion4"
    picker = "RELION 3/4"
    patterns = ("*.star",)
    extension = ".star"
    layout = "file"

    def sniff(self, path: Path) -> float:
        kind = flavour(path)
        if kind == "relion4":
            return 0.8
        return 0.3 if kind == "relion-named" else 0.0

    def read(self, path: Path, ctx: ReadContext) -> pd.DataFrame:
        return joined(self.read_chunks(path, ctx, chunk_size=sys.maxsize))

    def read_chunks(
        self, path: Path, ctx: ReadContext, chunk_size: int = CHUNK_ROWS
    ) -> Iterator[pd.DataFrame]:
        """The particle loop ``chunk_size`` rows at a time (:func:`scan_star`)."""
        star = scan_star(path, ctx, PARTICLE_LABELS)
        parts = star.rows(ctx, COORDS, "particle table")
        if parts is None:
            yield canonical.empty()
            return
        once = Once(deferred=True)
        for chunk in star.chunks(parts, ctx, chunk_size):
            yield self._convert(star, chunk, ctx, once)
        once.flush(ctx, last=True)

    def _convert(self, star: StarData, parts: Table, ctx: ReadContext, once: Once) -> pd.DataFrame:
        coords = parts.xyz(ctx, COORDS)
        if parts.has("rlnTomoName"):
            names = ctx.resolve_tomograms(parts.strings("rlnTomoName"))
        elif parts.has("rlnMicrographName"):
            names = ctx.resolve_tomograms(parts.strings("rlnMicrographName"))
        else:
            names = [ctx.tomogram_from_path()] * len(parts)
        sizes, source = self._pixel_sizes(star, parts, ctx)
        sizes, source = user_pixel_size(ctx, parts, sizes, source, names, once)
        # RELION 4 proper (tilt-series pixels) samples like RELION's reconstructions.
        sampling = (
            "point"
            if optics_column(star, parts, ctx, "rlnTomoTiltSeriesPixelSize") is not None
            else "block"
        )
        rot, tilt, psi, sub = orientation(parts, ctx)
        coords = coords - origin_pixels(parts, ctx, sub, sizes)
        xyz = to_angstrom(ctx, names, coords, sizes, sampling=sampling)
        return build(
            parts,
            ctx,
            names,
            xyz,
            angles=(rot, tilt, psi),
            convention=RELION_CONVENTION,
            once=once,
        )

    @staticmethod
    def _pixel_sizes(
        star: StarData, parts: Table, ctx: ReadContext
    ) -> tuple[np.ndarray | None, str | None]:
        for label in ("rlnTomoTiltSeriesPixelSize", "rlnMicrographPixelSize", "rlnImagePixelSize"):
            values = optics_column(star, parts, ctx, label)
            if values is not None:
                return positive(ctx, parts, values, label), f"data_optics {label}"
        if parts.has("rlnPixelSize"):
            return positive(ctx, parts, parts.numbers(ctx, "rlnPixelSize"), "rlnPixelSize"), (
                "rlnPixelSize"
            )
        if parts.has("rlnDetectorPixelSize"):
            detector = positive(
                ctx, parts, parts.numbers(ctx, "rlnDetectorPixelSize"), "rlnDetectorPixelSize"
            )
            if not parts.has("rlnMagnification"):
                return detector, "rlnDetectorPixelSize"
            magnification = positive(
                ctx, parts, parts.numbers(ctx, "rlnMagnification"), "rlnMagnification"
            )
            return detector * 1e4 / magnification, "rlnDetectorPixelSize×10⁴/rlnMagnification"
        return None, None

    def write(self, picks: pd.DataFrame, path: Path, ctx: WriteContext) -> None:
        pixels = ctx.angstrom_to_voxels(picks, sampling="point")
        tomograms = picks["tomogram"].astype(str).to_numpy()
        particles = pd.DataFrame(
            {
                "rlnTomoName": tomograms,
                "rlnCoordinateX": pixels["x"].to_numpy(dtype=float),
                "rlnCoordinateY": pixels["y"].to_numpy(dtype=float),
                "rlnCoordinateZ": pixels["z"].to_numpy(dtype=float),
            }
        )
        pixel = {t: ctx.voxel_sizes(t)[0] for t in dict.fromkeys(tomograms)}
        optics = _add_common_columns(particles, picks, pixel)
        write_star(
            path,
            {"optics": optics, "particles": particles},
            "RELION 4 particles written by picks (coordinates in pixels of "
            "rlnTomoTiltSeriesPixelSize)",
        )


def _add_common_columns(
    particles: pd.DataFrame, picks: pd.DataFrame, pixel: dict[str, float]
) -> pd.DataFrame:
    """Angles, score, optics group and particle name, shared by both writers (in place), and
    the optics table: one group per tilt-series pixel size (``pixel``: tomogram -> Å)."""
    groups = {p: i + 1 for i, p in enumerate(sorted(set(pixel.values())))}
    if writable_angles(picks):
        for label, column in zip(
            ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"), canonical.ANGLES, strict=True
        ):
            particles[label] = picks[column].to_numpy(dtype=float)
    if picks["score"].notna().any():
        particles["rlnAutopickFigureOfMerit"] = picks["score"].to_numpy(dtype=float)
    particles["rlnOpticsGroup"] = [groups[pixel[t]] for t in particles["rlnTomoName"]]
    particles["rlnTomoParticleName"] = particle_names(picks)
    return pd.DataFrame(
        {
            "rlnOpticsGroup": list(groups.values()),
            "rlnOpticsGroupName": [f"opticsGroup{g}" for g in groups.values()],
            "rlnTomoTiltSeriesPixelSize": list(groups),
        }
    )
