"""``picks audit ID --png``: the member picks of one consensus pick on a slab through it."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from picks.report import figures
from picks.report.data import NO_CLASS, class_radii
from picks.report.planes import crop


def audit_png(store, consensus_id: int, path: str | Path) -> Path:
    """The member picks of one consensus pick on a slab through it (``picks audit ID
    --png``): a window 6 radii wide around the pick, the mean of the planes within half a
    radius of it; each member a marker coloured by picker, with its distance and z offset."""
    from picks.consensus.cnn.volumes import open_volume
    from picks.core.store.audit import audit_consensus

    report = audit_consensus(store, consensus_id)
    c = report["consensus"]
    run = report["run"]
    params = run.get("params") if isinstance(run.get("params"), dict) else {}
    particle = c.get("particle")
    radius = class_radii(params, ["None" if particle is None else str(particle)])[
        "None" if particle is None else str(particle)
    ]
    tomo = {t.name: t for t in store.tomograms()}.get(c["tomogram"])
    vs = float(tomo.voxel_size) if tomo is not None and tomo.voxel_size else 1.0
    r = radius / vs
    cx, cy, cz = float(c["x"]) / vs, float(c["y"]) / vs, float(c["z"]) / vs
    half = max(16, math.ceil(3 * r))
    image = None
    window = (cx - half - 0.5, cx + half + 0.5, cy - half - 0.5, cy + half + 0.5)
    if tomo is not None and tomo.path and tomo.shape and Path(tomo.path).exists():
        with open_volume(tomo) as volume:
            image = crop(volume, (cx, cy, cz), half, planes=max(1, round(r / 2)))
        window = (
            round(cx) - half - 0.5,
            round(cx) + half + 0.5,
            round(cy) - half - 0.5,
            round(cy) + half + 0.5,
        )
    members = pd.DataFrame(report["members"])
    if members.empty:
        members = pd.DataFrame(columns=["picker", "x", "y", "z", "distance"])
    view = pd.DataFrame(
        {
            "picker": members["picker"].astype(str),
            "x": members["x"].astype(float) / vs,
            "y": members["y"].astype(float) / vs,
            "dz": (members["z"].astype(float) - float(c["z"])) / vs,
            "distance": members["distance"].astype(float),
        }
    )
    decision = "accepted" if c["accepted"] else "rejected"
    title = (
        f"consensus pick {c['id']} ({particle or NO_CLASS}, {c['tomogram']}, run "
        f"{c['run_id']}): {decision}, support {c['support']:g}"
        + ("" if image is not None else " (no volume)")
    )
    return figures.members_view(image, window, (cx, cy), r, view, Path(path), title=title)
