"""What every section of the report shares: the run's data, the folder its PNGs go to, the
images and warnings collected so far, the tomograms' open volumes, and each class's decision
threshold. The sections (:mod:`~picks.report.slabs`, :mod:`~picks.report.classes`,
:mod:`~picks.report.cnn`, :mod:`~picks.report.truth`) are mixins over it, assembled in
:mod:`picks.report.build`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from picks.core.errors import PicksError
from picks.report.data import RunData, picker_letters, slugs
from picks.report.page import Text

FILES_DIR = "report_files"


class SectionContext:
    """The state the section mixins share; one per report (not thread-safe: volumes stay open
    until :meth:`close`)."""

    def __init__(self, data: RunData, files: Path) -> None:
        self.data = data
        self.files = files
        self.images: list[Path] = []
        self.warnings: list[str] = []
        self.letters = picker_letters(data.pickers)
        # over the distinct names (slugs takes the set of them)
        self.tomogram_slugs = slugs([str(t) for t in pd.unique(data.frame["tomogram"])])
        self.class_slugs = slugs(list(pd.unique(data.frame["cls"])))
        self._volumes: dict[str, object] = {}

    def close(self) -> None:
        for volume in self._volumes.values():
            if volume is not None:
                volume.close()

    def _rel(self, path: Path) -> str:
        self.images.append(path)
        return f"{FILES_DIR}/{path.name}"

    def _warn(self, text: str) -> Text:
        self.warnings.append(text)
        return Text(text, "warning")

    def volume(self, name: str):
        """The open volume of a tomogram, or None (not registered, file gone, unreadable)."""
        if name not in self._volumes:
            from picks.consensus.cnn.volumes import open_volume

            tomo = self.data.tomograms.get(name)
            volume = None
            if tomo is not None and tomo.path and tomo.shape and Path(tomo.path).exists():
                try:
                    volume = open_volume(tomo)
                except PicksError as exc:
                    self.warnings.append(f"tomogram {name}: {exc}")
            self._volumes[name] = volume
        return self._volumes[name]

    def _threshold(self, name: str, group: pd.DataFrame) -> tuple[float | None, str]:
        """The score threshold of this class's decision where the run records one, checked
        against the stored decisions (a threshold that does not separate them is not drawn)."""
        d = self.data
        threshold = None
        where = ""
        if len(d.classes) and name in set(d.classes["particle"].astype(str)):
            row = d.classes[d.classes["particle"].astype(str) == name].iloc[0]
            threshold, where = float(row["threshold"]), "latent-class model"
        elif d.method == "cnn" and d.models:
            given = (d.params.get("cnn_options") or {}).get("threshold")
            cards = [m["card"].get("decision") or {} for m in d.models]
            combine = bool((d.params.get("cnn_options") or {}).get("combine"))
            if given is not None:
                threshold, where = float(given), "given"
            elif not combine and all("threshold" in c for c in cards):
                threshold = float(np.mean([float(c["threshold"]) for c in cards]))
                where = "model card"
        if threshold is None:
            return None, ""
        own = group[group["decision"] != "reference"]
        score = own["score"].to_numpy(dtype=float)
        acc = own["accepted"].to_numpy(dtype=bool)
        tolerance = 1e-9 * max(1.0, abs(threshold))
        bad = (acc & (score < threshold - tolerance)) | (~acc & (score >= threshold - tolerance))
        if bad.any():
            self.warnings.append(
                f"class {name}: the stored threshold {threshold:.4g} ({where}) does not separate "
                f"{int(bad.sum())} stored decision(s); not drawn"
            )
            return None, ""
        return threshold, where
