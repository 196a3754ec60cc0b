"""Build the report of a stored run: read the store (and the tomograms, region by region),
draw the figures (:mod:`picks.report.figures`), write the page (:mod:`picks.report.page`).

Layout of ``out_dir``::

    report.html      the page (open it from disk: no server, no network)
    report_files/    its PNGs (full-size slabs and their thumbnails, plots, galleries)

Writing a report again replaces both (``report_files/`` may hold only PNGs: anything else
there is refused rather than deleted). Same store, run and truth → the same bytes.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from picks.core.errors import PicksError
from picks.report.audit import audit_png
from picks.report.classes import ClassSections
from picks.report.cnn import CnnSection
from picks.report.context import FILES_DIR
from picks.report.data import RunData, run_objective, slugs
from picks.report.page import Page, Section, Table, Text, render
from picks.report.slabs import TomogramSections
from picks.report.truth import TruthSection

# audit_png and slugs are imported from here by the CLI and the tests
__all__ = ["FILES_DIR", "HTML_NAME", "Report", "audit_png", "build_report", "slugs", "write_report"]

HTML_NAME = "report.html"


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
    out_dir = Path(out_dir)
    files = _fresh_files_dir(out_dir / FILES_DIR)
    data = RunData.load(store, int(run_id), consensus)
    return _build(data, out_dir, files, truth, started)


def build_report_from_data(data: RunData, out_dir: str | Path) -> Report:
    """:func:`build_report` of data already read (:meth:`RunData.load`), into ``out_dir``
    (a folder of its own: its ``report_files`` is replaced): no store is touched, so a
    forked process can build it (workflows/aggregate.py, then :func:`publish_report`)."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    return _build(data, out_dir, _fresh_files_dir(out_dir / FILES_DIR), None, started)


def publish_report(staged: Path, out_dir: str | Path) -> Path:
    """Move a report built by :func:`build_report_from_data` in ``staged`` into
    ``out_dir``, where :func:`build_report` would have written it (the same checks on an
    existing ``report_files``); ``staged`` is removed. Returns the page's path."""
    out_dir = Path(out_dir)
    files = _fresh_files_dir(out_dir / FILES_DIR)
    files.rmdir()
    (staged / FILES_DIR).replace(files)
    path = out_dir / HTML_NAME
    (staged / HTML_NAME).replace(path)
    shutil.rmtree(staged)
    return path


def _build(
    data: RunData, out_dir: Path, files: Path, truth: pd.DataFrame | None, started: float
) -> Report:
    timings: dict[str, float] = {}
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


# -- the page: header and overview here, the other sections in their modules -----------------
class _Builder(TomogramSections, ClassSections, CnnSection, TruthSection):
    """The whole page: each section comes from its mixin; the header and overview are here."""

    # -- header and overview ---------------------------------------------------------------
    def header(self) -> list:
        d = self.data
        run = d.run
        out = [
            Text(
                f"Run {d.run_id}: {run.get('command')} ({d.method}), status {run.get('status')}, "
                f"started {run.get('started_at')}, picks {run.get('version')}, seed "
                f"{run.get('seed')}. {len(d.frame)} candidates in "
                f"{d.frame['tomogram'].nunique()} tomogram(s), {len(self.class_slugs)} "
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
        columns = ["cls", "decision", "radius", "support"]  # (only these: fewer copies)
        for name, group in f[columns].groupby("cls", sort=True):
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
                    f"chosen for the objective {run_objective(d.params)}",
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
