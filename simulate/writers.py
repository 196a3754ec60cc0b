"""Write simulated picks the way the emulated programs do (``shared/reference/formats.md``).

These writers emulate *foreign* programs, so they deliberately do not use picks' own adapters:
the round-trip test reads their files back through the adapters to check the conventions.

* crYOLO 3D ``CBOX_3D/<tomo>.cbox`` (§1.2): STAR-like, ``_CoordinateX/_CoordinateY`` are the
  box's lower-left corner (centre − box/2), ``_CoordinateZ`` the centre slice, voxels, one
  model (and so one folder) per particle class, ``<NA>`` for missing values.
* DeepFinder object list XML (§2): ``<objlist><object obj_id class_label x y z cluster_size/>``,
  voxel centres of the segmented tomogram, 1-based integer class labels, ``labels.txt`` next
  to it mapping labels to names ("1 apo-ferritin").
* DeepETPicker ``Coords_All/<stem>.coords`` (§3): tab-separated ``class x y z`` integers,
  1-based class, voxels of the (binned) tomogram the network saw; ``<stem>`` is that
  tomogram's file stem.
* CZII submission CSV (§4): ``id,experiment,particle_type,x,y,z`` in Å plus ``score``.
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np
import pandas as pd

from picks.core.particles import CZII
from picks.simulate.volume import CLASS_ORDER

CBOX_COLUMNS = [
    "_CoordinateX",
    "_CoordinateY",
    "_CoordinateZ",
    "_Width",
    "_Height",
    "_Depth",
    "_EstWidth",
    "_EstHeight",
    "_Confidence",
    "_NumBoxes",
    "_Angle",
]


def class_label(name: str) -> int:
    """1-based label of a class in :data:`CLASS_ORDER` (DeepFinder/DeepETPicker channels)."""
    return CLASS_ORDER.index(name) + 1


def cryolo_box_size(name: str, voxel_size: float) -> int:
    """Box edge (voxels) of the crYOLO model for a class: even, ~20 % larger than the particle."""
    return int(2 * np.ceil(1.1 * CZII[name].radius / voxel_size))


def write_cbox(picks: pd.DataFrame, path: Path, voxel_size: float, particle: str) -> None:
    """One crYOLO 3D CBOX file for one tomogram and one class; ``picks`` are Å, canonical."""
    box = cryolo_box_size(particle, voxel_size)
    x = picks["x"].to_numpy(dtype=float) / voxel_size
    y = picks["y"].to_numpy(dtype=float) / voxel_size
    z = picks["z"].to_numpy(dtype=float) / voxel_size
    est = picks["size"].to_numpy(dtype=float) * 2 / voxel_size
    lines = ["", "data_global", "", "_cbox_format_version   1.0 ", "", "data_cryolo", "", "loop_"]
    lines += [f"{c} #{i}" for i, c in enumerate(CBOX_COLUMNS, start=1)]
    for xi, yi, zi, ei, conf in zip(
        x, y, z, est, picks["score"].to_numpy(dtype=float), strict=True
    ):
        values = [xi - box / 2, yi - box / 2, zi, box, box, box, ei, ei, conf]
        cells = [f"{v:10.6f}" for v in values] + [f"{max(1, round(ei)):d}", "<NA>"]
        lines.append(" " + "  ".join(cells) + " ")
    lines += ["", "data_cryolo_include", "", "loop_", "_slice_index #1"]
    lines += [f" {s:.6f} " for s in sorted({float(round(v)) for v in z})]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_deepfinder_xml(picks: pd.DataFrame, path: Path, voxel_size: float) -> None:
    """One DeepFinder object list for one tomogram (voxel centres, 3 decimals)."""
    lines = ["<objlist>"]
    xyz = picks[["x", "y", "z"]].to_numpy(dtype=float) / voxel_size
    for i, (row, (x, y, z)) in enumerate(zip(picks.itertuples(index=False), xyz, strict=True)):
        lines.append(
            f"  <object obj_id={quoteattr(str(i))} class_label={quoteattr(str(class_label(row.particle)))}"
            f' x="{x:.3f}" y="{y:.3f}" z="{z:.3f}" cluster_size="{int(row.cluster_size)}"/>'
        )
    lines.append("</objlist>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_labels(path: Path) -> None:
    """DeepFinder/DeepETPicker label map: one ``<label> <name>`` line per class."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{class_label(c)} {c}\n" for c in CLASS_ORDER), encoding="utf-8")


def write_deepetpicker(picks: pd.DataFrame, path: Path) -> None:
    """DeepETPicker ``Coords_All`` file: ``class x y z`` integers, tab-separated, no header."""
    lines = [
        f"{class_label(p)}\t{int(x)}\t{int(y)}\t{int(z)}"
        for p, x, y, z in zip(
            picks["particle"], picks["bin2_x"], picks["bin2_y"], picks["bin2_z"], strict=True
        )
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")


def write_czii_csv(picks: pd.DataFrame, path: Path) -> None:
    """CZII submission CSV with a score column (Å, experiment = tomogram name)."""
    out = pd.DataFrame(
        {
            "id": np.arange(len(picks)),
            "experiment": picks["tomogram"].to_numpy(),
            "particle_type": picks["particle"].to_numpy(),
            "x": picks["x"].to_numpy(dtype=float),
            "y": picks["y"].to_numpy(dtype=float),
            "z": picks["z"].to_numpy(dtype=float),
            "score": picks["score"].to_numpy(dtype=float),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    out.to_csv(path, index=False, float_format="%.3f", lineterminator="\n")
