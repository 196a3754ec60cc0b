"""The documented example plugin (docs/examples/picks-xyz) works both ways the docs describe."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import sys
from pathlib import Path
from typing import ClassVar

from typer.testing import CliRunner

from picks.cli import get_app
from picks.plugins.manager import get_registry

EXAMPLE = Path(__file__).resolve().parents[1] / "docs" / "examples" / "picks-xyz"
XYZ = "# tomogram x y z score\nTS_01 12 30.5 4 0.9\nTS_01 1 2 3 0.1\n"


def test_example_via_local_registry_file(tmp_path: Path, monkeypatch):
    registry_file = tmp_path / "my-registry.toml"
    registry_file.write_text(
        '[[adapter]]\nname = "mylab-xyz"\nobject = "XyzAdapter"\n'
        f'path = "{(EXAMPLE / "picks_xyz.py").as_posix()}"\n'
        'picker = "MyLab picker"\npatterns = ["*.xyz"]\ndescription = "MyLab lists"\n'
    )
    monkeypatch.setenv("PICKS_REGISTRY", str(registry_file))
    data = tmp_path / "TS_01.xyz"
    data.write_text(XYZ)
    runner = CliRunner()
    db = str(tmp_path / "p.db")
    listing = json.loads(runner.invoke(get_app(), ["plugins", "--json"]).stdout)
    assert {"name": "mylab-xyz", "origin": "local"}.items() <= next(
        r for r in listing if r["name"] == "mylab-xyz"
    ).items()
    result = runner.invoke(
        get_app(),
        ["import", str(data), "--voxel-size", "10", "--db", db, "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.stdout
    assert json.loads(result.stdout)[0]["adapter"] == "mylab-xyz"
    audit = json.loads(
        runner.invoke(get_app(), ["audit", "1", "--pick", "--db", db, "--json"]).stdout
    )
    assert (
        audit["pick"]["x"] == 120.0
        and audit["pick"]["y"] == 305.0
        and audit["pick"]["score"] == 0.9
    )
    assert audit["original"] == "TS_01 12 30.5 4 0.9"


def test_example_via_entry_point(monkeypatch, tmp_path: Path):
    spec = importlib.util.spec_from_file_location("picks_xyz", EXAMPLE / "picks_xyz.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "picks_xyz", module)

    class EntryPoint:
        name = "xyz"
        group = "picks"
        value = "picks_xyz"

        def load(self):
            return module

    class Distribution:
        entry_points = (EntryPoint(),)
        metadata: ClassVar[dict] = {"name": "picks-xyz"}
        version = "0.1.0"
        _normalized_name = "picks_xyz"

    monkeypatch.setattr(importlib.metadata, "distributions", lambda: (Distribution(),))
    registry = get_registry(local=False)
    entry = registry.entry("mylab-xyz")
    assert entry.origin == "entry point" and entry.version == "0.1.0"
    path = tmp_path / "TS_01.xyz"
    path.write_text(XYZ)
    assert registry.detect(path).name == "mylab-xyz"
