"""The report's tomogram sections: per tomogram, slabs through its candidates drawn as
circles on the mean of a band of planes."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from picks.report import figures
from picks.report.context import SectionContext
from picks.report.page import Image, Images, Section, Text
from picks.report.planes import band

N_SLABS = 3
MAX_LABELS = 400  # picker letters drawn beside the circles of a slab up to this many


class TomogramSections(SectionContext):
    # -- tomograms ---------------------------------------------------------------------------
    def tomograms(self) -> Section:
        d = self.data
        section = Section(
            "tomograms",
            "Tomograms",
            [
                Text(
                    f"Per tomogram, {N_SLABS} slabs split the z range of its candidates in "
                    "equal parts. Each picture is the mean of the planes of a band one typical "
                    "particle thick at the middle of its part; every candidate of the part is "
                    "drawn as a circle of its class radius, solid when its centre lies in the "
                    "band, dotted otherwise, labelled with the letters of the pickers that "
                    "found it. Click a thumbnail for the full-size picture.",
                    "note",
                )
            ],
        )
        for name, group in d.frame.groupby("tomogram", sort=True):
            section.sections.append(self._tomogram(str(name), group))
        return section

    def _tomogram(self, name: str, group: pd.DataFrame) -> Section:
        tomo = self.data.tomograms.get(name)
        counts = group["decision"].value_counts()
        blocks: list = [
            Text(
                f"{len(group)} candidates: {int(counts.get('accepted', 0))} accepted, "
                f"{int(counts.get('rejected', 0))} rejected, "
                f"{int(counts.get('reference', 0))} decided by a reference."
            )
        ]
        sid = f"tomogram-{self.tomogram_slugs[name]}"
        if tomo is None or not tomo.shape or not tomo.voxel_size:
            blocks.append(
                self._warn(
                    f"tomogram {name} is not registered with its shape and voxel size: no "
                    "slabs (register it: picks tomograms PATH)"
                )
            )
            return Section(sid, f"Tomogram {name}", blocks)
        volume = self.volume(name)
        if volume is None:
            blocks.append(
                self._warn(
                    f"tomogram {name}: volume {tomo.path} not readable; circles drawn on a "
                    "blank background"
                )
            )
        nx, ny, nz = tomo.shape
        if volume is not None and tuple(volume.shape) != (nz, ny, nx):
            blocks.append(
                self._warn(
                    f"tomogram {name}: the volume's shape {volume.shape[::-1]} is not the "
                    f"registered {tomo.shape} (file replaced?); circles drawn on a blank "
                    "background"
                )
            )
            volume = None
        vs = float(tomo.voxel_size)
        x = group["x"].to_numpy(dtype=float) / vs
        y = group["y"].to_numpy(dtype=float) / vs
        z = group["z"].to_numpy(dtype=float) / vs
        radius = group["radius"].to_numpy(dtype=float) / vs
        zc = np.clip(z, 0, nz - 1)
        edges = np.linspace(float(zc.min()), float(zc.max()) + 1e-6, N_SLABS + 1)
        part = np.clip(np.searchsorted(edges, zc, side="right") - 1, 0, N_SLABS - 1)
        labels = [
            "".join(self.letters[p] for p in text.split(",") if p in self.letters)
            for text in group["pickers"].astype(str)
        ]
        images = []
        for k in range(N_SLABS):
            sel = part == k
            centre = (edges[k] + edges[k + 1]) / 2
            half = max(
                1.0, float(np.median(radius[sel])) if sel.any() else float(np.median(radius))
            )
            lo = max(0, math.floor(centre - half))
            hi = min(nz, max(lo + 1, math.ceil(centre + half)))
            image = band(volume, lo, hi, ny, nx) if volume is not None else None
            inside = (z >= lo - 0.5) & (z <= hi - 0.5)
            circles = pd.DataFrame(
                {
                    "x": x[sel],
                    "y": y[sel],
                    "radius": radius[sel],
                    "decision": group["decision"].to_numpy()[sel],
                    "label": np.asarray(labels, dtype=object)[sel]
                    if sel.sum() <= MAX_LABELS
                    else "",
                    "inside": inside[sel],
                }
            )
            stem = f"slab-{self.tomogram_slugs[name]}-{k + 1}"
            full = figures.slab_image(image, (nx, ny), circles, self.files / f"{stem}.png")
            thumb = figures.thumbnail(full, self.files / f"{stem}-thumb.png")
            n_acc = int((circles["decision"] == "accepted").sum())
            images.append(
                Image(
                    self._rel(full),
                    f"{name} slab {k + 1}",
                    f"z {edges[k]:.0f}–{edges[k + 1]:.0f} voxels: {int(sel.sum())} candidates "
                    f"({n_acc} accepted); picture: mean of planes {lo}–{hi - 1}",
                    thumb=self._rel(thumb),
                )
            )
        blocks.append(Images(images))
        return Section(sid, f"Tomogram {name}", blocks)
