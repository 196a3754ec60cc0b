"""Warp 2 / WarpTools particle STAR reader on the real fixture (warp2/).

Coordinates are pixels of the optics group's rlnImagePixelSize (4 Å in the fixture); hand
calculations below use x = (i + 0.5)·p − 0.5·V (= i·p when the tomogram is not registered or
has p as its voxel size) and origin shifts of 0 Å (all origins in the fixture are 0).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pytest
from adapter_support import read_raw, row

from picks.adapters.relion import Relion4Adapter, Relion5Adapter
from picks.adapters.warp import Warp2Adapter
from picks.core.errors import InputFormatError, MissingVoxelSize
from picks.core.tomograms import Tomogram, TomogramSet
from picks.workflows.importing import import_file

PARTICLES = "warp2/warp2_particles_matching.star"
NAMES = ("TS_17", "TS_32", "TS_1", "TS_11", "TS_23")


read = partial(read_raw, Warp2Adapter())


def test_fixture_coordinates_by_hand(formats_dir: Path):
    frame, _ = read(formats_dir / PARTICLES)
    assert len(frame) == 1218
    # line 50: TS_17.tomostar (354.242, 397.132, 75.828) px × 4 Å
    first = row(frame, 50)
    assert first["tomogram"] == "TS_17"  # .tomostar stripped
    assert first[["x", "y", "z"]].tolist() == pytest.approx([1416.968, 1588.528, 303.312])
    # line 51: (745.904, 604.440, 75.828) × 4
    assert row(frame, 51)[["x", "y", "z"]].tolist() == pytest.approx([2983.616, 2417.76, 303.312])
    # line 178: TS_32.tomostar (730.936, 167.345, 25.276) × 4
    assert row(frame, 178)[["x", "y", "z"]].tolist() == pytest.approx([2923.744, 669.38, 101.104])
    assert row(frame, 178)["tomogram"] == "TS_32"
    assert frame["score"].isna().all() and frame["score_field"].isna().all()


def test_fixture_angles_beyond_360_are_dropped_with_a_warning(formats_dir: Path):
    frame, ctx = read(formats_dir / PARTICLES)
    assert frame[["rot", "tilt", "psi"]].isna().all().all()
    assert frame["angle_convention"].isna().all()
    (warning,) = [w for w in ctx.warnings if "angles" in w]
    assert "first at line 50" in warning and "dropped" in warning


def test_angles_keep_option_wraps_them(formats_dir: Path):
    frame, ctx = read(formats_dir / PARTICLES, options={"angles": "keep"})
    # line 50: 3867.465 − 11·360 = −92.535; 671.269 − 2·360 = −48.731;
    # 10742.958 − 30·360 = −57.042
    assert row(frame, 50)[["rot", "tilt", "psi"]].tolist() == pytest.approx(
        [-92.535, -48.731, -57.042]
    )
    assert set(frame["angle_convention"]) == {"relion-zyz"}
    assert any("angles=keep" in w for w in ctx.warnings)


def test_registered_tomograms_fit_and_binning_offset(formats_dir: Path, store, registry):
    # warp2_matching_tomograms.star: 4400 × 6000 × 1000 px of 0.7894 Å -> at 4 Å:
    # 868.3 × 1184.1 × 197.4 voxels
    store.add_tomograms([Tomogram(n, None, 4.0, (869, 1185, 198)) for n in NAMES])
    result = import_file(store, formats_dir / PARTICLES, registry)
    assert result.adapter == "warp2" and result.n_picks == 1218
    assert set(store.picks()["tomogram"]) == set(NAMES)
    # registered at 8 Å (2× binned): x = (354.242 + 0.5)·4 − 0.5·8 = 1414.968
    tomos = TomogramSet([Tomogram(n, None, 8.0, (435, 593, 99)) for n in NAMES])
    frame, _ = read(formats_dir / PARTICLES, tomograms=tomos)
    assert row(frame, 50)["x"] == pytest.approx(1414.968)


def test_voxel_size_overrides_with_warning(formats_dir: Path):
    frame, ctx = read(formats_dir / PARTICLES, voxel_size=2.0)
    assert row(frame, 50)["x"] == pytest.approx(708.484)  # 354.242 × 2
    assert any("overrides" in w and "rlnImagePixelSize" in w for w in ctx.warnings)


def test_detection_and_companions(formats_dir: Path, registry):
    assert registry.detect(formats_dir / PARTICLES).name == "warp2"
    for other in (
        "warp2/warp2_matching_tomograms.star",
        "warp2/warp2_matching_optimisation_set.star",
    ):
        assert Warp2Adapter().sniff(formats_dir / other) == 0
    assert Relion4Adapter().sniff(formats_dir / PARTICLES) == 0
    assert Relion5Adapter().sniff(formats_dir / PARTICLES) == 0
    assert Warp2Adapter().sniff(formats_dir / "relion3_4/relion_4.0.star") == 0


SMALL = """data_general

_rlnTomoSubTomosAre2DStacks 1

data_optics

loop_
_rlnOpticsGroup #1
_rlnImagePixelSize #2
1 10.0

data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnAngleRot #5
_rlnAngleTilt #6
_rlnAnglePsi #7
_rlnOriginXAngst #8
_rlnOriginYAngst #9
_rlnOriginZAngst #10
_rlnOpticsGroup #11
TS_5.tomostar 10 20 30 12.5 90 -45 5.0 0 -10.0 1
"""


def test_plausible_angles_and_origins_are_kept(tmp_path: Path):
    path = tmp_path / "matching.star"
    path.write_text(SMALL)
    frame, ctx = read(path)
    # (10 − 5/10, 20 − 0, 30 + 10/10) px × 10 Å = (95, 200, 310)
    assert frame[["x", "y", "z"]].to_numpy() == pytest.approx(np.array([[95.0, 200.0, 310.0]]))
    assert frame[["rot", "tilt", "psi"]].to_numpy() == pytest.approx(
        np.array([[12.5, 90.0, -45.0]])
    )
    assert frame["tomogram"].tolist() == ["TS_5"] and not ctx.warnings


def test_missing_pixel_size_and_bad_rows(tmp_path: Path, store, registry):
    path = tmp_path / "nopix.star"
    path.write_text(SMALL.replace("_rlnImagePixelSize #2\n1 10.0", "_rlnVoltage #2\n1 300"))
    with pytest.raises(MissingVoxelSize) as info:
        import_file(store, path, registry)
    assert "`voxel_size`" in info.value.hint
    bad = tmp_path / "bad.star"
    bad.write_text(SMALL.replace("TS_5.tomostar 10 20", "TS_5.tomostar 10 twenty"))
    with pytest.raises(InputFormatError, match="rlnCoordinateY = 'twenty' is not a number") as err:
        import_file(store, bad, registry)
    assert err.value.line == 26
    cut = tmp_path / "cut.star"
    cut.write_text(SMALL[: SMALL.rindex("-10.0")])
    with pytest.raises(InputFormatError, match="truncated") as err:
        import_file(store, cut, registry)
    assert err.value.line == 26
    assert store.count("sources") == 0 and store.count("picks") == 0
