"""Build the report of a stored run: read the store (and the tomograms, region by region),
draw the figures (:mod:`picks.report.figures`), write the page (:mod:`picks.report.page`).

Layout of ``out_dir``::

    report.html      the page (open it from disk: no server, no network)
    report_files/    its PNGs (full-size slabs and their thumbnails, plots, galleries)

Writing a report again replaces both (``report_files/`` may hold only PNGs: anything else
there is refused rather than deleted). Same store, run and truth → the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from picks.core.errors import PicksError
from picks.core.tomograms import Tomogram
from picks.report import figures
from picks.report.page import Image, Images, Page, Section, Table, Text, render

HTML_NAME = "report.html"
FILES_DIR = "report_files"
N_SLABS = 3
GALLERY_TILES = 8  # per gallery row
MAX_LABELS = 400  # picker letters drawn beside the circles of a slab up to this many
NO_CLASS = "(no class)"
PROSE = {
    "latent": "P(particle) (latent-class posterior)",
    "cnn": "CNN score",
    "combined": "combined score",
    "vote": "vote score (support fraction)",
}


@dataclass
class Report:
    """What :func:`build_report` wrote, and how long each stage took (seconds)."""

    path: Path
    images: list[Path]
    run_id: int
    n_candidates: int
    warnings: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "path": str(self.path),
            "run_id": self.run_id,
            "n_candidates": self.n_candidates,
            "n_images": len(self.images),
            "warnings": self.warnings,
            "timings": {k: round(v, 3) for k, v in self.timings.items()},
        }


def write_report(
    store,
    run_id: int,
    out_dir: str | Path,
    *,
    truth=None,
    consensus: pd.DataFrame | None = None,
) -> Path:
    """Write the report of run ``run_id`` into ``out_dir``; returns the page's path.

    ``truth``: ground truth (a canonical pick table; ``workflows.evaluate.read_picks_files``
    reads one from any picks file) adds the measured precision/recall/F-beta curves and the
    reliability diagram. ``consensus``: the run's ``store.consensus(run_id)`` when the caller
    has just read it (not read again: seconds at a million picks); it is not modified."""
    return build_report(store, run_id, out_dir, truth=truth, consensus=consensus).path


def build_report(
    store,
    run_id: int,
    out_dir: str | Path,
    *,
    truth=None,
    consensus: pd.DataFrame | None = None,
) -> Report:
    """:func:`write_report`, returning what was written and the stage timings."""
    started = time.perf_counter()
    timings: dict[str, float] = {}
    out_dir = Path(out_dir)
    files = _fresh_files_dir(out_dir / FILES_DIR)
    data = _RunData.load(store, int(run_id), consensus)
    if truth is not None and not isinstance(truth, pd.DataFrame):
        raise PicksError("truth: expected a pick table (read files with read_picks_files)")
    timings["read"] = time.perf_counter() - started
    builder = _Builder(data, files)
    sections = [builder.overview()]
    lap = time.perf_counter()
    try:
        sections.append(builder.tomograms())
        timings["slabs"] = time.perf_counter() - lap
        lap = time.perf_counter()
        sections.append(builder.classes())
        timings["classes"] = time.perf_counter() - lap
        lap = time.perf_counter()
        if data.models:
            sections.append(builder.cnn())
        timings["cnn"] = time.perf_counter() - lap
        lap = time.perf_counter()
        if truth is not None:
            sections.append(builder.truth(truth))
        timings["truth"] = time.perf_counter() - lap
    finally:
        builder.close()
    page = Page(
        f"picks report: run {data.run_id} ({data.method})",
        header=builder.header(),
        sections=sections,
    )
    path = out_dir / HTML_NAME
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render(page), encoding="utf-8")
    tmp.replace(path)
    timings["total"] = time.perf_counter() - started
    return Report(path, builder.images, data.run_id, len(data.frame), builder.warnings, timings)


def _fresh_files_dir(folder: Path) -> Path:
    if folder.exists():
        foreign = [p.name for p in folder.iterdir() if not (p.is_file() and p.suffix == ".png")]
        if foreign:
            raise PicksError(
                f"{folder} holds files a report did not write ({', '.join(sorted(foreign)[:3])})",
                hint="Choose another --out folder.",
            )
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


# -- what is read from the store ------------------------------------------------------------
@dataclass
class _RunData:
    run_id: int
    run: dict
    params: dict
    method: str
    frame: pd.DataFrame  # the candidates, with cls, decision, radius (Å)
    radii: dict[str, float]
    pickers: list[str]
    estimates: pd.DataFrame
    classes: pd.DataFrame
    tomograms: dict[str, Tomogram]
    models: list[dict]

    @classmethod
    def load(cls, store, run_id: int, consensus: pd.DataFrame | None = None) -> _RunData:
        run = store.get_run(run_id)
        # the caller's copy of store.consensus(run_id), if it has one; columns are added below
        frame = store.consensus(run_id) if consensus is None else consensus.copy()
        if frame.empty:
            raise PicksError(
                f"run {run_id} has no consensus picks", hint="'picks runs' lists the runs."
            )
        try:
            params = json.loads(run.get("params") or "{}")
        except ValueError:
            params = {}
        frame["cls"] = [NO_CLASS if p is None else str(p) for p in frame["particle"]]
        radii = _radii(params, sorted(set(frame["particle"].astype(str))))
        frame["radius"] = [
            radii["None" if p is None else str(p)] for p in frame["particle"].tolist()
        ]
        reference = frame["forced"].to_numpy(dtype=bool) | (
            frame["decided_by"].astype(str) == "reference"
        ).to_numpy(dtype=bool)
        accepted = frame["accepted"].fillna(0).astype(int).to_numpy(dtype=bool)
        frame["decision"] = np.where(
            reference, "reference", np.where(accepted, "accepted", "rejected")
        )
        frame["accepted"] = accepted
        # over the distinct lists only (a few combinations, not one per candidate)
        combos = pd.unique(frame["pickers"].astype(str).to_numpy(dtype=object))
        pickers = sorted({p for text in combos for p in text.split(",") if p})
        estimates, classes = store.estimates(run_id)
        return cls(
            run_id=run_id,
            run=run,
            params=params,
            method=str(run.get("method") or params.get("method") or ""),
            frame=frame,
            radii=radii,
            pickers=pickers,
            estimates=estimates,
            classes=classes,
            tomograms={t.name: t for t in store.tomograms()},
            models=store.run_models(run_id),
        )


def _objective(params: dict) -> str:
    """The run's decision objective (runs before ``--objective`` stored only their beta)."""
    if params.get("objective"):
        return str(params["objective"])
    beta = params.get("beta")
    return f"f{float(beta):g} (the maximum expected F-β)" if beta is not None else "f4"


def _radii(params: dict, classes: list[str]) -> dict[str, float]:
    """Radius (Å) per class as the run resolved it (its stored parameters), else the catalog
    with the run's ``--radius`` values; a class with neither is an error, not a guess."""
    from picks.core.particles import Catalog

    resolved = dict((params.get("resolved") or {}).get("radii") or {})
    catalog = Catalog().with_radii(dict(params.get("radii") or {}))
    out: dict[str, float] = {}
    for name in classes:
        if name in resolved:
            out[name] = float(resolved[name])
        elif name != "None" and name in catalog:
            out[name] = catalog.radius(name)
        elif params.get("box_size"):
            out[name] = float(params["box_size"]) / 2
        else:
            raise PicksError(
                f"no radius known for class {name!r} of this run (the run's parameters do not "
                "record one)"
            )
    return out


# File names are "<kind>-<slug>[-n][-thumb].png": a long class name is cut and ends with a
# digest of the whole name, so every name stays under the file system's limit and apart.
MAX_SLUG = 80


def _slug(text: str) -> str:
    keep = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "-" for c in str(text))
    keep = keep.strip("-") or "x"
    if len(keep) > MAX_SLUG:
        digest = hashlib.sha1(str(text).encode("utf-8", "surrogatepass")).hexdigest()[:12]
        keep = f"{keep[: MAX_SLUG - 13]}-{digest}"
    return keep


def slugs(names: list[str]) -> dict[str, str]:
    """A file-name and anchor-safe name per name, unique: names that reduce to the same slug
    (``TS 01`` and ``TS-01``) get ``-2``, ``-3``… in sorted order, so no image overwrites
    another."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for name in sorted(set(names)):
        base = _slug(name)
        slug, n = base, 1
        while slug.casefold() in used:  # case-insensitive file systems
            n += 1
            slug = f"{base}-{n}"
        used.add(slug.casefold())
        out[name] = slug
    return out


def _letters(pickers: list[str]) -> dict[str, str]:
    """A short code per picker for the slab labels: A, B, … (then A1, B1, …)."""
    out = {}
    for i, picker in enumerate(pickers):
        letter = chr(ord("A") + i % 26)
        out[picker] = letter if i < 26 else f"{letter}{i // 26}"
    return out


# -- the sections -----------------------------------------------------------------------------
class _Builder:
    def __init__(self, data: _RunData, files: Path) -> None:
        self.data = data
        self.files = files
        self.images: list[Path] = []
        self.warnings: list[str] = []
        self.letters = _letters(data.pickers)
        self.tomogram_slugs = slugs([str(t) for t in data.frame["tomogram"]])
        self.class_slugs = slugs(list(data.frame["cls"]))
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

    # -- header and overview ---------------------------------------------------------------
    def header(self) -> list:
        d = self.data
        run = d.run
        out = [
            Text(
                f"Run {d.run_id}: {run.get('command')} ({d.method}), status {run.get('status')}, "
                f"started {run.get('started_at')}, picks {run.get('version')}, seed "
                f"{run.get('seed')}. {len(d.frame)} candidates in "
                f"{d.frame['tomogram'].nunique()} tomogram(s), {len(set(d.frame['cls']))} "
                f"class(es), from {len(d.pickers)} picker(s): "
                + ", ".join(f"{self.letters[p]} = {p}" for p in d.pickers)
                + "."
            )
        ]
        if run.get("status") != "ok":
            out.append(
                self._warn(
                    f"run {d.run_id} did not finish (status {run.get('status')}): its "
                    "decisions may be incomplete"
                )
            )
        return out

    def overview(self) -> Section:
        d = self.data
        f = d.frame
        rows = []
        for name, group in f.groupby("cls", sort=True):
            counts = group["decision"].value_counts()
            rows.append(
                [
                    name,
                    float(group["radius"].iloc[0]),
                    len(group),
                    int(counts.get("accepted", 0)),
                    int(counts.get("rejected", 0)),
                    int(counts.get("reference", 0)),
                    float(group["support"].mean()),
                ]
            )
        blocks: list = [
            Table(
                [
                    "class",
                    "radius Å",
                    "candidates",
                    "accepted",
                    "rejected",
                    "reference",
                    "mean support",
                ],
                rows,
                caption="Decisions per class (reference: decided by a trusted positive/negative file)",
            )
        ]
        if len(d.classes):
            c = d.classes
            blocks.append(
                Table(
                    [
                        "class",
                        "β",
                        "threshold",
                        "candidates",
                        "accepted",
                        "expected particles",
                        "expected missed",
                        "expected precision",
                        "expected recall",
                        "expected F-β",
                    ],
                    c[
                        [
                            "particle",
                            "beta",
                            "threshold",
                            "n_candidates",
                            "n_accepted",
                            "expected_particles",
                            "expected_missed",
                            "expected_precision",
                            "expected_recall",
                            "expected_fbeta",
                        ]
                    ].values.tolist(),
                    caption="What the latent-class model expects per class (no ground truth "
                    "used): a candidate is accepted when P(particle) ≥ threshold, the threshold "
                    f"chosen for the objective {_objective(d.params)}",
                )
            )
        if len(d.estimates):
            e = d.estimates
            blocks.append(
                Table(
                    ["picker", "class", "reported", "recall", "false-report rate", "precision"],
                    e[
                        ["picker", "particle", "n_reported", "recall", "false_rate", "precision"]
                    ].values.tolist(),
                    caption="Picker reliability estimated from agreement alone: recall = "
                    "P(report | particle), false-report rate = P(report | junk candidate), "
                    "precision = P(particle | reported)",
                )
            )
        return Section("overview", "Overview", blocks)

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
            image = _band(volume, lo, hi, ny, nx) if volume is not None else None
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
        for name, group in d.frame.groupby("cls", sort=True):
            section.sections.append(self._class(str(name), group, max_support))
        return section

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
        own = group[group["decision"] != "reference"].copy()
        own["s"] = own["score"].fillna(-np.inf)
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
            rows.append((title, [self._tile(r) for r in frame.itertuples()]))
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
        image = _crop(volume, (row.x / vs, row.y / vs, row.z / vs), half, planes=1)
        return image, caption, r

    # -- CNN ---------------------------------------------------------------------------------
    def cnn(self) -> Section:
        section = Section(
            "cnn",
            "CNN",
            [
                Text(
                    "The models trained for this run or whose scores it stores: training "
                    "curve (the best epoch, whose weights were kept, dashed) and the training "
                    "data.",
                    "note",
                )
            ],
        )
        for model in self.data.models:
            card = model["card"]
            training = card.get("training") or {}
            counts = training.get("counts") or {}
            history = training.get("history") or []
            best = int(training.get("best_epoch") or 0)
            title = f"model {model['id']}"
            blocks: list = [Text(f"{model['path']}")]
            if history:
                path = figures.training_curve(
                    history, best, self.files / f"training-{model['id']}.png", title=title
                )
                blocks.append(Image(self._rel(path), f"training curve, {title}", ""))
            positives = counts.get("positives") or {}
            n_neg = sum(
                int(counts.get(k, 0))
                for k in ("noise", "negative_references", "image_vetoed", "latent_junk")
            )
            mined = (
                (training.get("hard_negatives") or {}).get("added")
                if isinstance(training.get("hard_negatives"), dict)
                else None
            )
            rows = [[c, int(n)] for c, n in sorted(positives.items())]
            rows.append(["negatives (noise, negative references, confident junk)", n_neg])
            if mined:
                rows.append(["hard negatives added", mined])
            rows.append(
                [
                    "training / validation samples",
                    f"{counts.get('train')} / {counts.get('validation')}",
                ]
            )
            validation = card.get("validation") or {}
            rows.append(
                [
                    "best epoch: validation loss / AUC",
                    f"{validation.get('loss', float('nan')):.3g} / "
                    f"{validation.get('auc', float('nan')):.3g}",
                ]
            )
            blocks.append(
                Table(
                    ["training data", "n"],
                    rows,
                    caption=f"positives per class ({counts.get('positive_rule', 'rule unknown')})",
                )
            )
            section.sections.append(Section(f"cnn-{model['id']}", title, blocks))
        return section

    # -- ground truth ------------------------------------------------------------------------
    def truth(self, truth: pd.DataFrame) -> Section:
        from picks.evaluate import metric

        d = self.data
        f = d.frame
        truth = truth.rename(columns={"experiment": "tomogram", "particle_type": "particle"})
        truth = truth[truth["tomogram"].astype(str).isin(set(f["tomogram"]))]
        truth = truth[truth["particle"].notna()]
        blocks: list = [
            Text(
                "Against the ground truth given with --truth, restricted to this run's "
                "tomograms (the CZII metric: a candidate hits a particle of its class within "
                "half the class radius).",
                "note",
            )
        ]
        known = {k: v for k, v in d.radii.items() if k != "None"}
        absent = sorted(set(truth["particle"].astype(str)) - set(known))
        if absent:
            blocks.append(
                self._warn(
                    f"truth classes with no candidates in this run, not scored: {', '.join(absent)}"
                )
            )
        truth = truth[truth["particle"].astype(str).isin(set(known))]
        if truth.empty:
            blocks.append(self._warn("the truth has no particle of this run's classes"))
            return Section("truth", "Against the ground truth", blocks)
        picks = f[f["particle"].notna()][["tomogram", "particle", "x", "y", "z", "score"]]
        accepted = f[f["accepted"] & f["particle"].notna()]
        score = metric.score(
            truth, accepted, radii=known, weights=dict.fromkeys(known, 1.0)
        ).by_class()
        expected = {str(r.particle): r for r in d.classes.itertuples()} if len(d.classes) else {}
        rows = []
        curves, thresholds = {}, {}
        for name in sorted(set(truth["particle"].astype(str))):
            s = score.get(name)
            e = expected.get(name)
            rows.append(
                [
                    name,
                    s.n_truth if s else 0,
                    s.n_picks if s else 0,
                    s.precision if s else None,
                    s.recall if s else None,
                    s.fbeta if s else None,
                    e.expected_precision if e is not None else None,
                    e.expected_recall if e is not None else None,
                    e.expected_fbeta if e is not None else None,
                ]
            )
            curves[name] = metric.threshold_curve(
                truth[truth["particle"].astype(str) == name],
                picks[picks["particle"].astype(str) == name],
                radii=known,
                weights={name: 1.0},
            )
            threshold, _ = self._threshold(name, f[f["cls"] == name])
            if threshold is not None:
                thresholds[name] = threshold
        blocks.append(
            Table(
                [
                    "class",
                    "particles",
                    "accepted",
                    "precision",
                    "recall",
                    "F4",
                    "expected precision",
                    "expected recall",
                    "expected F-β",
                ],
                rows,
                caption="Measured (accepted candidates against the truth) next to what the "
                "decision expected without it",
            )
        )
        path = figures.truth_curves(curves, thresholds, self.files / "truth-curves.png", beta=4.0)
        blocks.append(
            Image(
                self._rel(path),
                "precision, recall and F-beta against the threshold",
                "Per class: precision, recall and F4 of the candidates with score ≥ t; dotted "
                "line: the run's threshold",
            )
        )
        posterior = f["posterior"].to_numpy(dtype=float)
        if np.isfinite(posterior).any():
            # per class too: a class the model gets wrong hides in the pooled diagram
            bins = {"all classes": _reliability_bins(f, truth, known)}
            for name in sorted(set(truth["particle"].astype(str))):
                bins[name] = _reliability_bins(f[f["cls"] == name], truth, known)
            path = figures.reliability_diagram(bins, self.files / "reliability.png")
            blocks.append(
                Image(
                    self._rel(path),
                    "reliability diagram",
                    "Candidates binned by P(particle) (10 bins), all classes and per class: "
                    "mean prediction against the fraction that hit a true particle; on the "
                    "diagonal the posterior means what it says, below it the model is "
                    "over-confident (numbers: candidates per bin)",
                )
            )
        return Section("truth", "Against the ground truth", blocks)


def _reliability_bins(
    frame: pd.DataFrame, truth: pd.DataFrame, radii: dict[str, float], n_bins: int = 10
) -> pd.DataFrame:
    """Per posterior bin: mean posterior, fraction of candidates within half a radius of a
    true particle of their class (the metric's hit), and the count."""
    from picks.evaluate.metric import DEFAULT_MULTIPLIER, hits

    frame = frame[frame["particle"].notna() & np.isfinite(frame["posterior"])]
    hit = np.zeros(len(frame), dtype=bool)
    truth_groups = {
        k: g[["x", "y", "z"]].to_numpy(dtype=float)
        for k, g in truth.groupby([truth["tomogram"].astype(str), truth["particle"].astype(str)])
    }
    positions = np.arange(len(frame))
    for (tomo, cls), group in frame.groupby(["tomogram", "cls"], sort=True):
        ref = truth_groups.get((str(tomo), str(cls)))
        if ref is None or str(cls) not in radii:
            continue
        found = hits(
            ref, group[["x", "y", "z"]].to_numpy(dtype=float), DEFAULT_MULTIPLIER * radii[str(cls)]
        )
        hit[positions[frame.index.get_indexer(group.index)]] = [bool(h) for h in found]
    p = frame["posterior"].to_numpy(dtype=float)
    index = np.minimum((p * n_bins).astype(int), n_bins - 1)
    rows = []
    for b in range(n_bins):
        sel = index == b
        if sel.any():
            rows.append(
                {
                    "predicted": float(p[sel].mean()),
                    "measured": float(hit[sel].mean()),
                    "n": int(sel.sum()),
                }
            )
    return pd.DataFrame(rows, columns=["predicted", "measured", "n"])


# -- volume reads -----------------------------------------------------------------------------
def _band(volume, lo: int, hi: int, ny: int, nx: int, max_side: int = 1200) -> np.ndarray:
    """Mean of planes ``lo..hi-1`` (``[y, x]``), read one plane at a time and binned in-plane
    so that the longer side is at most ``max_side`` (a 4k tomogram never sits in memory)."""
    f = max(1, math.ceil(max(nx, ny) / max_side))
    by, bx = ny // f * f or ny, nx // f * f or nx
    total = np.zeros((by // f if f > 1 else ny, bx // f if f > 1 else nx), dtype=np.float64)
    for zz in range(lo, hi):
        plane = volume.region((zz, 0, 0), (zz + 1, ny, nx))[0].astype(np.float64)
        if f > 1:
            plane = plane[:by, :bx].reshape(by // f, f, bx // f, f).mean(axis=(1, 3))
        total += plane
    return total / max(1, hi - lo)


def _crop(volume, centre: tuple[float, float, float], half: int, planes: int) -> np.ndarray:
    """The mean of the ``2 × planes + 1`` planes around ``centre`` (voxels, x y z), a
    ``(2 half + 1)²`` window (NaN outside the volume)."""
    nz, ny, nx = volume.shape
    cx, cy, cz = (round(c) for c in centre)
    side = 2 * half + 1
    out = np.full((side, side), np.nan)
    z0, z1 = max(0, cz - planes), min(nz, cz + planes + 1)
    y0, y1 = max(0, cy - half), min(ny, cy + half + 1)
    x0, x1 = max(0, cx - half), min(nx, cx + half + 1)
    if z0 >= z1 or y0 >= y1 or x0 >= x1:
        return out
    block = volume.region((z0, y0, x0), (z1, y1, x1)).astype(np.float64).mean(axis=0)
    out[y0 - (cy - half) : y1 - (cy - half), x0 - (cx - half) : x1 - (cx - half)] = block
    return out


# -- picks audit ID --png ---------------------------------------------------------------------
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
    radius = _radii(params, ["None" if particle is None else str(particle)])[
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
            image = _crop(volume, (cx, cy, cz), half, planes=max(1, round(r / 2)))
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
