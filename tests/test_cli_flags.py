"""Library errors name parameters; the command line shows the flags (cli/flags.py)."""

from __future__ import annotations

import os

import pytest
from typer.testing import CliRunner

from picks.cli import get_app
from picks.cli.flags import FLAGS, flag_text
from picks.core.errors import PicksError
from picks.workflows.inputs import parse_input_options
from picks.workflows.rescore import rescore_run


def test_library_errors_name_parameters_not_flags(tmp_path) -> None:
    from picks.core.store import Store

    with pytest.raises(PicksError) as info:
        parse_input_options(["no-colon"])
    assert "`input_options`" in str(info.value) and "--input-option" not in str(info.value)
    with Store(tmp_path / "p.db") as store, pytest.raises(PicksError) as info:
        rescore_run(store, 1, threshold=1.5)
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
