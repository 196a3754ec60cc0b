"""Generic checks run on every registered adapter, so that a new one cannot skip them.

* every writer: write a fixed set of picks in two registered tomograms with
  :func:`picks.workflows.outputs.write_picks`, read every written file back with the same adapter,
  and find the same positions (within 1e-3 Å) in the same tomograms;
* every reader: an empty file and a file of random bytes, named with the adapter's own
  extension, give one :class:`InputFormatError` naming the file (never another exception), and
  sniffing them neither raises nor answers outside 0..1.

Adapter-specific behaviour (scores, classes, angles, conventions) is tested in the adapter's
own test file; this one only holds the contract every adapter shares.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from picks.core import picks as canonical
from picks.core.errors import InputFormatError
from picks.core.tomograms import Tomogram, TomogramSet
from picks.plugins.adapter import ReadContext, WriteContext
from picks.plugins.manager import get_registry
from picks.workflows.outputs import write_picks

REGISTRY = get_registry(load_entrypoints=False, local=False)
VOXEL = 10.0
TOMOGRAMS = [
    Tomogram("TS_01", None, VOXEL, (100, 80, 60)),
    Tomogram("TS_02", None, VOXEL, (90, 90, 40)),
]
# Å, inside both extents, off the voxel grid, distinct x within each tomogram.
POSITIONS = {
    "TS_01": [(12.5, 33.25, 101.0), (480.125, 702.5, 350.75), (990.0, 10.0, 580.5)],
    "TS_02": [(250.0, 250.0, 250.0), (63.375, 871.0, 12.0)],
}
PARTICLES = ["ribosome", "apo-ferritin", "ribosome", "apo-ferritin", "ribosome"]
# Writers of 2D formats (no z): their picks must share one slice per tomogram, and the slice is
# given back on reading with --option z=SLICE (voxels).
TWO_D_WRITERS = {"eman-box"}
SLICE = 27.0


def tomogram_set() -> TomogramSet:
    return TomogramSet(TOMOGRAMS)


def fixed_picks(flat: bool) -> pd.DataFrame:
    rows = [(name, *xyz) for name, points in POSITIONS.items() for xyz in points]
    frame = pd.DataFrame(rows, columns=["tomogram", "x", "y", "z"])
    if flat:
        frame["z"] = SLICE * VOXEL
    return canonical.make(
        {
            **{c: frame[c] for c in frame},
            "particle": PARTICLES,
            "score": np.linspace(0.2, 0.9, len(frame)),
            "record": np.arange(len(frame)),
        }
    )


def extension(adapter) -> str:
    return adapter.patterns[0].lstrip("*")


@pytest.mark.parametrize("name", REGISTRY.writers())
def test_writer_round_trip(name: str, tmp_path: Path):
    adapter = REGISTRY.get(name)
    flat = name in TWO_D_WRITERS
    picks = fixed_picks(flat)
    out = tmp_path / "out"
    if adapter.layout == "file":
        out = tmp_path / f"picks{adapter.extension or extension(adapter)}"
    written = write_picks(picks, adapter, out, WriteContext(tomograms=tomogram_set()))
    assert written, f"{name} wrote nothing"
    options = {"z": str(SLICE)} if flat else {}
    frames = []
    for path in written:
        ctx = ReadContext(path=path, tomograms=tomogram_set(), options=dict(options))
        frame = canonical.normalise(adapter.read(path, ctx))
        canonical.validate(frame)
        frames.append(frame)
    back = pd.concat(frames, ignore_index=True)
    assert sorted(back["tomogram"].unique()) == ["TS_01", "TS_02"], name
    for tomogram, expected in picks.groupby("tomogram"):
        got = back[back["tomogram"] == tomogram].sort_values("x")
        want = expected.sort_values("x")
        assert len(got) == len(want), f"{name}: {tomogram}"
        np.testing.assert_allclose(
            got[canonical.COORDS].to_numpy(dtype=float),
            want[canonical.COORDS].to_numpy(dtype=float),
            atol=1e-3,
            rtol=0,
            err_msg=f"{name}: {tomogram}",
        )


def random_bytes(seed: int, size: int = 600) -> bytes:
    return np.random.default_rng(seed).bytes(size)


BAD_CONTENT = {
    "empty": b"",
    "random-bytes": random_bytes(5),
    "random-text": bytes(np.random.default_rng(6).integers(32, 127, 600, dtype=np.uint8)),
}


@pytest.mark.parametrize("kind", sorted(BAD_CONTENT))
@pytest.mark.parametrize("name", REGISTRY.names())
def test_bad_file_is_one_clean_error(name: str, kind: str, tmp_path: Path):
    adapter = REGISTRY.get(name)
    path = tmp_path / f"TS_01{extension(adapter)}"
    path.write_bytes(BAD_CONTENT[kind])
    certainty = adapter.sniff(path)
    assert 0.0 <= float(certainty) <= 1.0, name
    ctx = ReadContext(path=path, tomograms=tomogram_set(), voxel_size=VOXEL)
    with pytest.raises(InputFormatError) as info:
        adapter.read(path, ctx)
    assert str(path) in str(info.value), name
