"""picks simulate-pickers: the simulated pickers on tomograms picks did not make.

Outputs must be readable by the normal adapters (in the right frame), byte-identical for a
seed, and the contrast must be handled explicitly: a dark copy of a tomogram, detected as
dark, gives exactly the picks of the bright original; noise is refused, not guessed.
"""

from __future__ import annotations

import json
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree
from typer.testing import CliRunner

from picks.core.errors import MissingVoxelSize, PicksError
from picks.core.store import Store
from picks.evaluate import metric
from picks.simulate import volume as sv
from picks.simulate.external import (
    contrast_statistic,
    decide_contrast,
    normalise,
    read_volume,
    run_pickers,
)
from picks.simulate.world import simulate
from picks.workflows.aggregate import aggregate
from picks.workflows.demo import aggregate_inputs
from picks.workflows.evaluate import consensus_picks, store_pickers


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One small picks-simulated tomogram (bright particles) with its truth."""
    return simulate(
        tmp_path_factory.mktemp("sim") / "out", seed=5, n_tomograms=1, size=(96, 96, 48)
    )


@pytest.fixture(scope="module")
def picked(world, tmp_path_factory):
    """The pickers run once on the world's tomogram (contrast auto)."""
    messages: list[str] = []
    result = run_pickers(
        [world.tomograms[0].path],
        tmp_path_factory.mktemp("picked") / "out",
        seed=2,
        say=messages.append,
    )
    return result, messages


def write_mrc(path: Path, data: np.ndarray, voxel_size: float = 10.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(np.ascontiguousarray(data, dtype=np.float32))
        mrc.voxel_size = voxel_size
    return path


def output_bytes(out: Path) -> dict[str, bytes]:
    """Every picker file and the manifest, by relative path."""
    files = [p for p in sorted((out / "pickers").rglob("*")) if p.is_file()]
    return {str(p.relative_to(out)): p.read_bytes() for p in [*files, out / "manifest.json"]}


def test_outputs_are_read_by_the_adapters_in_the_pickers_frame(picked, tmp_path: Path):
    result, messages = picked
    assert any("BRIGHT" in m for m in messages), messages  # the decision is said, loudly
    assert [p.label for p in result.pickers] == [
        "cryolo",
        "deepfinder",
        "yolo",
        "yolo-slices",
        "deepetpicker",
    ]
    assert all(p.n_picks > 0 for p in result.pickers)
    assert (result.out / "tomograms" / "sim_01.mrc").resolve() == result.tomograms[0].source
    with Store(tmp_path / "picks.db") as store:
        aggregate(
            store,
            aggregate_inputs(result.out),
            out=tmp_path / "agg",
            tomograms=[result.out / "tomograms"],
            method="vote",
            formats=["csv"],
        )
        imported = store_pickers(store)
    for picker in result.pickers:
        got = imported[picker.label]
        assert len(got) == picker.n_picks, picker.label
        # same positions as the picker found (format rounding only): conventions round-trip
        distance, _ = cKDTree(picker.picks[["x", "y", "z"]].to_numpy(float)).query(
            got[["x", "y", "z"]].to_numpy(float)
        )
        assert distance.max() < 1.0, (picker.label, distance.max())
        assert set(got["particle"]) <= set(sv.CLASS_ORDER)
    # Without tomograms (a vote run), voxel sizes and names come with the inputs: same picks.
    with Store(tmp_path / "bare.db") as store:
        aggregate(
            store,
            aggregate_inputs(result.out, voxel_size=10.0),
            out=tmp_path / "bare",
            method="vote",
            formats=["csv"],
        )
        bare = store_pickers(store)
    columns = ["tomogram", "particle", "x", "y", "z"]
    for label, frame in imported.items():
        expected = frame[columns].sort_values(columns).reset_index(drop=True)
        got = bare[label][columns].sort_values(columns).reset_index(drop=True)
        pd.testing.assert_frame_equal(got, expected, check_dtype=False)


def test_same_seed_same_bytes(world, picked, tmp_path: Path):
    again = run_pickers([world.tomograms[0].path], tmp_path / "again", seed=2)
    assert output_bytes(again.out) == output_bytes(picked[0].out)


def test_dark_copy_is_detected_and_gives_the_same_picks(world, picked, tmp_path: Path):
    """The pickers see −image for a dark tomogram: a negated copy, detected as dark, must give
    the very bytes of the bright original (same name, same seed)."""
    with mrcfile.open(world.tomograms[0].path) as mrc:
        dark = write_mrc(tmp_path / "dark" / "sim_01.mrc", -np.asarray(mrc.data))
    messages: list[str] = []
    result = run_pickers([dark], tmp_path / "out", seed=2, say=messages.append)
    assert result.tomograms[0].contrast == "dark"
    assert any("DARK" in m for m in messages), messages
    bright, negated = output_bytes(picked[0].out), output_bytes(result.out)
    manifest = bright.pop("manifest.json"), negated.pop("manifest.json")
    assert bright == negated
    assert json.loads(manifest[1])["tomograms"][0]["contrast"] == "dark"


def test_contrast_statistic_and_decision():
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((48, 48, 48)).astype(np.float32)
    assert abs(np.log(contrast_statistic(noise, 10.0))) < np.log(1.15)
    with pytest.raises(PicksError, match="cannot tell the particle polarity"):
        decide_contrast("auto", {"noise": contrast_statistic(noise, 10.0)}, print)
    with pytest.raises(PicksError, match="different polarities"):
        decide_contrast("auto", {"a": 2.0, "b": 0.5}, print)
    said: list[str] = []
    assert decide_contrast("dark", {"a": 2.0}, said.append) == {"a": "dark"}
    assert "looks bright" in said[0] and "using dark as told" in said[0]
    with pytest.raises(PicksError, match="`contrast` 'white'"):
        decide_contrast("white", {"a": 2.0}, print)


def test_noise_is_refused_before_any_picking(tmp_path: Path):
    noise = np.random.default_rng(1).standard_normal((40, 48, 48))
    path = write_mrc(tmp_path / "noise.mrc", noise)
    with pytest.raises(PicksError, match="cannot tell"):
        run_pickers([path], tmp_path / "out")
    assert not (tmp_path / "out" / "pickers").exists()


def test_bad_inputs_are_clear_errors(tmp_path: Path):
    data = np.zeros((32, 32, 32), dtype=np.float32)
    a = write_mrc(tmp_path / "a" / "tomogram.mrc", data)
    b = write_mrc(tmp_path / "b" / "tomogram.mrc", data)
    with pytest.raises(PicksError, match="both named 'tomogram'"):
        run_pickers([a, b], tmp_path / "out")
    with pytest.raises(PicksError, match="different voxel sizes"):
        run_pickers([f"one={a}", f"two={write_mrc(tmp_path / 'c.mrc', data, 8.0)}"], tmp_path / "o")
    unset = write_mrc(tmp_path / "unset.mrc", data, 1.0)
    with pytest.raises(MissingVoxelSize):
        run_pickers([unset], tmp_path / "out")
    with pytest.raises(PicksError, match="lies inside `out`"):
        run_pickers([a], tmp_path / "a")


def test_cli_voxel_size_override_and_json(world, tmp_path: Path):
    from picks.cli import get_app

    with mrcfile.open(world.tomograms[0].path) as mrc:
        path = write_mrc(tmp_path / "in" / "TS_7.mrc", np.asarray(mrc.data), 1.0)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        get_app(),
        [
            *("simulate-pickers", "--tomograms", str(path), "--out", str(out)),
            *("--voxel-size", "10", "--contrast", "bright", "--json"),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["tomograms"][0]["name"] == "TS_7"
    assert report["tomograms"][0]["contrast"] == "bright"
    assert len(report["pickers"]) == 5
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["voxel_size"] == 10.0 and manifest["truth"] is None
    assert "picks aggregate" in (out / "README.txt").read_text()
    help_text = CliRunner().invoke(get_app(), ["simulate-pickers", "--help"]).output
    assert "--contrast" in help_text and "native formats" in help_text


# -- the independent polnet fixture ------------------------------------------------------------
def polnet_crop(polnet: Path, folder: Path, size: int, tomograms=(1, 2)):
    """Central ``size`` × ``size`` (full thickness) crops of the polnet tomograms as
    ``polnet_czii_0N.mrc`` and the truth inside them, shifted into the crop's frame."""
    truth = pd.read_csv(polnet / "ground_truth.csv").rename(
        columns={"experiment": "tomogram", "particle_type": "particle"}
    )
    paths, frames = [], []
    for i in tomograms:
        name = f"polnet_czii_0{i}"
        data = read_volume(polnet / name / "tomogram_snr0.5.mrc")
        y0, x0 = (data.shape[1] - size) // 2, (data.shape[2] - size) // 2
        paths.append(write_mrc(folder / f"{name}.mrc", data[:, y0 : y0 + size, x0 : x0 + size]))
        rows = truth[truth["tomogram"] == name].copy()
        rows["x"] -= 10.0 * x0
        rows["y"] -= 10.0 * y0
        inside = rows["x"].between(0, 10.0 * (size - 1)) & rows["y"].between(0, 10.0 * (size - 1))
        frames.append(rows[inside][["tomogram", "particle", "x", "y", "z"]])
    return paths, pd.concat(frames, ignore_index=True)


def test_polnet_fixture_pickers_find_its_particles(polnet_or_skip: Path, tmp_path: Path):
    """polnet is bright-on-dark with no CTF: auto-detected bright, and the pickers' picks land
    on polnet's particles (frame and contrast right), each scored by the CZII metric."""
    paths, truth = polnet_crop(polnet_or_skip, tmp_path / "crop", 128, tomograms=(1,))
    image = normalise(read_volume(paths[0]))
    assert contrast_statistic(image, 10.0) > 1.5
    result = run_pickers(paths, tmp_path / "out", optics=sv.Optics(defocus=0.0))
    assert result.tomograms[0].contrast == "bright"
    scores = {
        p.label: metric.score(truth, p.picks[["tomogram", "particle", "x", "y", "z"]])
        for p in result.pickers
    }
    every = pd.concat([p.picks for p in result.pickers], ignore_index=True)
    # class-blind recall of all pickers together: the particles are found where polnet put them
    distance, _ = cKDTree(every[["x", "y", "z"]].to_numpy(float)).query(
        truth[["x", "y", "z"]].to_numpy(float)
    )
    assert (distance <= 60.0).mean() > 0.6, (distance <= 60.0).mean()
    assert max(s.overall for s in scores.values()) > 0.25, {k: s.overall for k, s in scores.items()}


@pytest.fixture(scope="module")
def polnet_world(polnet_or_skip: Path, tmp_path_factory):
    """The simulated pickers on central 192 × 192 crops of both polnet tomograms, and a
    function scoring one aggregate run of them (accepted picks, CZII F4)."""
    folder = tmp_path_factory.mktemp("polnet")
    paths, truth = polnet_crop(polnet_or_skip, folder / "crop", 192)
    sim = run_pickers(paths, folder / "picked", optics=sv.Optics(defocus=0.0))

    def f4(label: str, *, tomograms: bool, **kwargs) -> float:
        # Without tomograms each input carries its picked voxel size and tomogram name.
        inputs = aggregate_inputs(sim.out, voxel_size=None if tomograms else 10.0)
        with Store(folder / f"{label}.db") as store:
            result = aggregate(
                store,
                inputs,
                out=folder / label,
                formats=["csv"],
                tomograms=[sim.out / "tomograms"] if tomograms else (),
                **kwargs,
            )
            candidates = consensus_picks(store, result.run_id)
        return metric.score(truth, candidates[candidates["accepted"]]).overall

    union = f4("union", tomograms=False, method="vote", min_support=1)
    assert union > 0.3, union  # the world is pickable: the comparisons below mean something
    return f4, union


@pytest.mark.slow
def test_default_without_tomograms_is_not_worse_than_union_on_polnet(polnet_world):
    """The guard of the default: on the independent polnet world, ``method="auto"`` without
    tomograms must score at least the union of all pickers (every clustered candidate)."""
    f4, union = polnet_world
    auto = f4("auto-nt", tomograms=False, method="auto")
    assert auto >= union, {"auto": auto, "union": union}


@pytest.mark.slow
def test_default_with_tomograms_is_not_worse_than_union_on_polnet(polnet_world):
    """The same guard with the tomograms given (``method="auto"``: the latent-class decision;
    the tomograms only register names and voxel sizes)."""
    f4, union = polnet_world
    auto = f4("auto", tomograms=True, method="auto")
    assert auto >= union, {"auto": auto, "union": union}
