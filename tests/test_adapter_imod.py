"""IMOD .mod models through imodmodel: the half-pixel X/Y origin, objects as classes, header
pixel size as a fallback, slicer angles, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from adapter_support import read_checked

from picks.adapters.imod import ImodAdapter
from picks.core.tomograms import Tomogram, TomogramSet
from picks.workflows.importing import import_file

ADAPTER = ImodAdapter()


read = partial(read_checked, ADAPTER)


def test_portal_points(formats_dir: Path):
    frame, ctx = read(formats_dir / "imod" / "portal_points.mod", voxel_size=10.0)
    # IMOD points (1,2,3), (2,2,2), (0,3,0): X, Y count from the pixel edge, Z from the centre of
    # section 0, so voxel indices are (x - 0.5, y - 0.5, z): (0.5, 1.5, 3) × 10 = (5, 15, 30) ...
    assert frame[["x", "y", "z"]].to_numpy().tolist() == [
        [5.0, 15.0, 30.0],
        [15.0, 15.0, 20.0],
        [-5.0, 25.0, 0.0],
    ]
    assert frame["record"].tolist() == [0, 1, 2]
    assert set(frame["tomogram"]) == {"portal_points"} and set(frame["particle"]) == {"object1"}
    assert (frame["particle_field"] == "object").all() and frame["score"].isna().all()
    assert frame[["rot", "tilt", "psi"]].isna().all().all()
    assert not ctx.warnings  # header units 0 (pixels): no pixel size to compare
    assert json.loads(frame.loc[0, "original"]) == {
        "object": 1,
        "object_name": "",
        "contour": 0,
        "point": 0,
        "x": 1.0,
        "y": 2.0,
        "z": 3.0,
    }


def test_two_contours_and_header_pixel_size(formats_dir: Path):
    path = formats_dir / "imod" / "two_contour_example.mod"
    frame, ctx = read(path, voxel_size=4.48)
    assert len(frame) == 25 and not ctx.warnings  # 17 + 8 points; header 0.448 nm = 4.48 Å agrees
    # First point (64.33333587646484, 64.66666412353516, 80.0):
    #   (64.33333587646484 - 0.5) × 4.48 = 63.83333587646484 × 4.48 = 285.9733447265625
    #   (64.66666412353516 - 0.5) × 4.48 = 64.16666412353516 × 4.48 = 287.4666552734375
    #   80 × 4.48 = 358.4
    assert frame.loc[0, ["x", "y", "z"]].to_numpy(dtype=float) == pytest.approx(
        [285.9733447265625, 287.4666552734375, 358.4], rel=1e-12
    )
    # Second contour starts at record 17: (64.33333587646484, 64.0, 59.0) -> y = 63.5 × 4.48 = 284.48
    assert frame.loc[17, ["y", "z"]].to_numpy(dtype=float) == pytest.approx([284.48, 264.32])
    assert json.loads(frame.loc[17, "original"])["contour"] == 1
    # No voxel size and no tomogram: the header's 0.448 nm is used, with a warning.
    fallback, ctx = read(path)
    assert "model header's pixel size (4.48 Å)" in ctx.warnings[0]
    assert fallback.loc[0, "x"] == pytest.approx(285.9733447265625, rel=1e-7)
    # A registered tomogram wins; the disagreement is reported.
    tomos = TomogramSet([Tomogram("two_contour_example", None, 10.0, (128, 128, 128))])
    registered, ctx = read(path, tomograms=tomos)
    assert registered.loc[0, "x"] == pytest.approx(638.3333587646484)  # 63.8333… × 10
    assert "4.48 Å but 10 Å per voxel" in ctx.warnings[0]


def test_objects_names_and_labels(formats_dir: Path):
    path = formats_dir / "imod" / "multiple_objects_example.mod"
    frame, ctx = read(path, voxel_size=10.0)
    # Object 1 is empty; objects 2 and 3 are both named "chemo-array" (3 points each).
    assert frame["particle"].tolist() == ["chemo-array"] * 6
    assert [json.loads(o)["object"] for o in frame["original"]] == [2, 2, 2, 3, 3, 3]
    # (367.00006103515625 - 0.5) × 10 = 3665.0006103515625; (661.8334350585938 - 0.5) × 10; 134 × 10
    assert frame.loc[0, ["x", "y", "z"]].to_numpy(dtype=float) == pytest.approx(
        [3665.0006103515625, 6613.334350585938, 1340.0]
    )
    assert "4 slicer angle(s) for 6 point(s)" in ctx.warnings[0]
    labelled, _ = read(path, voxel_size=10.0, options={"labels": "3=ribosome"})
    assert labelled["particle"].tolist() == ["chemo-array"] * 3 + ["ribosome"] * 3
    by_name, _ = read(path, voxel_size=10.0, options={"objects": "chemo-array=apoferritin"})
    assert set(by_name["particle"]) == {"apo-ferritin"}  # canonical CZII name


def test_point_sizes_and_slicer_angles(formats_dir: Path):
    sizes, _ = read(formats_dir / "imod" / "point_sizes_example.mod", voxel_size=10.0)
    assert json.loads(sizes.loc[0, "original"])["size"] == pytest.approx(28.39998245)
    assert sizes.loc[0, "particle"] == "SCATTERED_POINT_SIZE"
    slicer, ctx = read(formats_dir / "imod" / "slicer_angle_example.mod", voxel_size=10.0)
    assert len(slicer) == 4 and not any("slicer angle(s)" in w for w in ctx.warnings)
    first = json.loads(slicer.loc[0, "original"])
    assert first["slicer_angles"] == pytest.approx([13.1, 0.0, -30.2], abs=1e-5)
    assert slicer[["rot", "tilt", "psi"]].isna().all().all()  # kept, not converted


def test_particle_option_names_unnamed_objects(formats_dir: Path):
    frame, _ = read(
        formats_dir / "imod" / "portal_points.mod", voxel_size=10.0, particle="ribosome"
    )
    assert set(frame["particle"]) == {"ribosome"}


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty file"),
        (b"# not a model\n1 2 3\n", "not an IMOD binary model"),
        ("truncated", "cannot parse the IMOD model"),
    ],
)
def test_bad_input(tmp_path, rejects_import, formats_dir, content, expected):
    path = tmp_path / "bad.mod"
    if content == "truncated":
        content = (formats_dir / "imod" / "two_contour_example.mod").read_bytes()[:300]
    path.write_bytes(content)
    info = rejects_import(path, adapter="imod-mod", voxel_size=10.0)
    assert str(path) in str(info.value) and expected in str(info.value)


@pytest.mark.parametrize(
    ("name", "cut"),
    [
        ("two_contour_example.mod", 800),
        ("two_contour_example.mod", 1000),
        ("two_contour_example.mod", 1255),
        ("portal_points.mod", -4),  # only the closing IEOF tag missing
    ],
)
def test_cut_between_chunks_is_an_error_not_a_hang(
    tmp_path, rejects_import, formats_dir, name, cut
):
    """imodmodel alone loops for ever on these (an empty read is never the IEOF tag)."""
    bad = tmp_path / "cut.mod"
    bad.write_bytes((formats_dir / "imod" / name).read_bytes()[:cut])
    info = rejects_import(bad, adapter="imod-mod", voxel_size=10.0)
    assert str(bad) in str(info.value) and "truncated or damaged" in str(info.value)


def test_import(formats_dir, store, registry):
    result = import_file(
        store, formats_dir / "imod" / "portal_points.mod", registry, voxel_size=10.0
    )
    assert (result.adapter, result.n_picks, result.picker) == ("imod-mod", 3, "imod")
    assert np.allclose(sorted(store.picks()["x"]), [-5.0, 5.0, 15.0])


@pytest.mark.parametrize(
    "name",
    [
        "two_contour_example.mod",
        "multiple_objects_example.mod",
        "point_sizes_example.mod",
        "slicer_angle_example.mod",
        "portal_points.mod",
        "portal_oriented_points.mod",
    ],
)
def test_detect(registry, formats_dir, name):
    assert registry.detect(formats_dir / "imod" / name).name == "imod-mod"


def test_imodmodel_is_imported_only_when_reading():
    code = (
        "import sys; import picks.adapters.imod; "
        "from picks.plugins.manager import get_registry; get_registry().get('imod-mod'); "
        "assert 'imodmodel' not in sys.modules and 'pydantic' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
