"""pytom-match-pick and STOPGAP readers, and the Euler-angle conversions they rely on.

pytom has no public example file: the test writes one exactly as
``pytom_tm.extract.extract_particles`` builds it (same columns, in order, via starfile) —
``shared/reference/formats.md`` §8.5. STOPGAP uses the real portal test fixture (stopgap/).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from adapter_support import read_raw, row

from picks.adapters._euler import (
    relion_angles,
    relion_matrix,
    stopgap_matrix,
    stopgap_to_relion,
)
from picks.adapters.pytom import PytomAdapter
from picks.adapters.relion import Relion4Adapter, Relion5Adapter
from picks.adapters.stopgap import StopgapAdapter
from picks.core.errors import InputFormatError, MissingVoxelSize, PicksError
from picks.core.tomograms import Tomogram, TomogramSet
from picks.workflows.importing import import_file

STOPGAP = "stopgap/portal_stopgap_star.star"


read = read_raw


# -- Euler conventions, against the programs' own formulas written out ------------------------


def relion_cpp(rot: float, tilt: float, psi: float) -> np.ndarray:
    """RELION's Euler_angles2matrix (src/euler.cpp), transcribed."""
    a, b, g = np.radians([rot, tilt, psi])
    ca, sa, cb, sb, cg, sg = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(g), np.sin(g)
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    return np.array(
        [
            [cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb],
            [-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb],
            [sc, ss, cb],
        ]
    )


def stopgap_m(phi: float, psi: float, the: float) -> np.ndarray:
    """STOPGAP's sg_euler2matrix(phi, psi, the), transcribed."""
    c, s = np.cos, np.sin
    p, q, t = np.radians([psi, phi, the])
    rz_psi = np.array([[c(p), -s(p), 0], [s(p), c(p), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, c(t), -s(t)], [0, s(t), c(t)]])
    rz_phi = np.array([[c(q), -s(q), 0], [s(q), c(q), 0], [0, 0, 1]])
    return rz_psi @ rx @ rz_phi


def test_euler_matrices_match_the_programs():
    rng = np.random.default_rng(7)
    angles = rng.uniform(-180, 180, size=(20, 3))
    got = relion_matrix(angles[:, 0], angles[:, 1], angles[:, 2])
    for k in range(20):
        assert got[k] == pytest.approx(relion_cpp(*angles[k]), abs=1e-12)
    back = relion_matrix(*relion_angles(got))
    assert back == pytest.approx(got, abs=1e-12)
    sg = stopgap_matrix(angles[:, 0], angles[:, 1], angles[:, 2])
    converted = np.stack(stopgap_to_relion(*angles.T), axis=1)
    for k in range(20):
        assert sg[k] == pytest.approx(stopgap_m(*angles[k]), abs=1e-12)
        assert relion_cpp(*converted[k]) == pytest.approx(stopgap_m(*angles[k]), abs=1e-9)


def test_stopgap_to_relion_by_hand():
    # phi = 90 alone is Rz(90); RELION's A(rot, 0, 0) = Rz(−rot) -> rot = −90
    rot, tilt, psi = stopgap_to_relion([90.0], [0.0], [0.0])
    assert (rot[0] + psi[0], tilt[0]) == pytest.approx((-90.0, 0.0))
    # the = 90 alone is Rx(90) = Rz(−90)·Ry(90)·Rz(90) = A(rot, tilt, psi) with
    # (psi, tilt, rot) = (90, −90, −90) ≡ (rot, tilt, psi) = (90, 90, −90)
    assert [v[0] for v in stopgap_to_relion([0.0], [0.0], [90.0])] == pytest.approx([90, 90, -90])


# -- pytom-match-pick ----------------------------------------------------------------------------


def write_pytom(path: Path, rows: list[tuple]) -> Path:
    import starfile

    columns = [
        "rlnCoordinateX",
        "rlnCoordinateY",
        "rlnCoordinateZ",
        "rlnAngleRot",
        "rlnAngleTilt",
        "rlnAnglePsi",
        "rlnLCCmax",
        "rlnCutOff",
        "rlnSearchStd",
        "rlnDetectorPixelSize",
        "rlnMicrographName",
    ]
    starfile.write(pd.DataFrame(rows, columns=columns), path)
    return path


PYTOM_ROWS = [
    (10, 20, 30, -12.5, 33.0, 101.0, 0.45, 0.21, 0.031, 10.0, "tomo_200528_107"),
    (0, 63, 7, 170.0, 90.0, -90.0, 0.30, 0.21, 0.031, 10.0, "tomo_200528_107"),
]


def test_pytom_particles_by_hand(tmp_path: Path, registry):
    path = write_pytom(tmp_path / "tomo_200528_107_particles.star", PYTOM_ROWS)
    assert registry.detect(path).name == "pytom-star"
    frame, ctx = read(PytomAdapter(), path)
    # 0-based voxel indices × rlnDetectorPixelSize: (10, 20, 30)·10 and (0, 63, 7)·10
    assert frame[["x", "y", "z"]].to_numpy() == pytest.approx(
        np.array([[100.0, 200.0, 300.0], [0.0, 630.0, 70.0]])
    )
    assert frame["tomogram"].tolist() == ["tomo_200528_107"] * 2
    assert frame["score"].tolist() == pytest.approx([0.45, 0.30])
    assert set(frame["score_field"]) == {"rlnLCCmax"}
    assert frame[["rot", "tilt", "psi"]].iloc[0].tolist() == pytest.approx([-12.5, 33.0, 101.0])
    assert set(frame["angle_convention"]) == {"relion-zyz"}
    # Registered at 5 Å (the matching ran 2× binned): x = (10 + 0.5)·10 − 0.5·5 = 102.5
    tomos = TomogramSet([Tomogram("tomo_200528_107", None, 5.0, (200, 200, 100))])
    binned, _ = read(PytomAdapter(), path, tomograms=tomos)
    assert binned["x"].iloc[0] == pytest.approx(102.5)
    assert not ctx.warnings


def test_pytom_is_not_claimed_by_relion(tmp_path: Path):
    path = write_pytom(tmp_path / "t_particles.star", PYTOM_ROWS)
    assert Relion4Adapter().sniff(path) == 0 and Relion5Adapter().sniff(path) == 0
    assert StopgapAdapter().sniff(path) == 0


def test_pytom_bad_score_and_missing_pixel_size(tmp_path: Path, store, registry):
    path = write_pytom(tmp_path / "bad_particles.star", PYTOM_ROWS)
    text = path.read_text().replace("0.450000", "high", 1)
    path.write_text(text)
    line = next(i for i, t in enumerate(text.splitlines(), start=1) if "high" in t)
    with pytest.raises(InputFormatError, match="rlnLCCmax = 'high' is not a number") as info:
        import_file(store, path, registry)
    assert info.value.line == line
    nopix = tmp_path / "nopix_particles.star"
    import starfile

    starfile.write(
        pd.DataFrame(
            {
                "rlnCoordinateX": [1],
                "rlnCoordinateY": [2],
                "rlnCoordinateZ": [3],
                "rlnLCCmax": [0.5],
            }
        ),
        nopix,
    )
    with pytest.raises(MissingVoxelSize):
        import_file(store, nopix, registry)
    assert store.count("picks") == 0
    frame, _ = read(PytomAdapter(), nopix, voxel_size=4.0)
    assert frame[["x", "y", "z"]].to_numpy() == pytest.approx(np.array([[4.0, 8.0, 12.0]]))
    assert frame["tomogram"].tolist() == ["nopix_particles"]  # no rlnMicrographName: file name
    # no pixel size in the file: the registered tomogram's voxel size (× --binning 2: block
    # binning, x = (1 + 0.5)·6 − 0.5·3 = 7.5)
    tomos = TomogramSet([Tomogram("nopix_particles", None, 3.0, (10, 10, 10))])
    frame, _ = read(PytomAdapter(), nopix, tomograms=tomos, binning=2.0)
    assert frame[["x", "y", "z"]].to_numpy() == pytest.approx(np.array([[7.5, 13.5, 19.5]]))


# -- STOPGAP --------------------------------------------------------------------------------------


def test_stopgap_fixture_by_hand(formats_dir: Path, registry):
    path = formats_dir / STOPGAP
    assert registry.detect(path).name == "stopgap"
    frame, ctx = read(
        StopgapAdapter(), path, voxel_size=2.0, options={"tomograms": "1=TS_01,2=TS_02,3=TS_03"}
    )
    assert len(frame) == 6 and not ctx.warnings
    # line 22, tomo 1: orig (4, 8, 12) + shift (−1.2, −2.4, −3.2) = (2.8, 5.6, 8.8);
    # 1-based -> (1.8, 4.6, 7.8) voxels × 2 Å = (3.6, 9.2, 15.6)
    first = row(frame, 22)
    assert first["tomogram"] == "TS_01"
    assert first[["x", "y", "z"]].tolist() == pytest.approx([3.6, 9.2, 15.6])
    assert first["score"] == pytest.approx(0.1816) and first["score_field"] == "score"
    # phi 90, psi 180, the 45: Rz(180)·Rx(45)·Rz(90) = Rz(90)·Ry(45)·Rz(180) -> RELION (0, 45, 90)
    assert first[["rot", "tilt", "psi"]].tolist() == pytest.approx([0.0, 45.0, 90.0])
    assert first["angle_convention"] == "stopgap-zxz"
    # line 24, tomo 2: (6, 4, 2) + (−1, −2, −3) − 1 = (4, 1, −2) × 2 = (8, 2, −4)
    assert row(frame, 24)[["x", "y", "z"]].tolist() == pytest.approx([8.0, 2.0, -4.0])
    assert row(frame, 24)["tomogram"] == "TS_02"
    # phi 0, psi 0, the 90 -> RELION (90, 90, −90) (see test_stopgap_to_relion_by_hand)
    assert row(frame, 24)[["rot", "tilt", "psi"]].tolist() == pytest.approx([90.0, 90.0, -90.0])
    zero, _ = read(
        StopgapAdapter(),
        path,
        voxel_size=2.0,
        options={"tomograms": "1=TS_01,2=TS_02,3=TS_03", "origin": "0"},
    )
    assert row(zero, 22)[["x", "y", "z"]].tolist() == pytest.approx([5.6, 11.2, 17.6])


def test_stopgap_dynamo_index_file_and_registered_tomograms(formats_dir: Path, store, registry):
    # dynamo/tmap_complex.doc: "1<TAB>tomo_ts01.mrc_15.00Apx.mrc", ...
    store.add_tomograms([Tomogram(f"tomo_ts0{i}", None, 15.0, (50, 50, 50)) for i in (1, 2, 3)])
    result = import_file(
        store,
        formats_dir / STOPGAP,
        registry,
        options={"tomogram_index": str(formats_dir / "dynamo/tmap_complex.doc"), "origin": "0"},
    )
    assert result.adapter == "stopgap" and result.n_picks == 6
    picks = store.picks().sort_values("record")
    assert picks["tomogram"].tolist() == ["tomo_ts01"] * 2 + ["tomo_ts02"] * 3 + ["tomo_ts03"]
    # line 22 with origin 0: (2.8, 5.6, 8.8) × 15 Å
    assert picks[["x", "y", "z"]].iloc[0].tolist() == pytest.approx([42.0, 84.0, 132.0])


def test_stopgap_tomogram_names(formats_dir: Path, store, registry):
    path = formats_dir / STOPGAP
    frame, ctx = read(StopgapAdapter(), path, voxel_size=1.0)
    assert frame["tomogram"].tolist() == ["1", "1", "2", "2", "2", "3"]
    assert any("tomo_num" in w for w in ctx.warnings)
    store.add_tomograms([Tomogram("TS_01", None, 1.0, (100, 100, 100))])
    with pytest.raises(InputFormatError, match="need tomogram names") as info:
        import_file(store, path, registry)
    assert info.value.line == 22
    with pytest.raises(InputFormatError, match="tomo_num 3 has no name") as info:
        import_file(store, path, registry, options={"tomograms": "1=TS_01,2=TS_01"})
    assert info.value.line == 27
    with pytest.raises(PicksError, match="NUMBER=NAME"):
        import_file(store, path, registry, options={"tomograms": "TS_01"})
    assert store.count("picks") == 0
    classes, _ = read(StopgapAdapter(), path, voxel_size=1.0, options={"class_column": "class"})
    assert set(classes["particle"]) == {"1"} and set(classes["particle_field"]) == {"class"}


def test_stopgap_bad_rows(tmp_path: Path, formats_dir: Path, store, registry):
    text = (formats_dir / STOPGAP).read_text()
    bad = tmp_path / "bad.star"
    bad.write_text(text.replace("0.1816", "xy", 1))
    with pytest.raises(InputFormatError, match="score = 'xy' is not a number") as info:
        import_file(store, bad, registry, voxel_size=1.0)
    assert info.value.line == 22
    cut = tmp_path / "cut.star"
    cut.write_text(text[: text.index("-90  1")])
    with pytest.raises(InputFormatError, match="truncated") as info:
        import_file(store, cut, registry, voxel_size=1.0)
    assert info.value.line == 26
    missing = tmp_path / "missing.star"
    missing.write_text(text.replace("_orig_z\n", "_orig_w\n"))
    with pytest.raises(InputFormatError, match="lacks column"):
        import_file(store, missing, registry, adapter="stopgap", voxel_size=1.0)
    assert store.count("sources") == 0
