"""copick picks JSON: real fixtures, project folders (with an OME-Zarr tomogram), bad input,
the project writer and a writer→reader round trip."""

from __future__ import annotations

import json
import shutil
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from adapter_support import ROUND_TRIP, oriented_pick_tables, read_checked, write_text
from adapter_support import copick_matrix as relion_matrix
from hypothesis import given

from picks.adapters.copick import CopickAdapter
from picks.core import picks as canonical
from picks.core.errors import PicksError
from picks.core.tomograms import Tomogram, TomogramSet, find_volumes, read_tomogram
from picks.plugins.adapter import ReadContext, WriteContext
from picks.workflows.importing import expand_inputs, import_file, read_file
from picks.workflows.outputs import write_picks

ADAPTER = CopickAdapter()


read = partial(read_checked, ADAPTER)


def picks_doc(points: list[dict], **fields) -> dict:
    doc = {
        "pickable_object_name": "ribosome",
        "user_id": "alice",
        "session_id": "1",
        "run_name": None,
        "voxel_spacing": None,
        "unit": "angstrom",
        "points": points,
        "trust_orientation": True,
    }
    doc.update(fields)
    return doc


def point(x: float, y: float, z: float, transform=None, score: float = 1.0) -> dict:
    return {
        "location": {"x": x, "y": y, "z": z},
        "transformation_": transform if transform is not None else np.eye(4).tolist(),
        "instance_id": 0,
        "score": score,
    }


def write_json(path: Path, doc: object) -> Path:
    return write_text(path.parent, path.name, json.dumps(doc))


# -- real fixtures ------------------------------------------------------------------------------


def test_portal_copick_fixture(formats_dir: Path):
    frame, ctx = read(formats_dir / "copick" / "portal_copick.json")
    assert len(frame) == 4 and not ctx.warnings
    # run_name is null and the file is not in a project: the tomogram is the file name.
    assert set(frame["tomogram"]) == {"portal_copick"}
    assert set(frame["particle"]) == {"ribosome"}
    assert (frame["particle_field"] == "pickable_object_name").all()
    assert (frame["score_field"] == "score").all() and (frame["score"] == 1.0).all()
    assert (frame["angle_convention"] == "copick-matrix").all()
    # Locations are Å already and the translation columns are 0: copied unchanged.
    expected = [[40.0, 20.0, 30.0], [0.0, 50.0, 10.0], [30.0, 15.0, 92.0], [30.0, 10.0, 50.0]]
    assert frame[["x", "y", "z"]].to_numpy().tolist() == expected
    assert frame["record"].tolist() == [0, 1, 2, 3]
    # Point 0: M = [[0,-c,c],[1,0,0],[0,c,c]] (c = √½). Mᵀ = [[0,1,0],[-c,0,c],[c,0,c]]
    #   = Rz(90)·Ry(45)·Rz(-180): Ry(45)·Rz(-180) = [[-c,0,c],[0,-1,0],[c,0,c]], and Rz(90)
    #   maps rows (r1,r2,r3) -> (-r2, r1, r3) = [[0,1,0],[-c,0,c],[c,0,c]]  => (90, 45, -180).
    # Point 3: M = [[0,0,-1],[0,1,0],[1,0,0]], Mᵀ = [[0,0,1],[0,1,0],[-1,0,0]] = Ry(90)
    #   => (rot, tilt, psi) = (0, 90, 0) (any rot = -psi is the same rotation).
    for row, angles in ((0, (90.0, 45.0, -180.0)), (3, (0.0, 90.0, 0.0))):
        got = frame.loc[row, ["rot", "tilt", "psi"]].to_numpy(dtype=float)
        assert np.allclose(relion_matrix(*got), relion_matrix(*angles), atol=1e-9)
    assert frame.loc[0, "tilt"] == pytest.approx(45.0)
    assert frame.loc[3, "tilt"] == pytest.approx(90.0)
    # Every stored transform is rebuilt exactly from the angles read.
    doc = json.loads((formats_dir / "copick" / "portal_copick.json").read_text())
    for row, pt in enumerate(doc["points"]):
        angles = frame.loc[row, ["rot", "tilt", "psi"]].to_numpy(dtype=float)
        assert np.allclose(
            relion_matrix(*angles), np.array(pt["transformation_"])[:3, :3], atol=1e-9
        )
    assert json.loads(frame.loc[0, "original"])["location"] == {"x": 40.0, "y": 20.0, "z": 30.0}


def test_portal_copick_instance_fixture(formats_dir: Path):
    frame, _ = read(formats_dir / "copick" / "portal_copick_instance.json")
    assert set(frame["tomogram"]) == {"Position_94_Vol"}  # from run_name
    assert set(frame["particle"]) == {"testobject"}
    assert len(frame) == 6
    # Last point: location (7.5, 5, 2.5) Å, identity transform -> (7.5, 5, 2.5), angles (0, 0, 0).
    assert frame.loc[5, ["x", "y", "z"]].tolist() == [7.5, 5.0, 2.5]
    assert frame.loc[5, ["rot", "tilt", "psi"]].tolist() == [0.0, 0.0, 0.0]
    assert frame.loc[3, ["x", "y", "z"]].tolist() == [0.0, 15.0, 0.0]


# -- conventions --------------------------------------------------------------------------------


def test_translation_column_is_added_to_the_location(tmp_path: Path):
    transform = np.eye(4)
    transform[:3, :3] = relion_matrix(30, 60, -20)
    transform[:3, 3] = [1.5, -2.0, 3.25]
    path = write_json(
        tmp_path / "t.json", picks_doc([point(100, 200, 300, transform.tolist(), 0.7)])
    )
    frame, _ = read(path)
    # 100 + 1.5 = 101.5; 200 - 2 = 198; 300 + 3.25 = 303.25
    assert frame.loc[0, ["x", "y", "z"]].tolist() == [101.5, 198.0, 303.25]
    assert frame.loc[0, ["rot", "tilt", "psi"]].to_numpy(dtype=float) == pytest.approx(
        [30, 60, -20]
    )
    assert frame.loc[0, "score"] == pytest.approx(0.7)


def test_units_and_untrusted_orientation(tmp_path: Path):
    nm = write_json(tmp_path / "nm.json", picks_doc([point(1, 2, 3.5)], unit="nanometer"))
    frame, _ = read(nm)
    assert frame.loc[0, ["x", "y", "z"]].tolist() == [10.0, 20.0, 35.0]  # × 10
    vox = write_json(
        tmp_path / "vox.json", picks_doc([point(4, 5, 6)], unit="voxel", voxel_spacing=7.5)
    )
    frame, ctx = read(vox)
    assert frame.loc[0, ["x", "y", "z"]].tolist() == [30.0, 37.5, 45.0]  # 4 × 7.5 ...
    assert "voxel_spacing" in ctx.warnings[0]
    frame, _ = read(vox, voxel_size=10.0)  # --voxel-size wins over the file
    assert frame.loc[0, ["x", "y", "z"]].tolist() == [40.0, 50.0, 60.0]
    untrusted = write_json(
        tmp_path / "u.json", picks_doc([point(1, 2, 3)], trust_orientation=False)
    )
    frame, _ = read(untrusted)
    assert frame[["rot", "tilt", "psi"]].isna().all().all()
    assert frame.loc[0, "angle_convention"] is None


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "empty file"),
        ('{"pickable_object_name": "ribosome", "points": [', "line 1: not valid JSON"),
        (
            json.dumps(picks_doc([point(1, 2, 3), {"location": {"x": "a", "y": 0, "z": 0}}])),
            "points[1]",
        ),
        (json.dumps(picks_doc([point(1, 2, 3), {"score": 1}])), "points[1]: expected an object"),
        (json.dumps(picks_doc([point(1, 2, 3, [[1, 0], [0, 1]])])), "4×4"),
        (
            json.dumps(picks_doc([point(1, 2, 3, np.diag([2.0, 1, 1, 1]).tolist())])),
            "not a rotation",
        ),
        (json.dumps(picks_doc([point(1, 2, 3)], unit="furlong")), "unit 'furlong'"),
        (json.dumps([1, 2, 3]), "expected a JSON object"),
        (json.dumps(picks_doc([point(1, 2, 3, score="high")])), "score = 'high'"),
    ],
)
def test_bad_input_is_one_clear_error_and_imports_nothing(
    tmp_path, rejects_import, content, expected
):
    path = tmp_path / "alice_1_ribosome.json"
    path.write_text(content)
    info = rejects_import(path, adapter="copick")
    assert str(path) in str(info.value) and expected in str(info.value)


def test_truncated_fixture(tmp_path, rejects_import, formats_dir):
    text = (formats_dir / "copick" / "portal_copick.json").read_text()
    path = tmp_path / "cut.json"
    path.write_text(text[: len(text) // 2])
    rejects_import(path, match=r"cut\.json, line \d+: not valid JSON")


# -- project folders ----------------------------------------------------------------------------


def make_project(root: Path) -> Path:
    """A copick overlay with two runs, three picks files, a tomogram and a segmentation."""
    import zarr

    runs = root / "ExperimentRuns"
    write_json(
        runs / "TS_01" / "Picks" / "alice_1_ribosome.json",
        picks_doc([point(10, 20, 30), point(40, 50, 60)]),
    )
    write_json(
        runs / "TS_01" / "Picks" / "bob_2_apo-ferritin.json",
        picks_doc(
            [point(70, 80, 90)], pickable_object_name="apo-ferritin", user_id="bob", session_id="2"
        ),
    )
    # Kaggle naming: Picks/<object>.json
    write_json(
        runs / "TS_02" / "Picks" / "virus-like-particle.json",
        picks_doc(
            [point(5, 6, 7)],
            pickable_object_name="virus-like-particle",
            run_name="TS_02",
            user_id="curation",
            session_id="0",
        ),
    )
    for store_path, shape, fmt, spacing in (
        (runs / "TS_01" / "VoxelSpacing10.000" / "denoised.zarr", (30, 20, 10), 3, 10.0),
        (runs / "TS_01" / "Segmentations" / "10.000_alice_1_membrane.zarr", (30, 20, 10), 3, 10.0),
        (runs / "TS_02" / "VoxelSpacing7.500" / "wbp.zarr", (40, 40, 20), 2, 7.5),
    ):
        group = zarr.open_group(str(store_path), mode="w", zarr_format=fmt)  # v3 writes zarr.json
        group.create_array("0", shape=shape, dtype="f4")
        axes = [{"name": a, "type": "space", "unit": "angstrom"} for a in "zyx"]
        scale = [{"type": "scale", "scale": [spacing] * 3}]
        group.attrs["multiscales"] = [
            {
                "version": "0.4",
                "axes": axes,
                "datasets": [{"path": "0", "coordinateTransformations": scale}],
            }
        ]
    return root


def test_project_folder_import(tmp_path, store, registry):
    project = make_project(tmp_path / "overlay")
    files = expand_inputs([project], registry)
    # Only the picks files: nothing inside the .zarr stores (zarr.json) is offered.
    assert [p.name for p in files] == [
        "alice_1_ribosome.json",
        "bob_2_apo-ferritin.json",
        "virus-like-particle.json",
    ]
    volumes = find_volumes([project])
    # The segmentation is not a tomogram.
    assert [v.name for v in volumes] == ["denoised.zarr", "wbp.zarr"]
    tomos = [read_tomogram(v) for v in volumes]
    # Named after the run, shape (nx, ny, nz) from the (z, y, x) array, size from the OME scale.
    assert [(t.name, t.voxel_size, t.shape) for t in tomos] == [
        ("TS_01", 10.0, (10, 20, 30)),
        ("TS_02", 7.5, (20, 40, 40)),
    ]
    store.add_tomograms(tomos)
    results = [import_file(store, f, registry) for f in files]
    assert [r.adapter for r in results] == ["copick"] * 3
    picks = store.picks().sort_values(["tomogram", "x"])
    # run_name is null in TS_01's files: the run comes from ExperimentRuns/<run>/Picks.
    assert picks["tomogram"].tolist() == ["TS_01", "TS_01", "TS_01", "TS_02"]
    assert picks["particle"].tolist() == [
        "ribosome",
        "ribosome",
        "apo-ferritin",
        "virus-like-particle",
    ]


def test_project_user_and_session_filter(tmp_path, store, registry):
    project = make_project(tmp_path / "overlay")
    files = expand_inputs([project], registry)
    results = [import_file(store, f, registry, options={"user": "alice"}) for f in files]
    assert [r.n_picks for r in results] == [2, 0, 0]
    assert "user_id is 'bob'" in results[1].warnings[0]
    assert len(read(files[1], options={"session": "2"})[0]) == 1
    frame, ctx = read(files[1], options={"session": "1"})
    assert frame.empty and "session_id is '2'" in ctx.warnings[0]


def test_run_name_and_folder_disagree(tmp_path):
    path = write_json(
        tmp_path / "ExperimentRuns" / "TS_09" / "Picks" / "a_1_ribosome.json",
        picks_doc([point(1, 2, 3)], run_name="TS_10"),
    )
    frame, ctx = read(path)
    assert set(frame["tomogram"]) == {"TS_10"}
    assert "differs from its run folder 'TS_09'" in ctx.warnings[0]


# -- writer -------------------------------------------------------------------------------------


def test_writer_lays_out_a_copick_project(tmp_path: Path):
    picks = canonical.make(
        {
            "tomogram": ["TS_01", "TS_01", "TS_02"],
            "particle": ["ribosome", "ribosome", "apo-ferritin"],
            "x": [1.0, 2.0, 3.0],
            "y": [4.0, 5.0, 6.0],
            "z": [7.0, 8.0, 9.0],
            "score": [0.5, np.nan, 0.9],
            "rot": [10.0, 20.0, 30.0],
            "tilt": [40.0, 50.0, 60.0],
            "psi": [70.0, 80.0, 90.0],
            "record": [0, 1, 2],
        }
    ).assign(consensus_id=[11, 12, 13])
    root = tmp_path / "overlay"
    ctx = WriteContext()
    written = write_picks(picks, ADAPTER, root, ctx)
    ribosome = root / "ExperimentRuns" / "TS_01" / "Picks" / "picks_consensus_ribosome.json"
    ferritin = root / "ExperimentRuns" / "TS_02" / "Picks" / "picks_consensus_apo-ferritin.json"
    assert sorted(written) == sorted([ribosome, ferritin])
    config = root / "copick_config.json"  # the project config, so copick opens the folder
    assert ctx.options["project_files"] == [config]
    objects = json.loads(config.read_text())["pickable_objects"]
    assert [(o["name"], o["label"]) for o in objects] == [("apo-ferritin", 1), ("ribosome", 2)]
    doc = json.loads(ribosome.read_text())
    assert (doc["user_id"], doc["session_id"], doc["run_name"], doc["unit"]) == (
        "picks",
        "consensus",
        "TS_01",
        "angstrom",
    )
    assert [p["instance_id"] for p in doc["points"]] == [11, 12]
    assert [p["score"] for p in doc["points"]] == [0.5, 1.0]  # NaN -> copick's default 1.0
    assert np.allclose(
        np.array(doc["points"][0]["transformation_"])[:3, :3], relion_matrix(10, 40, 70)
    )
    assert doc["points"][0]["transformation_"][3] == [0.0, 0.0, 0.0, 1.0]
    # Never overwrite without --force; nothing is touched then.
    before = ribosome.read_text()
    with pytest.raises(PicksError, match="exist"):
        write_picks(picks.assign(x=[9.0, 9.0, 9.0]), ADAPTER, root, WriteContext())
    assert ribosome.read_text() == before
    write_picks(picks.assign(x=[9.0, 9.0, 9.0]), ADAPTER, root, WriteContext(), force=True)
    assert json.loads(ribosome.read_text())["points"][0]["location"]["x"] == 9.0
    assert not list(root.rglob("*.tmp"))
    # User and session options; picks without angles get identity transforms, untrusted.
    write_picks(
        picks.assign(rot=np.nan),
        ADAPTER,
        root,
        WriteContext(options={"user": "me", "session": "7"}),
    )
    doc = json.loads(
        (root / "ExperimentRuns" / "TS_01" / "Picks" / "me_7_ribosome.json").read_text()
    )
    assert (
        doc["trust_orientation"] is False
        and doc["points"][0]["transformation_"] == np.eye(4).tolist()
    )


def test_writer_refuses_a_file_target(tmp_path: Path):
    target = tmp_path / "file.json"
    target.write_text("{}")
    picks = canonical.make({"tomogram": ["T"], "x": [1.0], "y": [1.0], "z": [1.0], "record": [0]})
    with pytest.raises(PicksError, match="copick project folder"):
        write_picks(picks, ADAPTER, target, WriteContext())


TOMOGRAMS = TomogramSet(
    [Tomogram("TS_01", None, 10.0, (300, 280, 120)), Tomogram("TS_02", None, 7.5, (400, 400, 200))]
)


@ROUND_TRIP
@given(picks=oriented_pick_tables(TOMOGRAMS, max_picks=12))
def test_round_trip(tmp_path_factory, picks):
    root = tmp_path_factory.mktemp("copick")
    # instance_id = consensus_id lets rows be matched even when picks coincide.
    picks = picks.assign(consensus_id=np.arange(1, len(picks) + 1))
    written = write_picks(picks, ADAPTER, root, WriteContext(tomograms=TOMOGRAMS))
    back = pd.concat(
        [read_file(ADAPTER, ReadContext(path=p, tomograms=TOMOGRAMS)) for p in written]
    )
    back["consensus_id"] = [json.loads(o)["instance_id"] for o in back["original"]]
    a = picks.sort_values("consensus_id").reset_index(drop=True)
    b = back.sort_values("consensus_id").reset_index(drop=True)
    assert b["consensus_id"].tolist() == a["consensus_id"].tolist()
    assert a[["tomogram", "particle"]].equals(b[["tomogram", "particle"]])
    assert np.allclose(a[["x", "y", "z"]], b[["x", "y", "z"]], atol=1e-3, rtol=0)
    assert np.allclose(a["score"], b["score"], atol=1e-9)
    if a["rot"].notna().all():
        for i in range(len(a)):
            ra = relion_matrix(*a.loc[i, ["rot", "tilt", "psi"]].to_numpy(dtype=float))
            rb = relion_matrix(*b.loc[i, ["rot", "tilt", "psi"]].to_numpy(dtype=float))
            assert np.allclose(ra, rb, atol=1e-6)
    else:
        assert b["rot"].isna().all()
    shutil.rmtree(root)


# -- detection ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["portal_copick.json", "portal_copick_instance.json"])
def test_detect(registry, formats_dir, name):
    assert registry.detect(formats_dir / "copick" / name).name == "copick"


def test_config_is_not_claimed(formats_dir):
    assert ADAPTER.sniff(formats_dir / "copick" / "copick_config_overlay_local.json") == 0.0
