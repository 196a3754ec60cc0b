"""Truth-free image statistics: beads several pickers agree on are rejected with tomograms."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage

from picks.consensus.image_features import (
    box_statistics,
    candidate_statistics,
    density_veto,
    robust_scores,
    typical_of_another_class,
    veto_from_statistics,
)
from picks.core.store import Store
from picks.core.tomograms import read_tomogram
from picks.workflows.aggregate import aggregate

VOXEL = 10.0
SHAPE = (48, 160, 256)  # z, y, x: x > 150 is empty background (noise samples)
RADIUS = 60.0  # Å: the class's particles
BEAD = 25.0  # Å: small and very dense


def _ball(shape, centre_vox, radius_vox):
    zz, yy, xx = np.indices(shape)
    d2 = sum((a - c) ** 2 for a, c in zip((xx, yy, zz), centre_vox, strict=True))
    return (d2 <= radius_vox**2).astype(np.float32)


def _bead_world(folder: Path, seed: int = 0):
    """One tomogram: 20 particles (density 1), 3 gold beads (density 25), noise; 3 pickers
    that all report every bead as a particle (agreement cannot reject them)."""
    import mrcfile

    rng = np.random.default_rng(seed)
    grid = [(x, y) for x in range(20, 150, 26) for y in range(20, 150, 26)]
    spots = [grid[i] for i in rng.permutation(len(grid))]
    particles = [(x * VOXEL, y * VOXEL, 24 * VOXEL) for x, y in spots[:20]]
    beads = [(x * VOXEL, y * VOXEL, 24 * VOXEL) for x, y in spots[20:23]]
    volume = np.zeros(SHAPE, dtype=np.float32)
    for p in particles:
        volume += _ball(SHAPE, [c / VOXEL for c in p], RADIUS / VOXEL)
    for b in beads:
        volume += 25.0 * _ball(SHAPE, [c / VOXEL for c in b], BEAD / VOXEL)
    volume = ndimage.gaussian_filter(volume, 1.0) + rng.normal(0, 0.6, SHAPE).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "TS_1.mrc"
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(volume.astype(np.float32))
        mrc.voxel_size = VOXEL
    inputs = []
    for label, recall in (("a", 0.95), ("b", 0.9), ("c", 0.85)):
        rows = [p for p in particles if rng.random() < recall] + beads
        rows = [tuple(np.asarray(r) + rng.normal(0, 5, 3)) for r in rows]
        lines = ["id,experiment,particle_type,x,y,z"]
        lines += [f"{i},TS_1,ribosome,{x:.1f},{y:.1f},{z:.1f}" for i, (x, y, z) in enumerate(rows)]
        (folder / f"{label}.csv").write_text("\n".join(lines) + "\n")
        inputs.append(f"{label}={folder / f'{label}.csv'}")
    return path, particles, beads, inputs


def _near(table: pd.DataFrame, points, reach: float) -> np.ndarray:
    xyz = table[["x", "y", "z"]].to_numpy(dtype=float)
    d = np.linalg.norm(xyz[:, None, :] - np.asarray(points)[None], axis=2)
    return d.min(axis=1) < reach


def test_box_statistics_do_not_depend_on_the_boxes_scale_or_offset():
    rng = np.random.default_rng(1)
    boxes = rng.normal(0, 1, (4, 20, 20, 20)).astype(np.float32)
    a = box_statistics(boxes)
    b = box_statistics(3.0 * boxes - 7.0)
    np.testing.assert_allclose(a.to_numpy(), b.to_numpy(), rtol=1e-4, atol=1e-4)


def test_image_statistics_flag_beads_and_spare_particles(tmp_path):
    path, particles, beads, _ = _bead_world(tmp_path)
    points = pd.DataFrame(particles + beads, columns=["x", "y", "z"])
    points.insert(0, "tomogram", "TS_1")
    points.insert(1, "particle", "ribosome")
    tomo = read_tomogram(path)
    stats = candidate_statistics(points, {"TS_1": tomo}, {"ribosome": RADIUS})
    assert stats.notna().all().all()
    z = robust_scores(stats, points["particle"])
    likely = np.ones(len(points), dtype=bool)  # the pickers agree on all of them
    z_likely = robust_scores(stats, points["particle"], likely, typical=likely)
    veto, warnings = density_veto(z, z_likely, points["particle"])
    assert veto.tolist() == [False] * len(particles) + [True] * len(beads)
    assert warnings == []
    # deterministic, and independent of the order of the candidates
    again = candidate_statistics(points.iloc[::-1], {"TS_1": tomo}, {"ribosome": RADIUS})
    pd.testing.assert_frame_equal(again.sort_index(), stats)


def test_the_veto_never_wipes_out_a_class_whose_typical_box_is_junk():
    z = pd.DataFrame({"core": [9.0] * 4 + [0.0] * 6, "body": 0.0, "peak": 0.0})
    veto, warnings = density_veto(z, z, pd.Series(["rare"] * 10))
    assert not veto.any()
    assert len(warnings) == 1 and "rare: 40%" in warnings[0]


def test_a_class_with_too_few_candidates_has_no_typical_box():
    stats = pd.DataFrame({"core": [1.0, 50.0], "body": 1.0, "peak": 1.0, "trough": -1.0})
    z = robust_scores(stats, pd.Series(["x", "x"]))
    assert z[["core", "body", "peak"]].isna().all().all()
    assert not density_veto(z, z, pd.Series(["x", "x"]))[0].any()


def test_particles_denser_than_the_junk_but_typical_of_the_likely_ones_are_kept():
    # 30 faint junk candidates and 10 bright particles the pickers agree on: against the
    # class's typical candidate the particles are extreme, against the likely ones they are
    # not; a bead is extreme against both.
    rng = np.random.default_rng(3)
    core = np.concatenate([rng.normal(0, 1, 30), rng.normal(15, 1, 10), [60.0]])
    stats = pd.DataFrame({"core": core, "body": core / 2, "peak": core, "trough": -1.0})
    particle = pd.Series(["ribosome"] * len(core))
    likely = np.r_[np.zeros(30, bool), np.ones(11, bool)]
    z = robust_scores(stats, particle, likely)
    z_likely = robust_scores(stats, particle, likely, typical=likely)
    assert (z["core"].iloc[30:40] > 6).all()
    veto, _ = density_veto(z, z_likely, particle)
    assert veto.tolist() == [False] * 40 + [True]


def _junk_led_world(seed: int = 5):
    """Class "small": 40 faint candidates the agreement takes for its particles (junk) and
    two true particles as dense as the likely particles of class "big"; one gold bead, far
    denser than anything; class "big": 20 likely particles."""
    rng = np.random.default_rng(seed)
    small = np.concatenate([rng.normal(0.5, 0.3, 40), [5.0, 5.2], [30.0]])
    big = rng.normal(10.0, 1.0, 20)
    core = np.concatenate([small, big])
    stats = pd.DataFrame({"core": core, "body": core / 3, "peak": core * 1.3 + 1, "trough": -2.0})
    particle = pd.Series(["small"] * len(small) + ["big"] * len(big))
    likely = np.r_[np.ones(40, bool), np.zeros(3, bool), np.ones(20, bool)]
    return stats, particle, likely


def test_true_particles_of_a_class_whose_likely_particles_are_junk_are_not_vetoed():
    stats, particle, likely = _junk_led_world()
    true, bead = [40, 41], 42
    # without sizes (the old veto): the two true particles are rejected with the bead
    veto, _, _ = veto_from_statistics(stats, particle, likely)
    assert veto.iloc[true].all() and veto.iloc[bead]
    # they look like the likely particles of the larger class; the bead looks like nothing
    sizes = {"small": 60.0, "big": 150.0}
    spared = typical_of_another_class(stats, particle, likely, sizes)
    assert spared.iloc[true].all() and not spared.iloc[bead]
    veto, _, notes = veto_from_statistics(stats, particle, likely, sizes)
    assert np.flatnonzero(veto.to_numpy()).tolist() == [bead]
    assert notes == []  # sparing is not a warning


def test_only_a_larger_class_spares_a_candidate():
    # the same boxes, but "big" is the smaller class (a class of beads, say): nothing spared
    stats, particle, likely = _junk_led_world()
    sizes = {"small": 150.0, "big": 60.0}
    assert not typical_of_another_class(stats, particle, likely, sizes).iloc[:43].any()
    veto, _, _ = veto_from_statistics(stats, particle, likely, sizes)
    assert veto.iloc[[40, 41, 42]].all()
    # a class with too few likely particles gives no reference, and an unknown size spares none
    few = likely.copy()
    few[43:56] = False
    assert not typical_of_another_class(stats, particle, few, {"small": 60.0, "big": 150.0}).any()
    assert not typical_of_another_class(stats, particle, likely, {"big": 150.0}).any()


def test_a_larger_class_whose_likely_particles_are_mostly_beads_vouches_for_no_bead():
    # "big": 8 true particles (centre 10) and 12 beads (centre 30) that every picker agrees
    # on; "small": a bead (centre 25) among 40 faint candidates. The median of big's likely
    # particles is a bead, denser than that one; their lower quartile is a particle, so the
    # small class's bead is still vetoed.
    rng = np.random.default_rng(7)
    small = np.concatenate([rng.normal(0.5, 0.3, 40), [25.0]])
    big = np.concatenate([rng.normal(10.0, 0.5, 8), rng.normal(30.0, 0.5, 12)])
    core = np.concatenate([small, big])
    stats = pd.DataFrame({"core": core, "body": core / 3, "peak": core * 1.3 + 1, "trough": -2.0})
    particle = pd.Series(["small"] * len(small) + ["big"] * len(big))
    likely = np.r_[np.ones(40, bool), False, np.ones(20, bool)]
    sizes = {"small": 60.0, "big": 150.0}
    assert not typical_of_another_class(stats, particle, likely, sizes).iloc[40]
    veto, _, _ = veto_from_statistics(stats, particle, likely, sizes)
    assert veto.iloc[40]


@pytest.mark.slow
def test_beads_all_pickers_agree_on_are_rejected_with_tomograms_only(tmp_path):
    path, particles, beads, inputs = _bead_world(tmp_path / "world")
    results = {}
    runs = (("with", [path], inputs), ("without", [], inputs), ("reversed", [path], inputs[::-1]))
    for name, tomograms, given in runs:
        with Store(tmp_path / f"{name}.db") as store:
            result = aggregate(
                store,
                given,
                out=tmp_path / name,
                tomograms=tomograms,
                voxel_size=None if tomograms else VOXEL,
                formats=["csv"],
            )
            results[name] = store.consensus(result.run_id)
    # deterministic whatever the input order: the same decisions and reasons
    columns = ["tomogram", "particle", "x", "y", "z", "accepted", "reason"]
    pd.testing.assert_frame_equal(
        results.pop("reversed")[columns].reset_index(drop=True),
        results["with"][columns].reset_index(drop=True),
    )
    for name, table in results.items():
        on_bead = _near(table, beads, 30.0)
        assert on_bead.sum() == len(beads), name
        accepted = table["accepted"].astype(bool).to_numpy()
        if name == "without":  # the pickers' agreement alone accepts them: the test can fail
            assert accepted[on_bead].all()
        else:
            assert not accepted[on_bead].any()
            assert table.loc[on_bead, "reason"].str.startswith("image: ").all()
            on_particle = _near(table, particles, 30.0)
            assert accepted[on_particle].all()


def test_a_bead_world_yields_bead_free_cnn_training_positives(tmp_path):
    from picks.consensus.cnn.boxes import tomogram_lookup
    from picks.consensus.cnn.train import training_table
    from picks.core.particles import Catalog
    from picks.workflows.rescore import load_run_data, with_image_veto

    path, _, beads, inputs = _bead_world(tmp_path / "world")
    catalog = Catalog().with_radii({"ribosome": RADIUS})
    with Store(tmp_path / "p.db") as store:
        result = aggregate(
            store,
            inputs,
            out=tmp_path / "out",
            tomograms=[path],
            method="vote",
            formats=["csv"],
            noise_ratio=1.0,
        )
        plain = store.consensus(result.run_id)
        vetoed, info = with_image_veto(plain, tomogram_lookup(store.tomograms()), catalog, "auto")
        tables = {
            name: training_table(
                load_run_data(store, result.run_id, frame),
                result.run_id,
                catalog=catalog,
                candidates=frame,
            )
            for name, frame in (("plain", plain), ("vetoed", vetoed))
        }
    assert info["vetoed"] == len(beads)
    for name, training in tables.items():
        table = training.table
        positives = table[table["label"] > 0]
        on_bead = _near(positives, beads, 30.0)
        if name == "plain":  # every picker agrees on the beads: support alone makes them labels
            assert on_bead.sum() == len(beads)
        else:
            assert not on_bead.any()
            junk = table[table["kind"] == "image-veto"]
            assert len(junk) == len(beads) and (junk["label"] == 0).all()
            assert training.counts["image_vetoed"] == len(beads)


def _lone_world(folder: Path, seed: int = 0):
    """One tomogram: 20 particles (dense balls) and 24 empty junk spots. Three pickers agree
    on 6 particles, two on 6 more; 8 particles and all the junk are lone reports (8 junk per
    picker), so agreement alone cannot tell a lone particle from lone junk — the box can."""
    import mrcfile

    rng = np.random.default_rng(seed)
    grid = [(x, y) for x in range(20, 240, 26) for y in range(20, 150, 26)]
    spots = [grid[i] for i in rng.permutation(len(grid))]
    particles = [(x * VOXEL, y * VOXEL, 24 * VOXEL) for x, y in spots[:20]]
    junk = [(x * VOXEL, y * VOXEL, 24 * VOXEL) for x, y in spots[20:44]]
    volume = np.zeros(SHAPE, dtype=np.float32)
    for p in particles:
        volume += _ball(SHAPE, [c / VOXEL for c in p], RADIUS / VOXEL)
    volume = ndimage.gaussian_filter(volume, 1.0) + rng.normal(0, 0.6, SHAPE).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "TS_1.mrc"
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(volume)
        mrc.voxel_size = VOXEL
    reports = {
        "a": particles[:12] + particles[12:15] + junk[:8],
        "b": particles[:12] + particles[15:18] + junk[8:16],
        "c": particles[:6] + particles[18:20] + junk[16:24],
    }
    inputs = []
    for label, rows in reports.items():
        rows = [tuple(np.asarray(r) + rng.normal(0, 5, 3)) for r in rows]
        lines = ["id,experiment,particle_type,x,y,z"]
        lines += [f"{i},TS_1,ribosome,{x:.1f},{y:.1f},{z:.1f}" for i, (x, y, z) in enumerate(rows)]
        (folder / f"{label}.csv").write_text("\n".join(lines) + "\n")
        inputs.append(f"{label}={folder / f'{label}.csv'}")
    truth = pd.DataFrame(
        [("TS_1", "ribosome", *p) for p in particles],
        columns=["tomogram", "particle", "x", "y", "z"],
    )
    return path, truth, junk, inputs


def test_image_evidence_tells_lone_particles_from_lone_junk(tmp_path, monkeypatch):
    # experimental image_evidence (docs/latent.md "Images as evidence"): the box statistics
    # enter the latent fit, so the dense lone reports rise above the empty ones. The
    # empty-box veto (tests/test_background.py) would reject this junk by default: off here.
    from picks.consensus import background
    from picks.evaluate.metric import score

    monkeypatch.setattr(background, "CLEAR_CONTRAST", np.inf)

    path, truth, junk, inputs = _lone_world(tmp_path / "world")
    tables = {}
    for on in (False, True):
        with Store(tmp_path / f"{on}.db") as store:
            result = aggregate(
                store,
                inputs,
                out=tmp_path / f"out{on}",
                tomograms=[path],
                formats=["csv"],
                image_evidence=on,
            )
            tables[on] = store.consensus(result.run_id)
            params = json.loads(store.get_run(result.run_id)["params"])
            assert params.get("image_evidence", False) is on
    f4 = {}
    for on, table in tables.items():
        accepted = table[table["accepted"].astype(bool)]
        f4[on] = score(truth, accepted, beta=4.0, weights={"ribosome": 1.0}).overall
    assert f4[True] >= f4[False] + 0.05, f4
    on_junk = _near(tables[True], junk, 30.0)
    accepted = tables[True]["accepted"].astype(bool).to_numpy()
    assert accepted[on_junk].sum() < tables[False]["accepted"].astype(bool)[on_junk].sum()
