"""Dynamo .tbl: real tables (plain, MATLAB complex, 26 columns), tomogram maps, the ZXZ -> ZYZ
conversion, bad input, and a writer→reader round trip."""

from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from adapter_support import ROUND_TRIP, oriented_pick_tables, read_checked, relion_matrix
from hypothesis import given
from scipy.spatial.transform import Rotation

from picks.adapters._euler import dynamo_from_relion, relion_from_dynamo
from picks.adapters.dynamo import DynamoAdapter
from picks.core import picks as canonical
from picks.core.errors import InputFormatError, MissingVoxelSize, PicksError
from picks.core.tomograms import Tomogram, TomogramSet
from picks.plugins.adapter import WriteContext
from picks.workflows.importing import import_file
from picks.workflows.outputs import write_picks

ADAPTER = DynamoAdapter()
TWO_TOMOS = {"tomograms": "1=TS_01,2=TS_02"}


read = partial(read_checked, ADAPTER)


def same_angle(a: float, b: float) -> bool:
    return abs((a - b + 180.0) % 360.0 - 180.0) < 1e-6


def line(
    tag=1, shift=(0, 0, 0), angles=(0, 0, 0), cc=0.5, tomo=1, cls=0, xyz=(11, 21, 31), apix=None
):
    """A Dynamo table line (35 columns, or 36 with apix)."""
    values = [0.0] * (36 if apix is not None else 35)
    values[0], values[1], values[2] = tag, 1, 1
    values[3:6], values[6:9], values[9] = shift, angles, cc
    values[19], values[21], values[23:26] = tomo, cls, xyz
    if apix is not None:
        values[35] = apix
    return " ".join(f"{v:g}" for v in values)


# -- the angle convention -----------------------------------------------------------------------


def test_dynamo_angles_to_relion_known_case():
    # Rx(b) = Rz(-90)·Ry(b)·Rz(90), so Rz(narot)·Rx(tilt)·Rz(tdrot)
    #   = Rz(narot - 90)·Ry(tilt)·Rz(tdrot + 90): (tdrot, tilt, narot) = (10, 20, 30)
    #   -> (rot, tilt, psi) = (30 - 90, 20, 10 + 90) = (-60, 20, 100).
    assert relion_from_dynamo([10, 20, 30])[0] == pytest.approx([-60.0, 20.0, 100.0])
    dynamo = Rotation.from_euler("zxz", [10, 20, 30], degrees=True).as_matrix()
    assert np.allclose(dynamo, relion_matrix(-60, 20, 100))
    assert dynamo_from_relion([-60, 20, 100])[0] == pytest.approx([10.0, 20.0, 30.0])


# -- real fixtures ------------------------------------------------------------------------------


def test_t_double(formats_dir: Path):
    frame, ctx = read(formats_dir / "dynamo" / "t_double.tbl", voxel_size=10.0, options=TWO_TOMOS)
    assert len(frame) == 300 and not ctx.warnings
    # Line 1: x, y, z = 141.28, 114.71, 163.08; dx, dy, dz = 2.5178, -3.523, 2.1043; 1-based:
    #   (141.28 + 2.5178 - 1) × 10 = 1427.978; (114.71 - 3.523 - 1) × 10 = 1101.87;
    #   (163.08 + 2.1043 - 1) × 10 = 1641.843
    assert frame.loc[0, ["x", "y", "z"]].to_numpy(dtype=float) == pytest.approx(
        [1427.978, 1101.87, 1641.843]
    )
    # Line 2: (161.92 + 3.2463 - 1) × 10 = 1641.663; (97.211 + 1.4558 - 1) × 10 = 976.668;
    #   (121.46 + 0.36336 - 1) × 10 = 1208.2336
    assert frame.loc[1, ["x", "y", "z"]].to_numpy(dtype=float) == pytest.approx(
        [1641.663, 976.668, 1208.2336]
    )
    assert frame.loc[0, "score"] == pytest.approx(0.15858)
    assert (frame["score_field"] == "cc").all() and (
        frame["angle_convention"] == "dynamo-zxz"
    ).all()
    # (tdrot, tilt, narot) = (175.66, 90.681, -129.51) -> rot = -129.51 - 90 = -219.51 ≡ 140.49,
    # tilt = 90.681, psi = 175.66 + 90 = 265.66 ≡ -94.34.
    rot, tilt, psi = frame.loc[0, ["rot", "tilt", "psi"]]
    assert same_angle(rot, 140.49) and tilt == pytest.approx(90.681) and same_angle(psi, -94.34)
    assert (
        frame.loc[0, "tomogram"] == "TS_01" and frame.loc[150, "tomogram"] == "TS_02"
    )  # line 151: tomo 2
    assert frame["record"].tolist()[:3] == [1, 2, 3]
    assert frame.loc[0, "original"].startswith("1 1 0 2.5178")
    assert frame["particle"].isna().all()
    # 0-based reading (copick's): one voxel further along every axis.
    zero, _ = read(
        formats_dir / "dynamo" / "t_double.tbl",
        voxel_size=10.0,
        options={**TWO_TOMOS, "index_base": "0"},
    )
    assert zero.loc[0, ["x", "y", "z"]].to_numpy(dtype=float) == pytest.approx(
        [1437.978, 1111.87, 1651.843]
    )
    # Classes become particles through --option classes.
    classes = ",".join(f"{i}=class{i}" for i in range(1, 11))
    named, _ = read(
        formats_dir / "dynamo" / "t_double.tbl",
        voxel_size=10.0,
        options={**TWO_TOMOS, "classes": classes},
    )
    assert named.loc[0, "particle"] == "class9" and named.loc[1, "particle"] == "class2"
    assert (named["particle_field"] == "class").all()


def test_t_complex_with_tomogram_map(formats_dir: Path):
    doc = formats_dir / "dynamo" / "tmap_complex.doc"
    frame, ctx = read(
        formats_dir / "dynamo" / "t_complex.tbl",
        voxel_size=15.0,
        options={"tomogram_map": str(doc)},
    )
    assert len(frame) == 8742
    assert "945 value(s) are MATLAB complex numbers" in ctx.warnings[0]
    # Line 1: (1018.9 - 1.4197 - 1) × 15 = 15247.2045; (759.36 + 0.57826 - 1) × 15 = 11384.0739;
    #   (641.59 + 1.5785 - 1) × 15 = 9632.5275; tomo 1 -> tomo_ts01.mrc_15.00Apx.mrc in the map.
    assert frame.loc[0, ["x", "y", "z"]].to_numpy(dtype=float) == pytest.approx(
        [15247.2045, 11384.0739, 9632.5275]
    )
    assert frame.loc[0, "tomogram"] == "tomo_ts01.mrc_15.00Apx"
    # Line 2 holds 0+1.2074e-06i in column 28 and still reads: (1006.9 - 1.4208 - 1) × 15 = 15067.188
    assert frame.loc[1, "x"] == pytest.approx(15067.188)
    assert frame["tomogram"].nunique() == 48


def test_b4_table_with_26_columns(formats_dir: Path, tmp_path: Path):
    path = formats_dir / "dynamo" / "b4_motl_CR_tm_topbott_clean600_1_dynamo.tbl"
    with pytest.raises(InputFormatError, match="70 tomogram indices"):
        read(path, voxel_size=10.0)
    indices = sorted(
        {int(float(row.split()[19])) for row in path.read_text().splitlines() if row.strip()}
    )
    doc = tmp_path / "map.doc"
    doc.write_text("".join(f"{i}\t/data/tomo_{i:03d}.mrc\n" for i in indices))
    frame, _ = read(path, voxel_size=10.0, options={"tomogram_map": str(doc)})
    assert len(frame) == 1343
    # Line 1: tomo 2; (507 + 1.0651 - 1) × 10 = 5070.651; (548 + 1.1602 - 1) × 10 = 5481.602;
    #   (167 + 0.6847 - 1) × 10 = 1666.847; cc 0.1593.
    assert frame.loc[0, ["x", "y", "z"]].to_numpy(dtype=float) == pytest.approx(
        [5070.651, 5481.602, 1666.847]
    )
    assert frame.loc[0, "tomogram"] == "tomo_002" and frame.loc[0, "score"] == pytest.approx(0.1593)


def test_doc_beside_the_table_and_registered_names(formats_dir: Path, tmp_path: Path):
    table = tmp_path / "aligned.tbl"
    shutil.copy(formats_dir / "dynamo" / "t_double.tbl", table)
    (tmp_path / "aligned.doc").write_text("1\t/data/rec_TS_01.mrc\n2\t/data/rec_TS_02.mrc\n")
    tomos = TomogramSet(
        [
            Tomogram("TS_01", None, 10.0, (400, 400, 300)),
            Tomogram("TS_02", None, 10.0, (400, 400, 300)),
        ]
    )
    frame, _ = read(table, tomograms=tomos)
    assert frame["tomogram"].value_counts().to_dict() == {"TS_01": 150, "TS_02": 150}
    assert frame.loc[0, "x"] == pytest.approx(1427.978)


def test_apix_is_a_fallback_voxel_size(tmp_path: Path):
    path = tmp_path / "one.tbl"
    path.write_text(line(xyz=(11, 21, 31), apix=7) + "\n")
    frame, ctx = read(path)
    assert frame.loc[0, ["x", "y", "z"]].tolist() == [70.0, 140.0, 210.0]  # (11 - 1) × 7 ...
    assert "apix" in ctx.warnings[0]
    frame, ctx = read(path, voxel_size=10.0)
    assert frame.loc[0, ["x", "y", "z"]].tolist() == [100.0, 200.0, 300.0]
    assert "apix (column 36) is 7" in ctx.warnings[0]
    # A one-tomogram table without a map takes the file name (or --tomogram).
    assert frame.loc[0, "tomogram"] == "one"
    frame, _ = read(path, voxel_size=10.0, tomogram="TS_07")
    assert frame.loc[0, "tomogram"] == "TS_07"


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "options", "expected"),
    [
        ("", {}, "line 1: empty file"),
        ("1 2 3\n", {}, "line 1: expected at least 26 columns"),
        (
            line() + "\n" + line().replace(" 0.5 ", " abc ", 1) + "\n",
            {},
            "line 2: column 10 = 'abc' is not a number",
        ),
        (
            line() + "\n" + line(tomo=2) + "\n",
            {"tomograms": "1=TS_01"},
            "line 2: tomo index 2 (column 20) is not in `options` tomograms",
        ),
        (line(tomo=1.5) + "\n", {}, "line 1: tomo (column 20) = 1.5 is not an integer"),
        (
            line(cls=3) + "\n",
            {"classes": "1=ribosome"},
            "line 1: class 3 (column 22) is not in `options` classes",
        ),
        (line() + "\n" + line()[:40] + "\n", {}, "line 2: expected at least 26 columns"),
        (line() + "\n" + line().replace("0.5", "nan", 1) + "\n", {}, "line 2: non-finite value"),
    ],
)
def test_bad_input(tmp_path, rejects_import, text, options, expected):
    path = tmp_path / "bad.tbl"
    path.write_text(text)
    info = rejects_import(path, adapter="dynamo-tbl", voxel_size=10.0, options=options)
    assert str(path) in str(info.value) and expected in str(info.value)


def test_truncated_fixture_and_bad_map(tmp_path, store, registry, formats_dir):
    text = (formats_dir / "dynamo" / "t_double.tbl").read_text()
    cut = tmp_path / "cut.tbl"
    cut.write_text(text[:2000])  # ends inside a line
    last = text[:2000].count("\n") + 1
    assert len(text[:2000].splitlines()[-1].split()) < 26
    with pytest.raises(
        InputFormatError, match=rf"cut\.tbl, line {last}: expected at least 26 columns"
    ):
        import_file(store, cut, registry, voxel_size=10.0, options=TWO_TOMOS)
    bad_map = tmp_path / "map.doc"
    bad_map.write_text("1\tTS_01.mrc\nTS_02.mrc\n")
    with pytest.raises(
        InputFormatError, match=r"map\.doc, line 2: expected 'index<TAB>tomogram path'"
    ):
        import_file(
            store,
            formats_dir / "dynamo" / "t_double.tbl",
            registry,
            voxel_size=10.0,
            options={"tomogram_map": str(bad_map)},
        )
    assert store.count("picks") == 0


# -- writer -------------------------------------------------------------------------------------

TOMOGRAMS = TomogramSet(
    [
        Tomogram("TS_01", None, 10.0, (300, 280, 120)),
        Tomogram("TS_02", "/data/TS_02.mrc", 7.5, (400, 400, 200)),
    ]
)


def test_writer_files_and_force(tmp_path: Path):
    picks = canonical.make(
        {
            "tomogram": ["TS_02", "TS_01"],
            "particle": ["ribosome", "apo-ferritin"],
            "x": [75.0, 100.0],
            "y": [150.0, 200.0],
            "z": [15.0, 300.0],
            "score": [0.25, np.nan],
            "rot": [-60.0, np.nan],
            "tilt": [20.0, np.nan],
            "psi": [100.0, np.nan],
            "record": [0, 1],
        }
    ).assign(consensus_id=[42, 7])
    out = tmp_path / "out.tbl"
    written = write_picks(picks, ADAPTER, out, WriteContext(tomograms=TOMOGRAMS))
    assert written == [out]
    assert (tmp_path / "out.doc").read_text() == "1\tTS_01\n2\t/data/TS_02.mrc\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.doc", "out.tbl"]  # no temporaries
    rows = [r.split() for r in out.read_text().splitlines()]
    assert [len(r) for r in rows] == [36, 36]
    # Row 1: tag 42, TS_02 (index 2), ribosome = class 2 (apo-ferritin = 1), cc 0.25,
    # 75 Å / 7.5 = 10 voxels -> 11 (1-based); angles (-60, 20, 100) -> Dynamo (10, 20, 30).
    first = rows[0]
    assert (first[0], first[19], first[21], first[9]) == ("42", "2", "2", "0.25")
    assert [float(v) for v in first[23:26]] == [11.0, 21.0, 3.0]
    assert [float(v) for v in first[6:9]] == pytest.approx([10.0, 20.0, 30.0])
    assert float(first[35]) == 7.5
    second = rows[1]
    assert [float(v) for v in second[6:10]] == [0.0, 0.0, 0.0, 0.0]  # no angles, no score
    with pytest.raises(PicksError, match="exist"):
        write_picks(picks, ADAPTER, out, WriteContext(tomograms=TOMOGRAMS))
    out.unlink()
    with pytest.raises(PicksError, match=r"out\.doc exists"):
        write_picks(picks, ADAPTER, out, WriteContext(tomograms=TOMOGRAMS))
    assert not out.exists()
    write_picks(picks, ADAPTER, out, WriteContext(tomograms=TOMOGRAMS), force=True)
    back, _ = read(out, tomograms=TOMOGRAMS, options={"classes": "1=apo-ferritin,2=ribosome"})
    assert back["particle"].tolist() == ["ribosome", "apo-ferritin"]
    with pytest.raises(MissingVoxelSize):
        write_picks(picks, ADAPTER, tmp_path / "none.tbl", WriteContext())


@ROUND_TRIP
@given(picks=oriented_pick_tables(TOMOGRAMS, max_picks=15, orientation_per_pick=True))
def test_round_trip(tmp_path_factory, picks):
    folder = tmp_path_factory.mktemp("dynamo")
    picks = picks.assign(consensus_id=np.arange(101, 101 + len(picks)))
    out = folder / "particles.tbl"
    write_picks(picks, ADAPTER, out, WriteContext(tomograms=TOMOGRAMS))
    names = sorted(picks["particle"].unique())
    classes = ",".join(f"{i}={name}" for i, name in enumerate(names, start=1))
    back, _ = read(out, tomograms=TOMOGRAMS, options={"classes": classes})  # .doc found beside
    tags = [int(o.split()[0]) for o in back["original"]]
    assert tags == picks["consensus_id"].tolist()
    assert back["tomogram"].tolist() == picks["tomogram"].tolist()
    assert back["particle"].tolist() == picks["particle"].tolist()
    assert np.allclose(back[["x", "y", "z"]], picks[["x", "y", "z"]], atol=1e-3, rtol=0)
    assert np.allclose(back["score"], picks["score"], atol=1e-6)
    for i in range(len(picks)):
        angles = picks.loc[i, ["rot", "tilt", "psi"]].to_numpy(dtype=float)
        if np.isnan(angles).any():
            continue  # written as zero angles: Dynamo has no "no orientation"
        got = back.loc[i, ["rot", "tilt", "psi"]].to_numpy(dtype=float)
        assert np.allclose(relion_matrix(*got), relion_matrix(*angles), atol=1e-6)
    shutil.rmtree(folder)


# -- detection ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["t_double.tbl", "t_complex.tbl", "b4_motl_CR_tm_topbott_clean600_1_dynamo.tbl"]
)
def test_detect(registry, formats_dir, name):
    assert registry.detect(formats_dir / "dynamo" / name).name == "dynamo-tbl"


def test_sniff_rejects_short_rows(tmp_path):
    path = tmp_path / "x.tbl"
    path.write_text("1 2 3 4\n")
    assert ADAPTER.sniff(path) == 0.0


def test_map_entries_that_are_registered_paths(tmp_path: Path):
    # copick-style volumes are named after their run, not their file: the writer puts the
    # registered path in the .doc and the reader maps it back to the tomogram's name.
    tomos = TomogramSet(
        [Tomogram("TS_05", str(tmp_path / "run5" / "denoised.zarr"), 10.0, (50, 50, 50))]
    )
    picks = canonical.make(
        {"tomogram": ["TS_05"], "x": [100.0], "y": [110.0], "z": [120.0], "record": [0]}
    )
    out = tmp_path / "t.tbl"
    write_picks(picks, ADAPTER, out, WriteContext(tomograms=tomos))
    assert (tmp_path / "t.doc").read_text() == f"1\t{tmp_path / 'run5' / 'denoised.zarr'}\n"
    back, _ = read(out, tomograms=tomos)
    assert back["tomogram"].tolist() == ["TS_05"]
    assert back.loc[0, ["x", "y", "z"]].to_numpy(dtype=float) == pytest.approx(
        [100.0, 110.0, 120.0]
    )
