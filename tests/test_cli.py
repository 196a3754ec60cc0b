"""CLI behaviour: fast help without TensorFlow, clear errors, JSON output, audit of raw picks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from picks import __version__
from picks.cli import get_app

runner = CliRunner()
CSV = "id,experiment,particle_type,x,y,z\n0,TS_1,ribosome,1500.5,200,300\n1,TS_1,apo-ferritin,1000,2000,300.25\n"


def invoke(*args: str):
    return runner.invoke(get_app(), list(args), catch_exceptions=False)


def run_main(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from picks.cli import main; main()", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
    )


def test_help_does_not_import_heavy_modules():
    code = (
        "import sys\nfrom picks.cli import get_app\n"
        "try:\n    get_app()(['--help'], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'pandas', 'scipy', 'torch') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "HEAVY []" in out


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and __version__ in result.stdout


def test_import_sources_runs_audit_json(tmp_path: Path):
    csv = tmp_path / "sub.csv"
    csv.write_text(CSV)
    db = str(tmp_path / "p.db")
    result = invoke("import", str(csv), "--db", db, "--picker", "yolo", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data[0]["n_picks"] == 2 and data[0]["picker"] == "yolo" and not data[0]["skipped"]
    again = invoke("import", str(csv), "--db", db)
    assert "already imported" in again.stdout
    sources = json.loads(invoke("sources", "--db", db, "--json").stdout)
    assert len(sources) == 1 and sources[0]["adapter"] == "czii-csv"
    table = invoke("sources", "--db", db).stdout
    assert "yolo" in table and "czii-csv" in table
    runs = json.loads(invoke("runs", "--db", db, "--json").stdout)
    assert [r["command"] for r in runs] == ["import", "import"] and runs[0]["status"] == "ok"
    assert sources[0]["run_id"] == runs[0]["id"]
    missing = tmp_path / "typo" / "p.db"
    for command in ("sources", "runs"):
        proc = run_main(command, "--db", str(missing))
        assert proc.returncode == 3 and "does not exist" in proc.stderr
    assert not missing.parent.exists()  # a read-only command creates nothing
    audit = json.loads(invoke("audit", "1", "--pick", "--db", db, "--json").stdout)
    assert audit["record"] == 2 and audit["original"] == "0,TS_1,ribosome,1500.5,200,300"
    assert audit["source"]["path"] == str(csv.resolve())
    text = invoke("audit", "2", "--pick", "--db", db).stdout
    assert "record    3: 1,TS_1,apo-ferritin,1000,2000,300.25" in text
    export = tmp_path / "audit.json"
    invoke("audit", "2", "--pick", "--db", db, "--export", str(export))
    assert json.loads(export.read_text())["pick"]["id"] == 2


def test_reimport_is_a_no_op_only_when_it_gives_the_same_picks(tmp_path: Path, formats_dir: Path):
    """Same bytes + same picks: no-op; options that change the picks (the fix a warning
    suggests): a new source; options the file did not need: still a no-op."""
    cbox = str(formats_dir / "cryolo" / "3d_particle.cbox")
    db = str(tmp_path / "p.db")

    def sources() -> list[dict]:
        return json.loads(invoke("sources", "--db", db, "--json").stdout)

    first = json.loads(invoke("import", cbox, "--db", db, "--voxel-size", "10", "--json").stdout)
    assert not first[0]["skipped"]
    again = invoke("import", cbox, "--db", db, "--voxel-size", "10")
    assert "already imported" in again.stdout and len(sources()) == 1
    other = invoke("import", cbox, "--db", db, "--voxel-size", "20", "--binning", "2")
    assert other.exit_code == 0 and "already imported" not in other.stdout
    classed = invoke("import", cbox, "--db", db, "--voxel-size", "10", "--particle", "ribosome")
    assert "already imported" not in classed.stdout
    assert len(sources()) == 3
    # the same file as trusted negative references is a source of its own (its role differs)
    invoke("import", cbox, "--db", db, "--voxel-size", "10", "--role", "negative")
    assert [s["role"] for s in sources()] == ["picker", "picker", "picker", "negative"]
    # a CZII CSV is in Å and names its classes: --binning and --particle change nothing
    csv = tmp_path / "sub.csv"
    csv.write_text(CSV)
    invoke("import", str(csv), "--db", db)
    same = invoke("import", str(csv), "--db", db, "--binning", "2", "--particle", "ribosome")
    assert "already imported" in same.stdout and len(sources()) == 5


def test_unused_adapter_option_is_reported(tmp_path: Path):
    csv = tmp_path / "sub.csv"
    csv.write_text(CSV)
    proc = run_main("import", str(csv), "--db", str(tmp_path / "p.db"), "--option", "unit=voxel")
    assert proc.returncode == 0
    assert "did not use option(s) 'unit'" in proc.stderr and "units" in proc.stderr


def test_bad_voxel_size_or_binning_is_refused(tmp_path: Path):
    csv = tmp_path / "sub.csv"
    csv.write_text(CSV)
    for option, value in (("--binning", "0"), ("--voxel-size", "-3")):
        proc = run_main("import", str(csv), "--db", str(tmp_path / "p.db"), option, value)
        assert proc.returncode != 0 and option in proc.stderr and "Traceback" not in proc.stderr


def test_user_errors_are_one_line_with_exit_codes(tmp_path: Path):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,experiment,particle_type,x,y,z\n0,TS_1,ribosome,1,oops,3\n")
    proc = run_main("import", str(bad), "--db", str(tmp_path / "p.db"))
    assert proc.returncode == 2
    assert proc.stderr.startswith("Error: ") and "bad.csv, line 2" in proc.stderr
    assert "Traceback" not in proc.stderr
    missing = run_main("audit", "99", "--db", str(tmp_path / "p.db"))
    assert missing.returncode == 3 and "no consensus pick with id 99" in missing.stderr
    usage = run_main("import")
    assert usage.returncode == 2 and "Traceback" not in usage.stderr


def test_debug_shows_traceback(tmp_path: Path):
    proc = run_main("--debug", "audit", "5", "--pick", "--db", str(tmp_path / "p.db"))
    assert proc.returncode != 0 and "Traceback" in proc.stderr


def test_tomograms_registration_and_extent_check(tmp_path: Path):
    import mrcfile
    import numpy as np

    with mrcfile.new(tmp_path / "TS_1.mrc") as mrc:
        mrc.set_data(np.zeros((40, 300, 300), dtype=np.float32))
        mrc.voxel_size = 10.0
    db = str(tmp_path / "p.db")
    listing = json.loads(
        invoke("tomograms", str(tmp_path / "TS_1.mrc"), "--db", db, "--json").stdout
    )
    assert listing == [
        {
            "name": "TS_1",
            "voxel_size": 10.0,
            "shape": "300×300×40",
            "path": str(tmp_path / "TS_1.mrc"),
        }
    ]
    # z = 3000 Å is outside a 40-voxel (400 Å) tomogram.
    far = tmp_path / "far.csv"
    far.write_text("id,experiment,particle_type,x,y,z\n0,TS_1,ribosome,100,100,3000\n")
    proc = run_main("import", str(far), "--db", db)
    assert proc.returncode == 2 and "outside tomogram 'TS_1'" in proc.stderr
    assert json.loads(invoke("sources", "--db", db, "--json").stdout) == []


@pytest.mark.parametrize("command", ["import", "sources", "runs", "audit", "plugins", "tomograms"])
def test_every_command_has_help(command: str):
    result = invoke(command, "--help")
    assert result.exit_code == 0 and "Usage" in result.stdout
