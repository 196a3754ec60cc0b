"""The report's class sections: picker agreement, support and score histograms (with the
decision's threshold), and galleries of the highest- and lowest-scoring candidates."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from picks.report import figures
from picks.report.context import SectionContext
from picks.report.page import Image, Section, Text
from picks.report.planes import crop

GALLERY_TILES = 8  # per gallery row
PROSE = {
    "latent": "P(particle) (latent-class posterior)",
    "cnn": "CNN score",
    "combined": "combined score",
    "vote": "vote score (support fraction)",
}


class ClassSections(SectionContext):
    # -- classes -----------------------------------------------------------------------------
    def classes(self) -> Section:
        d = self.data
        section = Section(
            "classes",
            "Classes",
            [
                Text(
                    "Per class: which pickers found which candidates, the support and score "
                    "of accepted and rejected candidates (dashed line: the acceptance "
                    "threshold, where the decision has one), and central slices of boxes "
                    f"around the {GALLERY_TILES} highest- and lowest-scoring accepted and the "
                    f"{GALLERY_TILES} highest-scoring rejected candidates.",
                    "note",
                )
            ],
        )
        max_support = float(d.frame["support"].max())
        # the columns the figures and the gallery read (the groups copy only these)
        columns = ["cls", "id", "tomogram", "x", "y", "z", "radius", "pickers", "support"]
        columns += ["score", "accepted", "decision"]
        for name, group in d.frame[columns].groupby("cls", sort=True):
            section.sections.append(self._class(str(name), group, max_support))
        return section

    def _class(self, name: str, group: pd.DataFrame, max_support: float) -> Section:
        d = self.data
        slug = self.class_slugs[name]
        blocks: list = []
        present = {p for text in group["pickers"].astype(str).unique() for p in text.split(",")}
        order = [p for p in d.pickers if p in present]
        path = figures.agreement(
            group["pickers"].astype(str),
            group["accepted"],
            order,
            self.files / f"agreement-{slug}.png",
        )
        blocks.append(Image(self._rel(path), f"picker agreement, {name}", "Picker agreement"))
        threshold, where = self._threshold(name, group)
        path = figures.histograms(
            group["support"].to_numpy(dtype=float),
            group["score"].to_numpy(dtype=float),
            group["decision"].to_numpy(),
            self.files / f"histograms-{slug}.png",
            threshold=threshold,
            score_label=PROSE.get(d.method, "decision score"),
            max_support=max_support,
        )
        caption = "Support and decision score" + (
            f"; threshold from the {where}" if threshold is not None else "; no score threshold"
        )
        if d.method == "vote":
            caption += " (a vote decides by support: see the run's support rule)"
        blocks.append(Image(self._rel(path), f"histograms, {name}", caption))
        rows = self._gallery_rows(group)
        path = figures.gallery(rows, self.files / f"gallery-{slug}.png")
        blocks.append(
            Image(
                self._rel(path),
                f"gallery, {name}",
                "Central slices (mean of 3 planes) of boxes 3 radii wide; dotted circle: the "
                "class radius; caption: consensus id and score (the lowest-scoring row leaves "
                "out those already shown in the highest-scoring one)",
            )
        )
        return Section(f"class-{slug}", f"Class {name}", blocks)

    def _gallery_rows(self, group: pd.DataFrame) -> list:
        # sorted on the keys alone (and the row's place), the few rows shown taken after
        own = pd.DataFrame(
            {
                "s": group["score"].fillna(-np.inf).to_numpy(),
                "id": group["id"].to_numpy(),
                "accepted": group["accepted"].to_numpy(dtype=bool),
                "row": np.arange(len(group)),
            }
        )[(group["decision"] != "reference").to_numpy()]
        accepted = own[own["accepted"]].sort_values(["s", "id"], ascending=[False, True])
        rejected = own[~own["accepted"]].sort_values(["s", "id"], ascending=[False, True])
        highest = accepted.head(GALLERY_TILES)
        # the lowest-scoring accepted ones not already shown among the highest
        lowest = accepted.iloc[GALLERY_TILES:].sort_values(["s", "id"], ascending=[True, True])
        rows = []
        for title, frame in (
            ("accepted,\nhighest score", highest),
            ("accepted,\nlowest score", lowest.head(GALLERY_TILES)),
            ("rejected,\nhighest score", rejected.head(GALLERY_TILES)),
        ):
            shown = group.iloc[frame["row"].to_numpy()]
            rows.append((title, [self._tile(r) for r in shown.itertuples()]))
        return rows

    def _tile(self, row) -> tuple[np.ndarray | None, str, float]:
        caption = f"#{row.id} {row.score:.3g}" if np.isfinite(row.score) else f"#{row.id} –"
        tomo = self.data.tomograms.get(row.tomogram)
        volume = self.volume(row.tomogram)
        if volume is None or tomo is None:
            return None, caption, 1.0
        vs = float(tomo.voxel_size)
        r = row.radius / vs
        half = max(4, math.ceil(1.5 * r))
        image = crop(volume, (row.x / vs, row.y / vs, row.z / vs), half, planes=1)
        return image, caption, r
