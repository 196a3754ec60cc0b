"""RELION 5 / RELION 3-4 readers and writers on the real fixtures (relion5/, relion3_4/).

Expected coordinates are worked out by hand in the comments from the conventions in
``adapters/relion.py``: RELION 5 ``x = centred − A_sub·origin + SizeX/2·Pts``; RELION 4
``x = (coordinate − origin_Å/Pts)·Pts`` (point sampling); other pixel files
``x = (i + 0.5)·p − 0.5·V`` (block binning, = i·p when unregistered).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from adapter_support import ROUND_TRIP, read_raw, row
from hypothesis import given, settings
from hypothesis import strategies as st

from picks.adapters.relion import Relion4Adapter, Relion5Adapter
from picks.core import picks as canonical
from picks.core.errors import InputFormatError, MissingVoxelSize, PicksError
from picks.core.frame import angstrom_to_index, index_to_angstrom
from picks.core.tomograms import Tomogram, TomogramSet
from picks.plugins.adapter import (
    ReadContext,
    WriteContext,
)
from picks.workflows.importing import import_file
from picks.workflows.outputs import write_picks

R5 = "relion5/R5_tutorial_run_data_excerpt.star"
R5_TOMOS = "relion5/R5_tutorial_run_tomograms.star"
# RELION tutorial: 4000 × 4000 × 2000 tilt-series pixels of 1.35 Å, binning 7.407407 -> 10 Å.
TUTORIAL = [
    Tomogram(n, None, 10.0, (540, 540, 270)) for n in ("TS_01", "TS_03", "TS_43", "TS_45", "TS_54")
]


read = read_raw


# -- the shared index <-> Å arithmetic -------------------------------------------------------


def test_index_to_angstrom_block_and_point():
    # block: binned voxel 3 of a 4× binned volume (v0 = 2.5 Å) covers reference voxels 12..15,
    # centre 13.5 -> 33.75 Å = (3 + 0.5)·10 − 0.5·2.5
    assert index_to_angstrom(3, 10.0, 2.5) == pytest.approx(33.75)
    # point: RELION samples reference voxel 12 -> 30 Å
    assert index_to_angstrom(3, 10.0, 2.5, sampling="point") == pytest.approx(30.0)
    values = np.array([0.0, 1.5, 99.25])
    for sampling in ("block", "point"):
        back = angstrom_to_index(
            index_to_angstrom(values, 7.0, 3.5, sampling=sampling), 7.0, 3.5, sampling=sampling
        )
        assert back == pytest.approx(values)
    with pytest.raises(ValueError):
        index_to_angstrom(1, 1, 1, sampling="corner")


def test_pixels_to_angstrom_uses_per_row_sizes_and_registered_reference():
    tomos = TomogramSet([Tomogram("A", None, 4.0, (10, 10, 10))])
    ctx = ReadContext(path=Path("x"), tomograms=tomos)
    frame = pd.DataFrame(
        {"tomogram": ["A", "B"], "x": [2.0, 2.0], "y": [0.0, 0.0], "z": [1.0, 1.0]}
    )
    ctx.pixels_to_angstrom(frame, np.array([8.0, 3.0]))
    # A: (2 + 0.5)·8 − 0.5·4 = 18; B unregistered: 2·3 = 6
    assert frame["x"].tolist() == pytest.approx([18.0, 6.0])
    assert frame["z"].tolist() == pytest.approx([10.0, 3.0])


# -- RELION 5 reader -----------------------------------------------------------------------------


def test_relion5_tutorial_excerpt_decentred_by_hand(formats_dir: Path):
    frame, ctx = read(Relion5Adapter(), formats_dir / R5, options={"origins": "ignore"})
    assert len(frame) == 500
    assert any("R5_tutorial_run_tomograms.star" in w for w in ctx.warnings)  # auto-found
    # tomograms.star: SizeX/Y/Z 4000/4000/2000 px of 1.35 Å -> centre (2700, 2700, 1350) Å
    # line 59, TS_01: centred (1774.846956, -951.52983, 1127.416439)
    assert row(frame, 59)[["x", "y", "z"]].tolist() == pytest.approx(
        [4474.846956, 1748.47017, 2477.416439], abs=1e-6
    )
    # line 60, TS_01: centred (1667.381849, -798.34855, 1116.277412)
    assert row(frame, 60)[["x", "y", "z"]].tolist() == pytest.approx(
        [4367.381849, 1901.65145, 2466.277412], abs=1e-6
    )
    # line 459, TS_54: centred (-489.04057, 1974.797866, 568.262332)
    assert row(frame, 459)[["x", "y", "z"]].tolist() == pytest.approx(
        [2210.95943, 4674.797866, 1918.262332], abs=1e-6
    )
    assert row(frame, 459)["tomogram"] == "TS_54"
    assert row(frame, 59)["score"] == pytest.approx(0.018746)
    assert set(frame["score_field"]) == {"rlnMaxValueProbDistribution"}
    assert set(frame["angle_convention"]) == {"relion-zyz"}


def test_relion5_applies_rotated_origins(formats_dir: Path):
    frame, _ = read(Relion5Adapter(), formats_dir / R5)
    # line 59: A_sub = RELION Euler(167.689240, 98.103985, -164.55358) =
    #   [[-0.075967  0.289184  0.954254]
    #    [ 0.242195  0.933711 -0.263677]
    #    [-0.967249  0.211085 -0.14097 ]]
    # origin (0.028068, 1.040568, 0.365568) Å -> A_sub·o = (0.647628, 0.881995, 0.140965)
    # x = 1774.846956 − 0.647628 + 2700 = 4474.199328, ...
    assert row(frame, 59)[["x", "y", "z"]].tolist() == pytest.approx(
        [4474.199328, 1747.588175, 2477.275474], abs=1e-5
    )
    # line 459: A_sub·o = (-2.469199, -0.538362, 3.859734)
    assert row(frame, 459)[["x", "y", "z"]].tolist() == pytest.approx(
        [2213.428629, 4675.336228, 1914.402598], abs=1e-5
    )


def test_relion5_composes_subtomogram_prerotation(formats_dir: Path):
    from scipy.spatial.transform import Rotation

    frame, _ = read(Relion5Adapter(), formats_dir / R5)
    got = row(frame, 59)[["rot", "tilt", "psi"]].to_numpy(dtype=float)
    # Independent path: RELION's A = M(angles)ᵀ with M = Rz(rot)Ry(tilt)Rz(psi), and
    # A_total = A_sub·A_particle  <=>  M_total = M_particle·M_sub.
    m_sub = Rotation.from_euler("ZYZ", [167.689240, 98.103985, -164.55358], degrees=True)
    m_part = Rotation.from_euler("ZYZ", [-0.25410, 97.317432, 9.022498], degrees=True)
    expected = (m_part * m_sub).as_matrix()
    assert Rotation.from_euler("ZYZ", got, degrees=True).as_matrix() == pytest.approx(
        expected, abs=1e-9
    )


def test_relion5_all_decentred_picks_lie_inside_the_tomograms(formats_dir: Path, store, registry):
    frame, _ = read(Relion5Adapter(), formats_dir / R5)
    extent = {"x": 5400.0, "y": 5400.0, "z": 2700.0}  # 4000·1.35, 4000·1.35, 2000·1.35
    for axis, top in extent.items():
        assert frame[axis].between(0.0, top).all(), axis
    store.add_tomograms(TUTORIAL)
    result = import_file(store, formats_dir / R5, registry)  # check_extent would raise
    assert result.adapter == "relion5" and result.n_picks == 500
    assert store.count("picks") == 500


def test_relion5_falls_back_to_registered_tomogram(formats_dir: Path, tmp_path: Path):
    lonely = tmp_path / "run_data.star"
    shutil.copy(formats_dir / R5, lonely)  # no tomograms.star next to it
    tomos = TomogramSet(TUTORIAL)
    frame, ctx = read(Relion5Adapter(), lonely, tomograms=tomos, options={"origins": "ignore"})
    # centre = n·V/2 = (540·10/2, 540·10/2, 270·10/2) = (2700, 2700, 1350): the same numbers
    assert row(frame, 59)[["x", "y", "z"]].tolist() == pytest.approx(
        [4474.846956, 1748.47017, 2477.416439], abs=1e-6
    )
    assert not ctx.warnings
    # --option tomo_size=NX,NY,NZ with --voxel-size instead of registered tomograms
    sized, _ = read(
        Relion5Adapter(),
        lonely,
        voxel_size=10.0,
        options={"origins": "ignore", "tomo_size": "540,540,270"},
    )
    assert sized[["x", "y", "z"]].to_numpy() == pytest.approx(frame[["x", "y", "z"]].to_numpy())
    with pytest.raises(MissingVoxelSize, match="size of tomogram 'TS_01' is unknown") as info:
        read(Relion5Adapter(), lonely)
    assert "`options` tomograms_star=PATH" in info.value.hint


def test_relion5_explicit_tomograms_star_and_unknown_tomogram(formats_dir: Path, tmp_path: Path):
    lonely = tmp_path / "run_data.star"
    shutil.copy(formats_dir / R5, lonely)
    frame, ctx = read(
        Relion5Adapter(), lonely, options={"tomograms_star": str(formats_dir / R5_TOMOS)}
    )
    assert len(frame) == 500 and not ctx.warnings
    partial = tmp_path / "partial_tomograms.star"
    text = (formats_dir / R5_TOMOS).read_text().splitlines()
    partial.write_text("\n".join(line for line in text if "TS_54" not in line) + "\n")
    with pytest.raises(PicksError, match="TS_54"):
        read(Relion5Adapter(), lonely, options={"tomograms_star": str(partial)})


def test_relion5_broken_tomograms_star_names_that_file(formats_dir: Path, tmp_path: Path):
    lonely = tmp_path / "run_data.star"
    shutil.copy(formats_dir / R5, lonely)
    broken = tmp_path / "broken_tomograms.star"
    text = (formats_dir / R5_TOMOS).read_text()
    broken.write_text(text.replace("_rlnTomoSizeZ #14", "_rlnTomoDepth #14"))
    with pytest.raises(InputFormatError, match=r"lacks column\(s\) rlnTomoSizeZ") as info:
        read(Relion5Adapter(), lonely)  # auto-found: the only *tomograms.star there
    assert str(broken) in str(info.value) and info.value.line == 6


def test_relion5_warns_when_tomograms_star_disagrees_with_registered(formats_dir: Path):
    tomos = TomogramSet([Tomogram("TS_01", None, 10.0, (500, 540, 270)), *TUTORIAL[1:]])
    _, ctx = read(Relion5Adapter(), formats_dir / R5, tomograms=tomos)
    assert any("TS_01" in w and "decentring uses tomograms.star" in w for w in ctx.warnings)


def test_pytom_relion5_compat_is_read_as_relion5(tmp_path: Path, registry):
    import starfile

    # pytom --relion5-compat: (index − dims/2)·voxel with the template-matching dims
    frame = pd.DataFrame(
        {
            "rlnCenteredCoordinateXAngst": [(10 - 50) * 12.0, (77 - 50) * 12.0],
            "rlnCenteredCoordinateYAngst": [(20 - 40) * 12.0, (3 - 40) * 12.0],
            "rlnCenteredCoordinateZAngst": [(5 - 15) * 12.0, (29 - 15) * 12.0],
            "rlnAngleRot": [10.0, 20.0],
            "rlnAngleTilt": [30.0, 40.0],
            "rlnAnglePsi": [50.0, 60.0],
            "rlnLCCmax": [0.4, 0.3],
            "rlnCutOff": [0.2, 0.2],
            "rlnSearchStd": [0.05, 0.05],
            "rlnTomoTiltSeriesPixelSize": [12.0, 12.0],
            "rlnTomoName": ["tomo_7", "tomo_7"],
        }
    )
    path = tmp_path / "rec_tomo_7_particles.star"
    starfile.write(frame, path)
    assert registry.detect(path).name == "relion5"
    tomos = TomogramSet([Tomogram("tomo_7", None, 12.0, (100, 80, 30))])
    picks, _ = read(Relion5Adapter(), path, tomograms=tomos)
    # centre n·V/2 = (600, 480, 180) Å; x = (10 − 50)·12 + 600 = 120 = 10·12 (the voxel index)
    assert picks[["x", "y", "z"]].to_numpy() == pytest.approx(
        np.array([[120, 240, 60], [924, 36, 348]])
    )
    assert picks["score"].tolist() == pytest.approx([0.4, 0.3])
    assert set(picks["score_field"]) == {"rlnLCCmax"}


# -- RELION 3.0 - 4.x reader ------------------------------------------------------------------


def test_relion4_tilt_series_pixels_by_hand(formats_dir: Path):
    path = formats_dir / "relion3_4/relion_4.0.star"
    frame, _ = read(Relion4Adapter(), path)
    assert len(frame) == 1746
    # line 46: (1700, 428, 944) px of 1.971 Å, origin (1.260416, 2.364176, 3.783296) Å:
    # x = 1700·1.971 − 1.260416 = 3349.439584; y = 428·1.971 − 2.364176 = 841.223824;
    # z = 944·1.971 − 3.783296 = 1856.840704
    first = row(frame, 46)
    assert first[["x", "y", "z"]].tolist() == pytest.approx([3349.439584, 841.223824, 1856.840704])
    assert first["tomogram"] == "TS_017"
    assert first[["rot", "tilt", "psi"]].tolist() == pytest.approx(
        [-61.71449, 150.606435, 110.442075]
    )
    assert first["score"] == pytest.approx(0.009516)
    # line 47: (654, 2910, 1046), origin (-5.20026, 0.160861, 1.579981):
    # 654·1.971 + 5.20026 = 1294.23426; 2910·1.971 − 0.160861 = 5735.449139; 1046·1.971 − 1.579981 = 2060.086019
    assert row(frame, 47)[["x", "y", "z"]].tolist() == pytest.approx(
        [1294.23426, 5735.449139, 2060.086019]
    )
    # RELION 4 samples like RELION's reconstructions: a registered 4×-binned tomogram
    # (7.884 Å) does not move the picks (x = p·Pts, no half-voxel term).
    tomos = TomogramSet(
        [Tomogram(n, None, 7.884, (1015, 1015, 600)) for n in frame["tomogram"].unique()]
    )
    binned, _ = read(Relion4Adapter(), path, tomograms=tomos)
    assert binned[["x", "y", "z"]].to_numpy() == pytest.approx(frame[["x", "y", "z"]].to_numpy())


def test_relion31_optics_groups_and_tab_indented_row(formats_dir: Path):
    frame, _ = read(Relion4Adapter(), formats_dir / "relion3_4/relion_3.1_optics2.star")
    # line 45, optics group 1 (2.446 Å), origin x −0.25289 Å: 915.549·2.446 + 0.25289 = 2239.685744
    assert row(frame, 45)["x"] == pytest.approx(2239.685744)
    # line 46, optics group 2 (3.446 Å, the tab-indented optics row): 1636.359·3.446 + 0.25289
    assert row(frame, 46)["x"] == pytest.approx(5639.146004)
    # z: 835.438·3.446 − 2.747110 = 2876.172238
    assert row(frame, 46)["z"] == pytest.approx(2876.172238)
    assert row(frame, 46)["tomogram"] == "0003_12.23Apx"  # nothing registered: name kept


def test_warp1_relion30_detector_pixel_size_not_file_name(formats_dir: Path):
    path = formats_dir / "relion3_4/warp1_relion_3.0.star"
    frame, _ = read(Relion4Adapter(), path)
    # 5.364 µm·10⁴/10000 = 5.364 Å (the name says 10.73 Å: ignored). Line 20:
    # 1028.455·5.364 = 5516.63262; 733.955·5.364 = 3936.93462; 422.955·5.364 = 2268.73062
    assert row(frame, 20)[["x", "y", "z"]].tolist() == pytest.approx(
        [5516.63262, 3936.93462, 2268.73062]
    )
    # Registered as the 10.73 Å reconstruction '01006': block binning of 5.364 Å pixels,
    # x = (1028.455 + 0.5)·5.364 − 0.5·10.73 = 5513.94962
    tomos = TomogramSet([Tomogram("01006", None, 10.73, (700, 700, 300))])
    registered, _ = read(Relion4Adapter(), path, tomograms=tomos)
    assert row(registered, 20)["tomogram"] == "01006"
    assert row(registered, 20)["x"] == pytest.approx(5513.94962)
    # --voxel-size overrides the file's value, with a warning
    forced, ctx = read(Relion4Adapter(), path, voxel_size=1.0)
    assert row(forced, 20)["x"] == pytest.approx(1028.455)
    assert any("overrides" in w for w in ctx.warnings)


def test_warp1_data_images_block(formats_dir: Path):
    frame, _ = read(Relion4Adapter(), formats_dir / "relion3_4/warp1_relion_3.0_data_images.star")
    # line 22: 4052.123·1.971 = 7986.734433; 3272.708·1.971 = 6450.507468; 777.879·1.971 = 1533.199509
    assert row(frame, 22)[["x", "y", "z"]].tolist() == pytest.approx(
        [7986.734433, 6450.507468, 1533.199509]
    )
    assert len(frame) == 2


def test_portal_relion3_relion4_and_tomoman(formats_dir: Path):
    r3, _ = read(Relion4Adapter(), formats_dir / "relion3_4/portal_relion_3_star.star")
    # line 27: (4, 8, 12) − origin px (−1.2, −2.4, −3.2) = (5.2, 10.4, 15.2) × 1.7005 Å
    assert row(r3, 27)[["x", "y", "z"]].tolist() == pytest.approx([8.8426, 17.6852, 25.8476])
    assert row(r3, 27)["tomogram"] == "tomo_1"  # tomo_1.tomostar
    r4, _ = read(Relion4Adapter(), formats_dir / "relion3_4/portal_relion_4_star.star")
    # line 49: (4, 8, 12) − (−1.2, −2.4, −3.2) Å / 1 Å (rlnMicrographPixelSize)
    assert row(r4, 49)[["x", "y", "z"]].tolist() == pytest.approx([5.2, 10.4, 15.2])
    assert row(r4, 49)["tomogram"] == "TS_001"  # rlnTomoName wins over rlnMicrographName
    tm, _ = read(Relion4Adapter(), formats_dir / "relion3_4/portal_tomoman_relion_star.star")
    # line 21: (5.2, 10.4, 15.2) px × rlnPixelSize 1.96
    assert row(tm, 21)[["x", "y", "z"]].tolist() == pytest.approx([10.192, 20.384, 29.792])
    assert row(tm, 21)["tomogram"] == "grid_1_lamella1_pos1"


def test_class_and_score_options(formats_dir: Path):
    path = formats_dir / "relion3_4/portal_relion_3_star.star"
    frame, _ = read(
        Relion4Adapter(),
        path,
        options={"class_column": "rlnClassNumber", "score_column": "rlnLogLikeliContribution"},
    )
    assert set(frame["particle"]) == {"1"} and set(frame["particle_field"]) == {"rlnClassNumber"}
    assert row(frame, 27)["score"] == pytest.approx(2.664582e07)
    default, _ = read(Relion4Adapter(), path, particle="ribosome")
    assert set(default["particle"]) == {"ribosome"}
    with pytest.raises(InputFormatError, match="no such column"):
        read(Relion4Adapter(), path, options={"class_column": "rlnNope"})


# -- detection ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fixture", "adapter"),
    [
        (R5, "relion5"),
        ("relion3_4/relion_4.0.star", "relion4"),
        ("relion3_4/relion_3.1_optics2.star", "relion4"),
        ("relion3_4/warp1_relion_3.0.star", "relion4"),
        ("relion3_4/warp1_relion_3.0_data_images.star", "relion4"),
        ("relion3_4/portal_relion_3_star.star", "relion4"),
        ("relion3_4/portal_relion_4_star.star", "relion4"),
        ("relion3_4/portal_tomoman_relion_star.star", "relion4"),
        ("warp2/warp2_particles_matching.star", "warp2"),
        ("stopgap/portal_stopgap_star.star", "stopgap"),
    ],
)
def test_detect(formats_dir: Path, registry, fixture: str, adapter: str):
    assert registry.detect(formats_dir / fixture).name == adapter


def test_detection_reads_past_long_optics_tables(tmp_path: Path, registry):
    # RELION 5 makes one optics group per tomogram: the particle header can start far beyond
    # the first 8 KiB.
    optics = "".join(
        f"{g} opticsGroup{g} 300.000000 2.700000 0.100000 1.350000 {'x' * 60}\n"
        for g in range(1, 401)
    )
    path = tmp_path / "run_data.star"
    path.write_text(
        "data_optics\nloop_\n_rlnOpticsGroup\n_rlnOpticsGroupName\n_rlnVoltage\n"
        "_rlnSphericalAberration\n_rlnAmplitudeContrast\n_rlnTomoTiltSeriesPixelSize\n"
        "_rlnOpticsGroupDescription\n" + optics + "\ndata_particles\nloop_\n_rlnTomoName\n"
        "_rlnCenteredCoordinateXAngst\n_rlnCenteredCoordinateYAngst\n"
        "_rlnCenteredCoordinateZAngst\n_rlnOpticsGroup\nTS_01 1 2 3 1\n"
    )
    assert path.stat().st_size > 8192 * 3
    assert registry.detect(path).name == "relion5"


def test_tomogram_tables_are_not_pick_files(formats_dir: Path):
    for fixture in (R5_TOMOS, "warp2/warp2_matching_tomograms.star"):
        assert Relion5Adapter().sniff(formats_dir / fixture) == 0
        assert Relion4Adapter().sniff(formats_dir / fixture) == 0


def test_bare_coordinate_star_is_left_to_cryolo(tmp_path: Path):
    bare = tmp_path / "bare.star"
    bare.write_text("data_\nloop_\n_rlnCoordinateX\n_rlnCoordinateY\n_rlnCoordinateZ\n1 2 3\n")
    assert Relion4Adapter().sniff(bare) == 0 and Relion5Adapter().sniff(bare) == 0
    named = tmp_path / "named.star"
    named.write_text(
        "data_\nloop_\n_rlnCoordinateX\n_rlnCoordinateY\n_rlnCoordinateZ\n_rlnMicrographName\n"
        "1 2 3 TS_01\n"
    )
    assert Relion4Adapter().sniff(named) == pytest.approx(0.3)  # below cryolo-star's 0.6


# -- bad input: one clear error, store unchanged ---------------------------------------------------

R4_TEXT = """
data_optics

loop_
_rlnOpticsGroup #1
_rlnTomoTiltSeriesPixelSize #2
1 2.0

data_particles

loop_
_rlnTomoName #1
_rlnCoordinateX #2
_rlnCoordinateY #3
_rlnCoordinateZ #4
_rlnOpticsGroup #5
TS_01 10 20 30 1
TS_01 11 21 31 1
"""


@pytest.mark.parametrize(
    ("text", "adapter", "message", "line"),
    [
        (
            R4_TEXT.replace("11 21 31", "11 abc 31"),
            "auto",
            "rlnCoordinateY = 'abc' is not a number",
            18,
        ),
        (R4_TEXT.replace("TS_01 11 21 31 1", "TS_01 11 2"), "auto", "truncated", 18),
        (
            R4_TEXT.replace("_rlnCoordinateZ #4\n", "")
            .replace(" 30 1", " 1")
            .replace(" 31 1", " 1"),
            "relion4",
            "lacks column(s) rlnCoordinateZ",
            11,
        ),
        (
            R4_TEXT.replace("_rlnOpticsGroup #5\n", "_rlnOpticsGroup #5\n").replace("31 1", "31 7"),
            "auto",
            "rlnOpticsGroup 7 is not in data_optics",
            18,
        ),
        (R4_TEXT.replace("1 2.0", "1 0"), "auto", "must be > 0", 17),
        ("", "relion4", "empty file", 1),
        ("hello\n", "relion4", "not a STAR file", 1),
        (
            "data_particles\nloop_\n_rlnCenteredCoordinateXAngst\n_rlnTomoName\n1 TS_01\n",
            "relion5",
            "lacks column(s) rlnCenteredCoordinateYAngst",
            2,
        ),
    ],
)
def test_bad_input_is_one_error_and_imports_nothing(
    tmp_path: Path, store, registry, text: str, adapter: str, message: str, line: int
):
    path = tmp_path / "bad.star"
    path.write_text(text)
    with pytest.raises(InputFormatError) as info:
        import_file(store, path, registry, adapter=adapter)
    assert message in str(info.value) and str(path) in str(info.value)
    assert info.value.line == line
    assert store.count("sources") == 0 and store.count("picks") == 0


def test_empty_star_file_is_not_claimed(tmp_path: Path, store, registry):
    path = tmp_path / "empty.star"
    path.write_text("")
    with pytest.raises(PicksError):
        import_file(store, path, registry)
    assert store.count("picks") == 0


def test_unregistered_tomogram_name_is_an_error(formats_dir: Path, store, registry):
    store.add_tomograms([Tomogram("TS_99", None, 2.0, (100, 100, 100))])
    with pytest.raises(PicksError, match="TS_017"):
        import_file(store, formats_dir / "relion3_4/relion_4.0.star", registry)
    assert store.count("picks") == 0


# -- writers ---------------------------------------------------------------------------------------

TOMO_SHAPES = [(64, 48, 32), (100, 100, 40), (37, 51, 19)]


@st.composite
def registered_picks(draw):
    """Random picks inside 1-3 registered tomograms of random voxel size."""
    n_tomos = draw(st.integers(1, 3))
    tomograms = [
        Tomogram(
            f"TS_{i:02d}",
            None,
            draw(st.floats(0.5, 20.0)),
            TOMO_SHAPES[i],
        )
        for i in range(n_tomos)
    ]
    n = draw(st.integers(1, 12))
    rows = []
    for k in range(n):
        tomo = tomograms[draw(st.integers(0, n_tomos - 1))]
        fraction = [draw(st.floats(0.0, 1.0)) for _ in range(3)]
        xyz = [f * (s - 1) * tomo.voxel_size for f, s in zip(fraction, tomo.shape, strict=True)]
        rows.append(
            {
                "tomogram": tomo.name,
                "x": xyz[0],
                "y": xyz[1],
                "z": xyz[2],
                "score": draw(st.floats(-1e3, 1e3, allow_nan=False)),
                "rot": draw(st.floats(-180.0, 180.0)),
                "tilt": draw(st.floats(0.0, 180.0)),
                "psi": draw(st.floats(-180.0, 180.0)),
                "record": k,
                "consensus_id": 100 + k,
            }
        )
    frame = canonical.make(pd.DataFrame(rows))
    frame["consensus_id"] = [r["consensus_id"] for r in rows]
    return TomogramSet(tomograms), frame


def _round_trip(adapter, picks: pd.DataFrame, tomos: TomogramSet, **write_kwargs) -> pd.DataFrame:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "picks.star"
        write_picks(picks, adapter, out, WriteContext(tomograms=tomos, **write_kwargs))
        back, _ = read(adapter, out, tomograms=tomos)
        text = out.read_text()
    return back, text


def _assert_same(back: pd.DataFrame, picks: pd.DataFrame) -> None:
    assert len(back) == len(picks)
    assert back["tomogram"].tolist() == picks["tomogram"].tolist()
    for axis in ("x", "y", "z"):
        assert back[axis].to_numpy() == pytest.approx(picks[axis].to_numpy(), abs=1e-3)
    for angle in ("rot", "tilt", "psi"):
        assert back[angle].to_numpy() == pytest.approx(picks[angle].to_numpy(), abs=1e-6)
    assert back["score"].to_numpy() == pytest.approx(picks["score"].to_numpy(), rel=1e-8, abs=1e-9)
    assert set(back["score_field"]) == {"rlnAutopickFigureOfMerit"}


@settings(ROUND_TRIP, derandomize=True)
@given(registered_picks())
def test_relion5_writer_round_trip(case):
    tomos, picks = case
    back, text = _round_trip(Relion5Adapter(), picks, tomos)
    _assert_same(back, picks)
    for tomogram, cid in zip(picks["tomogram"], picks["consensus_id"], strict=True):
        assert f"{tomogram}/{cid}" in text  # rlnTomoParticleName carries the consensus id


@settings(ROUND_TRIP, derandomize=True)
@given(registered_picks())
def test_relion4_writer_round_trip(case):
    tomos, picks = case
    back, text = _round_trip(Relion4Adapter(), picks, tomos)
    _assert_same(back, picks)
    assert "rlnTomoTiltSeriesPixelSize" in text


def test_relion4_writer_at_another_pixel_size_round_trips():
    tomos = TomogramSet([Tomogram("TS_01", None, 8.0, (100, 100, 50))])
    picks = canonical.make(
        {"tomogram": ["TS_01"], "x": [400.0], "y": [12.5], "z": [8.0], "record": [0]}
    )
    back, text = _round_trip(Relion4Adapter(), picks, tomos, voxel_size=2.0)
    # written in 2 Å pixels (point sampling): 400/2 = 200
    assert "\t200\t" in text
    assert back[["x", "y", "z"]].to_numpy() == pytest.approx(np.array([[400.0, 12.5, 8.0]]))
    assert back["rot"].isna().all() and back["score"].isna().all()


def test_relion5_writer_files_force_and_tomograms_star(tmp_path: Path):
    import starfile

    tomos = TomogramSet([Tomogram("TS_01", None, 10.0, (540, 540, 270))])
    picks = canonical.make(
        {
            "tomogram": ["TS_01", "TS_01"],
            "x": [0.0, 5390.0],
            "y": [2700.0, 10.0],
            "z": [1350.0, 0.0],
            "score": [0.5, np.nan],
            "record": [0, 1],
        }
    )
    out = tmp_path / "consensus.star"
    written = write_picks(picks, Relion5Adapter(), out, WriteContext(tomograms=tomos))
    assert written == [out]
    companion = tmp_path / "consensus_tomograms.star"
    table = starfile.read(companion)
    assert table[["rlnTomoSizeX", "rlnTomoSizeY", "rlnTomoSizeZ"]].iloc[0].tolist() == [
        540,
        540,
        270,
    ]
    assert table["rlnTomoTiltSeriesPixelSize"].iloc[0] == 10.0
    assert table["rlnTomoTomogramBinning"].iloc[0] == 1.0
    particles = starfile.read(out)["particles"]
    assert particles["rlnCenteredCoordinateXAngst"].tolist() == pytest.approx([-2700.0, 2690.0])
    assert particles["rlnTomoParticleName"].tolist() == ["TS_01/1", "TS_01/2"]
    assert "rlnAngleRot" not in particles  # no angles: none written (RELION cannot read NaN)
    with pytest.raises(PicksError, match="exist"):
        write_picks(picks, Relion5Adapter(), out, WriteContext(tomograms=tomos))
    write_picks(picks, Relion5Adapter(), out, WriteContext(tomograms=tomos), force=True)
    back, _ = read(Relion5Adapter(), out, tomograms=tomos)
    assert back[["x", "y", "z"]].to_numpy() == pytest.approx(picks[["x", "y", "z"]].to_numpy())
    assert np.isnan(back["score"].iloc[1]) and back["score"].iloc[0] == 0.5
    # a stated tilt-series pixel size: sizes in those pixels, binning V/Pts
    other = tmp_path / "ts.star"
    write_picks(
        picks,
        Relion5Adapter(),
        other,
        WriteContext(tomograms=tomos, options={"tilt_series_pixel_size": "1.35"}),
    )
    table = starfile.read(tmp_path / "ts_tomograms.star")
    assert table["rlnTomoSizeX"].iloc[0] == 4000 and table["rlnTomoSizeZ"].iloc[0] == 2000
    assert table["rlnTomoTomogramBinning"].iloc[0] == pytest.approx(10.0 / 1.35)


def test_relion5_writer_needs_the_tomogram_size(tmp_path: Path):
    picks = canonical.make(
        {"tomogram": ["TS_01"], "x": [1.0], "y": [1.0], "z": [1.0], "record": [0]}
    )
    with pytest.raises(MissingVoxelSize, match="size or voxel size is unknown") as info:
        Relion5Adapter().write(picks, tmp_path / "o.star", WriteContext())
    assert "tomo_size=NX,NY,NZ" in info.value.hint
    Relion5Adapter().write(
        picks, tmp_path / "o.star", WriteContext(voxel_size=2.0, options={"tomo_size": "10,10,10"})
    )
    back, _ = read(Relion5Adapter(), tmp_path / "o.star")
    assert back[["x", "y", "z"]].to_numpy() == pytest.approx(np.array([[1.0, 1.0, 1.0]]))


def test_convert_relion5_fixture_to_relion4(formats_dir: Path, tmp_path: Path):
    from typer.testing import CliRunner

    from picks.cli import get_app

    out = tmp_path / "r4.star"
    result = CliRunner().invoke(
        get_app(),
        ["convert", str(formats_dir / R5), str(out), "--to", "relion4", "--to-voxel-size", "1.35"],
    )
    assert result.exit_code == 0, result.output
    source, _ = read(Relion5Adapter(), formats_dir / R5)
    back, _ = read(Relion4Adapter(), out)
    assert back[["x", "y", "z"]].to_numpy() == pytest.approx(
        source[["x", "y", "z"]].to_numpy(), abs=1e-3
    )
    assert back["score"].to_numpy() == pytest.approx(source["score"].to_numpy())
