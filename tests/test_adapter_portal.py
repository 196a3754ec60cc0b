"""CryoET Data Portal .ndjson, the portal's CSV deposition inputs and TARDIS CSV."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from adapter_support import copick_matrix as relion_matrix
from adapter_support import read_checked

from picks.adapters.portal import PointsCsvAdapter, PortalNdjsonAdapter, TardisCsvAdapter
from picks.core.tomograms import Tomogram, TomogramSet
from picks.workflows.importing import import_file

NDJSON = PortalNdjsonAdapter()
POINTS = PointsCsvAdapter()
TARDIS = TardisCsvAdapter()


read = read_checked


def xyz(frame: pd.DataFrame) -> list[list[float]]:
    return frame[["x", "y", "z"]].to_numpy().tolist()


# -- points CSV (portal deposition input) --------------------------------------------------------

INPUTS = "cryoet_portal_inputs"


@pytest.mark.parametrize(
    ("name", "first_record"),
    [
        ("points.csv", 1),
        ("points_tab_delim.csv", 1),
        ("points_with_header.csv", 2),
        ("points_with_header_pipe_delim.csv", 2),
    ],
)
def test_points_csv_fixtures(formats_dir: Path, name: str, first_record: int):
    frame, _ = read(POINTS, formats_dir / INPUTS / name, voxel_size=10.0)
    # Rows 1,2,3 / 2,2,2 / 0,3,0 voxels × 10 Å (no offset: 0-based voxel centres).
    assert xyz(frame) == [[10.0, 20.0, 30.0], [20.0, 20.0, 20.0], [0.0, 30.0, 0.0]]
    assert frame["record"].tolist() == [first_record, first_record + 1, first_record + 2]
    assert set(frame["tomogram"]) == {Path(name).stem}
    assert frame["score"].isna().all() and frame["particle"].isna().all()


def test_points_csv_binning_units_order_and_particle(formats_dir: Path, tmp_path: Path):
    path = formats_dir / INPUTS / "points.csv"
    tomograms = TomogramSet([Tomogram("points", None, 10.0, (100, 100, 100))])
    frame, _ = read(POINTS, path, tomograms=tomograms, binning=2.0, particle="ribosome")
    # Binned ×2: (i + 0.5)·20 − 0.5·10 -> i=1: 25, i=2: 45, i=3: 65, i=0: 5.
    assert xyz(frame)[0] == [25.0, 45.0, 65.0]
    assert xyz(frame)[2] == [5.0, 65.0, 5.0]
    assert set(frame["particle"]) == {"ribosome"}
    frame, _ = read(POINTS, path, options={"units": "angstrom"})
    assert xyz(frame)[0] == [1.0, 2.0, 3.0]
    frame, _ = read(POINTS, path, voxel_size=10.0, options={"order": "zyx"})
    assert xyz(frame)[0] == [30.0, 20.0, 10.0]
    zyx = tmp_path / "zyx.csv"
    zyx.write_text("z;y;x\n1;2;3\n")
    frame, _ = read(POINTS, zyx, options={"voxel_spacing": "4"})
    assert xyz(frame) == [[12.0, 8.0, 4.0]]  # header names the columns; 3×4, 2×4, 1×4


# -- TARDIS ----------------------------------------------------------------------------------------


def test_tardis_fixture(formats_dir: Path):
    path = formats_dir / INPUTS / "tardis.csv"
    frame, _ = read(TARDIS, path)
    # The header says Å: read as Å unchanged (rows 2..7 of the file).
    assert xyz(frame) == [
        [4.0, 8.0, 12.0],
        [4.0, 4.0, 4.0],
        [6.0, 4.0, 2.0],
        [0.0, 6.0, 0.0],
        [8.0, 4.0, 2.0],
        [3.0, 2.0, 1.0],
    ]
    assert frame["record"].tolist() == [2, 3, 4, 5, 6, 7]
    assert frame.loc[2, "original"] == "1,6,4,2"  # the instance id stays with the pick
    frame, _ = read(TARDIS, path, voxel_size=10.0, options={"units": "voxel"})
    assert xyz(frame)[0] == [40.0, 80.0, 120.0]  # 4, 8, 12 voxels × 10 Å


# -- ndjson ----------------------------------------------------------------------------------------


def portal_file(root: Path, lines: list[str], spacing: str = "13.480") -> Path:
    folder = (
        root
        / "10001"
        / "TS_01"
        / "Reconstructions"
        / f"VoxelSpacing{spacing}"
        / "Annotations"
        / "100"
    )
    folder.mkdir(parents=True)
    path = folder / "100-ribosome-1.0_orientedpoint.ndjson"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_ndjson_points_units_angles_and_names(tmp_path: Path):
    matrix = relion_matrix(30.0, 40.0, 50.0)
    lines = [
        json.dumps(
            {
                "type": "orientedPoint",
                "location": {"x": 10, "y": 20, "z": 30},
                "xyz_rotation_matrix": matrix.tolist(),
            }
        ),
        json.dumps({"type": "point", "location": {"x": 0, "y": 0.5, "z": 100}}),
        json.dumps(
            {"type": "instancePoint", "location": {"x": 1, "y": 2, "z": 3}, "instance_id": 7}
        ),
        json.dumps(
            {
                "type": "orientedPoint",
                "location": {"x": 1, "y": 1, "z": 1},
                "rotation_matrix": np.eye(3).tolist(),
            }
        ),
    ]
    path = portal_file(tmp_path, lines)
    frame, _ = read(NDJSON, path)
    # Voxels at the folder's spacing, 13.48 Å: 10 × 13.48 = 134.8, 20 × 13.48 = 269.6, 30 × 13.48 = 404.4
    assert np.allclose(xyz(frame)[0], [134.8, 269.6, 404.4])
    assert np.allclose(xyz(frame)[1], [0.0, 6.74, 1348.0])  # 0.5 × 13.48 = 6.74
    assert set(frame["tomogram"]) == {"TS_01"} and set(frame["particle"]) == {"ribosome"}
    assert frame["record"].tolist() == [1, 2, 3, 4]
    assert frame.loc[0, ["rot", "tilt", "psi"]].to_numpy(dtype=float) == pytest.approx([30, 40, 50])
    assert frame.loc[0, "angle_convention"] == "portal-matrix"
    assert (
        frame.loc[1, ["rot", "tilt", "psi"]].isna().all()
        and frame.loc[1, "angle_convention"] is None
    )
    assert frame.loc[3, ["rot", "tilt", "psi"]].tolist() == [0.0, 0.0, 0.0]
    assert json.loads(frame.loc[2, "original"])["instance_id"] == 7
    # --option voxel_spacing, then --voxel-size, take precedence over the folder name.
    frame, _ = read(NDJSON, path, options={"voxel_spacing": "2"})
    assert xyz(frame)[0] == [20.0, 40.0, 60.0]
    frame, _ = read(NDJSON, path, voxel_size=1.0, options={"voxel_spacing": "2"})
    assert xyz(frame)[0] == [10.0, 20.0, 30.0]
    # An explicit spacing finer than the registered tomogram (binning undone exactly):
    # registered 26.96 Å, annotation at 13.48 Å: (10 + 0.5)·13.48 − 0.5·26.96 = 141.54 − 13.48 = 128.06
    tomos = TomogramSet([Tomogram("TS_01", None, 26.96, (500, 500, 200))])
    frame, _ = read(NDJSON, path, tomograms=tomos)
    assert frame.loc[0, "x"] == pytest.approx(128.06)


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ([], "empty file"),
        (
            ['{"type": "point", "location": {"x": 1, "y": 2, "z": 3}}', '{"type": "point", "loc'],
            "line 2: not valid JSON",
        ),
        (['{"type": "sphere", "location": {"x": 1, "y": 2, "z": 3}}'], "line 1: type 'sphere'"),
        (
            ['{"type": "point", "location": {"x": "one", "y": 2, "z": 3}}'],
            "line 1: location.x = 'one'",
        ),
        (['{"type": "point"}'], "line 1: missing 'location'"),
        (
            [
                '{"type": "orientedPoint", "location": {"x": 1, "y": 2, "z": 3}, "xyz_rotation_matrix": [[1, 0], [0, 1]]}'
            ],
            "line 1: the rotation matrix",
        ),
    ],
)
def test_ndjson_bad_input(tmp_path, rejects_import, lines, expected):
    path = portal_file(tmp_path, lines)
    if not lines:
        path.write_text("")
    info = rejects_import(path, adapter="portal-ndjson")
    assert str(path) in str(info.value) and expected in str(info.value)


@pytest.mark.parametrize(
    ("adapter", "text", "expected"),
    [
        ("points-csv", "", "empty file"),
        ("points-csv", "1,2,3\n4,five,6\n", "line 2: y = 'five' is not a number"),
        ("points-csv", "1,2,3\n4,5\n", "line 2: expected 3 fields, found 2"),
        ("points-csv", "a,b,c\n1,2,3\n", "line 1: header lacks column(s) ['x', 'y', 'z']"),
        ("points-csv", "x,y,z\n1,2,3\n7,8,9,10\n", "line 3: expected 3 fields, found 4"),
        ("tardis-csv", "", "empty file"),
        ("tardis-csv", "IDs,X [A],Y [A],Z [A]\n0,1,2\n", "line 2: expected 4 fields"),
        (
            "tardis-csv",
            "IDs,X [A],Y [A],Z [A]\n0,1,2,3\n1,1,x,3\n",
            "line 3: y = 'x' is not a number",
        ),
        ("tardis-csv", "id,x,y,z\n0,1,2,3\n", "line 1: expected the header"),
    ],
)
def test_csv_bad_input(tmp_path, rejects_import, adapter, text, expected):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    info = rejects_import(path, adapter=adapter, voxel_size=10.0)
    assert str(path) in str(info.value) and expected in str(info.value)


def test_import_stores_the_points(formats_dir, store, registry):
    result = import_file(
        store, formats_dir / INPUTS / "points_with_header.csv", registry, voxel_size=10.0
    )
    assert (result.adapter, result.n_picks) == ("points-csv", 3)
    picks = store.picks()
    assert picks.sort_values("record")["x"].tolist() == [10.0, 20.0, 0.0]


# -- detection -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "adapter"),
    [
        ("points.csv", "points-csv"),
        ("points_tab_delim.csv", "points-csv"),
        ("points_with_header.csv", "points-csv"),
        ("points_with_header_pipe_delim.csv", "points-csv"),
        ("tardis.csv", "tardis-csv"),
    ],
)
def test_detect_portal_inputs(registry, formats_dir, name, adapter):
    assert registry.detect(formats_dir / INPUTS / name).name == adapter


def test_czii_submission_is_not_stolen(registry, formats_dir, tmp_path):
    negative = formats_dir / "czii_kaggle_submission" / "submission_voxel_grid_not_angstrom.csv"
    assert POINTS.sniff(negative) == 0.0 and TARDIS.sniff(negative) == 0.0
    assert registry.detect(negative).name == "czii-csv"
    good = tmp_path / "submission.csv"
    good.write_text("id,experiment,particle_type,x,y,z\n0,TS_5_4,ribosome,1500.5,2000.0,300.25\n")
    assert registry.detect(good).name == "czii-csv"


def test_detect_ndjson(registry, tmp_path):
    path = portal_file(tmp_path, ['{"type": "point", "location": {"x": 1, "y": 2, "z": 3}}'])
    assert registry.detect(path).name == "portal-ndjson"
    other = tmp_path / "other.ndjson"
    other.write_text('{"event": "log"}\n')
    assert NDJSON.sniff(other) == 0.0
