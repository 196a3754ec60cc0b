"""Subtomogram extraction: geometry, resampling, edges, streaming, readers (no TensorFlow)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from picks.consensus.cnn.boxes import (
    EdgePolicy,
    Geometry,
    extract,
    fingerprint,
    geometry_for,
    iter_boxes,
)
from picks.consensus.cnn.volumes import open_volume
from picks.core.errors import PicksError
from picks.core.tomograms import Tomogram, read_tomogram


def write_mrc(path, data: np.ndarray, voxel_size: float) -> Tomogram:
    import mrcfile

    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = voxel_size
    return read_tomogram(path)


def write_zarr(path, levels: list[np.ndarray], voxel_size: float) -> Tomogram:
    """OME-Zarr 0.4 pyramid; level k is binned by 2**k (voxel centres shift by half a voxel)."""
    import zarr

    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    datasets = []
    for k, data in enumerate(levels):
        array = group.create_array(str(k), shape=data.shape, dtype="f4", chunks=(8, 16, 16))
        array[:] = data
        scale = voxel_size * 2**k
        shift = (scale - voxel_size) / 2
        datasets.append(
            {
                "path": str(k),
                "coordinateTransformations": [
                    {"type": "scale", "scale": [scale] * 3},
                    {"type": "translation", "translation": [shift] * 3},
                ],
            }
        )
    axes = [{"name": a, "type": "space", "unit": "angstrom"} for a in "zyx"]
    group.attrs["multiscales"] = [{"version": "0.4", "axes": axes, "datasets": datasets}]
    return read_tomogram(path)


def points(name: str, xyz) -> pd.DataFrame:
    xyz = np.atleast_2d(np.asarray(xyz, dtype=float))
    return pd.DataFrame({"tomogram": name, "x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]})


def gaussian_volume(shape, centre_zyx, sigma, noise=0.0, seed=0) -> np.ndarray:
    zz, yy, xx = np.indices(shape, dtype=float)
    r2 = (zz - centre_zyx[0]) ** 2 + (yy - centre_zyx[1]) ** 2 + (xx - centre_zyx[2]) ** 2
    vol = np.exp(-r2 / (2 * sigma**2))
    if noise:
        vol += noise * np.random.default_rng(seed).standard_normal(shape)
    return vol.astype(np.float32)


def test_geometry_covers_the_largest_particle() -> None:
    g = geometry_for([60.0, 150.0], box=32, margin=1.25)
    assert g.side == pytest.approx(2 * 150 * 1.25)
    assert g.voxel_size == pytest.approx(375 / 32)
    fixed = geometry_for([60.0], box=24, working_voxel_size=8.0, border=2)
    assert (fixed.voxel_size, fixed.side, fixed.size) == (8.0, 192.0, 28)
    with pytest.raises(PicksError, match="too small"):
        geometry_for([60.0], box=4)
    with pytest.raises(PicksError, match="no particle radius"):
        geometry_for([])
    with pytest.raises(PicksError, match="edge policy"):
        EdgePolicy("wrap")


def test_known_voxel_lands_at_the_box_centre(tmp_path) -> None:
    vol = np.zeros((30, 40, 50), np.float32)
    vol[12, 17, 23] = 1.0  # z, y, x
    tomo = write_mrc(tmp_path / "t.mrc", vol, 10.0)
    # odd box at the native voxel size: the peak is exactly the centre voxel
    (batch,) = list(iter_boxes(points("t", [230.0, 170.0, 120.0]), [tomo], Geometry(9, 10.0)))
    assert batch.boxes.shape == (1, 9, 9, 9)
    assert np.unravel_index(np.argmax(batch.boxes[0]), (9, 9, 9)) == (4, 4, 4)
    # the box is symmetric about its centre (no half-voxel shift), in every axis
    box = batch.boxes[0]
    assert np.allclose(box, box[::-1, ::-1, ::-1])


def test_resampling_is_exact_trilinear_on_float_coordinates(tmp_path) -> None:
    """A linear ramp is reproduced exactly by trilinear interpolation at any position."""
    z, y, x = np.indices((20, 30, 40), dtype=float)
    ramp = (0.5 * x + 2.0 * y - 1.5 * z).astype(np.float32)
    tomo = write_mrc(tmp_path / "ramp.mrc", ramp, 10.0)
    g = Geometry(8, 7.3)  # finer than the tomogram, non-integer step
    centre = np.array([187.4, 143.9, 96.2])  # Å, between voxels
    (batch,) = list(iter_boxes(points("ramp", centre), [tomo], g))
    offsets = (np.arange(8) - 3.5) * 7.3 / 10.0
    cx, cy, cz = centre / 10.0
    zz, yy, xx = np.meshgrid(cz + offsets, cy + offsets, cx + offsets, indexing="ij")
    expected = 0.5 * xx + 2.0 * yy - 1.5 * zz
    expected = (expected - expected.mean()) / expected.std()
    np.testing.assert_allclose(batch.boxes[0], expected, atol=1e-4)


@pytest.mark.parametrize("voxel", [7.0, 10.0, 23.0])
def test_separable_interpolation_equals_map_coordinates(tmp_path, voxel) -> None:
    vol = np.random.default_rng(1).standard_normal((40, 48, 56)).astype(np.float32)
    tomo = write_mrc(tmp_path / "n.mrc", vol, 10.0)
    pts = points("n", np.random.default_rng(2).uniform([150, 150, 150], [400, 330, 250], (5, 3)))
    g = Geometry(12, voxel)
    a = extract(pts, [tomo], g, dtype=np.float32, interp="separable")
    b = extract(pts, [tomo], g, dtype=np.float32, interp="map_coordinates")
    np.testing.assert_array_equal(a.index, b.index)
    np.testing.assert_allclose(a.boxes, b.boxes, atol=2e-5)


def test_different_voxel_sizes_give_the_same_box(tmp_path) -> None:
    """One object imaged at 10 Å and at 5 Å/voxel gives nearly the same box (working size 12 Å)."""
    centre = np.array([310.0, 250.0, 190.0])  # Å (x, y, z)
    coarse = gaussian_volume((40, 50, 60), centre[::-1] / 10.0, 40.0 / 10.0)
    fine = gaussian_volume((80, 100, 120), centre[::-1] / 5.0, 40.0 / 5.0)
    t1 = write_mrc(tmp_path / "coarse.mrc", coarse, 10.0)
    t2 = write_mrc(tmp_path / "fine.mrc", fine, 5.0)
    g = Geometry(16, 12.0)
    b1 = extract(points("coarse", centre), [t1], g, dtype=np.float32).boxes[0]
    b2 = extract(points("fine", centre), [t2], g, dtype=np.float32).boxes[0]
    assert np.corrcoef(b1.ravel(), b2.ravel())[0, 1] > 0.999
    assert np.unravel_index(np.argmax(b2), b2.shape) in {
        (z, y, x) for z in (7, 8) for y in (7, 8) for x in (7, 8)
    }


def test_boxes_are_normalised_and_float16_by_default(tmp_path) -> None:
    vol = 5 + 3 * np.random.default_rng(0).standard_normal((30, 30, 30)).astype(np.float32)
    tomo = write_mrc(tmp_path / "t.mrc", vol, 10.0)
    out = extract(points("t", [[150, 150, 150], [140, 160, 150]]), [tomo], Geometry(10, 10.0))
    assert out.boxes.dtype == np.float16 and out.boxes.shape == (2, 10, 10, 10)
    box = out.boxes.astype(np.float64)
    np.testing.assert_allclose(box.mean(axis=(1, 2, 3)), 0, atol=1e-2)
    np.testing.assert_allclose(box.std(axis=(1, 2, 3)), 1, atol=1e-2)


def test_edge_policies_pad_reflect_drop_and_every_drop_has_a_reason(tmp_path) -> None:
    vol = np.random.default_rng(3).standard_normal((20, 40, 40)).astype(np.float32) + 2.0
    tomo = write_mrc(tmp_path / "e.mrc", vol, 10.0)
    pts = points(
        "e",
        [
            [200, 200, 100],  # inside
            [20, 200, 100],  # box partly outside in x (2 of 10 sample planes)
            [5, 5, 5],  # corner: about 7/8 outside
            [200, 200, 500],  # centre beyond z
        ],
    )
    pts.loc[4] = ["missing", 100.0, 100.0, 100.0]
    pts.loc[5] = ["e", np.nan, 1.0, 1.0]
    g = Geometry(10, 10.0)

    pad = extract(pts, [tomo], g, dtype=np.float32, edge=EdgePolicy("pad", 0.5))
    assert list(pad.index) == [0, 1]
    reasons = dict(pad.dropped)
    assert sorted(reasons) == [2, 3, 4, 5]
    assert "outside the tomogram" in reasons[2] and "limit 50%" in reasons[2]
    assert "centre outside" in reasons[3]
    assert "no tomogram volume" in reasons[4]
    assert "not a finite number" in reasons[5]
    # padded samples hold the box mean, i.e. 0 after normalisation (x samples at -2.5, -1.5 voxels)
    box = pad.boxes[1]
    x_coords = 2.0 + (np.arange(10) - 4.5)
    outside = x_coords < -0.5
    assert outside.sum() == 2
    np.testing.assert_allclose(box[:, :, outside], 0.0, atol=1e-5)

    reflect = extract(pts, [tomo], g, dtype=np.float32, edge=EdgePolicy("reflect", 0.5))
    box = reflect.boxes[1]
    # mirrored at the face x = -0.5: sample x=-1.5 equals x=0.5, x=-2.5 equals x=1.5
    np.testing.assert_allclose(box[:, :, 0], box[:, :, 4], atol=1e-5)
    np.testing.assert_allclose(box[:, :, 1], box[:, :, 3], atol=1e-5)

    drop = extract(pts, [tomo], g, dtype=np.float32, edge=EdgePolicy("drop"))
    assert list(drop.index) == [0]
    assert "edge policy drop" in dict(drop.dropped)[1]
    loose = extract(pts, [tomo], g, dtype=np.float32, edge=EdgePolicy("pad", 0.9))
    assert list(loose.index) == [0, 1, 2]


def test_streaming_batches_bounded_and_reader_independent(tmp_path) -> None:
    vol = np.random.default_rng(4).standard_normal((40, 60, 70)).astype(np.float32)
    tomo = write_mrc(tmp_path / "s.mrc", vol, 10.0)
    other = write_mrc(tmp_path / "u.mrc", vol[::-1].copy(), 10.0)
    rng = np.random.default_rng(5)
    pts = pd.concat(
        [
            points("s", rng.uniform(80, [620, 520, 320], (23, 3))),
            points("u", rng.uniform(80, [620, 520, 320], (9, 3))),
        ],
        ignore_index=True,
    )
    g = Geometry(12, 9.0)
    whole = extract(pts, [tomo, other], g, dtype=np.float32)
    assert len(whole.index) + len(whole.dropped) == len(pts)
    batches = list(iter_boxes(pts, [tomo, other], g, batch_size=5, max_region_voxels=4000))
    assert all(len(b.index) <= 5 for b in batches)
    seen = np.concatenate([b.index for b in batches])
    assert sorted(seen.tolist()) == whole.index.tolist()
    streamed = np.empty_like(whole.boxes)
    for b in batches:
        streamed[np.searchsorted(whole.index, b.index)] = b.boxes
    np.testing.assert_allclose(streamed, whole.boxes, atol=1e-6)
    slab = extract(pts, [tomo, other], g, dtype=np.float32, reader="slab")
    np.testing.assert_array_equal(slab.boxes, whole.boxes)


def test_region_reads_never_load_the_whole_volume(tmp_path) -> None:
    vol = np.zeros((64, 64, 64), np.float32)
    tomo = write_mrc(tmp_path / "big.mrc", vol, 10.0)
    reads: list[tuple] = []
    with open_volume(tomo) as volume:
        original = volume.region

        def spy(lo, hi):
            reads.append(tuple(int(h) - int(l_) for l_, h in zip(lo, hi, strict=True)))
            return original(lo, hi)

        volume.region = spy
        from picks.consensus.cnn import boxes as ex

        list(
            ex._tomogram_batches(
                volume,
                np.arange(1),
                np.array([[320.0, 320.0, 320.0]]),
                Geometry(8, 10.0),
                EdgePolicy(),
                8,
                "separable",
                np.dtype("f4"),
                10**6,
            )
        )
    assert reads and all(np.prod(r) < 12**3 for r in reads)


def test_ome_zarr_levels_and_mrc_agree(tmp_path) -> None:
    centre = np.array([330.0, 290.0, 210.0])
    vol = gaussian_volume((48, 64, 80), centre[::-1] / 10.0, 5.0, noise=0.01)
    binned = vol.reshape(24, 2, 32, 2, 40, 2).mean(axis=(1, 3, 5))
    mrc = write_mrc(tmp_path / "v.mrc", vol, 10.0)
    zarr_tomo = write_zarr(tmp_path / "v.zarr", [vol, binned], 10.0)
    assert zarr_tomo.shape == (80, 64, 48) and zarr_tomo.voxel_size == 10.0
    zarr_tomo = Tomogram("v", zarr_tomo.path, zarr_tomo.voxel_size, zarr_tomo.shape)
    mrc = Tomogram("v", mrc.path, mrc.voxel_size, mrc.shape)
    fine = Geometry(10, 10.0)
    a = extract(points("v", centre), [mrc], fine, dtype=np.float32).boxes[0]
    b = extract(points("v", centre), [zarr_tomo], fine, dtype=np.float32).boxes[0]
    np.testing.assert_allclose(a, b, atol=1e-5)
    with open_volume(zarr_tomo, target_voxel_size=20.0) as volume:
        assert volume.voxel_size == 20.0 and volume.origin == 5.0 and volume.shape == (24, 32, 40)
    coarse = Geometry(10, 20.0)
    a = extract(points("v", centre), [mrc], coarse, dtype=np.float32).boxes[0]
    b = extract(points("v", centre), [zarr_tomo], coarse, dtype=np.float32).boxes[0]
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.98


def test_fingerprint_changes_with_content(tmp_path) -> None:
    vol = np.zeros((8, 8, 8), np.float32)
    t = write_mrc(tmp_path / "f.mrc", vol, 10.0)
    first = fingerprint(t.path)
    assert first == fingerprint(t.path)
    vol[-1, -1, -1] = 1.0
    write_mrc(tmp_path / "f.mrc", vol, 10.0)
    assert fingerprint(t.path) != first


def test_volume_readers_stay_importable_from_boxes() -> None:
    """The readers moved to volumes.py; the old import path gives the same objects."""
    from picks.consensus.cnn import boxes, volumes

    for name in (
        "READERS",
        "Volume",
        "MrcMmapVolume",
        "MrcSlabVolume",
        "ZarrVolume",
        "open_volume",
    ):
        assert getattr(boxes, name) is getattr(volumes, name)
