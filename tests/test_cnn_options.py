"""CnnOptions: every CNN option typed and checked once; errors name the parameter, the CLI the
flag; what a run records; and the vocabularies it spells out equal the library's."""

from __future__ import annotations

import dataclasses
import json

import pytest
from typer.testing import CliRunner

from picks.cli import get_app
from picks.consensus.cnn.options import CnnOptions, as_options
from picks.core.errors import PicksError


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"epochs": 0}, "`epochs` must be at least 1"),
        ({"epochs": 2.5}, "`epochs` 2.5: expected a whole number"),
        ({"epochs": True}, "`epochs` True"),
        ({"box": 4}, "`box` must be at least 8"),
        ({"patience": 0}, "`patience` must be at least 1"),
        ({"batch_size": 0}, "`batch_size` must be at least 1"),
        ({"threshold": 1.5}, "`threshold` 1.5: expected a probability"),
        ({"threshold": float("nan")}, "`threshold` nan: expected a finite number"),
        ({"margin": 0}, "`margin` 0: expected a number > 0"),
        ({"working_voxel_size": -1.0}, "`working_voxel_size` -1.0"),
        ({"max_outside": 1.5}, "`max_outside` 1.5: expected a fraction"),
        ({"typicality_alpha": 0}, "`typicality_alpha` 0.0"),
        ({"val_fraction": 1.0}, "`val_fraction` 1.0"),
        ({"hard_negatives": -1}, "`hard_negatives` -1"),
        ({"device": "tpu"}, "`device` 'tpu': expected one of auto, cpu, gpu"),
        ({"edge": "wrap"}, "`edge` 'wrap'"),
        ({"reader": "zarr"}, "`reader` 'zarr'"),
        ({"positives": "some"}, "`positives` 'some'"),
        ({"combine": "yes"}, "`combine` 'yes': expected True or False"),
        ({"model": []}, "`model`: no model given"),
        ({"model": [3]}, "`model` [3]"),
        ({"widths": ()}, "`widths`: expected at least one"),
    ],
)
def test_each_bad_option_is_an_error_that_names_the_parameter(options, message) -> None:
    with pytest.raises(PicksError) as info:
        CnnOptions(**options)
    assert str(info.value).startswith(message), str(info.value)


def test_values_are_normalised_and_frozen() -> None:
    options = CnnOptions(model="a.keras", epochs=3.0, threshold=1, widths=[4, 8])
    assert options.model == ("a.keras",) and options.epochs == 3 and type(options.epochs) is int
    assert options.threshold == 1.0 and options.widths == (4, 8)
    assert CnnOptions(model=["a", "b"]).model == ("a", "b")
    with pytest.raises(dataclasses.FrozenInstanceError):
        options.epochs = 5  # type: ignore[misc]
    # the defaults the callers rely on
    default = CnnOptions()
    assert (default.positive_rule, default.outside_limit) == ("auto", 0.5)
    assert default.with_positives("posterior").positives == "posterior"
    assert CnnOptions(positives="full").with_positives("posterior").positives == "full"
    # training, or combine's calibration, reads the run's noise and references
    assert default.reads_run_data and CnnOptions(model="m", combine=True).reads_run_data
    assert not CnnOptions(model="m").reads_run_data


def test_recorded_options_keep_their_names_and_read_back() -> None:
    options = CnnOptions(model=["m.keras"], epochs=3, threshold=0.2, combine=True)
    recorded = json.loads(json.dumps(options.as_dict()))
    # report/context.py reads these two keys of a run's cnn_options
    assert recorded["threshold"] == 0.2 and recorded["combine"] is True
    assert recorded["model"] == ["m.keras"]
    assert CnnOptions.from_mapping(recorded) == options
    assert options.changed() == ["combine", "epochs", "model", "threshold"]
    assert CnnOptions().changed() == []


def test_a_mapping_is_converted_and_an_unknown_key_is_named() -> None:
    assert as_options({"epochs": 2}) == CnnOptions(epochs=2)
    assert as_options(None) is None
    with pytest.raises(PicksError) as info:
        as_options({"epochs": 2, "epoch": 3, "treshold": 0.5})
    assert "'epoch', 'treshold'" in str(info.value) and "`cnn_options`" in str(info.value)
    with pytest.raises(PicksError, match="expected CnnOptions"):
        as_options(["epochs"])  # type: ignore[arg-type]


def test_the_spelled_out_vocabularies_equal_the_library_constants() -> None:
    from picks.consensus.cnn import boxes, device, labels, network, options, volumes

    assert options.DEVICES == device.DEVICES
    assert options.EDGE_MODES == boxes.EDGE_MODES
    assert options.READERS == volumes.READERS
    assert options.POSITIVE_RULES == labels.POSITIVE_RULES
    assert options.DEFAULT_WIDTHS == network.DEFAULT_WIDTHS
    assert options.DEFAULT_MAX_OUTSIDE == boxes.DEFAULT_MAX_OUTSIDE


@pytest.mark.parametrize(
    ("flags", "shown"),
    [
        (["--epochs", "0"], "--epochs must be at least 1"),
        (["--threshold", "2"], "--threshold 2.0: expected a probability"),
        (["--box", "4"], "--box must be at least 8"),
        (["--max-outside", "3"], "--max-outside 3.0"),
        (["--margin", "-1"], "--margin -1.0"),
    ],
)
def test_the_command_line_shows_the_flag(tmp_path, flags, shown) -> None:
    csv = tmp_path / "a.csv"
    csv.write_text("experiment,particle_type,x,y,z\nTS_1,ribosome,1,2,3\n")
    result = CliRunner().invoke(
        get_app(), ["aggregate", f"a={csv}", *flags, "--db", str(tmp_path / "p.db")]
    )
    assert result.exit_code != 0
    assert isinstance(result.exception, PicksError), result.output
    assert str(result.exception).startswith(shown), str(result.exception)
    assert not (tmp_path / "p.db").exists()  # refused before anything was opened
