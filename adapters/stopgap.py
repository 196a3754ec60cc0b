"""STOPGAP motive list STAR (``data_stopgap_motivelist``); reader only.

Sources: wan-lab-vanderbilt/STOPGAP ``sg_toolbox`` (``sg_euler2matrix.m``, the motive-list
fields used by its cleaning and masking tools); ``shared/reference/formats.md`` §8.6; the
CryoET Data Portal ingester (``point_converter.from_stopgap_star``).

Columns: ``motl_idx, tomo_num, object, subtomo_num, halfset, orig_x, orig_y, orig_z, score,
x_shift, y_shift, z_shift, phi, psi, the, class``.

Convention applied:

* **Position** = ``orig + shift`` in voxels of the tomogram STOPGAP was run on (the file has
  no pixel size: ``--voxel-size``, or the registered tomogram × ``--binning``). STOPGAP is
  MATLAB and keeps AV3's **1-based** voxel indices (its tools rescale positions between
  binnings as ``i·b − (b − 1)``, which only holds for 1-based indices), so 1 is subtracted
  before the usual voxel → Å conversion. The portal ingester does not subtract it; give
  ``--option origin=0`` to read such a list the same way.
* **Tomogram** = ``tomo_num``, an integer. Map numbers to names with
  ``--option tomograms=1=TS_01,2=TS_02`` or with a STOPGAP/Dynamo index file
  (``--option tomogram_index=PATH``, as given or next to the motive list; lines
  ``<number> <tomogram path or name>``, read by :mod:`picks.adapters._labels`). Without a map:
  ``--tomogram NAME`` when the list holds one tomogram; otherwise, with no tomograms registered,
  the number itself is used as the name (with a warning); with tomograms registered it is an
  error, because a bare number would match names by accident.
* **Angles** are AV3/STOPGAP ZXZ: ``R = Rz(psi)·Rx(the)·Rz(phi)`` (``sg_euler2matrix``), the
  rotation that carries the reference onto the particle. They are converted to the RELION ZYZ
  angles of the same rotation (:func:`picks.adapters._euler.stopgap_to_relion`), and the
  source convention is recorded as ``stopgap-zxz``.
* **Score** = ``score`` (cross-correlation). **Class**: ``--particle``, or
  ``--option class_column=class``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from picks.adapters._euler import stopgap_to_relion
from picks.adapters._labels import parse_int_map, read_map_file
from picks.adapters._options import option_choice, option_file
from picks.adapters._relion_family import build, to_angstrom
from picks.adapters._star import flavour, read_star
from picks.core import picks as canonical
from picks.plugins.adapter import Adapter, ReadContext

POSITION = ("orig_x", "orig_y", "orig_z")
SHIFT = ("x_shift", "y_shift", "z_shift")
CONVENTION = "stopgap-zxz"


class StopgapAdapter(Adapter):
    name = "stopgap"
    picker = "STOPGAP"
    patterns = ("*.star",)

    def sniff(self, path: Path) -> float:
        return 0.95 if flavour(path) == "stopgap" else 0.0

    def read(self, path: Path, ctx: ReadContext) -> pd.DataFrame:
        star = read_star(path, ctx)
        table = star.rows(ctx, (*POSITION, "tomo_num"), "motive list")
        if table is None:
            return canonical.empty()
        position = table.xyz(ctx, POSITION)
        if table.has(*SHIFT):
            position = position + table.xyz(ctx, SHIFT)
        position -= option_choice(
            ctx.options, "origin", {"0": 0.0, "1": 1.0}, "1", expected="1 (STOPGAP) or 0"
        )
        numbers = table.numbers(ctx, "tomo_num")
        # 1e308 is "integral" but no int64: the cast would give garbage, not an error
        bad = (numbers != np.round(numbers)) | (np.abs(numbers) >= 2**31)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ctx.error(f"tomo_num = {numbers[row]:g} is not an integer", line=table.lines[row])
        names = self._names(numbers.astype(int), ctx, table.lines)
        xyz = to_angstrom(ctx, names, position)
        angles = None
        if table.has("phi", "psi", "the"):
            angles = stopgap_to_relion(
                *(table.numbers(ctx, label) for label in ("phi", "psi", "the"))
            )
        return build(
            table, ctx, names, xyz, angles=angles, convention=CONVENTION, score_columns=("score",)
        )

    @staticmethod
    def _names(numbers: np.ndarray, ctx: ReadContext, lines: list[int]) -> list[str]:
        mapping: dict[int, str] = {}
        index_file = option_file(ctx, "tomogram_index")
        if index_file is not None:
            mapping.update(
                read_map_file(index_file, "tomogram_index", entry="'<number> <tomogram>'")
            )
        mapping.update(parse_int_map(ctx.options.get("tomograms"), "tomograms"))
        distinct = list(dict.fromkeys(int(n) for n in numbers))
        if not mapping and ctx.tomogram and len(distinct) == 1:
            mapping = {distinct[0]: ctx.tomogram}
        if not mapping:
            if len(ctx.tomograms):
                raise ctx.error(
                    f"tomo_num values {', '.join(map(str, distinct[:10]))} need tomogram names: "
                    "give `options` tomograms=1=NAME,2=NAME or `options` tomogram_index=PATH",
                    line=lines[0],
                )
            ctx.warn(
                "no tomogram names given for tomo_num; the numbers are used as names "
                "(give `options` tomograms=1=NAME,... to name them)"
            )
            mapping = {n: str(n) for n in distinct}
        missing = [n for n in distinct if n not in mapping]
        if missing:
            row = int(np.flatnonzero(numbers == missing[0])[0])
            raise ctx.error(
                f"tomo_num {missing[0]} has no name in the tomogram map "
                f"(mapped: {', '.join(map(str, sorted(mapping)))})",
                line=lines[row],
            )
        return ctx.resolve_tomograms(mapping[int(n)] for n in numbers)
