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
  (``--option tomogram_index=PATH``, lines ``<number> <tomogram path or name>``). Without a map:
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
from picks.adapters._star import build, classes, flavour, read_star, scores
from picks.core import picks as canonical
from picks.core.errors import PicksError
from picks.plugins.adapter import Adapter, ReadContext

POSITION = ("orig_x", "orig_y", "orig_z")
SHIFT = ("x_shift", "y_shift", "z_shift")
CONVENTION = "stopgap-zxz"


def parse_tomogram_map(raw: str) -> dict[int, str]:
    """``1=TS_01,2=TS_02`` -> {1: "TS_01", 2: "TS_02"}."""
    mapping = {}
    for item in raw.split(","):
        if not item.strip():
            continue
        number, sep, name = item.partition("=")
        try:
            key = int(number.strip())
        except ValueError:
            key = None
        if not sep or key is None or not name.strip():
            raise PicksError(
                f"--option tomograms={raw!r}: expected NUMBER=NAME pairs separated by commas"
            )
        mapping[key] = name.strip()
    return mapping


def read_tomogram_index(path: Path) -> dict[int, str]:
    """A Dynamo/STOPGAP index file: ``<number> <path or name>`` per line (tab or spaces)."""
    if not path.is_file():
        raise PicksError(f"--option tomogram_index={path}: no such file")
    mapping = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split(None, 1)
        if not fields or line.lstrip().startswith("#"):
            continue
        try:
            key = int(float(fields[0]))
        except ValueError:
            key = None
        if key is None or len(fields) < 2:
            raise PicksError(f"{path}, line {number}: expected '<number> <tomogram>'")
        mapping[key] = fields[1].strip()
    return mapping


class StopgapAdapter(Adapter):
    name = "stopgap"
    picker = "STOPGAP"
    patterns = ("*.star",)
    description = "STOPGAP motive list STAR (orig + shift voxels, 1-based; ZXZ angles; tomo_num)"

    def sniff(self, path: Path) -> float:
        return 0.95 if flavour(path) == "stopgap" else 0.0

    def read(self, path: Path, ctx: ReadContext) -> pd.DataFrame:
        star = read_star(path, ctx)
        table = star.table_with(ctx, (*POSITION, "tomo_num"), "motive list")
        if len(table) == 0:
            ctx.warn("the motive list has no rows")
            return canonical.empty()
        position = np.stack([table.numbers(ctx, label) for label in POSITION], axis=1)
        if table.has(*SHIFT):
            position = position + np.stack([table.numbers(ctx, s) for s in SHIFT], axis=1)
        origin = ctx.options.get("origin", "1").strip()
        if origin not in ("0", "1"):
            raise PicksError(f"--option origin={origin!r}: expected 1 (STOPGAP) or 0")
        position -= float(origin)
        numbers = table.numbers(ctx, "tomo_num")
        bad = numbers != np.round(numbers)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ctx.error(f"tomo_num = {numbers[row]:g} is not an integer", line=table.lines[row])
        names = self._names(numbers.astype(int), ctx, table.lines)
        frame = pd.DataFrame(
            {"tomogram": names, "x": position[:, 0], "y": position[:, 1], "z": position[:, 2]}
        )
        ctx.voxels_to_angstrom(frame)
        angles = None
        if table.has("phi", "psi", "the"):
            angles = stopgap_to_relion(
                *(table.numbers(ctx, label) for label in ("phi", "psi", "the"))
            )
        score, score_field = scores(table, ctx, ("score",))
        particle, particle_field = classes(table, ctx)
        return build(
            table,
            names,
            frame[["x", "y", "z"]].to_numpy(dtype=float),
            score=score,
            score_field=score_field,
            particle=particle,
            particle_field=particle_field,
            angles=angles,
            convention=CONVENTION,
        )

    @staticmethod
    def _names(numbers: np.ndarray, ctx: ReadContext, lines: list[int]) -> list[str]:
        mapping: dict[int, str] = {}
        if ctx.options.get("tomogram_index"):
            mapping.update(read_tomogram_index(Path(ctx.options["tomogram_index"]).expanduser()))
        if ctx.options.get("tomograms"):
            mapping.update(parse_tomogram_map(ctx.options["tomograms"]))
        distinct = list(dict.fromkeys(int(n) for n in numbers))
        if not mapping and ctx.tomogram and len(distinct) == 1:
            mapping = {distinct[0]: ctx.tomogram}
        if not mapping:
            if len(ctx.tomograms):
                raise ctx.error(
                    f"tomo_num values {', '.join(map(str, distinct[:10]))} need tomogram names: "
                    "give --option tomograms=1=NAME,2=NAME or --option tomogram_index=PATH",
                    line=lines[0],
                )
            ctx.warn(
                "no tomogram names given for tomo_num; the numbers are used as names "
                "(give --option tomograms=1=NAME,... to name them)"
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
        resolved = {n: ctx.resolve_tomogram(mapping[n]) for n in distinct}
        return [resolved[int(n)] for n in numbers]
