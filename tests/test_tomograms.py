"""Tomogram headers, name matching and voxel/Å conversion."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pytest

from picks.core import picks as canonical
from picks.core.errors import MissingVoxelSize, TomogramNameError
from picks.core.tomograms import Tomogram, TomogramSet, name_key, read_tomogram
from picks.plugins.adapter import ReadContext, WriteContext


def make_mrc(path: Path, shape_zyx=(8, 12, 16), voxel=10.0) -> Path:
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(np.zeros(shape_zyx, dtype=np.float32))
        mrc.voxel_size = voxel
    return path


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        ("TS_01", "ts_01"),
        ("/data/TS_01.mrc", "ts_01"),
        ("rec_TS_01.rec", "ts_01"),
        ("TS_01_denoised.mrc", "ts_01"),
        ("TS_01.tomostar", "ts_01"),
        ("TS_01_10.73Apx.mrc", "ts_01"),
        ("TS_01_bin4_filtered.mrc", "ts_01"),
        ("TS_01.cbox", "ts_01"),
        ("TS_01.ome.zarr", "ts_01"),
    ],
)
def test_name_key(raw: str, key: str):
    assert name_key(raw) == key


def test_resolve_matches_variants_and_fails_loudly():
    tomos = TomogramSet(
        [Tomogram("TS_01", None, 10.0, (10, 10, 10)), Tomogram("TS_02", None, 10.0, None)]
    )
    assert tomos.resolve("rec_TS_01_denoised.mrc") == "TS_01"
    assert tomos.resolve("TS_02.tomostar") == "TS_02"
    with pytest.raises(TomogramNameError) as info:
        tomos.resolve("TS_77", source="f.star")
    message = str(info.value)
    assert "TS_77" in message and "TS_01" in message and "TS_02" in message and "f.star" in message


def test_resolve_ambiguous_is_an_error():
    tomos = TomogramSet(
        [Tomogram("TS_1_a", None, 10.0, None), Tomogram("TS_1_b", None, 10.0, None)]
    )
    with pytest.raises(TomogramNameError, match="ambiguous"):
        tomos.resolve("TS_1")


def test_resolve_without_registered_tomograms_strips_extension():
    assert TomogramSet().resolve("TS_5.mrc") == "TS_5"


def test_read_mrc_header(tmp_path: Path):
    tomo = read_tomogram(make_mrc(tmp_path / "TS_9.mrc"))
    assert tomo.name == "TS_9" and tomo.shape == (16, 12, 8) and tomo.voxel_size == 10.0
    assert tomo.extent == (160.0, 120.0, 80.0)


def test_missing_voxel_size_is_an_error_with_hint(tmp_path: Path):
    path = make_mrc(tmp_path / "t.mrc", voxel=1.0)
    with pytest.raises(MissingVoxelSize) as info:
        read_tomogram(path)
    assert "`voxel_size`" in info.value.hint
    assert read_tomogram(path, voxel_size=7.5).voxel_size == 7.5


def test_read_ome_zarr_header(tmp_path: Path):
    import zarr

    root = zarr.open_group(str(tmp_path / "TS_3.zarr"), mode="w", zarr_format=2)
    root.create_array("0", shape=(6, 7, 9), dtype="float32")
    root.attrs["multiscales"] = [
        {
            "axes": [{"name": a, "type": "space", "unit": "angstrom"} for a in "zyx"],
            "datasets": [
                {
                    "path": "0",
                    "coordinateTransformations": [{"type": "scale", "scale": [10.012] * 3}],
                }
            ],
        }
    ]
    tomo = read_tomogram(tmp_path / "TS_3.zarr")
    assert (
        tomo.shape == (9, 7, 6) and tomo.voxel_size == pytest.approx(10.012) and tomo.name == "TS_3"
    )


def _frame(x: float) -> object:
    return canonical.make({"tomogram": ["T"], "x": [x], "y": [0.0], "z": [3.0], "record": [1]})


def test_voxels_to_angstrom_plain_and_binned():
    tomos = TomogramSet([Tomogram("T", None, 10.0, (100, 100, 50))])
    plain = ReadContext(Path("f"), tomos).voxels_to_angstrom(_frame(4.0))
    assert plain["x"].iloc[0] == 40.0 and plain["z"].iloc[0] == 30.0
    # Bin 2: binned voxel 4 covers reference voxels 8 and 9, centre 8.5 -> 85 Å.
    binned = ReadContext(Path("f"), tomos, binning=2).voxels_to_angstrom(_frame(4.0))
    assert binned["x"].iloc[0] == pytest.approx(85.0)
    # The same through an explicit voxel size of the picked volume.
    explicit = ReadContext(Path("f"), tomos, voxel_size=20.0).voxels_to_angstrom(_frame(4.0))
    assert explicit["x"].iloc[0] == pytest.approx(85.0)


def test_voxel_size_with_binning_and_no_registered_tomogram():
    """--voxel-size 20 --binning 2 without tomograms: the frame is the unbinned 10 Å grid."""
    ctx = ReadContext(Path("f"), voxel_size=20.0, binning=2)
    assert ctx.voxels_to_angstrom(_frame(4.0))["x"].iloc[0] == pytest.approx(85.0)
    back = WriteContext(voxel_size=20.0, binning=2).angstrom_to_voxels(
        ctx.voxels_to_angstrom(_frame(4.0))
    )
    assert back["x"].iloc[0] == pytest.approx(4.0)


def test_angstrom_to_voxels_inverts():
    tomos = TomogramSet([Tomogram("T", None, 10.0, (100, 100, 50))])
    for binning in (1, 2, 4):
        angstrom = ReadContext(Path("f"), tomos, binning=binning).voxels_to_angstrom(_frame(7.25))
        back = WriteContext(tomos, binning=binning).angstrom_to_voxels(angstrom)
        assert back["x"].iloc[0] == pytest.approx(7.25)


def test_unknown_voxel_size_raises():
    with pytest.raises(MissingVoxelSize):
        ReadContext(Path("f.coords")).voxels_to_angstrom(_frame(1.0))
