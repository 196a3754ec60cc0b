"""``picks report``: the HTML report of a run (issue 12 §2) and ``picks audit ID --png``.

One small simulated world (``run_demo``, 2 tomograms of 96×96×48 voxels, ground truth) with a
latent-class run and a vote run over the same picks serves every test here.
"""

from __future__ import annotations

import json
import shutil
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from picks.cli import get_app
from picks.core.store import Store
from picks.report import figures
from picks.report.build import FILES_DIR, HTML_NAME, audit_png, build_report, slugs

runner = CliRunner()
XHTML = "{http://www.w3.org/1999/xhtml}"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """(folder, db, latent run id, vote run id, truth table)."""
    from picks.workflows.aggregate import aggregate
    from picks.workflows.demo import aggregate_inputs, run_demo
    from picks.workflows.evaluate import read_picks_files

    folder = tmp_path_factory.mktemp("report") / "demo"
    demo = run_demo(folder, seed=3, n_tomograms=2, size=(96, 96, 48), method="latent", plot=False)
    with Store(demo.db) as store:
        vote = aggregate(
            store,
            aggregate_inputs(demo.simulation),
            out=folder / "vote",
            tomograms=[demo.simulation.out / "tomograms"],
            method="vote",
            seed=3,
        )
        truth = read_picks_files([demo.simulation.truth_csv], tomograms=store.tomograms())
    return folder, demo.db, demo.aggregate.run_id, vote.run_id, truth


def _parse(html_path: Path) -> ET.Element:
    # well-formed: an XML parser reads the whole page
    return ET.fromstring(html_path.read_text(encoding="utf-8"))


def _links(root: ET.Element) -> list[str]:
    out = [img.get("src") for img in root.iter(f"{XHTML}img")]
    out += [a.get("href") for a in root.iter(f"{XHTML}a")]
    return [str(v) for v in out]


def _section_ids(root: ET.Element) -> set[str]:
    return {s.get("id") for s in root.iter(f"{XHTML}section")}


def _pngs(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((folder / FILES_DIR).iterdir())}


def test_report_parses_links_exist_and_has_a_section_per_tomogram_and_class(
    world, tmp_path, record_property
):
    _folder, db, run_id, _vote, truth = world
    with Store(db) as store:
        consensus = store.consensus(run_id)
        started = time.perf_counter()
        report = build_report(store, run_id, tmp_path / "out", truth=truth)
    record_property("report_seconds", round(time.perf_counter() - started, 2))
    record_property("report_timings", json.dumps(report.timings))
    assert report.path == tmp_path / "out" / HTML_NAME
    root = _parse(report.path)
    links = _links(root)
    files = [v for v in links if not v.startswith("#")]
    assert files, "the page references no image"
    for value in files:
        # relative, inside the report folder, no network
        assert "://" not in value and not value.startswith("/") and ".." not in value, value
        assert (report.path.parent / value).is_file(), value
    anchors = {v[1:] for v in links if v.startswith("#")}
    assert anchors <= _section_ids(root)
    # every written image is referenced (no stray files), and every referenced one written
    referenced = {Path(v).name for v in files}
    assert referenced == {p.name for p in (report.path.parent / FILES_DIR).iterdir()}
    ids = _section_ids(root)
    for tomogram, slug in slugs(list(consensus["tomogram"])).items():
        assert f"tomogram-{slug}" in ids, tomogram
    for particle, slug in slugs(list(consensus["particle"].astype(str))).items():
        assert f"class-{slug}" in ids, particle
    # thumbnails link to the full-size slabs
    for a in root.iter(f"{XHTML}a"):
        img = a.find(f"{XHTML}img")
        if img is not None:
            assert img.get("src").endswith("-thumb.png")
            assert a.get("href") == img.get("src").replace("-thumb.png", ".png")
    # --truth: measured curves and the reliability diagram
    assert "truth" in ids
    assert {"truth-curves.png", "reliability.png"} <= referenced
    text = report.path.read_text(encoding="utf-8")
    # the latent run's estimates are shown
    assert "expected F-β" in text and "false-report rate" in text
    assert report.timings["total"] > 0 and report.n_candidates == len(consensus)


def test_report_without_truth_has_no_truth_section(world, tmp_path):
    _folder, db, run_id, _vote, _truth = world
    with Store(db) as store:
        report = build_report(store, run_id, tmp_path / "out")
    root = _parse(report.path)
    assert "truth" not in _section_ids(root)
    names = {Path(v).name for v in _links(root) if not v.startswith("#")}
    assert "truth-curves.png" not in names and "reliability.png" not in names


def test_report_is_deterministic(world, tmp_path):
    _folder, db, run_id, _vote, truth = world
    with Store(db) as store:
        a = build_report(store, run_id, tmp_path / "a", truth=truth)
        b = build_report(store, run_id, tmp_path / "b", truth=truth)
        # again into the same folder: replaced, same bytes
        again = build_report(store, run_id, tmp_path / "a", truth=truth)
    assert a.path.read_bytes() == b.path.read_bytes() == again.path.read_bytes()
    pngs_a, pngs_b = _pngs(tmp_path / "a"), _pngs(tmp_path / "b")
    assert pngs_a.keys() == pngs_b.keys() and len(pngs_a) >= 10
    assert all(pngs_a[k] == pngs_b[k] for k in pngs_a)
    for data in pngs_a.values():
        assert data.startswith(PNG_SIGNATURE)
        # no Software/date text chunk: nothing that changes with the matplotlib version or time
        assert b"tEXt" not in data and b"tIME" not in data


def test_vote_run_report_works_without_estimates(world, tmp_path):
    _folder, db, run_id, vote_id, truth = world
    with Store(db) as store:
        assert store.estimates(vote_id)[0].empty
        report = build_report(store, vote_id, tmp_path / "vote", truth=truth)
        latent = build_report(store, run_id, tmp_path / "latent")
    text = report.path.read_text(encoding="utf-8")
    _parse(report.path)
    assert f"run {vote_id} (vote)" in text
    assert "a vote decides by support" in text
    assert "false-report rate" not in text  # no picker estimates for a vote run
    # the vote run stores no posterior: no reliability diagram, the curves are still drawn
    names = {Path(v).name for v in _links(_parse(report.path)) if not v.startswith("#")}
    assert "truth-curves.png" in names and "reliability.png" not in names
    assert "threshold from the latent-class model" in latent.path.read_text(encoding="utf-8")


def test_a_missing_volume_is_reported_and_circles_still_drawn(world, tmp_path):
    from picks.core.tomograms import Tomogram

    _folder, db, run_id, _vote, _truth = world
    copy = tmp_path / "copy.db"
    shutil.copy(db, copy)
    with Store(copy) as store:
        tomo = store.tomograms().get("sim_01")
        store.add_tomograms(
            [Tomogram(tomo.name, str(tmp_path / "gone.mrc"), tomo.voxel_size, tomo.shape)]
        )
        report = build_report(store, run_id, tmp_path / "out")
    assert any("sim_01" in w and "not readable" in w for w in report.warnings)
    text = report.path.read_text(encoding="utf-8")
    assert "circles drawn on a blank background" in text
    assert (tmp_path / "out" / FILES_DIR / "slab-sim_01-1.png").is_file()


def test_foreign_files_in_the_images_folder_are_refused(world, tmp_path):
    from picks.core.errors import PicksError

    _folder, db, run_id, _vote, _truth = world
    (tmp_path / "out" / FILES_DIR).mkdir(parents=True)
    (tmp_path / "out" / FILES_DIR / "notes.txt").write_text("mine")
    with Store(db) as store, pytest.raises(PicksError, match="report did not write"):
        build_report(store, run_id, tmp_path / "out")
    assert (tmp_path / "out" / FILES_DIR / "notes.txt").read_text() == "mine"


def test_cli_report_json_and_default_run(world, tmp_path, record_property):
    folder, db, _run, vote_id, _truth = world
    truth_csv = folder / "data" / "ground_truth.csv"
    assert truth_csv.is_file()
    app = get_app()
    result = runner.invoke(
        app,
        [
            "report",
            "--db",
            str(db),
            "--out",
            str(tmp_path / "r"),
            "--truth",
            str(truth_csv),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["run_id"] == vote_id  # the latest finished run
    assert data["n_images"] > 0 and data["timings"]["total"] > 0
    record_property("cli_report_timings", json.dumps(data["timings"]))
    assert (tmp_path / "r" / HTML_NAME).is_file()
    result = runner.invoke(app, ["report", "999", "--db", str(db), "--out", str(tmp_path / "x")])
    assert result.exit_code != 0 and "999" in str(result.exception or result.output)


def test_audit_png_draws_the_members(world, tmp_path):
    _folder, db, run_id, _vote, _truth = world
    with Store(db) as store:
        consensus = store.consensus(run_id)
    ident = int(consensus.sort_values(["n_members", "id"], ascending=[False, True])["id"].iloc[0])
    app = get_app()
    out = tmp_path / "audit.png"
    result = runner.invoke(app, ["audit", str(ident), "--db", str(db), "--png", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(PNG_SIGNATURE)
    with Store(db) as store:
        again = audit_png(store, ident, tmp_path / "again.png")
    assert again.read_bytes() == out.read_bytes()
    result = runner.invoke(
        app, ["audit", "1", "--pick", "--db", str(db), "--png", str(tmp_path / "p.png")]
    )
    assert result.exit_code != 0 and not (tmp_path / "p.png").exists()


def test_training_curve_and_blank_slab_figures(tmp_path):
    history = [
        {"epoch": e, "loss": 1 / e, "val_loss": 1.2 / e + 0.01 * e, "val_auc": 0.5 + 0.04 * e}
        for e in range(1, 9)
    ]
    a = figures.training_curve(history, 5, tmp_path / "a.png", title="model 1")
    b = figures.training_curve(history, 5, tmp_path / "b.png", title="model 1")
    assert a.read_bytes() == b.read_bytes() and a.read_bytes().startswith(PNG_SIGNATURE)
    circles = pd.DataFrame(
        {
            "x": [10.0, 40.0],
            "y": [12.0, 30.0],
            "radius": [5.0, 8.0],
            "decision": ["accepted", "reference"],
            "label": ["AB", ""],
            "inside": [True, False],
        }
    )
    slab = figures.slab_image(None, (64, 48), circles, tmp_path / "slab.png")
    from PIL import Image

    with Image.open(slab) as image:
        assert image.size == (600, 450)  # upscaled to at least 600 px, aspect kept
    thumb = figures.thumbnail(slab, tmp_path / "thumb.png", width=200)
    with Image.open(thumb) as image:
        assert image.size == (200, 150)


def test_contrast_ignores_outliers_and_nan():
    image = np.zeros((50, 50))
    image[:25] = 1.0
    image[0, 0] = 1e6  # a gold bead
    image[1, 1] = np.nan
    lo, hi = figures.contrast(image)
    assert lo == 0.0 and hi == 1.0


def test_a_run_without_tomograms_gets_a_report_without_pictures(world, tmp_path):
    from picks.workflows.aggregate import aggregate
    from picks.workflows.demo import aggregate_inputs

    folder, _db, _run, _vote, truth = world
    with Store(tmp_path / "picks.db") as store:
        result = aggregate(
            store,
            aggregate_inputs(folder / "data", voxel_size=10.0),
            out=tmp_path / "out",
            method="latent",
        )
        report = build_report(store, result.run_id, tmp_path / "out", truth=truth)
    root = _parse(report.path)
    assert any("not registered" in w for w in report.warnings)
    names = {Path(v).name for v in _links(root) if not v.startswith("#")}
    assert not any(n.startswith("slab-") for n in names)
    assert any(n.startswith("agreement-") for n in names) and "reliability.png" in names
    for value in names:
        assert (report.path.parent / FILES_DIR / value).is_file()


def _add_model(store, run_id: int, threshold: float) -> None:
    history = [
        {"epoch": e, "loss": 1 / e, "val_loss": 1 / e + 0.02 * e, "val_auc": 0.6 + 0.03 * e}
        for e in range(1, 7)
    ]
    card = {
        "decision": {"threshold": threshold},
        "training": {
            "history": history,
            "best_epoch": 4,
            "counts": {
                "positives": {"ribosome": 12, "apo-ferritin": 9},
                "positive_rule": "full support",
                "noise": 40,
                "negative_references": 3,
                "train": 50,
                "validation": 14,
            },
        },
        "validation": {"loss": 0.31, "auc": 0.88},
    }
    with store.transaction():
        store.db["models"].insert(
            {
                "run_id": run_id,
                "path": "/models/m.keras",
                "sha256": "ab" * 32,
                "card": json.dumps(card),
            }
        )


def test_cnn_section_training_curve_and_a_threshold_that_does_not_fit(world, tmp_path):
    _folder, db, _run, vote_id, _truth = world
    copy = tmp_path / "copy.db"
    shutil.copy(db, copy)
    with Store(copy) as store:
        _add_model(store, vote_id, threshold=0.5)
        # a CNN run's threshold comes from its model cards; here the stored decisions are the
        # vote's, which that threshold does not separate: it must not be drawn
        store.db["runs"].update(vote_id, {"method": "cnn"})
        models = store.run_models(vote_id)
        report = build_report(store, vote_id, tmp_path / "out")
    assert [m["card"]["training"]["best_epoch"] for m in models] == [4]
    root = _parse(report.path)
    assert "cnn" in _section_ids(root)
    names = {Path(v).name for v in _links(root) if not v.startswith("#")}
    assert f"training-{models[0]['id']}.png" in names
    text = report.path.read_text(encoding="utf-8")
    assert "negatives (noise, negative references, confident junk)" in text and ">43<" in text
    assert any("does not separate" in w for w in report.warnings)


def test_names_that_reduce_to_the_same_slug_stay_apart():
    out = slugs(["TS 01", "TS-01", "ts-01", "Ω", "a/b"])
    assert len({v.casefold() for v in out.values()}) == 5
    assert out["TS 01"] == "TS-01" and out["TS-01"] == "TS-01-2" and out["a/b"] == "a-b"
    assert all(v.isascii() and "/" not in v for v in out.values())


def test_aggregate_writes_the_report_by_default(tmp_path):
    from picks.workflows.aggregate import aggregate

    for name, dx in (("a", 0), ("b", 7)):  # two pickers a few Å apart (other bytes)
        rows = "".join(f"{i},TS_1,ribosome,{100 * i + dx},300,200\n" for i in range(1, 6))
        (tmp_path / f"{name}.csv").write_text("id,experiment,particle_type,x,y,z\n" + rows)
    with Store(tmp_path / "p.db") as store:
        result = aggregate(
            store,
            [f"a={tmp_path / 'a.csv'}", f"b={tmp_path / 'b.csv'}"],
            out=tmp_path / "out",
            formats=["csv"],
        )
        quiet = aggregate(
            store,
            [f"a={tmp_path / 'a.csv'}", f"b={tmp_path / 'b.csv'}"],
            out=tmp_path / "out2",
            formats=["csv"],
            report=False,
        )
    reports = [r for r in result.outputs if r["format"] == "report"]
    assert reports and Path(reports[0]["path"]) == tmp_path / "out" / HTML_NAME
    _parse(tmp_path / "out" / HTML_NAME)
    assert not (tmp_path / "out2" / HTML_NAME).exists()
    assert not [r for r in quiet.outputs if r["format"] == "report"]


def test_per_value_is_the_plain_loop() -> None:
    """RunData's class and radius columns: ``fn`` per distinct text, the column (values and
    dtype) the per-candidate loop gives, None and NaN told apart."""
    from picks.report.data import per_value

    columns = [
        [None, "a", "b", "a", None],
        [np.nan, "a", None, "b", None, np.nan],
        ["a"] * 5,
        [None] * 3,
        [1, "a"],  # not all text: the loop itself
        [],
    ]
    functions = [
        lambda p: "(no class)" if p is None else str(p),
        lambda p: {"a": 1.5, "b": 2.0}.get(p, 3.0),
        lambda p: 1 if p == "a" else 2,
    ]
    for values in columns:
        column = pd.Series(values, dtype=object)
        for fn in functions:
            index = np.arange(len(values))[::-1] * 2  # (not a RangeIndex)
            plain = pd.DataFrame({"q": range(len(values))}, index=index)
            fast = plain.copy()
            plain["c"] = [fn(v) for v in column]
            fast["c"] = per_value(column, fn)
            assert fast["c"].dtype == plain["c"].dtype
            assert fast.equals(plain)
