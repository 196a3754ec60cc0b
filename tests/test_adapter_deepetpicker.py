"""DeepETPicker adapter. No real output exists in the fixtures (SOURCES.md), so the files here are
written the way DeepETPicker's own code writes them (formats.md §3; test.py ``np.savetxt(...,
fmt='%s', delimiter='\\t')``): ``Coords_All`` integers, ``Coords_withArea`` floats with the
heat-map value 5th, and the GUI's ``<dir>_cls<N>_box``/``_coords`` ``x y z`` exports.
"""

from __future__ import annotations

import math
import tempfile
from functools import partial
from pathlib import Path

import numpy as np
import pytest
from adapter_support import (
    MUTATION,
    ROUND_TRIP,
    assert_positions_close,
    assert_reads_or_picks_error,
    mutate,
    mutations,
    read_raw,
    tomogram_shapes,
    write_text,
    write_then_read,
)
from hypothesis import given
from hypothesis import strategies as st

from picks.adapters.deepetpicker import DeepEtPickerAdapter
from picks.core import picks as canonical
from picks.core.errors import PicksError
from picks.core.tomograms import Tomogram, TomogramSet
from picks.plugins.adapter import ReadContext, WriteContext
from picks.workflows.importing import import_file
from picks.workflows.outputs import write_picks

VOXEL = 10.0
COORDS_ALL = "1\t120\t45\t67\n2\t300\t210\t88\n1\t33\t310\t12\n"
# numpy's "%s" of a float array: "1.0", "120.0", and the pooled heat-map value
COORDS_WITH_AREA = "1.0\t120.0\t45.0\t67.0\t0.84375\n2.0\t300.0\t210.0\t88.0\t0.5\n1.0\t33.0\t310.0\t12.0\t0.96875\n"


place = write_text
# The adapter's own table (not normalised), read at VOXEL Å unless a test says otherwise.
read = partial(read_raw, DeepEtPickerAdapter(), normalise=False, voxel_size=VOXEL)


def test_detection_separates_deepetpicker_from_coords_and_eman(registry, tmp_path):
    assert (
        registry.detect(place(tmp_path, "Coords_All/TS_01.coords", COORDS_ALL)).name
        == "deepetpicker"
    )
    assert (
        registry.detect(place(tmp_path, "Coords_withArea/TS_01.coords", COORDS_WITH_AREA)).name
        == "deepetpicker"
    )
    assert (
        registry.detect(place(tmp_path, "out_cls1_box/TS_01.box", "120.0\t45.0\t67\n")).name
        == "deepetpicker"
    )
    assert (
        registry.detect(place(tmp_path, "out_cls2_coords/TS_01.coords", "300\t210\t88\n")).name
        == "deepetpicker"
    )
    # exactly three columns elsewhere: crYOLO/TomoTwin .coords; four-column .box: EMAN
    assert registry.detect(place(tmp_path, "cryolo/TS_01.coords", "300 210 88\n")).name == "coords"
    assert registry.detect(place(tmp_path, "eman/TS_01.box", "14 35 20 10\n")).name == "eman-box"


def test_coords_all(tmp_path):
    frame, ctx = read(place(tmp_path, "Coords_All/TS_01.coords", COORDS_ALL))
    # "2\t300\t210\t88" -> class 2 at voxel (300, 210, 88) -> (3000, 2100, 880) Å
    np.testing.assert_allclose(
        frame[["x", "y", "z"]].to_numpy(), [[1200, 450, 670], [3000, 2100, 880], [330, 3100, 120]]
    )
    assert frame["particle"].tolist() == ["1", "2", "1"]  # no labels: the class number
    assert frame["particle_field"].tolist() == ["class"] * 3
    assert frame["score"].isna().all() and frame["score_field"].isna().all()
    assert frame["record"].tolist() == [1, 2, 3]
    assert frame["original"].iloc[1] == "2\t300\t210\t88"
    assert frame["tomogram"].tolist() == ["TS_01"] * 3
    assert not ctx.warnings


def test_coords_with_area_heatmap_score_and_labels(tmp_path):
    path = place(tmp_path, "Coords_withArea/TS_01_thresh=0.5.coords", COORDS_WITH_AREA)
    frame, _ = read(path, options={"labels": "1=ribosome,2=apoferritin"})
    np.testing.assert_allclose(frame["score"].to_numpy(), [0.84375, 0.5, 0.96875])
    assert frame["score_field"].tolist() == ["heatmap"] * 3
    assert frame["particle"].tolist() == ["ribosome", "apo-ferritin", "ribosome"]
    assert frame.iloc[2][["x", "y", "z"]].tolist() == [330.0, 3100.0, 120.0]
    assert frame["tomogram"].tolist() == ["TS_01"] * 3  # "_thresh=0.5" dropped


def test_exports_take_class_from_folder(tmp_path):
    box = place(tmp_path, "Coords_All_cls2_box/TS_03.box", "300.0\t210.5\t88\n12.5\t13.0\t14\n")
    frame, _ = read(box, options={"labels": "2=thyroglobulin"})
    # x y z centres (not an EMAN corner box): (300, 210.5, 88) voxels -> (3000, 2105, 880) Å
    np.testing.assert_allclose(
        frame[["x", "y", "z"]].to_numpy(), [[3000, 2105, 880], [125, 130, 140]]
    )
    assert frame["particle"].tolist() == ["thyroglobulin"] * 2
    plain = place(tmp_path, "elsewhere/TS_03.box", "300.0\t210.5\t88\n")
    frame, _ = read(plain, particle="ribosome")
    assert frame["particle"].tolist() == ["ribosome"] and frame["particle_field"].isna().all()


def test_single_class_takes_particle_option_and_placeholder_rows(tmp_path):
    path = place(tmp_path, "Coords_All/TS_02.coords", "0\t0\t0\t0\n1\t5\t6\t7\n")
    frame, ctx = read(path, particle="ribosome")
    assert frame["particle"].tolist() == ["ribosome"]
    assert frame["record"].tolist() == [2]
    assert any("class 0" in w for w in ctx.warnings)


def test_binning(tmp_path):
    tomo_set = TomogramSet([Tomogram("TS_01", None, 5.0, (1000, 1000, 400))])
    frame, _ = read(
        place(tmp_path, "Coords_All/TS_01.coords", COORDS_ALL),
        voxel_size=None,
        binning=4.0,
        tomograms=tomo_set,
    )
    # picked on a 4× binned volume: x_Å = (120 + 0.5) × 20 − 0.5 × 5 = 2407.5
    assert frame.iloc[0]["x"] == pytest.approx(2407.5)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", r"line 1: empty file"),
        ("1\t2\n", r"line 1: expected 'class x y z'"),
        ("1\t2\t3\t4\n1\t2\t3\n", r"line 2: expected 4 fields like line 1, found 3"),
        ("1\t2\t3\t4\n1\t2\tthree\t4\n", r"line 2: y = 'three' is not a number"),
        ("1.5\t2\t3\t4\n", r"line 1: class = '1.5' is not a class number"),
        ("0\t0\t0\t0\n", r"no picks: every row has class 0"),
        ("1.0\t2.0\t3.0\t4.0\tn/a\n", r"line 1: heatmap = 'n/a' is not a number"),
    ],
)
def test_bad_input(rejects_import, tmp_path, body, message):
    path = place(tmp_path, "Coords_All/TS_01.coords", body)
    rejects_import(path, match=message, adapter="deepetpicker", voxel_size=VOXEL)


def test_import_through_store(store, registry, tmp_path):
    path = place(tmp_path, "Coords_All/TS_01.coords", COORDS_ALL)
    result = import_file(
        store, path, registry, voxel_size=VOXEL, options={"labels": "1=ribosome,2=apo-ferritin"}
    )
    assert result.adapter == "deepetpicker" and result.n_picks == 3


def test_writer_file_layout(registry, tmp_path):
    picks = canonical.make(
        {
            "tomogram": ["TS_01", "TS_02", "TS_01"],
            "particle": ["ribosome", "apo-ferritin", "ribosome"],
            "x": [100.0, 200.0, 300.0],
            "y": [10.0, 20.0, 30.0],
            "z": [50.0, 60.0, 70.0],
            "score": [0.5, math.nan, 0.25],
            "record": [0, 1, 2],
        }
    )
    files = write_picks(
        picks, registry.get("deepetpicker"), tmp_path / "Coords_All", WriteContext(voxel_size=VOXEL)
    )
    assert [p.name for p in files] == ["TS_01.coords", "TS_02.coords"]
    text = files[0].read_text()
    # class numbers in sorted order, shared by the files of one export; the map is a comment
    # that numpy.loadtxt skips. TS_01: ribosome = 1 at voxel (10, 1, 5), score 0.5.
    assert text.splitlines()[0] == "# picks labels: 1=ribosome"
    assert text.splitlines()[1] == "1\t10\t1\t5\t0.5"
    assert files[1].read_text().splitlines()[:2] == [
        "# picks labels: 2=apo-ferritin",
        "2\t20\t2\t6",
    ]
    assert np.loadtxt(files[0], delimiter="\t").shape == (2, 5)
    assert registry.detect(files[0]).name == "deepetpicker"
    frame, _ = read(files[1])
    assert frame["particle"].tolist() == ["apo-ferritin"] and frame["score"].isna().all()


@st.composite
def tomogram_picks(draw):
    voxel = draw(st.sampled_from([4.0, 10.012, 13.48]))
    binning = draw(st.sampled_from([1.0, 2.0, 4.0]))
    shape = draw(tomogram_shapes())
    n = draw(st.integers(1, 12))
    with_scores = draw(st.booleans())
    rows = [
        (
            draw(st.sampled_from(["apo-ferritin", "ribosome", "beta-amylase", None])),
            *[draw(st.floats(0, 1)) * (s - 1) * voxel for s in shape],
            draw(st.floats(0, 1)) if with_scores else math.nan,
        )
        for _ in range(n)
    ]
    frame = canonical.make(
        {
            "tomogram": ["TS_05"] * n,
            "particle": [r[0] for r in rows],
            "x": [r[1] for r in rows],
            "y": [r[2] for r in rows],
            "z": [r[3] for r in rows],
            "score": [r[4] for r in rows],
            "record": list(range(n)),
        }
    )
    return frame, TomogramSet([Tomogram("TS_05", None, voxel, shape)]), binning


@ROUND_TRIP
@given(tomogram_picks())
def test_round_trip(case):
    picks, tomo_set, binning = case
    frame = write_then_read(DeepEtPickerAdapter(), picks, "TS_05.coords", tomo_set, binning=binning)
    assert_positions_close(frame, picks, atol=1e-3)
    assert frame["particle"].tolist() == picks["particle"].tolist()
    np.testing.assert_allclose(frame["score"].to_numpy(), picks["score"].to_numpy(), equal_nan=True)
    assert frame["tomogram"].unique().tolist() == ["TS_05"]


def test_label_helpers(tmp_path):
    from picks.adapters import _labels

    # unnamed classes read as "3" keep their numbers; names take the free ones in sorted order
    assert _labels.assign_numbers(["3", "1", "ribosome", None, "apoferritin"]) == {
        "": 2,
        "1": 1,
        "3": 3,
        "apo-ferritin": 4,
        "ribosome": 5,
    }
    assert _labels.assign_numbers(["ribosome", "2"], {2: "ribosome"}) == {"ribosome": 2, "2": 1}
    text = tmp_path / "labels.txt"
    text.write_text("1: apoferritin\n2\tbeta galactosidase  # comment\n\n")
    assert _labels.class_map(str(text)) == {1: "apo-ferritin", 2: "beta-galactosidase"}
    inverse = tmp_path / "labels.json"
    inverse.write_text('{"ribosome": 4, "VLP": 6}')
    assert _labels.class_map(str(inverse)) == {4: "ribosome", 6: "virus-like-particle"}
    mapping = {1: "a b", 2: "x=y"}
    comment = _labels.format_comment_map("labels", mapping)
    assert _labels.comment_map(comment, "labels") == mapping
    with pytest.raises(PicksError, match="given twice"):
        _labels.parse_int_map("1=a,1=b", "labels")


def test_numbered_classes_keep_their_numbers_through_a_conversion(formats_dir, tmp_path):
    from picks.adapters.deepfinder import DeepFinderXmlAdapter

    source = formats_dir / "deepfinder/object_list_tomo0.xml"
    picks = DeepFinderXmlAdapter().read(source, ReadContext(path=source, voxel_size=VOXEL))
    out = tmp_path / "TS_01.coords"
    DeepEtPickerAdapter().write(picks, out, WriteContext(voxel_size=VOXEL))
    # object #0 is class_label 11 at (46, 261, 144): still class 11 in the DeepETPicker file
    assert out.read_text().splitlines()[1] == "11\t46\t261\t144"
    frame, _ = read(out)
    assert frame["particle"].tolist() == picks["particle"].tolist()


@MUTATION
@given(
    st.sampled_from(
        [COORDS_ALL, COORDS_WITH_AREA, "# picks labels: 1=a\n0\t0\t0\t0\n1\t2\t3\t4\n"]
    ),
    mutations(["a", "1", " ", "\n", "\t", "#", ".", "-", "nan", "é"]),
)
def test_mutated_files_never_raise_anything_but_picks_errors(text, edits):
    text = mutate(text, edits)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "TS_01.coords"
        path.write_text(text)
        assert_reads_or_picks_error(DeepEtPickerAdapter(), path, voxel_size=VOXEL)
