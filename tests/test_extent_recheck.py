"""Impossible coordinates: said at import without tomograms, refused once tomograms are known."""

from __future__ import annotations

import mrcfile
import numpy as np
import pytest

from picks.core.errors import OutOfExtent
from picks.core.store import Store
from picks.workflows.aggregate import aggregate


def _csv(path, rows):
    path.write_text(
        "id,experiment,particle_type,x,y,z\n"
        + "".join(f"{i},TS_1,ribosome,{x},{y},{z}\n" for i, (x, y, z) in enumerate(rows))
    )
    return path


def _tomogram(path, shape_zyx=(40, 100, 100), voxel=10.0):
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(np.zeros(shape_zyx, dtype=np.float32))
        mrc.voxel_size = voxel


def test_import_without_tomograms_warns_on_coordinates_no_tomogram_can_hold(tmp_path):
    from picks.plugins.manager import get_registry
    from picks.workflows.importing import import_file

    path = _csv(tmp_path / "a.csv", [(500, 500, 200), (-1.0e6, 20, 30), (1.0e12, 5, 5)])
    with Store(tmp_path / "p.db") as store:
        result = import_file(store, path, get_registry())
    said = [w for w in result.warnings if "no tomogram can hold" in w]
    assert said and "2 of 3 picks" in said[0] and "record 3" in said[0]  # line 3 of the file


def test_plausible_coordinates_are_not_warned_about(tmp_path):
    from picks.plugins.manager import get_registry
    from picks.workflows.importing import import_file

    path = _csv(tmp_path / "a.csv", [(500, 500, 200), (900, 20, 30)])
    with Store(tmp_path / "p.db") as store:
        result = import_file(store, path, get_registry())
    assert not [w for w in result.warnings if "no tomogram can hold" in w]


def test_aggregate_rechecks_stored_picks_once_the_tomograms_are_known(tmp_path):
    inside = [(100.0 * i, 300.0, 200.0) for i in range(1, 6)]
    a = _csv(tmp_path / "a.csv", inside)
    b = _csv(tmp_path / "b.csv", [*inside, (1.0e6, 300.0, 200.0)])  # far outside 1000 Å
    tomos = tmp_path / "tomos"
    tomos.mkdir()
    _tomogram(tomos / "TS_1.mrc")
    with Store(tmp_path / "p.db") as store:
        # imported without tomograms: accepted (with a warning), as before
        aggregate(store, [f"a={a}", f"b={b}"], out=tmp_path / "o1", formats=["csv"])
        # now the tomograms are known: the stored pick outside is refused, naming its file
        with pytest.raises(OutOfExtent, match=r"b\.csv: 1 of 6 picks lie outside tomogram 'TS_1'"):
            aggregate(
                store, [f"a={a}", f"b={b}"], out=tmp_path / "o2", tomograms=[tomos], formats=["csv"]
            )


def test_registering_tomograms_reports_stored_picks_outside_them(tmp_path):
    from typer.testing import CliRunner

    from picks.cli import get_app

    b = _csv(tmp_path / "b.csv", [(100.0, 300.0, 200.0), (1.0e6, 300.0, 200.0)])
    tomos = tmp_path / "tomos"
    tomos.mkdir()
    _tomogram(tomos / "TS_1.mrc")
    db = str(tmp_path / "p.db")
    runner = CliRunner()
    assert runner.invoke(get_app(), ["import", str(b), "--db", db]).exit_code == 0
    res = runner.invoke(get_app(), ["tomograms", str(tomos), "--db", db])
    assert res.exit_code == 0, res.output
    assert "b.csv: 1 of 2 picks lie outside tomogram 'TS_1'" in res.output
    assert "imported before the tomogram was registered" in res.output
