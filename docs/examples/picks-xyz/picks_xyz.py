"""Example third-party adapter: a lab's own ``.xyz`` pick lists.

Format (one pick per line, ``#`` comments allowed)::

    # tomogram  x  y  z  score
    TS_01  120.0  88.5  40.0  0.93

Coordinates are 0-based voxel centres of the tomogram the picks were made on; the score is
optional. This is the complete plugin: an Adapter subclass and a ``register_adapters`` hook.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import picks
from picks.core import picks as canonical
from picks.plugins.adapter import Adapter, ReadContext, WriteContext, head


class XyzAdapter(Adapter):
    name = "mylab-xyz"
    picker = "MyLab picker"
    patterns = ("*.xyz",)
    description = "MyLab .xyz lists: tomogram x y z [score], voxels"
    extension = ".xyz"

    def sniff(self, path: Path) -> float:
        lines = [ln for ln in head(path).splitlines() if ln.strip() and not ln.startswith("#")]
        return 0.8 if lines and len(lines[0].split()) in (4, 5) else 0.0

    def read(self, path: Path, ctx: ReadContext) -> pd.DataFrame:
        rows = {
            "tomogram": [],
            "x": [],
            "y": [],
            "z": [],
            "score": [],
            "record": [],
            "original": [],
        }
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip() or line.startswith("#"):
                continue
            fields = line.split()
            if len(fields) not in (4, 5):
                raise ctx.error(
                    f"expected 'tomogram x y z [score]', found {len(fields)} fields", line=number
                )
            try:
                x, y, z = (float(v) for v in fields[1:4])
                score = float(fields[4]) if len(fields) == 5 else float("nan")
            except ValueError:
                raise ctx.error("coordinates and score must be numbers", line=number) from None
            rows["tomogram"].append(ctx.resolve_tomogram(fields[0]))
            for key, value in zip(("x", "y", "z", "score"), (x, y, z, score), strict=True):
                rows[key].append(value)
            rows["record"].append(number)
            rows["original"].append(line)
        frame = canonical.make(rows, score_field="score", particle=ctx.particle_name(None))
        return ctx.voxels_to_angstrom(frame)  # voxels -> Å, binning undone

    def write(self, picks_table: pd.DataFrame, path: Path, ctx: WriteContext) -> None:
        voxels = ctx.angstrom_to_voxels(picks_table)
        with open(path, "w") as out:
            out.write("# tomogram x y z score\n")
            for row in voxels.itertuples():
                out.write(f"{row.tomogram} {row.x:.3f} {row.y:.3f} {row.z:.3f} {row.score:.4f}\n")


@picks.hookimpl
def register_adapters(register):
    register(XyzAdapter())
