"""Library errors name parameters; the command line shows the flags (cli/flags.py)."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from picks.cli import get_app
from picks.cli.flags import FLAGS, flag_text
from picks.consensus.cnn.options import CnnOptions
from picks.core.errors import PicksError
from picks.workflows.inputs import parse_input_options


def test_library_errors_name_parameters_not_flags() -> None:
    with pytest.raises(PicksError) as info:
        parse_input_options(["no-colon"])
    assert "`input_options`" in str(info.value) and "--input-option" not in str(info.value)
    with pytest.raises(PicksError) as info:
        CnnOptions(threshold=1.5)
    assert str(info.value).startswith("`threshold` 1.5")


def test_flag_text_maps_known_parameters_only() -> None:
    assert flag_text("Use `force=True` to replace them.") == "Use --force to replace them."
    assert (
        flag_text("`threshold` 2: bad; `input_options` x") == "--threshold 2: bad; --input-option x"
    )
    assert flag_text("`unknown` stays") == "`unknown` stays"
    assert flag_text(None) is None
    assert all(flag.startswith("--") for flag in FLAGS.values())


def test_cli_shows_the_flag(tmp_path) -> None:
    result = CliRunner().invoke(
        get_app(),
        [
            "aggregate",
            f"a={tmp_path / 'x.csv'}",
            "--input-option",
            "no-colon",
            "--db",
            str(tmp_path / "p.db"),
        ],
    )
    assert result.exit_code != 0
    assert isinstance(result.exception, PicksError)
    assert str(result.exception).startswith("--input-option 'no-colon'")


def test_debug_does_not_touch_the_environment(tmp_path) -> None:
    before = dict(os.environ)
    CliRunner().invoke(get_app(), ["--debug", "plugins", "--json"])
    assert dict(os.environ) == before


def test_import_error_and_warning_name_parameters_in_the_library_and_flags_on_the_cli(
    tmp_path, registry
) -> None:
    """The library says `options` / `voxel_size`; the command line, --option / --voxel-size, on
    the error line, on stderr's warning lines and in --json's warnings."""
    from picks.core.errors import InputFormatError
    from picks.core.store import Store
    from picks.workflows.importing import import_file

    flat = tmp_path / "TS_01.box"  # EMAN .box: 2D picks, no slice given
    flat.write_text("10\t20\t30\t30\n40\t50\t30\t30\n")
    small = tmp_path / "small.csv"  # CZII CSV in Å whose coordinates look like voxels
    small.write_text(
        "id,experiment,particle_type,x,y,z\n0,TS_01,ribosome,10.0,20.0,30.0\n"
        "1,TS_01,ribosome,40.0,50.0,60.0\n"
    )
    warning = "re-import with {} units=voxel and {} or {}"
    with Store(tmp_path / "lib.db") as store:
        with pytest.raises(InputFormatError) as info:
            import_file(store, flat, registry)
        assert "with `options` z=SLICE" in str(info.value) and "--" not in str(info.value)
        result = import_file(store, small, registry)
    assert [
        warning.format("`options`", "`voxel_size`", "`tomograms`") in w for w in result.warnings
    ] == [True]

    runner = CliRunner()
    db = str(tmp_path / "cli.db")
    failed = runner.invoke(get_app(), ["import", str(flat), "--db", db])
    assert failed.exit_code != 0 and isinstance(failed.exception, InputFormatError)
    assert "with --option z=SLICE" in str(failed.exception) and "`" not in str(failed.exception)
    shown = runner.invoke(get_app(), ["import", str(small), "--db", db])
    assert shown.exit_code == 0, shown.output
    flags = warning.format("--option", "--voxel-size", "--tomograms")
    lines = [line for line in shown.output.splitlines() if line.startswith("warning:")]
    assert len(lines) == 1 and flags in lines[0] and "`" not in lines[0]
    as_json = runner.invoke(
        get_app(), ["import", str(small), "--db", str(tmp_path / "j.db"), "--json"]
    )
    assert as_json.exit_code == 0, as_json.output
    assert flags in as_json.stdout and "`options`" not in as_json.stdout


def test_warnings_to_flags_rewrites_warning_lists_only() -> None:
    from picks.cli.flags import warnings_to_flags

    data = {"path": "`voxel_size`.csv", "runs": [{"warnings": ["`binning` 2 ignored", 3]}]}
    assert warnings_to_flags(data) == {
        "path": "`voxel_size`.csv",
        "runs": [{"warnings": ["--binning 2 ignored", 3]}],
    }
