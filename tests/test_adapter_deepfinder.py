"""DeepFinder object-list XML (deepfinder-xml) and SHREC'19 ground-truth text (shrec-txt).

Expected values are worked out by hand: DeepFinder x, y, z are 0-based voxel indices (Å = index ×
voxel size without binning); SHREC'19 columns are ``pdb_id Z Y X a1 a2 a3``.
"""

from __future__ import annotations

import json
import math
import tempfile
import xml.etree.ElementTree as ET
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

from picks.adapters.deepfinder import ANGLE_CONVENTION, DeepFinderXmlAdapter, ShrecTxtAdapter
from picks.core import picks as canonical
from picks.core.errors import InputFormatError, PicksError
from picks.core.tomograms import Tomogram, TomogramSet
from picks.plugins.adapter import WriteContext
from picks.workflows.importing import import_file

VOXEL = 10.0
# SHREC'19 class numbers, as in DeepFinder's examples/analyze/evaluate.py (num2pdb)
SHREC_LABELS = (
    "1=1bxn,2=1qvr,3=1s3x,4=1u6g,5=2cg9,6=3cf3,7=3d2f,8=3gl1,9=3h84,10=3qm1,11=4b4t,12=4d8q"
)


# The adapter's own table (not normalised), read at VOXEL Å unless a test says otherwise.
read = partial(read_raw, normalise=False, voxel_size=VOXEL)


def test_detect_fixtures(registry, formats_dir):
    assert (
        registry.detect(formats_dir / "deepfinder/object_list_tomo0.xml").name == "deepfinder-xml"
    )
    shrec = formats_dir / "deepfinder/particle_locations_model_9_shrec.txt"
    assert registry.detect(shrec).name == "shrec-txt"


# --- DeepFinder XML fixture -------------------------------------------------------------------


def test_objlist_fixture_rows(formats_dir):
    frame, ctx = read(DeepFinderXmlAdapter(), formats_dir / "deepfinder/object_list_tomo0.xml")
    assert len(frame) == 2498
    assert frame["particle"].nunique() == 12
    # object #0: tomo_idx="0" class_label="11" x="46" y="261" z="144" phi="-142" psi="20" the="83"
    #   -> (46, 261, 144) × 10 Å = (460, 2610, 1440); class 11 unnamed -> "11"
    first = frame.iloc[0]
    assert first[["x", "y", "z"]].tolist() == [460.0, 2610.0, 1440.0]
    assert first["particle"] == "11" and first["particle_field"] == "class_label"
    assert first["record"] == 0
    # object #3: class 7, x=501 y=244 z=155 -> (5010, 2440, 1550)
    assert frame.iloc[3][["x", "y", "z"]].tolist() == [5010.0, 2440.0, 1550.0]
    # last object (#2497): class 2, x=15 y=465 z=45
    last = frame.iloc[-1]
    assert last[["x", "y", "z"]].tolist() == [150.0, 4650.0, 450.0] and last["record"] == 2497
    # angles kept raw, never converted (module docstring)
    assert frame[["rot", "tilt", "psi"]].isna().all().all()
    assert (frame["angle_convention"] == ANGLE_CONVENTION).all()
    assert json.loads(first["original"]) == {
        "tomo_idx": "0",
        "class_label": "11",
        "x": "46",
        "y": "261",
        "z": "144",
        "phi": "-142",
        "psi": "20",
        "the": "83",
    }
    assert frame["score"].isna().all() and frame["score_field"].isna().all()
    assert set(frame["tomogram"]) == {"object_list_tomo0"}
    assert not ctx.warnings


@pytest.mark.parametrize("form", ["inline", "text", "json"])
def test_labels_option_forms(formats_dir, tmp_path, form):
    pairs = dict(p.split("=") for p in SHREC_LABELS.split(","))
    if form == "inline":
        value = SHREC_LABELS
    elif form == "text":
        value = str(
            write_text(
                tmp_path,
                "labels.txt",
                "# SHREC'19\n" + "".join(f"{k} {v}\n" for k, v in pairs.items()),
            )
        )
    else:
        value = str(write_text(tmp_path, "labels.json", json.dumps(pairs)))
    frame, _ = read(
        DeepFinderXmlAdapter(),
        formats_dir / "deepfinder/object_list_tomo0.xml",
        options={"labels": value},
    )
    assert frame.iloc[0]["particle"] == "4b4t"  # class_label 11
    assert frame.iloc[4]["particle"] == "3h84"  # class_label 9
    assert frame.iloc[8]["particle"] == "3cf3"  # class_label 6
    assert set(frame["particle"]) == set(pairs.values())


def test_tomograms_option_and_tomogram_flag(formats_dir):
    path = formats_dir / "deepfinder/object_list_tomo0.xml"
    frame, _ = read(DeepFinderXmlAdapter(), path, options={"tomograms": "0=TS_09"})
    assert set(frame["tomogram"]) == {"TS_09"}
    frame, _ = read(DeepFinderXmlAdapter(), path, tomogram="model_0")
    assert set(frame["tomogram"]) == {"model_0"}


OBJL = """<objlist>
  <object tomo_idx="0" class_label="1" x="10.5" y="20" z="30" cluster_size="42"/>
  <object tomo_idx="1" class_label="2" x="1" y="2" z="3" cluster_size="7"/>
  <object tomo_idx="1" class_label="1" x="4" y="5" z="6"/>
</objlist>
"""


def test_tomo_idx_needs_a_map_when_several(tmp_path):
    path = write_text(tmp_path, "objl.xml", OBJL)
    with pytest.raises(
        InputFormatError, match=r"objl\.xml, line 3: .*2 tomograms.*`options` tomograms="
    ):
        read(DeepFinderXmlAdapter(), path)
    with pytest.raises(
        InputFormatError, match=r"line 3: <object> #1: tomo_idx 1 is not in the tomogram map"
    ):
        read(DeepFinderXmlAdapter(), path, options={"tomograms": "0=TS_01"})
    frame, _ = read(DeepFinderXmlAdapter(), path, options={"tomograms": "0=TS_01,1=TS_02"})
    assert frame["tomogram"].tolist() == ["TS_01", "TS_02", "TS_02"]
    # cluster_size is the score; objects without one have none
    np.testing.assert_array_equal(frame["score"].to_numpy(), [42.0, 7.0, np.nan])
    assert frame["score_field"].tolist() == ["cluster_size", "cluster_size", None]
    assert frame.iloc[0][["x", "y", "z"]].tolist() == [105.0, 200.0, 300.0]
    assert frame["angle_convention"].isna().all()


def test_single_class_uses_particle_option(tmp_path):
    path = write_text(
        tmp_path, "TS_01.xml", '<objlist><object class_label="1" x="1" y="2" z="3"/></objlist>'
    )
    frame, _ = read(DeepFinderXmlAdapter(), path, particle="Ribosomes")
    assert frame["particle"].tolist() == ["ribosome"]
    assert frame["tomogram"].tolist() == ["TS_01"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", r"line 1: empty file"),
        ("x y z\n1 2 3\n", r"line 1: not well-formed XML"),
        (
            '<objlist>\n  <object class_label="1" x="1" y="2" z="3"/>\n  <object class_label="2" x="4"',
            r"line 3: not well-formed XML",
        ),
        (
            '<objlist>\n<object class_label="1" y="2" z="3"/>\n</objlist>',
            r"line 2: <object> #0 lacks the required attribute 'x'",
        ),
        (
            '<objlist>\n<object class_label="1" x="1" y="2" z="3"/>\n<object class_label="1" x="1" y="two" z="3"/>\n</objlist>',
            r"line 3: <object> #1: y='two' is not a number",
        ),
        (
            '<objlist>\n<object class_label="ribosome" x="1" y="2" z="3"/>\n</objlist>',
            r"line 2: <object> #0: class_label='ribosome' is not an integer",
        ),
        (
            '<objlist>\n<object class_label="1" x="1" y="2" z="3" cluster_size="big"/>\n</objlist>',
            r"line 2: .*cluster_size='big'",
        ),
        ("<objlist>\n</objlist>\n", r"holds no <object>"),
        ("<particles>\n<object/>\n</particles>\n", r"line 1: root element is <particles>"),
        (
            '<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">]>\n<objlist><object class_label="1" x="&lol;" y="2" z="3"/></objlist>',
            r"line 2: DOCTYPE declarations are not accepted",
        ),
    ],
)
def test_bad_xml_is_one_clear_error_and_imports_nothing(rejects_import, tmp_path, body, message):
    path = write_text(tmp_path, "TS_01.xml", body)
    rejects_import(path, match=message, adapter="deepfinder-xml", voxel_size=VOXEL)


def test_bad_labels_option(formats_dir):
    path = formats_dir / "deepfinder/object_list_tomo0.xml"
    with pytest.raises(PicksError, match="labels"):
        read(DeepFinderXmlAdapter(), path, options={"labels": "ribosome"})
    with pytest.raises(PicksError, match="'x' is not an integer"):
        read(DeepFinderXmlAdapter(), path, options={"labels": "x=ribosome"})


def test_fixture_imports(store, registry, formats_dir):
    result = import_file(
        store,
        formats_dir / "deepfinder/object_list_tomo0.xml",
        registry,
        voxel_size=VOXEL,
        options={"labels": SHREC_LABELS},
    )
    assert result.adapter == "deepfinder-xml" and result.n_picks == 2498


# --- SHREC'19 text ----------------------------------------------------------------------------


def test_shrec_fixture_is_z_y_x(formats_dir):
    path = formats_dir / "deepfinder/particle_locations_model_9_shrec.txt"
    frame, _ = read(ShrecTxtAdapter(), path)
    assert len(frame) == 2540
    # line 1: "3d2f  180  480  118  -45   81  -72" -> Z=180 Y=480 X=118 -> (1180, 4800, 1800) Å
    first = frame.iloc[0]
    assert first[["x", "y", "z"]].tolist() == [1180.0, 4800.0, 1800.0]
    assert first["particle"] == "3d2f" and first["particle_field"] == "pdb_id"
    assert first["record"] == 1 and first["original"] == "3d2f  180  480  118  -45   81  -72"
    # line 2: "1qvr   87  503  281   39  120 -177" -> (2810, 5030, 870)
    assert frame.iloc[1][["x", "y", "z"]].tolist() == [2810.0, 5030.0, 870.0]
    # The evidence for Z Y X: the 2nd column fits the 200-slice ground truth, the others 512 px.
    assert frame["z"].max() / VOXEL < 200 and frame["x"].max() / VOXEL == 511
    assert frame[["rot", "tilt", "psi"]].isna().all().all()
    assert (frame["angle_convention"] == "shrec-raw-euler").all()
    assert frame["score"].isna().all()


def test_shrec_order_and_offset_options(formats_dir):
    path = formats_dir / "deepfinder/particle_locations_model_9_shrec.txt"
    frame, _ = read(ShrecTxtAdapter(), path, options={"z_offset": "156"})
    # the reconstruction holds the ground truth from slice 156: z = (180 + 156) × 10
    assert frame.iloc[0]["z"] == 3360.0
    frame, _ = read(ShrecTxtAdapter(), path, options={"order": "xyz"})
    assert frame.iloc[0][["x", "y", "z"]].tolist() == [1800.0, 4800.0, 1180.0]
    with pytest.raises(PicksError, match="order"):
        read(ShrecTxtAdapter(), path, options={"order": "yxz"})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("", r"line 1: empty file"),
        ("1bxn 1 2 3 4 5 6\n1bxn 1 2 3 4 5\n", r"line 2: expected 7 fields"),
        ("1bxn 1 2 3 4 5 6\n1bxn 1 2 three 4 5 6\n", r"line 2: X = 'three' is not a number"),
        ("1bxn 1 2 3 4 5 6\n1bxn 1 2 3 4 5 north\n", r"line 2: angle 3 = 'north'"),
    ],
)
def test_bad_shrec(rejects_import, tmp_path, body, message):
    path = write_text(tmp_path, "particle_locations_model_1.txt", body)
    rejects_import(path, match=message, adapter="shrec-txt", voxel_size=VOXEL)


# --- writer -----------------------------------------------------------------------------------


def test_writer_output_is_what_deepfinder_reads(tmp_path):
    picks = canonical.make(
        {
            "tomogram": ["TS_02", "TS_01", "TS_01"],
            "particle": ["ribosome", "apo-ferritin", None],
            "x": [100.0, 10.0, 20.0],
            "y": [200.0, 20.0, 30.0],
            "z": [300.0, 30.0, 40.0],
            "score": [12.0, 0.25, math.nan],
            "record": [0, 1, 2],
        }
    ).assign(consensus_id=[7, 8, None])
    tomo_set = TomogramSet([Tomogram(n, None, VOXEL, (100, 100, 50)) for n in ("TS_01", "TS_02")])
    path = tmp_path / "objl.xml"
    DeepFinderXmlAdapter().write(picks, path, WriteContext(tomograms=tomo_set))
    objects = list(ET.parse(path).getroot())
    # DeepFinder's read_xml casts class_label/tomo_idx/obj_id/cluster_size with int(), x/y/z with float()
    for obj in objects:
        int(obj.get("class_label"))
        int(obj.get("tomo_idx"))
        int(obj.get("obj_id"))
        if obj.get("cluster_size") is not None:
            int(obj.get("cluster_size"))
    # sorted class names -> 1..N ("" = no class sorts first); sorted tomograms -> 0..N-1
    first = objects[0].attrib
    assert first["tomo_idx"] == "1" and first["x"] == "10" and first["cluster_size"] == "12"
    assert first["consensus_id"] == "7"
    assert objects[1].get("score") == "0.25" and objects[1].get("cluster_size") is None
    text = path.read_text()
    assert "picks labels: 1= 2=apo-ferritin 3=ribosome" in text
    assert "picks tomograms: 0=TS_01 1=TS_02" in text
    frame, _ = read(DeepFinderXmlAdapter(), path, voxel_size=None, tomograms=tomo_set)
    assert frame["tomogram"].tolist() == ["TS_02", "TS_01", "TS_01"]
    assert frame["particle"].tolist() == ["ribosome", "apo-ferritin", None]
    np.testing.assert_array_equal(frame["score"].to_numpy(), [12.0, 0.25, np.nan])
    assert frame["score_field"].tolist() == ["cluster_size", "score", None]


def test_writer_labels_option_and_raw_angles(formats_dir, tmp_path):
    picks, _ = read(
        DeepFinderXmlAdapter(),
        formats_dir / "deepfinder/object_list_tomo0.xml",
        options={"labels": SHREC_LABELS, "tomograms": "0=TS_01"},
    )
    picks = picks.iloc[:50]
    path = tmp_path / "out.xml"
    ctx = WriteContext(voxel_size=VOXEL, options={"labels": SHREC_LABELS})
    DeepFinderXmlAdapter().write(picks, path, ctx)
    objects = list(ET.parse(path).getroot())
    # class numbers follow the given map; raw angles travel back unchanged
    assert objects[0].get("class_label") == "11"
    assert (objects[0].get("phi"), objects[0].get("psi"), objects[0].get("the")) == (
        "-142",
        "20",
        "83",
    )
    again, _ = read(DeepFinderXmlAdapter(), path)
    assert again["particle"].tolist() == picks["particle"].tolist()
    np.testing.assert_allclose(again[["x", "y", "z"]].to_numpy(), picks[["x", "y", "z"]].to_numpy())


CLASSES = ["apo-ferritin", "ribosome", "thyroglobulin", "1bxn", None]


@st.composite
def tomogram_picks(draw):
    voxel = draw(st.sampled_from([4.0, 10.012, 13.48]))
    binning = draw(st.sampled_from([1.0, 2.0, 4.0]))
    names = draw(
        st.lists(st.sampled_from(["TS_01", "TS_02", "TS_10"]), min_size=1, max_size=3, unique=True)
    )
    shapes = {n: draw(tomogram_shapes()) for n in names}
    n = draw(st.integers(1, 15))
    rows = []
    for _ in range(n):
        name = draw(st.sampled_from(names))
        xyz = [draw(st.floats(0, 1)) * (s - 1) * voxel for s in shapes[name]]
        score = draw(
            st.one_of(
                st.just(math.nan), st.floats(0, 1, allow_nan=False), st.integers(0, 5000).map(float)
            )
        )
        rows.append((name, draw(st.sampled_from(CLASSES)), *xyz, score))
    frame = canonical.make(
        {
            "tomogram": [r[0] for r in rows],
            "particle": [r[1] for r in rows],
            "x": [r[2] for r in rows],
            "y": [r[3] for r in rows],
            "z": [r[4] for r in rows],
            "score": [r[5] for r in rows],
            "record": list(range(n)),
        }
    )
    return frame, TomogramSet([Tomogram(k, None, voxel, s) for k, s in shapes.items()]), binning


@ROUND_TRIP
@given(tomogram_picks())
def test_round_trip_deepfinder_xml(case):
    picks, tomo_set, binning = case
    frame = write_then_read(DeepFinderXmlAdapter(), picks, "objl.xml", tomo_set, binning=binning)
    assert_positions_close(frame, picks, atol=1e-3)
    assert frame["tomogram"].tolist() == picks["tomogram"].tolist()
    assert frame["particle"].tolist() == picks["particle"].tolist()
    np.testing.assert_allclose(frame["score"].to_numpy(), picks["score"].to_numpy(), equal_nan=True)


VALID = {
    "xml": '<!-- picks labels: 1=a 2=b -->\n<objlist>\n  <object tomo_idx="0" class_label="1" x="1" y="2" z="3" cluster_size="4"/>\n  <object tomo_idx="0" class_label="2" x="1.5" y="2" z="3" phi="10" psi="20" the="30"/>\n</objlist>\n',
    "txt": "1bxn  180  480  118  -45   81  -72\n1qvr   87  503  281   39  120 -177\n",
}
ADAPTERS = {"xml": DeepFinderXmlAdapter(), "txt": ShrecTxtAdapter()}


@MUTATION
@given(
    st.sampled_from(sorted(VALID)),
    mutations(["a", "1", " ", "\n", '"', "<", ">", "=", "/", "&", "-->", "é"]),
)
def test_mutated_files_never_raise_anything_but_picks_errors(kind, edits):
    text = mutate(VALID[kind], edits)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"TS_01.{kind}"
        path.write_text(text)
        assert_reads_or_picks_error(ADAPTERS[kind], path, voxel_size=VOXEL)
