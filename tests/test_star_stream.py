"""Streamed STAR import (RELION 3/4/5, pytom): the particle loop is read a chunk at a time, the
other blocks once, and the chunks together are exactly what ``read`` gives — picks, line
numbers, original text and warnings — on every real STAR fixture and on files with several
blocks, comments, blank lines and quoted fields inside the loop."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

from picks.adapters._star import PARTICLE_LABELS, scan_star
from picks.core.errors import InputFormatError, PicksError
from picks.core.store import Store
from picks.core.tomograms import Tomogram, TomogramSet
from picks.plugins.adapter import ReadContext
from picks.workflows.importing import import_file

STREAMING = ("relion4", "relion5", "pytom-star")
FORMATS = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "formats"


def _chunked(adapter, path: Path, ctx: ReadContext, size: int) -> pd.DataFrame:
    chunks = list(adapter.read_chunks(path, ctx, size))
    if size < sys.maxsize:
        assert all(len(c) <= size for c in chunks)
    return pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else chunks[0]


def _same_as_read(adapter, path: Path, make_ctx, sizes=(1, 3, sys.maxsize)) -> int:
    """read() and the chunks of every size give the same table and warnings (or the same
    error); returns the number of picks."""
    ctx = make_ctx()
    try:
        whole = adapter.read(path, ctx)
    except PicksError as exc:
        for size in sizes:
            with pytest.raises(type(exc)) as info:
                _chunked(adapter, path, make_ctx(), size)
            assert str(info.value) == str(exc)
        return 0
    for size in sizes:
        other = make_ctx()
        pd.testing.assert_frame_equal(_chunked(adapter, path, other, size), whole, check_exact=True)
        assert other.warnings == ctx.warnings
    return len(whole)


def _star_fixtures(registry) -> list[tuple[str, Path]]:
    return [
        (name, path)
        for path in sorted(FORMATS.rglob("*.star"))
        for name in STREAMING
        if registry.get(name).sniff(path) > 0
    ]


def test_every_real_star_fixture_reads_the_same_in_chunks(registry):
    if not FORMATS.is_dir():
        pytest.skip(f"{FORMATS} is absent: the real fixtures are not here")
    cases = _star_fixtures(registry)
    assert {name for name, _ in cases} == {"relion4", "relion5"}  # no pytom file: see below
    read = 0
    for name, path in cases:
        adapter = registry.get(name)
        for options in ({}, {"class_column": "rlnClassNumber"}):
            for voxel_size in (None, 7.0):
                read += _same_as_read(
                    adapter,
                    path,
                    lambda o=options, v=voxel_size, p=path: ReadContext(
                        path=p, particle="ribosome", voxel_size=v, options=dict(o)
                    ),
                    # chunks of one row are the synthetic tests' (a chunk costs milliseconds)
                    sizes=(13, 250, sys.maxsize),
                )
    assert read > 1000  # real picks were compared, not only errors


def _relion4(path: Path, *, newline: str = "\n") -> Path:
    """A RELION 3.1-style file: a general block, two optics groups, particles with comments,
    blank lines and a quoted tomogram name inside the loop, and a block after the loop."""
    rows = []
    for i in range(23):
        tomo = "'TS 01'" if i % 4 == 0 else "TS_02"
        rows.append(
            f"{tomo} {10 + i}.5 {20 + 2 * i} {5 + i % 7} {i * 7 % 360} {i * 3 % 180} {i % 90} "
            f"{0.5 + i / 100:.3f} {1 + i % 2} {1 + i % 3}"
        )
        if i % 6 == 5:
            rows.append("")
        if i % 9 == 8:
            rows.append("# a comment line inside the loop")
    text = [
        "# version 30001",
        "data_general",
        "_rlnTomoSubTomosAre2DStacks 0",
        "",
        "data_optics",
        "loop_",
        "_rlnOpticsGroup #1",
        "_rlnImagePixelSize #2",
        "1 5.0",
        "2 10.0",
        "",
        "data_particles",
        "loop_",
        *(
            f"_{label} #{n}"
            for n, label in enumerate(
                (
                    "rlnMicrographName",
                    "rlnCoordinateX",
                    "rlnCoordinateY",
                    "rlnCoordinateZ",
                    "rlnAngleRot",
                    "rlnAngleTilt",
                    "rlnAnglePsi",
                    "rlnAutopickFigureOfMerit",
                    "rlnOpticsGroup",
                    "rlnClassNumber",
                ),
                start=1,
            )
        ),
        *rows,
        "",
        "data_notes",
        "loop_",
        "_what",
        "nothing",
    ]
    path.write_bytes(newline.join(text).encode() + newline.encode())
    return path


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_several_blocks_comments_and_quotes_stream_with_their_line_numbers(
    tmp_path, registry, newline
):
    path = _relion4(tmp_path / "particles.star", newline=newline)
    adapter = registry.get("relion4")
    assert adapter.sniff(path) > 0

    def ctx():
        return ReadContext(path=path, options={"labels": "1=ribosome"})

    assert _same_as_read(adapter, path, ctx, sizes=(1, 4, 7, sys.maxsize)) == 23
    frame = adapter.read(path, ctx())
    lines = path.read_bytes().decode().splitlines()
    for record, original in zip(frame["record"], frame["original"], strict=True):
        assert lines[record - 1].strip() == original
    assert list(frame["tomogram"].unique()) == ["TS 01", "TS_02"]
    assert frame["particle"].tolist()[:3] == ["ribosome", "2", "3"]
    warnings = ctx()
    adapter.read(path, warnings)
    assert warnings.warnings == [
        "rlnClassNumber value(s) 2, 3 are not in `options` labels: kept as class names"
    ]


def test_the_scan_keeps_no_particle_rows(tmp_path):
    path = _relion4(tmp_path / "particles.star")
    star = scan_star(path, ReadContext(path=path), PARTICLE_LABELS)
    parts = star.blocks["particles"].loops[0]
    assert parts.streamed and len(parts) == 23 and parts.lines == parts.tokens == []
    assert len(star.blocks["optics"].loops[0]) == 2  # the small loops are kept whole
    assert star.blocks["notes"].loops[0].tokens == [["nothing"]]


def test_errors_in_a_late_chunk_name_their_line(tmp_path, registry):
    adapter = registry.get("relion4")
    good = _relion4(tmp_path / "good.star").read_text().splitlines()
    row = next(i for i, line in enumerate(good) if line.startswith("TS_02 31.5"))
    bad = list(good)
    bad[row] = bad[row].replace("31.5", "3I.5")
    path = tmp_path / "bad.star"
    path.write_text("\n".join(bad) + "\n")
    chunks = adapter.read_chunks(path, ReadContext(path=path), 4)
    assert len(next(chunks)) == 4  # the first chunks come before the bad row is reached
    with pytest.raises(InputFormatError, match=rf"line {row + 1}\b.*3I\.5"):
        list(chunks)
    # a row with a field missing: found by the scan, before any chunk
    bad = list(good)
    bad[row] = bad[row].rsplit(" ", 1)[0]
    path.write_text("\n".join(bad) + "\n")
    with pytest.raises(InputFormatError, match=rf"line {row + 1}\b.*expected 10 fields"):
        next(adapter.read_chunks(path, ReadContext(path=path), 4))


def test_streamed_star_import_equals_one_shot_and_reimport_is_a_noop(tmp_path, registry):
    path = _relion4(tmp_path / "particles.star")
    options = {"labels": "1=ribosome"}
    with Store(tmp_path / "a.db") as a, Store(tmp_path / "b.db") as b:
        calls = []
        insert = a.insert_picks
        a.insert_picks = lambda sid, p: (len(p) and calls.append(len(p)), insert(sid, p))
        first = import_file(a, path, registry, options=options, chunk_size=5)
        whole = import_file(b, path, registry, options=options, chunk_size=sys.maxsize)
        assert calls == [5, 5, 5, 5, 3]  # really streamed
        assert first.warnings == whole.warnings and first.n_picks == whole.n_picks == 23
        pa = a.picks(roles=None).drop(columns=["id"])
        pd.testing.assert_frame_equal(pa, b.picks(roles=None).drop(columns=["id"]))
        assert (
            a.get_source(first.source_id)["identity"] == b.get_source(whole.source_id)["identity"]
        )
        again = import_file(a, path, registry, options=options, chunk_size=2)
        assert again.skipped and again.source_id == first.source_id
        assert a.count("picks") == 23


def test_relion5_warnings_once_over_chunks(tmp_path, registry):
    """RELION 5: the tomograms.star is read once and its warnings given once, however many
    chunks; a registered tomogram whose extent disagrees is named once."""
    (tmp_path / "run_tomograms.star").write_text(
        "data_global\nloop_\n_rlnTomoName\n_rlnTomoSizeX\n_rlnTomoSizeY\n_rlnTomoSizeZ\n"
        "_rlnTomoTiltSeriesPixelSize\nTS_01 400 400 100 2.0\nTS_02 400 400 100 2.0\n"
    )
    # optics group 2 (every third particle) has another pixel size than tomograms.star
    rows = "\n".join(
        f"TS_0{1 + i % 2} {i - 40}.0 {2 * i}.0 {i % 9}.0 {1 + (i % 3 == 2)} {i / 30:.3f}"
        for i in range(30)
    )
    path = tmp_path / "run_data.star"
    path.write_text(
        "data_optics\nloop_\n_rlnOpticsGroup\n_rlnTomoTiltSeriesPixelSize\n1 2.0\n2 2.5\n\n"
        "data_particles\nloop_\n_rlnTomoName\n_rlnCenteredCoordinateXAngst\n"
        "_rlnCenteredCoordinateYAngst\n_rlnCenteredCoordinateZAngst\n_rlnOpticsGroup\n"
        f"_rlnAutopickFigureOfMerit\n{rows}\n"
    )
    registered = TomogramSet(
        [
            Tomogram("TS_01", None, voxel_size=10.0, shape=(90, 80, 20)),  # not 800 Å wide
            Tomogram("TS_02", None, voxel_size=10.0, shape=(80, 80, 20)),
        ]
    )
    adapter = registry.get("relion5")

    def ctx():
        return ReadContext(path=path, tomograms=registered)

    assert _same_as_read(adapter, path, ctx, sizes=(1, 4, sys.maxsize)) == 30
    warned = ctx()
    adapter.read(path, warned)
    # the tomograms.star found, TS_01's extent, the pixel size of the first group-2 particle
    assert len(warned.warnings) == 3, warned.warnings
    assert "run_tomograms.star" in warned.warnings[0] and "TS_01" in warned.warnings[1]
    assert "(2.5 Å) differs from the tomograms.star one (2 Å)" in warned.warnings[2]


def test_pytom_in_chunks_gathers_the_overridden_pixel_sizes(tmp_path, registry):
    import starfile

    n = 20
    columns = {
        "rlnCoordinateX": [float(i) for i in range(n)],
        "rlnCoordinateY": [2.0 * i for i in range(n)],
        "rlnCoordinateZ": [7.0] * n,
        "rlnAngleRot": [10.0] * n,
        "rlnAngleTilt": [20.0] * n,
        "rlnAnglePsi": [30.0] * n,
        "rlnLCCmax": [i / n for i in range(n)],
        # pixel sizes that differ from --voxel-size only in the last rows (a later chunk)
        "rlnDetectorPixelSize": [8.0] * (n - 3) + [10.0, 12.0, 10.0],
        "rlnMicrographName": ["tomo_1"] * n,
    }
    path = tmp_path / "tomo_1_particles.star"
    starfile.write(pd.DataFrame(columns), path)
    adapter = registry.get("pytom-star")
    assert registry.detect(path) is adapter or registry.detect(path).name == "pytom-star"

    def ctx():
        return ReadContext(path=path, voxel_size=8.0)

    assert _same_as_read(adapter, path, ctx, sizes=(1, 6, sys.maxsize)) == n
    warned = ctx()
    adapter.read(path, warned)
    assert warned.warnings == [
        "`voxel_size` 8 Å overrides the file's pixel size (rlnDetectorPixelSize = 8, 10, 12 Å)"
    ]

    def binned():
        return ReadContext(path=path, binning=2.0)

    assert _same_as_read(adapter, path, binned, sizes=(1, sys.maxsize)) == n
    warned = binned()
    adapter.read(path, warned)
    assert warned.warnings == [  # given once, not once per chunk
        "`binning` 2 ignored: the file gives its pixel size (rlnDetectorPixelSize)"
    ]
