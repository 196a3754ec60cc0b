"""pytom-match-pick ``<tomo>_particles.star`` (``pytom_extract_candidates.py``); reader only.

Source: SBC-Utrecht/pytom-match-pick ``src/pytom_tm/extract.py`` (``extract_particles``);
``shared/reference/formats.md`` §8.5. One ``data_`` loop with the columns
``rlnCoordinateX/Y/Z, rlnAngleRot/Tilt/Psi, rlnLCCmax, rlnCutOff, rlnSearchStd,
rlnDetectorPixelSize, rlnMicrographName``.

Convention applied:

* **Coordinates** are the integer voxel indices of the score-map peak in the template-matching
  tomogram (pytom reads MRC data transposed to x, y, z, so they are true x, y, z), 0-based
  (numpy) and already including the search-region offset; i.e. voxel centres at
  ``rlnDetectorPixelSize`` Å (the template-matching voxel size, despite the name). They are
  converted with :meth:`~picks.plugins.adapter.ReadContext.pixels_to_angstrom` (picks' block
  binning when the registered tomogram has a different voxel size); ``--voxel-size``
  overrides the file's value with a warning when they differ, and a file without the column
  uses the registered tomogram's voxel size × ``--binning``.
* **Tomogram** = ``rlnMicrographName`` (pytom's tomogram id, the MRC file stem), matched to
  registered tomograms by name.
* **Score** = ``rlnLCCmax`` (local normalised cross-correlation peak; ``rlnLCCmax /
  rlnSearchStd`` would be an SNR). ``--option score_column=LABEL`` chooses another column.
* **Angles** are already RELION ZYZ (pytom converts its anti-clockwise ZXZ angles on export):
  kept as ``relion-zyz``.
* **Class** from ``--particle`` (pytom matches one template per run) or
  ``--option class_column=LABEL``.

pytom's ``--relion5-compat`` output (``rlnCenteredCoordinate*Angst``, ``rlnTomoName``) is a
RELION 5 file and is read by the ``relion5`` adapter; the sniffer leaves it alone.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from picks.adapters._relion_family import (
    RELION_CONVENTION,
    Once,
    build,
    joined,
    orientation,
    positive,
    to_angstrom,
    user_pixel_size,
)
from picks.adapters._star import COORDS, PARTICLE_LABELS, Table, flavour, scan_star
from picks.core import picks as canonical
from picks.plugins.adapter import CHUNK_ROWS, Adapter, ReadContext


class PytomAdapter(Adapter):
    name = "pytom-star"
    picker = "pytom-match-pick"
    patterns = ("*.star",)

    def sniff(self, path: Path) -> float:
        return 0.95 if flavour(path) == "pytom" else 0.0

    def read(self, path: Path, ctx: ReadContext) -> pd.DataFrame:
        return joined(self.read_chunks(path, ctx, chunk_size=sys.maxsize))

    def read_chunks(
        self, path: Path, ctx: ReadContext, chunk_size: int = CHUNK_ROWS
    ) -> Iterator[pd.DataFrame]:
        """The particle loop ``chunk_size`` rows at a time (:func:`scan_star`)."""
        star = scan_star(path, ctx, PARTICLE_LABELS)
        parts = star.rows(ctx, (*COORDS, "rlnLCCmax"), "particle table")
        if parts is None:
            yield canonical.empty()
            return
        once = Once(deferred=True)
        for chunk in star.chunks(parts, ctx, chunk_size):
            yield self._convert(chunk, ctx, once)
        once.flush(ctx, last=True)

    @staticmethod
    def _convert(parts: Table, ctx: ReadContext, once: Once) -> pd.DataFrame:
        coords = parts.xyz(ctx, COORDS)
        if parts.has("rlnMicrographName"):
            names = ctx.resolve_tomograms(parts.strings("rlnMicrographName"))
        else:
            names = [ctx.tomogram_from_path()] * len(parts)
        sizes = None
        if parts.has("rlnDetectorPixelSize"):
            sizes = positive(
                ctx, parts, parts.numbers(ctx, "rlnDetectorPixelSize"), "rlnDetectorPixelSize"
            )
        sizes, _ = user_pixel_size(ctx, parts, sizes, "rlnDetectorPixelSize", names, once)
        xyz = to_angstrom(ctx, names, coords, sizes)
        rot, tilt, psi, _ = orientation(parts, ctx)
        return build(
            parts,
            ctx,
            names,
            xyz,
            angles=(rot, tilt, psi),
            convention=RELION_CONVENTION,
            score_columns=("rlnLCCmax",),
            once=once,
        )
