"""``picks convert``: reader -> canonical -> writer, nothing stored unless asked."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from picks.cli import get_app

CSV = "id,experiment,particle_type,x,y,z,score\n0,TS_1,ribosome,1500.5,200,300,0.5\n1,TS_1,apo-ferritin,1000,2000,300.25,0.75\n"


def test_convert_csv_round_trip_and_force(tmp_path: Path):
    src = tmp_path / "in.csv"
    src.write_text(CSV)
    out = tmp_path / "out.csv"
    runner = CliRunner()
    result = runner.invoke(
        get_app(),
        ["convert", str(src), str(out), "--to", "czii-csv", "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.stdout
    assert json.loads(result.stdout)["n_picks"] == 2
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~mask  # as open() would, not mkstemp's 0600
    frame = pd.read_csv(out)
    assert list(frame["x"]) == [1500.5, 1000.0] and list(frame["score"]) == [0.5, 0.75]
    assert list(frame["particle_type"]) == ["ribosome", "apo-ferritin"]
    again = runner.invoke(get_app(), ["convert", str(src), str(out), "--to", "czii-csv"])
    assert again.exit_code != 0 and "already exist" in str(again.exception)
    assert not (tmp_path / "picks.db").exists()
    forced = runner.invoke(
        get_app(), ["convert", str(src), str(out), "--to", "czii-csv", "--force"]
    )
    assert forced.exit_code == 0


def test_convert_can_record_into_store(tmp_path: Path):
    src = tmp_path / "in.csv"
    src.write_text(CSV)
    db = tmp_path / "p.db"
    runner = CliRunner()
    runner.invoke(
        get_app(),
        ["convert", str(src), str(tmp_path / "o.csv"), "--to", "czii-csv", "--db", str(db)],
        catch_exceptions=False,
    )
    sources = json.loads(runner.invoke(get_app(), ["sources", "--db", str(db), "--json"]).stdout)
    assert len(sources) == 1 and sources[0]["n_picks"] == 2
