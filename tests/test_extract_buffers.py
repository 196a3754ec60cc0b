"""Extraction's reused buffers give the bytes of the plain computation.

The faster paths of :mod:`picks.consensus.cnn.boxes` (scratch arrays in ``_sample``, boxes
written straight into their batch and their final slot) must not change a single bit: the
CNN's training and decisions are compared byte for byte before and after such changes. The
references here are the plain expressions they replaced."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from test_extract import points, write_mrc

from picks.consensus.cnn import boxes as bx
from picks.consensus.cnn.boxes import EdgePolicy, Geometry, extract, iter_boxes


def plain_sample(region, origin, lo, hi, coords, sigma) -> np.ndarray:
    """The separable trilinear interpolation as one expression per axis (the reference)."""
    sub = region[
        lo[0] - origin[0] : hi[0] - origin[0],
        lo[1] - origin[1] : hi[1] - origin[1],
        lo[2] - origin[2] : hi[2] - origin[2],
    ]
    if sigma:
        sub = ndimage.gaussian_filter(sub, sigma, mode="nearest")
    local = [c - o for c, o in zip(coords, lo, strict=True)]
    out = sub
    for axis in (2, 1, 0):
        c = local[axis]
        n = out.shape[axis]
        i0 = np.clip(np.floor(c).astype(np.intp), 0, max(n - 2, 0))
        w = (c - i0).astype(np.float32)
        i1 = np.minimum(i0 + 1, n - 1)
        shape = [1, 1, 1]
        shape[axis] = len(c)
        w = w.reshape(shape)
        out = np.take(out, i0, axis=axis) * (1.0 - w) + np.take(out, i1, axis=axis) * w
    return out


def plain_boxes(pts, tomo, geometry, edge) -> tuple[np.ndarray, np.ndarray]:
    """Every box of ``pts`` (one tomogram) the plain way: (row positions, float32 boxes)."""
    with bx.open_volume(tomo, target_voxel_size=geometry.voxel_size) as volume:
        region = volume.region((0, 0, 0), volume.shape)
        xyz = pts[["x", "y", "z"]].to_numpy(float)
        coords = bx._axis_coordinates(volume, xyz, geometry)
        step = geometry.voxel_size / volume.voxel_size
        sigma = (step - 1.0) / 2.0 if step > 1.25 else 0.0
        pad = int(np.ceil(3 * sigma)) + 1 if sigma else 0
        core = slice(geometry.border, geometry.border + geometry.box)
        index, out = [], []
        axes = list(zip(coords, volume.shape, strict=True))
        for k in range(len(pts)):
            inside = [(c[k] >= -0.5) & (c[k] <= n - 0.5) for c, n in axes]
            centre = (xyz[k, ::-1] - volume.origin) / volume.voxel_size
            if ((centre < -0.5) | (centre > np.asarray(volume.shape) - 0.5)).any():
                continue  # centre outside: dropped
            if 1.0 - np.prod([ins[core].mean() for ins in inside]) > edge.limit + 1e-9:
                continue  # too much of the box outside: dropped
            folded = [bx._fold(c[k], n, edge.mode) for c, n in axes]
            lo = np.maximum([int(np.floor(f.min())) - pad for f in folded], 0)
            hi = np.minimum([int(np.floor(f.max())) + 2 + pad for f in folded], volume.shape)
            box = plain_sample(region, np.zeros(3, int), lo, hi, folded, sigma)
            mask = inside[0][:, None, None] & inside[1][None, :, None] & inside[2][None, None, :]
            if edge.mode == "pad" and not mask.all():
                box[~mask] = box[mask].mean()
            mean, sd = box[core, core, core].mean(), box[core, core, core].std()
            if not np.isfinite(sd) or sd < 1e-6 * max(1.0, abs(mean)):
                continue
            index.append(k)
            out.append(((box - mean) / sd).astype(np.float32))
        return np.asarray(index), np.stack(out)


@pytest.fixture
def tomo(tmp_path):
    rng = np.random.default_rng(3)
    data = rng.standard_normal((40, 56, 64)).astype(np.float32)
    data[:, :, 40:] = 2.0  # a constant slab: boxes there have no contrast and are dropped
    return write_mrc(tmp_path / "t.mrc", data, 10.0)


def scattered(n: int, seed: int = 0):
    """Points all over the volume: inside, across every face, on the constant slab."""
    rng = np.random.default_rng(seed)
    xyz = rng.uniform([-20, -20, -20], [660, 580, 420], size=(n, 3))
    xyz[:3] = [[515, 280, 200], [520, 300, 190], [525, 260, 210]]  # constant: dropped
    return points("t", xyz)


@pytest.mark.parametrize("sigma", [0.0, 0.9])
def test_sample_with_scratch_equals_the_plain_expression(sigma) -> None:
    rng = np.random.default_rng(1)
    region = rng.standard_normal((30, 31, 32)).astype(np.float32)
    scratch = bx._Scratch()
    for k in range(20):
        size = 12 + k % 5  # boxes of several sizes through the same scratch arrays
        start = rng.uniform(4.5, 6.5, size=3)
        coords = [s + np.arange(size) * rng.uniform(0.8, 1.2) for s in start]
        lo = np.array([int(np.floor(c.min())) - 4 for c in coords])
        hi = np.array([int(np.floor(c.max())) + 6 for c in coords])
        expected = plain_sample(region, np.zeros(3, int), lo, hi, coords, sigma)
        for work in (None, scratch):
            got = bx._sample(region, np.zeros(3, int), lo, hi, coords, sigma, "separable", work)
            assert got.dtype == np.float32 and got.tobytes() == expected.tobytes()


@pytest.mark.parametrize(
    ("border", "voxel", "mode"),
    [(0, 11.7, "pad"), (2, 11.7, "pad"), (0, 11.7, "reflect"), (0, 30.0, "reflect")],
)
def test_batches_hold_the_plain_boxes_bit_for_bit(tomo, border, voxel, mode) -> None:
    geometry = Geometry(16, voxel, border)
    edge = EdgePolicy(mode, 0.75)
    pts = scattered(150)
    index, expected = plain_boxes(pts, tomo, geometry, edge)
    batches = list(iter_boxes(pts, {"t": tomo}, geometry, edge=edge, batch_size=32))
    got_index = np.concatenate([b.index for b in batches])
    order = np.argsort(got_index)
    got = np.concatenate([b.boxes for b in batches])[order]
    np.testing.assert_array_equal(got_index[order], index)
    assert got.tobytes() == expected.tobytes()
    if voxel < 20:  # (the coarse boxes reach past the constant slab)
        assert {0, 1, 2}.isdisjoint(got_index)  # the constant boxes were dropped
    # float16 batches: the float32 values, rounded once
    half = list(iter_boxes(pts, {"t": tomo}, geometry, edge=edge, batch_size=32, dtype=np.float16))
    assert np.concatenate([b.boxes for b in half])[order].tobytes() == (
        expected.astype(np.float16).tobytes()
    )


def test_extract_fills_rows_in_order_and_closes_the_gaps(tomo) -> None:
    geometry = Geometry(16, 11.7, 2)
    pts = scattered(120, seed=4)
    batches = list(iter_boxes(pts, {"t": tomo}, geometry, batch_size=16))
    index = np.concatenate([b.index for b in batches])
    order = np.argsort(index, kind="stable")
    plain = np.concatenate([b.boxes for b in batches]).astype(np.float16)[order]
    dropped = sorted(d for b in batches for d in b.dropped)
    assert dropped  # gaps to close: some rows got no box
    got = extract(pts, {"t": tomo}, geometry, batch_size=16)
    np.testing.assert_array_equal(got.index, index[order])
    assert got.boxes.tobytes() == plain.tobytes() and got.dropped == dropped
    # into a caller's array with room after the boxes: the same boxes, its first rows
    size = geometry.size
    room = np.full((len(pts) + 7, size, size, size), np.nan, dtype=np.float16)
    into = extract(pts, {"t": tomo}, geometry, batch_size=16, out=room)
    assert np.shares_memory(into.boxes, room) and into.boxes.tobytes() == plain.tobytes()
    with pytest.raises(bx.PicksError, match="`out`"):
        extract(pts, {"t": tomo}, geometry, out=room[:10])


def test_close_gaps_moves_each_kept_row_down_in_place() -> None:
    boxes = np.arange(10 * 8, dtype=np.float32).reshape(10, 2, 2, 2)
    kept = np.array([0, 1, 3, 4, 7, 9])
    expected = boxes[kept].copy()
    bx._close_gaps(boxes, kept)
    np.testing.assert_array_equal(boxes[: len(kept)], expected)
