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
import io
from pathlib import Path

import numpy as np
import pandas as pd

from picks.adapters._fields import number, read_text
from picks.adapters._options import units_are_voxels
from picks.core import picks as canonical
from picks.plugins.adapter import Adapter, ReadContext, WriteContext, head

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
        text = read_text(path, ctx)
        if not text.strip():
            raise ctx.error(
                "empty file; expected a header 'id,experiment,particle_type,x,y,z'", line=1
            )
        # newline=None: CR-only and CRLF endings read as lines (as points-csv reads them)
        reader = csv.reader(io.StringIO(text, newline=None))
        try:
            return self._read_rows(reader, ctx)
        except csv.Error as exc:
            # a field over csv's limit (131,072 characters), a quote left open...
            raise ctx.error(f"not a valid CSV line ({exc})", line=max(reader.line_num, 1)) from None

    def _read_rows(self, reader, ctx: ReadContext) -> pd.DataFrame:
        header = [c.strip() for c in next(reader)]
        lower = [c.lower() for c in header]
        missing = [c for c in REQUIRED if c not in lower]
        if missing:
            raise ctx.error(f"header lacks column(s) {missing}; found {header}", line=1)
        index = {c: lower.index(c) for c in lower}
        rows: dict[str, list] = {
            k: [] for k in ("tomogram", "particle", "x", "y", "z", "score", "record", "original")
        }
        for fields in reader:
            lineno = reader.line_num  # the physical line (a quoted field may span lines)
            if not fields or all(not f.strip() for f in fields):
                continue
            if len(fields) != len(header):
                raise ctx.error(f"expected {len(header)} fields, found {len(fields)}", line=lineno)
            for axis in ("x", "y", "z"):
                rows[axis].append(number(fields[index[axis]].strip(), ctx, lineno, axis))
            score = fields[index["score"]].strip() if "score" in index else ""
            rows["score"].append(
                number(score, ctx, lineno, "score", allow_na=True) if score else np.nan
            )
            rows["tomogram"].append(fields[index["experiment"]].strip())
            rows["particle"].append(ctx.particle_name(fields[index["particle_type"]]))
            rows["record"].append(lineno)
            rows["original"].append(",".join(fields))
        rows["tomogram"] = ctx.resolve_tomograms(rows["tomogram"])
        frame = canonical.make(
            rows,
            particle_field="particle_type",
            score_field="score" if "score" in index else None,
        )
        if units_are_voxels(ctx.options, "angstrom"):
            return ctx.voxels_to_angstrom(frame)
        self._warn_if_voxels(frame, ctx)
        return frame

    @staticmethod
    def _warn_if_voxels(frame: pd.DataFrame, ctx: ReadContext) -> None:
        if frame.empty:
            return
        largest = frame[["x", "y", "z"]].abs().max().to_numpy()
        for name, group in frame.groupby("tomogram"):
            tomo = ctx.tomograms.get(str(name))
            if (
                tomo is not None
                and tomo.shape is not None
                and tomo.voxel_size
                and tomo.voxel_size > 1.5
            ):
                fits_in_voxels = (
                    group[["x", "y", "z"]].max().to_numpy() <= np.asarray(tomo.shape) + 1
                ).all()
                if fits_in_voxels:
                    ctx.warn(
                        f"every coordinate of tomogram {name!r} fits inside its size in voxels "
                        f"{tomo.shape}: the values look like voxels, not Å. If so, re-import with "
                        "--option units=voxel"
                    )
                    return
        if tomo is None and largest.max() < MIN_PLAUSIBLE_EXTENT:
            ctx.warn(
                f"the largest coordinate is {largest.max():g}, less than {MIN_PLAUSIBLE_EXTENT:g} Å: "
                "the values look like voxels, not Å. If so, re-import with --option units=voxel "
                "and --voxel-size or --tomograms"
            )

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
        out.to_csv(path, index=False, float_format="%.4f")
