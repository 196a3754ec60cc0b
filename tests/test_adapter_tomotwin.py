"""TomoTwin .tloc (pickled DataFrame) through the restricted unpickler: real fixtures, refused
pickles, bad input."""

from __future__ import annotations

import os
import pickle
from functools import partial
from pathlib import Path

import pytest
from adapter_support import read_checked

from picks.adapters.tomotwin import TomoTwinAdapter
from picks.core.errors import InputFormatError
from picks.core.tomograms import Tomogram, TomogramSet
from picks.workflows.importing import import_file

ADAPTER = TomoTwinAdapter()


read = partial(read_checked, ADAPTER)


@pytest.fixture
def no_plain_unpickling(monkeypatch):
    """Make sure the reader never falls back to pickle.load/loads."""

    def refuse(*args, **kwargs):
        raise AssertionError("pickle.load must not be used")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)


def test_valid_tloc(formats_dir: Path, no_plain_unpickling):
    frame, ctx = read(formats_dir / "tomotwin" / "valid.tloc", voxel_size=10.0)
    assert len(frame) == 14 and not ctx.warnings
    # Row 0: X, Y, Z = 86.06830833820544, 26.546134394257663, 98.6555819494579 voxel centres
    #   (0-based) × 10 Å = 860.6830833820544, 265.46134394257663, 986.555819494579.
    assert frame.loc[0, ["x", "y", "z"]].to_numpy(dtype=float) == pytest.approx(
        [860.6830833820544, 265.46134394257663, 986.555819494579], rel=1e-12
    )
    # Row 13: 76.36238444521992, 94.5414205396877, 10.350122647658763 -> × 10
    assert frame.loc[13, ["x", "y", "z"]].to_numpy(dtype=float) == pytest.approx(
        [763.6238444521992, 945.414205396877, 103.50122647658763], rel=1e-12
    )
    # predicted_class 1 -> attrs["references"][1] = "cluster_2.pkl"; 2 -> "cluster_3.pkl".
    assert frame.loc[0, "particle"] == "cluster_2" and frame.loc[8, "particle"] == "cluster_3"
    assert frame.loc[0, "score"] == 0.6396484375  # metric_best, float32 exactly
    assert (frame["score_field"] == "metric_best").all()
    assert (frame["particle_field"] == "predicted_class").all()
    assert set(frame["tomogram"]) == {"valid"}  # no filename column: the .tloc name
    assert frame["record"].tolist() == list(range(14))
    assert '"size":60000' in frame.loc[13, "original"]


def test_valid_missing_dim_z(formats_dir: Path, no_plain_unpickling):
    frame, _ = read(formats_dir / "tomotwin" / "valid_missing_dim_z.tloc", voxel_size=10.0)
    # The filename column names the tomogram: tiltseries_rec.mrc -> tiltseries_rec.
    assert set(frame["tomogram"]) == {"tiltseries_rec"}
    # Row 8: (76, 16, 92) voxels × 10 = (760, 160, 920); class from predicted_class_name.
    assert frame.loc[8, ["x", "y", "z"]].tolist() == [760.0, 160.0, 920.0]
    assert frame.loc[8, "particle"] == "cluster_3"
    frame, _ = read(
        formats_dir / "tomotwin" / "valid_missing_dim_z.tloc", voxel_size=10.0, tomogram="TS_01"
    )
    assert set(frame["tomogram"]) == {"TS_01"}


def test_labels_and_binning(formats_dir: Path):
    path = formats_dir / "tomotwin" / "valid.tloc"
    frame, _ = read(path, voxel_size=10.0, options={"labels": "cluster_2=ribosome,2=apoferritin"})
    assert frame.loc[0, "particle"] == "ribosome" and frame.loc[8, "particle"] == "apo-ferritin"
    tomos = TomogramSet([Tomogram("valid", None, 5.0, (200, 200, 200))])
    frame, _ = read(path, tomograms=tomos, binning=2.0)
    # Picked at 10 Å on a 5 Å reference: (i + 0.5)·10 − 0.5·5 = 10·i + 2.5
    assert frame.loc[0, "x"] == pytest.approx(860.6830833820544 + 2.5)


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_refuses_code_in_the_pickle(tmp_path, store, registry):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.tloc"
    path.write_bytes(pickle.dumps(_Exploit(marker), protocol=4))
    with pytest.raises(InputFormatError) as info:
        import_file(store, path, registry, adapter="tomotwin-tloc", voxel_size=10.0)
    message = str(info.value)
    assert str(path) in message and "refusing to unpickle" in message and ".system" in message
    assert not marker.exists()
    assert store.count("sources") == 0


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "empty file"),
        (pickle.dumps({"X": [1.0]}, protocol=4), "not a pandas DataFrame"),
        ("truncated", "cannot read the pickled table"),
        ("no_xyz", "table lacks column(s) ['Z']"),
        (b"X Y Z\n1 2 3\n", "cannot read the pickled table"),
    ],
)
def test_bad_input(tmp_path, rejects_import, formats_dir, content, expected):
    path = tmp_path / "bad.tloc"
    fixture = (formats_dir / "tomotwin" / "valid.tloc").read_bytes()
    if content == "truncated":
        content = fixture[: len(fixture) // 2]
    elif content == "no_xyz":
        # The fixture with its column label 'Z' renamed in the pickle bytes ('Z' -> 'Q').
        content = fixture.replace(b"\x8c\x01Z\x94", b"\x8c\x01Q\x94")
        assert content != fixture
    path.write_bytes(content)
    info = rejects_import(path, adapter="tomotwin-tloc", voxel_size=10.0)
    assert str(path) in str(info.value) and expected in str(info.value)


@pytest.mark.parametrize("name", ["valid.tloc", "valid_missing_dim_z.tloc"])
def test_detect(registry, formats_dir, name):
    assert registry.detect(formats_dir / "tomotwin" / name).name == "tomotwin-tloc"
