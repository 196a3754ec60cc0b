"""CZII CSV: the blocks of plain lines split at once (adapters/czii_csv.py, _plain_block) read
exactly as csv.reader line by line reads them: the same chunks, values, line numbers, warnings
and errors, on files made to trip it (blank lines, CR and CRLF ends, a byte order mark, quotes,
padded fields, missing values, other widths, bad numbers and bytes, block edges anywhere)."""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from picks.adapters import czii_csv
from picks.core.tomograms import Tomogram, TomogramSet
from picks.plugins.adapter import ReadContext
from picks.workflows.importing import read_chunks

NAMES = ["TS_01", "TS_2", " TS_3 ", "β-tomo", "TS 4", "TS_5\t"]
CLASSES = ["ribosome", "apo-ferritin", "", " virus-like-particle ", "Beta-Amylase", "lysozyme"]
ODD_LINES = [
    "",
    "   ",
    "\t",
    " , , ",
    "{commas}",
    "{row},extra",
    "{short}",
    "{row_oops}",
    "{row_no_x}",
    "{row_quoted}",
    "{row_quoted_comma}",
    "{row_multiline}",
    "{row_nul}",
    "{row_long}",
    "{row_padded}",
    "{row_na}",
    "{row_inf}",
    "{row_beta}",
]


def _file(rng: random.Random, n: int, odd: float) -> bytes:
    columns = ["id", "experiment", "particle_type", "x", "y", "z"]
    if rng.random() < 0.7:
        columns.append("score")
    if rng.random() < 0.2:
        columns.append("comment")
    if rng.random() < 0.3:
        rng.shuffle(columns)
    header = ",".join(f" {c.upper()} " if rng.random() < 0.1 else c for c in columns)
    lines = [header]
    for i in range(n):
        values = {
            "id": str(i),
            "experiment": rng.choice(NAMES[:2] if rng.random() < 0.9 else NAMES),
            "particle_type": rng.choice(CLASSES[:2] if rng.random() < 0.9 else CLASSES),
            "x": f"{rng.uniform(0, 6000):.{rng.choice([0, 3, 17])}f}",
            "y": repr(rng.uniform(-10, 6000)),
            "z": rng.choice([f"{rng.uniform(0, 2000):.3f}", "1e3", "-0.0", "12"]),
            "score": rng.choice([f"{rng.random():.5f}", "1", "0"]),
            "comment": "c",
        }
        row = ",".join(values[c] for c in columns)
        if rng.random() < odd:
            template = rng.choice(ODD_LINES)
            score = values["score"]
            row = template.format(
                commas="," * (len(columns) - 1),
                row=row,
                short=",".join(values[c] for c in columns[:-1]),
                row_oops=row.replace(values["x"], "oops", 1),
                row_no_x=row.replace(values["x"], " ", 1),
                row_quoted=row.replace(values["experiment"], f'"{values["experiment"]}"', 1),
                row_quoted_comma=row.replace(values["experiment"], '"TS,01"', 1),
                row_multiline=row.replace(values["experiment"], '"TS\n01"', 1),
                row_nul=row.replace(values["experiment"], "TS\x0001", 1),
                row_long=row.replace(values["experiment"], "r" * 140_000, 1),
                row_padded=",".join(f" {values[c]}\t" for c in columns),
                row_na=row.replace(score, rng.choice(["", "nan", "NA", "<NA>", "None", " "]))
                if "score" in columns
                else row,
                row_inf=row.replace(values["y"], rng.choice(["inf", "-1e999", "nan"]), 1),
                row_beta=row.replace(values["particle_type"], "β-amylase", 1),
            )
        lines.append(row)
    end = rng.choice(["\n", "\n", "\r\n", "\r"])
    text = end.join(lines) + (end if rng.random() < 0.8 else "")
    data = text.encode()
    if rng.random() < 0.15:
        data = b"\xef\xbb\xbf" + data
    if rng.random() < 0.05:
        at = rng.randrange(len(data))
        data = data[:at] + b"\xff" + data[at:]
    return data


def _read(path: Path, chunk_size: int, *, registered: bool = False, **options) -> tuple:
    # registered: names are resolved against TS_01 (others are errors), its extent checked
    known = [Tomogram("TS_01", None, 10.0, (600, 600, 200))] if registered else []
    ctx = ReadContext(path=path, tomograms=TomogramSet(known), **options)
    frames, error = [], None
    try:
        frames = list(read_chunks(czii_csv.CziiCsvAdapter(), ctx, chunk_size))
    except Exception as exc:  # the error (type and message) must be the same too
        error = (type(exc).__name__, str(exc))
    return frames, error, list(ctx.warnings)


def _same(fast: tuple, slow: tuple) -> None:
    frames, error, warnings = fast
    assert (error, warnings, len(frames)) == (slow[1], slow[2], len(slow[0]))
    for a, b in zip(frames, slow[0], strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
        for column in a.columns:
            if a[column].dtype == object:
                assert list(map(type, a[column])) == list(map(type, b[column]))
            if a[column].dtype == np.float64:
                signs = np.signbit(a[column].to_numpy()), np.signbit(b[column].to_numpy())
                assert (signs[0] == signs[1]).all()


def _slow(monkeypatch: pytest.MonkeyPatch, path: Path, chunk_size: int, **options) -> tuple:
    with monkeypatch.context() as patch:
        patch.setattr(czii_csv, "_plain_block", lambda *args: None)  # csv.reader only
        return _read(path, chunk_size, **options)


@pytest.mark.parametrize("seed", range(60))
def test_fast_path_reads_as_csv_reader(tmp_path, monkeypatch, seed: int) -> None:
    rng = random.Random(seed)
    # blocks of a few lines: their edges fall anywhere (inside quoted fields too)
    monkeypatch.setattr(czii_csv, "BLOCK_LINES", rng.choice([1, 2, 3, 7, 64]))
    path = tmp_path / "picks.csv"
    path.write_bytes(_file(rng, rng.choice([0, 1, 3, 20, 150]), odd=rng.choice([0, 0.03, 0.3])))
    for chunk_size in (1, 4, 50, sys.maxsize):
        options = {"particle": "lysozyme"} if chunk_size == 4 else {}
        options["registered"] = chunk_size == 50
        if chunk_size == 1:
            options["options"] = {"units": "voxel"}
            options["voxel_size"] = 10.0
        _same(_read(path, chunk_size, **options), _slow(monkeypatch, path, chunk_size, **options))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n\n",
        " ,\n",
        "id,experiment,particle_type,x,y,z\n",
        "id,experiment,particle_type,x,y,z\n\n\n",
        "id,experiment,particle_type,x,y,z\n0,TS_01,ribosome,1,2,3",
        "id,experiment,particle_type,x,y,z,score\n0,TS_01,ribosome,1,2,3,\n1,TS_01,,4,5,6,NA\n",
        "\ufeffid,experiment,particle_type,x,y,z\r\n0, TS_01 , ribosome ,1 , 2,3\r\n",
        "id,experiment,particle_type,x,y,z\r0,TS_01,ribosome,1,2,3\r\r1,TS_01,ribosome,4,5,6\r",
        "id,experiment,particle_type,x,y,z\n,,,,,\n0,TS_01,ribosome,1,2,3\n , , , , , \n",
        'id,experiment,particle_type,x,y,z\n0,"TS_01",ribosome,1,2,3\n1,TS_01,"a\nb",4,5,6\n',
        "id,experiment,particle_type,x,y,z\n0,TS_01,ribosome,1,2\n",
        "id,experiment,particle_type,x,y,z\n0,TS_01,ribosome,1,2,3,4\n",
        "id,experiment,particle_type,x,y,z\n0,TS_01,ribosome,x,2,3\n1,TS_01,ribosome,1,y,3\n",
        "x,y,z,particle_type,experiment,extra\n1,2,3,ribosome,TS_01,e\n4,5,6,,TS_02,\n",
    ],
)
def test_small_files(tmp_path, monkeypatch, text: str) -> None:
    path = tmp_path / "picks.csv"
    path.write_bytes(text.encode())
    for block in (1, 2, 1000):
        monkeypatch.setattr(czii_csv, "BLOCK_LINES", block)
        for chunk_size in (1, 2, sys.maxsize):
            _same(_read(path, chunk_size), _slow(monkeypatch, path, chunk_size))


def test_plain_blocks_are_split_at_once(tmp_path, monkeypatch) -> None:
    """The benchmark's kind of file takes the fast path, every block of it."""
    lines = ["id,experiment,particle_type,x,y,z,score"]
    lines += [
        f"{i},TS_{i % 7:02d},ribosome,{i}.25,{2 * i}.5,{i % 300}.125,0.{i}" for i in range(5000)
    ]
    path = tmp_path / "plain.csv"
    path.write_text("\n".join(lines) + "\n")
    calls = []
    split = czii_csv._plain_block

    def counted(*args):
        block = split(*args)
        calls.append(block is not None)
        return block

    monkeypatch.setattr(czii_csv, "BLOCK_LINES", 1000)
    monkeypatch.setattr(czii_csv, "_plain_block", counted)
    fast = _read(path, 2000)
    assert calls == [True] * 5
    _same(fast, _slow(monkeypatch, path, 2000))
    assert [len(f) for f in fast[0]] == [2000, 2000, 1000]
    assert fast[0][0]["record"].tolist()[:3] == [2, 3, 4]
