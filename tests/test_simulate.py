"""picks simulate: conventions checked against the real adapters, personalities, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree

from picks.core.particles import CZII
from picks.core.tomograms import TomogramSet, read_tomogram
from picks.plugins.adapter import ReadContext
from picks.simulate.world import picker_inputs, simulate


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """Two small tomograms: enough particles for every picker format to hold picks."""
    return simulate(
        tmp_path_factory.mktemp("sim") / "out", seed=3, n_tomograms=2, size=(96, 96, 48)
    )


@pytest.fixture(scope="module")
def crowded(tmp_path_factory):
    """One larger tomogram for the pickers' personalities."""
    return simulate(
        tmp_path_factory.mktemp("sim") / "out", seed=1, n_tomograms=1, size=(128, 128, 64)
    )


def _read_back(result, picker, registry) -> pd.DataFrame:
    tomograms = TomogramSet(read_tomogram(t.path) for t in result.tomograms)
    frames = []
    for item in picker_inputs(result):
        if item["label"] != picker.label:
            continue
        options = dict(item["options"])
        adapter = registry.get(options.pop("adapter"))
        particle = options.pop("particle", None)
        binning = float(options.pop("binning", 1))
        paths = sorted(item["path"].glob("*")) if item["path"].is_dir() else [item["path"]]
        for path in paths:
            if not adapter.matches(path):
                continue
            assert adapter.sniff(path) > 0, f"{adapter.name} does not recognise {path}"
            assert (
                registry.detect(path).name == adapter.name
                or item["options"]["adapter"] == "czii-csv"
            )
            ctx = ReadContext(
                path=path, tomograms=tomograms, binning=binning, particle=particle, options=options
            )
            frames.append(adapter.read(path, ctx))
    return pd.concat(frames, ignore_index=True)


def test_every_picker_file_reads_back_through_its_adapter(small, registry):
    """Convention check: what each emulated program wrote lands where the picker picked."""
    assert {p.adapter for p in small.pickers} == {
        "cryolo-cbox",
        "deepfinder-xml",
        "czii-csv",
        "deepetpicker",
    }
    for picker in small.pickers:
        intended = picker.picks
        assert len(intended), f"{picker.label} picked nothing"
        back = _read_back(small, picker, registry)
        assert len(back) == len(intended), picker.label
        for (tomogram, particle), group in intended.groupby(["tomogram", "particle"]):
            got = back[(back["tomogram"] == tomogram) & (back["particle"] == particle)]
            assert len(got) == len(group), (picker.label, tomogram, particle)
            distance, _ = cKDTree(got[["x", "y", "z"]].to_numpy()).query(
                group[["x", "y", "z"]].to_numpy()
            )
            # Written with 3+ decimals (DeepETPicker: integers of the binned voxel it picked).
            assert distance.max() < 0.01, (picker.label, distance.max())
        # Picks that sit on a particle are within the metric's reach of it after the round trip.
        truth = small.truth
        on = intended[intended["on"] == "particle"]
        assert len(on), picker.label
        for row in on.itertuples():
            true = truth[truth["experiment"] == row.tomogram].iloc[row.truth]
            radius = CZII[true["particle_type"]].radius
            match = back[(back["tomogram"] == row.tomogram)]
            d = np.linalg.norm(
                match[["x", "y", "z"]].to_numpy() - true[["x", "y", "z"]].to_numpy(float), axis=1
            )
            assert d.min() <= 0.5 * radius


def test_confident_picks_are_within_a_voxel_of_the_truth(small, registry):
    picker = next(p for p in small.pickers if p.label == "cryolo")
    back = _read_back(small, picker, registry)
    errors = []
    for tomogram, group in back.groupby("tomogram"):
        truth = small.truth[small.truth["experiment"] == tomogram]
        distance, _ = cKDTree(truth[["x", "y", "z"]].to_numpy()).query(
            group[["x", "y", "z"]].to_numpy()
        )
        errors.extend(distance[distance < 60.0])
    assert len(errors) >= 3
    assert np.median(errors) <= 10.0  # one voxel


def test_binned_picker_writes_integer_bin2_voxels(small):
    picker = next(p for p in small.pickers if p.label == "deepetpicker")
    for path in picker.paths:
        assert path.parent.name == "Coords_All" and path.name.endswith("_bin2.coords")
        rows = [line.split("\t") for line in path.read_text().splitlines()]
        assert all(len(r) == 4 and all(v.lstrip("-").isdigit() for v in r) for r in rows)
        values = np.array(rows, dtype=int)
        assert values[:, 0].min() >= 1 and values[:, 0].max() <= 6
        assert (values[:, 1:] <= np.array([48, 48, 24])).all()


def test_cbox_corners_are_centre_minus_half_box(small):
    picker = next(p for p in small.pickers if p.label == "cryolo")
    path = picker.paths[0]
    particle = path.parent.parent.name
    rows = [
        line.split()
        for line in path.read_text().splitlines()
        if line.startswith(" ") and "<NA>" in line
    ]
    first = picker.picks[
        (picker.picks["particle"] == particle) & (picker.picks["tomogram"] == path.stem)
    ].iloc[0]
    x, y, z, width = (float(v) for v in rows[0][:4])
    assert x + width / 2 == pytest.approx(first["x"] / 10.0, abs=1e-5)
    assert y + width / 2 == pytest.approx(first["y"] / 10.0, abs=1e-5)
    assert z == pytest.approx(first["z"] / 10.0, abs=1e-5)


def test_tomograms_and_bin2_headers(small):
    tomo = small.tomograms[0]
    with mrcfile.open(tomo.path, permissive=True) as mrc:
        assert mrc.data.dtype == np.float32 and mrc.data.shape == (48, 96, 96)
        assert float(mrc.voxel_size.x) == pytest.approx(10.0)
        full = mrc.data.copy()
    with mrcfile.open(tomo.path_bin2, permissive=True) as mrc:
        assert mrc.data.shape == (24, 48, 48)
        assert float(mrc.voxel_size.x) == pytest.approx(20.0)
        assert mrc.data[3, 4, 5] == pytest.approx(full[6:8, 8:10, 10:12].mean(), abs=1e-5)


def test_ground_truth_csv_and_copick_agree(small, registry):
    csv = registry.get("czii-csv").read(small.truth_csv, ReadContext(path=small.truth_csv))
    copick = registry.get("copick")
    files = sorted((small.out / "ground_truth" / "ExperimentRuns").rglob("*.json"))
    assert len(files) == 2 * 6
    frames = [
        copick.read(f, ReadContext(path=f)) for f in files if json.loads(f.read_text())["points"]
    ]
    both = pd.concat(frames, ignore_index=True)
    assert len(both) == len(csv) == sum(t.n_particles for t in small.tomograms)
    key = ["tomogram", "particle", "x", "y", "z"]
    a = csv[key].sort_values(key).reset_index(drop=True)
    b = both[key].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b, check_exact=False, atol=1e-3)
    # Particles never overlap and sit inside the volume.
    xyz = csv[["x", "y", "z"]].to_numpy()
    assert (xyz >= 0).all() and (xyz <= np.array([950, 950, 470])).all()
    for _, group in csv.groupby("tomogram"):
        radii = group["particle"].map(lambda p: CZII[p].radius).to_numpy()
        points = group[["x", "y", "z"]].to_numpy()
        d = np.linalg.norm(points[:, None] - points[None], axis=-1) + np.eye(len(points)) * 1e9
        assert (d >= radii[:, None] + radii[None, :]).all()


def test_manifest_describes_everything(small):
    manifest = json.loads(small.manifest.read_text())
    assert manifest["seed"] == 3 and manifest["voxel_size"] == 10.0
    assert [t["name"] for t in manifest["tomograms"]] == ["sim_01", "sim_02"]
    assert {p["label"] for p in manifest["pickers"]} == {
        "cryolo",
        "deepfinder",
        "yolo",
        "yolo-slices",
        "deepetpicker",
    }
    for picker in manifest["pickers"]:
        for entry in picker["imports"]:
            assert all((small.out / p).is_file() for p in entry["paths"])
    binned = next(p for p in manifest["pickers"] if p["label"] == "deepetpicker")
    assert binned["imports"][0]["binning"] == 2
    assert (small.out / manifest["truth"]["csv"]).is_file()
    assert "picks aggregate" in small.readme.read_text()


def test_personalities(crowded):
    by = {p.label: p.picks for p in crowded.pickers}

    def precision(frame):
        return float((frame["on"] == "particle").mean())

    def class_accuracy(frame):
        hits = frame[frame["on"] == "particle"]
        return float(hits["class_ok"].mean())

    conservative, aggressive = by["cryolo"], by["deepfinder"]
    assert precision(conservative) >= 0.8
    assert precision(conservative) > precision(aggressive)
    assert len(aggressive) > 3 * len(conservative)
    decoys = aggressive["on"].isin(["bead", "contamination", "membrane", "edge"]).sum()
    assert decoys >= 5 and (aggressive["on"] == "noise").sum() >= 5
    assert aggressive["particle"].nunique() >= 4
    assert class_accuracy(by["yolo"]) < class_accuracy(conservative)
    duplicated = by["yolo-slices"][by["yolo-slices"]["truth"] >= 0]["truth"].duplicated().sum()
    assert duplicated >= 1
    # The conservative picker misses particles the binned and aggressive ones find.
    found = {k: set(v.loc[v["truth"] >= 0, "truth"]) for k, v in by.items()}
    assert len(found["cryolo"]) < len(found["deepetpicker"] | found["deepfinder"])


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    def snapshot(root: Path) -> dict[str, bytes]:
        files = {}
        for path in sorted(root.rglob("*")):
            if path.is_file():
                data = path.read_bytes()
                if path.name == "copick_config.json":  # holds its absolute overlay path
                    config = json.loads(data)
                    config.pop("overlay_root")
                    data = json.dumps(config).encode()
                files[str(path.relative_to(root))] = data
        return files

    a = snapshot(simulate(tmp_path / "a", seed=7, n_tomograms=1, size=(64, 64, 40)).out)
    b = snapshot(simulate(tmp_path / "b", seed=7, n_tomograms=1, size=(64, 64, 40)).out)
    c = snapshot(simulate(tmp_path / "c", seed=8, n_tomograms=1, size=(64, 64, 40)).out)
    assert a == b
    assert a["tomograms/sim_01.mrc"] != c["tomograms/sim_01.mrc"]
    assert a["ground_truth.csv"] != c["ground_truth.csv"]


def test_rerun_replaces_output_and_foreign_folders_are_refused(tmp_path):
    from picks.core.errors import PicksError

    first = simulate(tmp_path / "out", seed=2, n_tomograms=2, size=(48, 48, 32))
    assert (first.out / "tomograms" / "sim_02.mrc").exists()
    again = simulate(tmp_path / "out", seed=2, n_tomograms=1, size=(48, 48, 32), bin2=False)
    assert not (again.out / "tomograms" / "sim_02.mrc").exists()
    assert not (again.out / "tomograms_bin2").exists()
    assert "deepetpicker" not in {p.label for p in again.pickers}
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "data.txt").write_text("mine")
    with pytest.raises(PicksError, match="not empty"):
        simulate(tmp_path / "foreign", size=(48, 48, 32))


def test_cli_simulate(tmp_path):
    from typer.testing import CliRunner

    from picks.cli import get_app

    result = CliRunner().invoke(
        get_app(),
        [
            "simulate",
            str(tmp_path / "w"),
            "--size",
            "48",
            "48",
            "32",
            "--tomograms",
            "1",
            "--seed",
            "4",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["tomograms"][0]["name"] == "sim_01"
    assert (tmp_path / "w" / "manifest.json").is_file()
    bad = CliRunner().invoke(
        get_app(), ["simulate", str(tmp_path / "x"), "--size", "8", "48", "32"]
    )
    assert bad.exit_code != 0


def test_decoys_are_listed_and_are_bright_where_listed(small):
    """decoys.csv names every gold bead; beads are the densest spots and sit off particles."""
    decoys = pd.read_csv(small.out / "decoys.csv")
    assert {"tomogram", "kind", "x", "y", "z"} <= set(decoys.columns)
    beads = decoys[decoys["kind"] == "gold-bead"]
    assert len(beads) > 0
    for tomo in small.tomograms:
        volume = mrcfile.read(tomo.path)
        mine = beads[beads["tomogram"] == tomo.name]
        truth = small.truth[small.truth["experiment"] == tomo.name]
        if truth.empty or mine.empty:
            continue
        distance, _ = cKDTree(truth[["x", "y", "z"]].to_numpy()).query(
            mine[["x", "y", "z"]].to_numpy()
        )
        assert (distance > 60.0).all()  # no bead inside the smallest particle
        idx = np.rint(mine[["z", "y", "x"]].to_numpy() / tomo.voxel_size).astype(int)
        idx = np.clip(idx, 0, np.array(volume.shape) - 1)
        assert np.median(volume[tuple(idx.T)]) > np.percentile(volume, 99)


def test_gold_beads_file_reads_as_negative_references(small, registry, tmp_path):
    """gold_beads.csv is detected (points-csv, tomogram column, Å) and lands on the beads;
    as --negative references it rejects the consensus picks on them."""
    from picks.core.store import Store
    from picks.workflows.aggregate import aggregate
    from picks.workflows.demo import aggregate_inputs

    beads_csv = small.out / "gold_beads.csv"
    assert registry.detect(beads_csv).name == "points-csv"
    tomograms = TomogramSet(read_tomogram(t.path) for t in small.tomograms)
    ctx = ReadContext(path=beads_csv, tomograms=tomograms, options={"units": "angstrom"})
    beads = registry.get("points-csv").read(beads_csv, ctx)
    decoys = pd.read_csv(small.out / "decoys.csv")
    truth = decoys[decoys["kind"] == "gold-bead"]
    assert len(beads) == len(truth) > 0
    np.testing.assert_allclose(beads[["x", "y", "z"]], truth[["x", "y", "z"]], atol=1e-3)
    assert list(beads["tomogram"]) == list(truth["tomogram"])

    with Store(tmp_path / "picks.db") as store:
        result = aggregate(
            store,
            aggregate_inputs(small),
            out=tmp_path / "out",
            tomograms=[Path(t.path) for t in small.tomograms],
            method="vote",
            noise_ratio=0,
            negatives=[f"beads={beads_csv}"],
            input_options=["beads:units=angstrom"],
            formats=["csv"],
        )
        consensus = pd.DataFrame(store.db["consensus"].rows_where("run_id = ?", [result.run_id]))
    vetoed = consensus[consensus["reason"].str.startswith("negative reference")]
    assert len(vetoed) and (vetoed["accepted"] == 0).all()
