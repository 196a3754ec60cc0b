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


def test_convert_real_cbox_to_csv_and_back(tmp_path: Path, formats_dir: Path):
    """The crYOLO 3D fixture: corner X/Y + box/2, centre Z, × 10 Å; and the corner restored."""
    runner = CliRunner()
    src = formats_dir / "cryolo" / "3d_particle.cbox"
    csv = tmp_path / "o.csv"
    args = ["convert", str(src), str(csv), "--to", "czii-csv", "--voxel-size", "10"]
    # CBOX has no class and the CZII CSV needs one: refused without --particle.
    refused = runner.invoke(get_app(), args)
    assert refused.exit_code != 0 and not csv.exists()
    assert "3 of 3 picks have no class" in str(refused.exception)
    result = runner.invoke(get_app(), [*args, "--particle", "ribosome"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(csv)
    assert set(frame["particle_type"]) == {"ribosome"}
    # (12.257084 + 12.5) × 10, (27.721405 + 12.5) × 10, 50 × 10
    assert frame.loc[0, ["x", "y", "z"]].tolist() == [247.5708, 402.2141, 500.0]
    back = tmp_path / "back"
    args = ["convert", str(csv), str(back), "--to", "cryolo-cbox", "--to-voxel-size", "10"]
    args += ["--to-option", "box=25", "--tomogram", "3d_particle"]
    result = runner.invoke(get_app(), args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    text = (back / "3d_particle.cbox").read_text()
    assert "\n12.25708 27.72141 50 25 25 25 " in text  # the corner again (via a 4-decimal CSV)


def test_convert_surfaces_the_reader_warning(tmp_path: Path, formats_dir: Path):
    src = formats_dir / "czii_kaggle_submission" / "submission_voxel_grid_not_angstrom.csv"
    result = CliRunner().invoke(
        get_app(), ["convert", str(src), str(tmp_path / "o.csv"), "--to", "czii-csv"]
    )
    assert result.exit_code == 0 and "look like voxels" in result.output
