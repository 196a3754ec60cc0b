"""``picks init DIR``: a starting inputs file from a folder of picker outputs."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from picks.cli import get_app
from picks.core.inputs_file import read_inputs_file

runner = CliRunner()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    from picks.simulate.world import simulate

    return simulate(tmp_path_factory.mktemp("w") / "w", seed=4, n_tomograms=1, size=(96, 96, 48))


def test_init_detects_every_picker_and_says_what_it_cannot_decide(world, tmp_path):
    target = tmp_path / "inputs.toml"
    res = runner.invoke(
        get_app(), ["init", str(world.out / "pickers"), "--out", str(target), "--json"]
    )
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    adapters = {p["label"]: p["adapter"] for p in report["pickers"]}
    assert adapters == {
        "cryolo": "cryolo-cbox",
        "deepetpicker": "deepetpicker",
        "deepfinder": "deepfinder-xml",
        "yolo": "czii-csv",
        "yolo-slices": "czii-csv",
    }
    cryolo = next(p for p in report["pickers"] if p["label"] == "cryolo")
    assert cryolo["options"]["name"] == "{particle}/{}/{tomogram}"  # one folder per class
    deepfinder = next(p for p in report["pickers"] if p["label"] == "deepfinder")
    assert deepfinder["options"]["labels"].endswith("labels.txt")
    assert "deepetpicker: binning (voxel coordinates)" in report["undecided"]
    assert "no tomogram folder found" in report["undecided"]
    text = target.read_text()
    assert "UNDECIDED" in text and "binning = N" in text
    job = read_inputs_file(target)  # what it wrote reads back
    assert {p.label for p in job.pickers} == set(adapters)


def test_init_never_overwrites_and_needs_picker_outputs(world, tmp_path):
    from picks.core.errors import PicksError
    from picks.workflows.scaffold import scaffold

    target = tmp_path / "inputs.toml"
    target.write_text("keep me")
    with pytest.raises(PicksError, match="exists"):
        scaffold(world.out / "pickers", target)
    assert target.read_text() == "keep me"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(PicksError, match="found no picker output"):
        scaffold(empty)
