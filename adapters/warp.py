"""Warp 2 / WarpTools particle STAR (template matching and particle exports); reader only.

Layout (``shared/reference/formats.md`` §7.3; fixture ``warp2/warp2_particles_matching.star``):
``data_general`` (``rlnTomoSubTomosAre2DStacks``), ``data_optics`` (``rlnTomoTiltSeriesPixelSize``,
``rlnTomoSubtomogramBinning``, ``rlnImagePixelSize``) and ``data_particles`` with
``rlnTomoName`` = ``<tilt series>.tomostar``, ``rlnCoordinateX/Y/Z``, angles,
``rlnOriginX/Y/ZAngst`` and ``rlnTomoVisibleFrames``.

Told apart from RELION by its columns: WarpTools writes ``rlnCoordinate*`` together with a
``data_general`` block and ``rlnTomoVisibleFrames``; RELION 4 writes neither of those and
RELION 5 drops ``rlnCoordinate*`` (see :func:`picks.adapters._star.flavour`).

Convention applied:

* **Units.** Coordinates are pixels of the optics group's ``rlnImagePixelSize`` (the pixel
  size of the export), not of the tilt series: in the fixture they reach 823 × 1116 × 177
  pixels, which at 4 Å fills the 4400 × 6000 × 1000 tilt-series-pixel volume at 0.7894 Å
  (3473 × 4736 × 789 Å) of ``warp2_matching_tomograms.star``; at 0.7894 Å they would cover a
  fifth of it. ``--voxel-size`` overrides the pixel size (with a warning when it differs);
  without either, the registered tomogram's voxel size × ``--binning`` is used.
* **Origin.** Position = coordinate − ``rlnOrigin*Angst`` / pixel size (``--option
  origins=ignore`` skips the shifts). Pixel centres are taken
  as 0-based voxel centres with picks' default block binning
  (:func:`picks.core.frame.index_to_angstrom`); WarpTools' own sub-voxel convention is not
  documented, and both readings agree when the registered tomogram has the export pixel size.
* **Tomogram names.** ``.tomostar`` is stripped (``TS_17.tomostar`` -> ``TS_17``) when matching
  registered tomograms.
* **Angles.** ``rlnAngleRot/Tilt/Psi`` (RELION ZYZ) are kept as ``relion-zyz`` when they are
  plausible degrees. In the fixture they reach 20 197 (67.5° written as 3867.465 = 67.5 × 180/π:
  converted to degrees twice), so when any angle lies outside ±360° *all* angles of the file are
  dropped (NaN) with a warning rather than normalised: a wrapped value would look valid but be
  wrong. ``--option angles=keep`` keeps them anyway (wrapped into (−180, 180]).
* **Score/class.** Warp particle exports carry no score unless ``rlnAutopickFigureOfMerit``
  or ``rlnLCCmax`` is present (``--option score_column=LABEL`` chooses); class from
  ``--particle`` or ``--option class_column=LABEL``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from picks.adapters._relion_family import (
    RELION_CONVENTION,
    build,
    optics_column,
    orientation,
    origin_pixels,
    positive,
    to_angstrom,
    user_pixel_size,
)
from picks.adapters._star import COORDS, flavour, read_star
from picks.core import picks as canonical
from picks.plugins.adapter import Adapter, ReadContext

MAX_ANGLE = 360.0


class Warp2Adapter(Adapter):
    name = "warp2"
    picker = "Warp 2 / WarpTools"
    patterns = ("*.star",)

    def sniff(self, path: Path) -> float:
        return 0.95 if flavour(path) == "warp2" else 0.0

    def read(self, path: Path, ctx: ReadContext) -> pd.DataFrame:
        star = read_star(path, ctx)
        parts = star.rows(ctx, (*COORDS, "rlnTomoName"), "particle table")
        if parts is None:
            return canonical.empty()
        coords = parts.xyz(ctx, COORDS)
        names = ctx.resolve_tomograms(parts.strings("rlnTomoName"))
        sizes = optics_column(star, parts, ctx, "rlnImagePixelSize")
        if sizes is not None:
            positive(ctx, parts, sizes, "rlnImagePixelSize")
        sizes, _ = user_pixel_size(ctx, parts, sizes, "data_optics rlnImagePixelSize", names)
        rot, tilt, psi, sub = orientation(parts, ctx)
        # rlnOriginX/Y/Z in pixels are not written by WarpTools; accepted like RELION 3.0.
        coords = coords - origin_pixels(parts, ctx, sub, sizes)
        angles = self._checked_angles(rot, tilt, psi, parts.lines, ctx)
        xyz = to_angstrom(ctx, names, coords, sizes)
        return build(parts, ctx, names, xyz, angles=angles, convention=RELION_CONVENTION)

    @staticmethod
    def _checked_angles(
        rot: np.ndarray, tilt: np.ndarray, psi: np.ndarray, lines: list[int], ctx: ReadContext
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        stacked = np.stack([rot, tilt, psi], axis=1)
        wild = np.abs(stacked) > MAX_ANGLE
        if not wild.any():
            return rot, tilt, psi
        row = int(np.flatnonzero(wild.any(axis=1))[0])
        count = int(wild.any(axis=1).sum())
        if ctx.options.get("angles", "").lower() == "keep":
            ctx.warn(
                f"{count} picks have angles beyond ±{MAX_ANGLE:g}° (first at line {lines[row]}); "
                "kept wrapped into (−180, 180] as `options` angles=keep asks"
            )
            wrapped = (stacked + 180.0) % 360.0 - 180.0
            wrapped[wrapped == -180.0] = 180.0
            return wrapped[:, 0], wrapped[:, 1], wrapped[:, 2]
        ctx.warn(
            f"{count} of {len(rot)} picks have angles beyond ±{MAX_ANGLE:g}° (first at line "
            f"{lines[row]}: {', '.join(f'{v:g}' for v in stacked[row])}); these are not degrees "
            "(WarpTools exports have been seen with degrees converted twice), so all angles of "
            "this file are dropped. `options` angles=keep keeps them wrapped"
        )
        return None
