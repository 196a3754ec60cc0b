"""crYOLO adapters (cryolo-cbox, coords, cryolo-star) and EMAN .box (eman-box).

Expected coordinates are worked out by hand from the convention in the module docstrings:
CBOX/BOX X,Y are lower-left corners (centre = X + Width/2, Y + Height/2), CBOX Z is already a
centre, and voxel index i maps to i × voxel size Å (with --binning b on a registered tomogram of
voxel v: (i + 0.5)·b·v − 0.5·v).
"""

from __future__ import annotations

import math
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from adapter_support import (
    MUTATION,
    ROUND_TRIP,
    assert_positions_close,
    assert_reads_or_picks_error,
    mutate,
    mutations,
    one_tomogram,
    read_raw,
    tomogram_shapes,
    write_text,
    write_then_read,
)
from hypothesis import given
from hypothesis import strategies as st

from picks.adapters.cryolo import CoordsAdapter, CryoloCboxAdapter, CryoloStarAdapter
from picks.adapters.eman import EmanBoxAdapter
from picks.core import picks as canonical
from picks.core.errors import InputFormatError, PicksError, TomogramNameError
from picks.core.tomograms import Tomogram, TomogramSet
from picks.plugins.adapter import WriteContext
from picks.workflows.importing import import_file
from picks.workflows.outputs import write_picks

VOXEL = 10.0
SHAPE = (400, 380, 120)


def tomos(name: str = "TS_01", voxel: float = VOXEL, shape=SHAPE) -> TomogramSet:
    return one_tomogram(name, voxel, shape)


# The adapter's own table (not normalised), read at VOXEL Å unless a test says otherwise.
read = partial(read_raw, normalise=False, voxel_size=VOXEL)


CBOX_HEADER = """
data_global

_cbox_format_version 1.0

data_cryolo

loop_
_CoordinateX #1
_CoordinateY #2
_CoordinateZ #3
_Width #4
_Height #5
_Depth #6
_EstWidth #7
_EstHeight #8
_Confidence #9
_NumBoxes #10
_Angle #11
"""


# --- detection ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("relative", "expected"),
    [
        ("cryolo/3d_particle.cbox", "cryolo-cbox"),
        ("cryolo/2d_particles.cbox", "cryolo-cbox"),
        ("cryolo/TcdA1-0018_frames_sum.cbox", "cryolo-cbox"),
        ("cryolo/ActLifeact_03211_filament.cbox", "cryolo-cbox"),
        ("eman2_box/2d_left.box", "eman-box"),
        ("eman2_box/2d_center.box", "eman-box"),
        ("eman2_box/2d_center_float.box", "eman-box"),
        ("eman2_box/2d_corrupt_has_string.box", "eman-box"),
        ("eman2_box/2d_empty.box", "eman-box"),
    ],
)
def test_detect_fixtures(registry, formats_dir, relative, expected):
    assert registry.detect(formats_dir / relative).name == expected


def test_detect_coords_star_and_old_cbox(registry, tmp_path):
    assert (
        registry.detect(write_text(tmp_path, "TS_01.coords", "1 2 3\n4.5 5 6\n")).name == "coords"
    )
    star = "data_\n\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n_rlnCoordinateZ #3\n1 2 3\n"
    assert registry.detect(write_text(tmp_path, "TS_01.star", star)).name == "cryolo-star"
    old = write_text(tmp_path, "old.cbox", "10 20 30 30 0.9\n40 50 30 30 0.5\n")
    assert registry.detect(old).name == "cryolo-cbox"


def test_cryolo_star_does_not_claim_relion_files(formats_dir):
    adapter = CryoloStarAdapter()
    for path in sorted(formats_dir.rglob("*.star")):
        assert adapter.sniff(path) == 0.0, path


# --- CBOX on the real fixtures ----------------------------------------------------------------


def test_3d_cbox_corner_xy_centre_z(formats_dir):
    frame, ctx = read(CryoloCboxAdapter(), formats_dir / "cryolo/3d_particle.cbox")
    assert len(frame) == 3
    assert set(frame["tomogram"]) == {"3d_particle"}
    # Row 1 (line 20): X=12.257084 Y=27.721405 Z=50 W=H=D=25
    #   x = (12.257084 + 25/2) × 10 = 247.57084 Å; y = (27.721405 + 12.5) × 10 = 402.21405 Å
    #   z = 50 × 10 = 500 Å (Z is a centre: no Depth/2)
    # Row 3 (line 22): X=62.456649 Y=48.062935 Z=60 -> 749.56649, 605.62935, 600
    expected = np.array(
        [[247.57084, 402.21405, 500.0], [784.06382, 519.9808, 500.0], [749.56649, 605.62935, 600.0]]
    )
    np.testing.assert_allclose(frame[["x", "y", "z"]].to_numpy(), expected, atol=1e-9)
    assert frame["record"].tolist() == [20, 21, 22]
    assert frame["score"].isna().all() and frame["score_field"].isna().all()
    assert frame["original"].iloc[0].startswith("12.257084  27.721405  50.000000")
    assert not ctx.warnings


def test_2d_prediction_cbox_needs_a_slice(formats_dir):
    path = formats_dir / "cryolo/TcdA1-0018_frames_sum.cbox"
    with pytest.raises(
        InputFormatError, match=r"TcdA1-0018_frames_sum\.cbox, line 20: .*`options` z=SLICE"
    ):
        read(CryoloCboxAdapter(), path)
    frame, _ = read(CryoloCboxAdapter(), path, options={"z": "12"})
    assert len(frame) == 120
    # Line 20: X=3700.3671875 Y=3874.455551147461 W=H=220 Confidence=0.6578449010848999
    #   x = (3700.3671875 + 110) × 10 = 38103.671875; y = (3874.455551147461 + 110) × 10
    #   = 39844.55551147461; z = slice 12 × 10 = 120
    first = frame.iloc[0]
    assert first[["x", "y", "z"]].tolist() == pytest.approx(
        [38103.671875, 39844.55551147461, 120.0]
    )
    assert first["score"] == pytest.approx(0.6578449010848999)
    assert first["score_field"] == "_Confidence"
    # Line 28 (9th pick): X=3225.10400390625 Y=3623.7266845703125, confidence 0.9414057731628418
    #   -> (3335.10400390625 × 10, 3733.7266845703125 × 10)
    ninth = frame.iloc[8]
    assert ninth["record"] == 28
    assert ninth[["x", "y"]].tolist() == pytest.approx([33351.0400390625, 37337.266845703125])
    assert ninth["score"] == pytest.approx(0.9414057731628418)
    assert frame["score"].between(0, 1).all()


def test_cbox_with_zero_z_warns_and_option_replaces_zeros(formats_dir):
    path = formats_dir / "cryolo/2d_particles.cbox"
    frame, ctx = read(CryoloCboxAdapter(), path)
    assert (frame["z"] == 0).all()
    assert any("Z = 0" in w and "`options` z=SLICE" in w for w in ctx.warnings)
    # Row 2 (line 21): X=66.566470 Y=39.127084 W=H=25 -> (79.06647, 51.627084) voxels
    assert frame.iloc[1][["x", "y"]].tolist() == pytest.approx([790.6647, 516.27084])
    frame, ctx = read(CryoloCboxAdapter(), path, options={"z": "33"})
    assert (frame["z"] == 330.0).all() and not ctx.warnings


def test_filament_cbox_reads_segments(formats_dir):
    path = formats_dir / "cryolo/ActLifeact_03211_filament.cbox"
    frame, ctx = read(CryoloCboxAdapter(), path, options={"z": "0"})
    assert len(frame) == 16
    # Line 21 (first segment, after 12 column lines): X=5.987737909516682 Y=861.738627145086 W=H=100
    #   -> ((5.987737909516682 + 50) × 10, (861.738627145086 + 50) × 10)
    assert frame.iloc[0][["x", "y", "z"]].tolist() == pytest.approx(
        [559.87737909516682, 9117.38627145086, 0.0]
    )
    assert frame.iloc[0]["record"] == 21
    assert (frame["score"] == 1.0).all()
    assert any("filament" in w for w in ctx.warnings)


def test_old_whitespace_cbox_fallback(tmp_path):
    path = write_text(tmp_path, "TS_01.cbox", "10 20 30 30 0.9\n40.5 50 20 40 0.25\n")
    with pytest.raises(InputFormatError, match=r"line 1: .*`options` z=SLICE"):
        read(CryoloCboxAdapter(), path)
    frame, _ = read(CryoloCboxAdapter(), path, options={"z": "5"})
    # (10 + 15, 20 + 15, 5) and (40.5 + 10, 50 + 20, 5) voxels × 10 Å
    np.testing.assert_allclose(frame[["x", "y", "z"]].to_numpy(), [[250, 350, 50], [505, 700, 50]])
    assert frame["score"].tolist() == [0.9, 0.25]
    assert frame["score_field"].tolist() == ["_Confidence"] * 2


def test_cbox_binning_uses_registered_voxel_size(formats_dir):
    path = formats_dir / "cryolo/3d_particle.cbox"
    frame, _ = read(
        CryoloCboxAdapter(),
        path,
        voxel_size=None,
        binning=2.0,
        tomograms=tomos("3d_particle", voxel=5.0),
        particle="ribosome",
    )
    # picked voxel = 2 × 5 Å; x_Å = (i + 0.5)·10 − 0.5·5 with i = 24.757084 -> 245.07084
    assert frame.iloc[0]["x"] == pytest.approx((24.757084 + 0.5) * 10 - 2.5)
    assert frame.iloc[0]["z"] == pytest.approx((50 + 0.5) * 10 - 2.5)
    assert (frame["particle"] == "ribosome").all()


# --- CBOX bad input: clear error, nothing imported -------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", r"line 1: empty file"),
        (CBOX_HEADER + "1 2 3 25 25 25 <NA> <NA> 0.5 <NA>\n", r"line 20: expected 11 fields"),
        (
            CBOX_HEADER + "1 2 3 25 25 25 <NA> <NA> 0.5 <NA> <NA>\n1 2 3 25 2",
            r"line 21: expected 11 fields",
        ),
        (
            CBOX_HEADER + "one 2 3 25 25 25 <NA> <NA> 0.5 <NA> <NA>\n",
            r"line 20: _CoordinateX = 'one' is not a number",
        ),
        (
            CBOX_HEADER + "<NA> 2 3 25 25 25 <NA> <NA> 0.5 <NA> <NA>\n",
            r"line 20: _CoordinateX is '<NA>'",
        ),
        (
            CBOX_HEADER + "1 2 3 25 25 25 <NA> <NA> high <NA> <NA>\n",
            r"line 20: _Confidence = 'high'",
        ),
        (CBOX_HEADER, r"holds no picks"),
        (CBOX_HEADER.replace("_Width #4\n", ""), r"lacks _Width"),
        (
            CBOX_HEADER
            + "1 2 3 25 25 25 <NA> <NA> 0.5 <NA> <NA>\n1 2 <NA> 25 25 25 <NA> <NA> 0.5 <NA> <NA>\n",
            r"line 21: Z is missing",
        ),
    ],
)
def test_bad_cbox_is_one_clear_error_and_imports_nothing(rejects_import, tmp_path, body, message):
    path = write_text(tmp_path, "TS_01.cbox", body)
    rejects_import(path, match=message, voxel_size=VOXEL)


def test_unknown_tomogram_name_is_an_error(store, rejects_import, tmp_path):
    store.add_tomograms([Tomogram("TS_01", None, VOXEL, SHAPE)])
    path = write_text(
        tmp_path, "TS_99.cbox", CBOX_HEADER + "1 2 3 25 25 25 <NA> <NA> 0.5 <NA> <NA>\n"
    )
    rejects_import(path, error=TomogramNameError, match="TS_99")


def test_good_cbox_imports(store, registry, formats_dir):
    result = import_file(store, formats_dir / "cryolo/3d_particle.cbox", registry, voxel_size=VOXEL)
    assert result.adapter == "cryolo-cbox" and result.n_picks == 3
    assert store.count("picks") == 3


# --- EMAN .box on the real fixtures -----------------------------------------------------------


def test_box_corner_fixture_equals_centre_fixture(formats_dir):
    left, _ = read(EmanBoxAdapter(), formats_dir / "eman2_box/2d_left.box", options={"z": "7"})
    centre, _ = read(EmanBoxAdapter(), formats_dir / "eman2_box/2d_center.box", options={"z": "7"})
    # 2d_left: "14 35 20 10" -> (14 + 20/2, 35 + 10/2) = (24, 40); "26 57 20 10" -> (36, 62);
    # "68 46 20 10" -> (78, 51): exactly the rows of 2d_center.box (box 0 0: corner == centre).
    expected = np.array([[24, 40, 7], [36, 62, 7], [78, 51, 7]]) * VOXEL
    np.testing.assert_allclose(left[["x", "y", "z"]].to_numpy(), expected)
    np.testing.assert_allclose(centre[["x", "y", "z"]].to_numpy(), expected)
    assert left["record"].tolist() == [1, 2, 3]
    assert left["score"].isna().all() and left["particle"].isna().all()
    assert set(left["tomogram"]) == {"2d_left"}


def test_box_float_fixture(formats_dir):
    frame, _ = read(
        EmanBoxAdapter(), formats_dir / "eman2_box/2d_center_float.box", options={"z": "0"}
    )
    # "24.3 40.7 0 0" -> (24.3, 40.7) voxels -> (243, 407) Å; "78.9 51.4 0 0" -> (789, 514)
    np.testing.assert_allclose(
        frame[["x", "y"]].to_numpy()[[0, 2]], [[243.0, 407.0], [789.0, 514.0]]
    )


def test_box_needs_slice(formats_dir):
    with pytest.raises(InputFormatError, match=r"2d_left\.box, line 1: .*`options` z=SLICE"):
        read(EmanBoxAdapter(), formats_dir / "eman2_box/2d_left.box")


@pytest.mark.parametrize(
    ("fixture", "message"),
    [
        (
            "2d_corrupt_has_string.box",
            r"2d_corrupt_has_string\.box, line 2: x = 'sixty_three' is not a number",
        ),
        ("2d_empty.box", r"2d_empty\.box, line 1: empty file"),
    ],
)
def test_negative_box_fixtures(rejects_import, formats_dir, fixture, message):
    rejects_import(
        formats_dir / "eman2_box" / fixture, match=message, voxel_size=VOXEL, options={"z": "3"}
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("1 2 3\n", r"line 1: expected 4 fields"),
        ("1 2 20 20\n3 4 20\n", r"line 2: expected 4 fields"),
        ("#micrograph: a.mrc\n#segment length: 100\n", r"filament"),
        ("1 2 20 20\n3 4 20 2O\n", r"line 2: height = '2O' is not a number"),
    ],
)
def test_bad_box(rejects_import, tmp_path, body, message):
    path = write_text(tmp_path, "TS_01.box", body)
    rejects_import(path, match=message, adapter="eman-box", voxel_size=VOXEL, options={"z": "1"})


# --- .coords ----------------------------------------------------------------------------------


def test_coords_are_voxel_centres(tmp_path):
    path = write_text(tmp_path, "TS_01.coords", "10 20 30\n\n1.5\t2.25 3\n")
    frame, _ = read(CoordsAdapter(), path)
    np.testing.assert_allclose(frame[["x", "y", "z"]].to_numpy(), [[100, 200, 300], [15, 22.5, 30]])
    assert frame["record"].tolist() == [1, 3]
    assert frame["tomogram"].tolist() == ["TS_01", "TS_01"]


def test_coords_imod_origin_option(tmp_path):
    path = write_text(tmp_path, "TS_01.coords", "10.5 20.5 30\n")
    frame, _ = read(CoordsAdapter(), path, options={"origin": "imod"})
    # IMOD model x, y start at the pixel edge: index = 10.5 − 0.5 = 10; z is unchanged
    assert frame.iloc[0][["x", "y", "z"]].tolist() == [100.0, 200.0, 300.0]
    with pytest.raises(PicksError, match="origin"):
        read(CoordsAdapter(), path, options={"origin": "corner"})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", r"line 1: empty file"),
        ("1 2 3\n1 2\n", r"line 2: expected 3 fields 'x y z', found 2"),
        ("1\t10\t20\t30\n", r"line 1: expected 3 fields .*deepetpicker"),
        ("1 2 3\n4 five 6\n", r"line 2: y = 'five' is not a number"),
        ("1 2 3\n4 nan 6\n", r"line 2: y is 'nan'"),
    ],
)
def test_bad_coords(rejects_import, tmp_path, body, message):
    path = write_text(tmp_path, "TS_01.coords", body)
    rejects_import(path, match=message, adapter="coords", voxel_size=VOXEL)


def test_empty_coords_detected_and_explained(rejects_import, tmp_path):
    path = write_text(tmp_path, "TS_01.coords", "")
    rejects_import(path, match="empty file", voxel_size=VOXEL)


# --- crYOLO STAR ------------------------------------------------------------------------------

STAR = """
data_

loop_
_rlnCoordinateX #1
_rlnCoordinateY #2
_rlnCoordinateZ #3
_rlnMicrographName #4
_rlnAutopickFigureOfMerit #5
100.5 200 30 TS_01.mrc 0.75
12 13 14 TS_02.mrc 0.5
"""


def test_cryolo_star_centres_micrograph_names_and_score(tmp_path):
    path = write_text(tmp_path, "picks.star", STAR)
    frame, _ = read(CryoloStarAdapter(), path)
    # centres, no offset: 100.5 × 10 = 1005 Å ...
    np.testing.assert_allclose(
        frame[["x", "y", "z"]].to_numpy(), [[1005, 2000, 300], [120, 130, 140]]
    )
    assert frame["tomogram"].tolist() == ["TS_01", "TS_02"]
    assert frame["score"].tolist() == [0.75, 0.5]
    assert frame["score_field"].tolist() == ["rlnAutopickFigureOfMerit"] * 2
    assert frame["record"].tolist() == [10, 11]


def test_cryolo_star_2d_needs_slice_and_errors(rejects_import, tmp_path):
    two_d = "data_\nloop_\n_rlnCoordinateX\n_rlnCoordinateY\n1 2\n3 4\n"
    path = write_text(tmp_path, "TS_01.star", two_d)
    rejects_import(path, match=r"line 5: .*`options` z=SLICE", voxel_size=VOXEL)
    frame, _ = read(CryoloStarAdapter(), path, options={"z": "9"})
    assert frame["z"].tolist() == [90.0, 90.0]
    bad = write_text(tmp_path, "TS_02.star", STAR.replace("12 13 14", "12 x13 14"))
    rejects_import(bad, match=r"line 11: _rlnCoordinateY = 'x13'", voxel_size=VOXEL)


# --- writers ----------------------------------------------------------------------------------


def picks_frame(
    rows: list[tuple], tomogram: str = "TS_01", particle: str | None = "ribosome"
) -> pd.DataFrame:
    return canonical.make(
        {
            "tomogram": [tomogram] * len(rows),
            "particle": [particle] * len(rows),
            "x": [r[0] for r in rows],
            "y": [r[1] for r in rows],
            "z": [r[2] for r in rows],
            "score": [r[3] if len(r) > 3 else math.nan for r in rows],
            "record": list(range(len(rows))),
        }
    )


def test_cbox_writer_restores_corner_and_uses_catalog_box(tmp_path):
    picks = picks_frame([(1000.0, 2000.0, 300.0, 0.875)])
    path = tmp_path / "out.cbox"
    CryoloCboxAdapter().write(picks, path, WriteContext(tomograms=tomos()))
    text = path.read_text()
    # ribosome radius 150 Å -> diameter 300 Å = 30 voxels of 10 Å; centre (100, 200, 30) voxels
    #   -> X = 100 − 15 = 85, Y = 200 − 15 = 185, Z = 30 (centre), W = H = D = 30
    assert "\n85 185 30 30 30 30 <NA> <NA> 0.875 <NA> <NA>\n" in text
    assert "data_cryolo_include" in text and "\n30.000000\n" in text
    frame, _ = read(CryoloCboxAdapter(), path)
    assert frame.iloc[0][["x", "y", "z", "score"]].tolist() == pytest.approx(
        [1000, 2000, 300, 0.875]
    )


def test_cbox_writer_carries_consensus_id_and_support(tmp_path):
    picks = picks_frame([(1000.0, 2000.0, 300.0, 0.875), (1500.0, 2000.0, 300.0, 0.5)])
    picks["consensus_id"] = [17, 42]
    picks["support"] = [3.0, 2.0]
    path = tmp_path / "out.cbox"
    CryoloCboxAdapter().write(picks, path, WriteContext(tomograms=tomos()))
    text = path.read_text()
    assert "_PicksConsensusId #12" in text and "_PicksSupport #13" in text
    assert "\n85 185 30 30 30 30 <NA> <NA> 0.875 <NA> <NA> 17 3\n" in text
    frame, _ = read(CryoloCboxAdapter(), path)  # crYOLO's columns are unchanged
    assert frame["x"].tolist() == pytest.approx([1000, 1500])


def test_box_writers_need_a_box_size(tmp_path):
    picks = picks_frame([(10.0, 20.0, 30.0)], particle=None)
    with pytest.raises(PicksError, match="box=VOXELS"):
        CryoloCboxAdapter().write(picks, tmp_path / "a.cbox", WriteContext(tomograms=tomos()))
    picks = picks_frame([(10.0, 20.0, 30.0)], particle="mystery")
    with pytest.raises(PicksError, match="not in the catalog"):
        EmanBoxAdapter().write(picks, tmp_path / "a.box", WriteContext(tomograms=tomos()))


def test_box_writer_refuses_3d_picks(tmp_path):
    picks = picks_frame([(10.0, 20.0, 30.0), (10.0, 20.0, 60.0)])
    with pytest.raises(PicksError, match="2D"):
        EmanBoxAdapter().write(
            picks, tmp_path / "a.box", WriteContext(tomograms=tomos(), options={"box": "20"})
        )


def test_write_picks_layout_and_detect(registry, tmp_path):
    picks = pd.concat(
        [
            picks_frame([(100.0, 200.0, 300.0, 0.5)], "TS_01"),
            picks_frame([(150.0, 250.0, 350.0, 0.25)], "TS_02"),
        ]
    )
    tomo_set = TomogramSet([Tomogram(n, None, VOXEL, SHAPE) for n in ("TS_01", "TS_02")])
    files = write_picks(
        picks, registry.get("cryolo-cbox"), tmp_path / "out", WriteContext(tomograms=tomo_set)
    )
    assert sorted(p.name for p in files) == ["TS_01.cbox", "TS_02.cbox"]
    for path in files:
        assert registry.detect(path).name == "cryolo-cbox"
        frame, _ = read(registry.get("cryolo-cbox"), path, tomograms=tomo_set, voxel_size=None)
        assert frame["tomogram"].tolist() == [path.stem]


# --- round trips (hypothesis) -----------------------------------------------------------------


@st.composite
def tomogram_picks(draw, *, common_z: bool = False):
    voxel = draw(st.sampled_from([4.0, 7.84, 10.012, 13.48]))
    binning = draw(st.sampled_from([1.0, 2.0, 4.0]))
    shape = draw(tomogram_shapes())
    n = draw(st.integers(1, 12))
    unit = st.floats(0, 1, allow_nan=False)
    coords = [[draw(unit) * (s - 1) * voxel for s in shape] for _ in range(n)]
    if common_z:
        z = coords[0][2]
        for c in coords:
            c[2] = z
    scores = [
        draw(st.one_of(st.just(math.nan), st.floats(0, 1, allow_nan=False))) for _ in range(n)
    ]
    frame = canonical.make(
        {
            "tomogram": ["TS_07"] * n,
            "particle": ["apo-ferritin"] * n,
            "x": [c[0] for c in coords],
            "y": [c[1] for c in coords],
            "z": [c[2] for c in coords],
            "score": scores,
            "record": list(range(n)),
        }
    )
    return frame, TomogramSet([Tomogram("TS_07", None, voxel, shape)]), binning


def round_trip(adapter, picks, tomo_set, binning, *, write_options=None, read_options=None):
    frame = write_then_read(
        adapter,
        picks,
        f"TS_07{adapter.extension}",
        tomo_set,
        binning=binning,
        write_options=write_options,
        particle="apo-ferritin",
        options=read_options or {},
    )
    assert len(frame) == len(picks)
    assert_positions_close(frame, picks, atol=1e-3)
    return frame


@ROUND_TRIP
@given(tomogram_picks())
def test_round_trip_cbox(case):
    picks, tomo_set, binning = case
    frame = round_trip(CryoloCboxAdapter(), picks, tomo_set, binning, write_options={"box": "21"})
    np.testing.assert_allclose(frame["score"].to_numpy(), picks["score"].to_numpy(), equal_nan=True)
    assert frame["tomogram"].unique().tolist() == ["TS_07"]


@ROUND_TRIP
@given(tomogram_picks())
def test_round_trip_cbox_catalog_box(case):
    picks, tomo_set, binning = case
    round_trip(CryoloCboxAdapter(), picks, tomo_set, binning)


@ROUND_TRIP
@given(tomogram_picks(), st.sampled_from(["index", "imod"]))
def test_round_trip_coords(case, origin):
    picks, tomo_set, binning = case
    round_trip(
        CoordsAdapter(),
        picks,
        tomo_set,
        binning,
        write_options={"origin": origin},
        read_options={"origin": origin},
    )


@ROUND_TRIP
@given(tomogram_picks(common_z=True))
def test_round_trip_box_with_slice(case):
    picks, tomo_set, binning = case
    # The 2D box loses z; it is given back as the slice index (voxels of the written volume).
    vox = WriteContext(tomograms=tomo_set, binning=binning).angstrom_to_voxels(picks.iloc[:1])
    z_slice = repr(float(vox["z"].iloc[0]))
    round_trip(
        EmanBoxAdapter(),
        picks,
        tomo_set,
        binning,
        write_options={"box": "17"},
        read_options={"z": z_slice},
    )


# --- never a traceback: mutated files either read or give a PicksError ------------------------

VALID = {
    "cbox": CBOX_HEADER
    + "1 2 3 25 25 25 <NA> <NA> 0.5 <NA> <NA>\n4 5 6 25 25 25 <NA> <NA> <NA> <NA> <NA>\n",
    "coords": "1 2 3\n4.5 5 6\n",
    "star": STAR,
    "box": "14 35 20 10\n26 57 20 10\n",
}
ADAPTERS = {
    "cbox": CryoloCboxAdapter(),
    "coords": CoordsAdapter(),
    "star": CryoloStarAdapter(),
    "box": EmanBoxAdapter(),
}


@MUTATION
@given(
    st.sampled_from(sorted(VALID)),
    mutations(["a", "1", " ", "\n", "\t", "#", ".", "-", "<NA>", "data_", "loop_", "'", "é"]),
)
def test_mutated_files_never_raise_anything_but_picks_errors(kind, edits):
    text = mutate(VALID[kind], edits)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"TS_01.{kind}"
        path.write_text(text)
        assert_reads_or_picks_error(ADAPTERS[kind], path, voxel_size=VOXEL, options={"z": "4"})
