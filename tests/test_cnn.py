"""The rescoring CNN: devices, augmentation, learning, determinism, save/load, rescore_run, CLI.

Tiny models (16³ boxes, few epochs) keep this file fast. The test world is two small MRC
tomograms with hollow spherical "particles" in noise, and a store whose consensus and noise
tables are filled directly (as the consensus pipeline would fill them).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from picks.consensus.cnn import device, ood
from picks.consensus.cnn import network as cnn
from picks.consensus.cnn.options import CnnOptions
from picks.core.errors import PicksError
from picks.core.particles import Catalog, Particle

VOXEL = 10.0
CATALOG = Catalog([Particle("apo-ferritin", 60.0)])


# -- the world ---------------------------------------------------------------------------------
def _shell(shape, centres_zyx, radius, amplitude) -> np.ndarray:
    vol = np.zeros(shape, np.float32)
    r = int(np.ceil(radius + 3))
    grid = np.indices((2 * r + 1,) * 3, dtype=float) - r
    for c in centres_zyx:
        ic = np.round(c).astype(int)
        frac = c - ic
        d = np.sqrt(((grid - frac[:, None, None, None]) ** 2).sum(axis=0))
        blob = amplitude * np.exp(-((d - radius) ** 2) / 2.0)
        lo = ic - r
        sl = tuple(
            slice(max(l_, 0), min(l_ + 2 * r + 1, n)) for l_, n in zip(lo, shape, strict=True)
        )
        bl = tuple(slice(s.start - l_, s.stop - l_) for s, l_ in zip(sl, lo, strict=True))
        vol[sl] += blob[bl]
    return vol


def build_world(root, seed: int = 0, n_particles: int = 36):
    """Two tomograms, a store with one run: consensus picks (positive/doubtful/negative), noise."""
    import mrcfile

    from picks.core.store import Store
    from picks.core.tomograms import read_tomogram

    rng = np.random.default_rng(seed)
    shape = (40, 100, 100)
    store = Store(root / "picks.db")
    truth = []
    tomos = []
    for t in range(2):
        centres = []
        while len(centres) < n_particles:
            c = rng.uniform([8, 8, 8], np.array(shape) - 8)
            if all(np.linalg.norm(c - q) > 11 for q in centres):
                centres.append(c)
        centres = np.array(centres)
        vol = rng.standard_normal(shape).astype(np.float32) + _shell(shape, centres, 4.0, 1.6)
        path = root / f"tomo_{t}.mrc"
        with mrcfile.new(path, overwrite=True) as mrc:
            mrc.set_data(vol)
            mrc.voxel_size = VOXEL
        tomos.append(read_tomogram(path))
        truth.append(centres[:, ::-1] * VOXEL)  # x, y, z in Å
    store.add_tomograms(tomos)
    run = store.start_run("aggregate", {"radii": {"apo-ferritin": 60.0}}, method="cnn", seed=0)
    rows, kinds = [], []
    for tomo, centres in zip(tomos, truth, strict=True):
        for c in centres:
            status = "positive" if rng.random() < 0.6 else "doubtful"
            jitter = rng.normal(0, 4, 3)
            rows.append(_row(run, tomo.name, c + jitter, status))
            kinds.append("particle")
        empty = _empty_points(rng, centres, tomo, 8)
        for c in empty:
            rows.append(_row(run, tomo.name, c, "doubtful"))
            kinds.append("empty")
    rows.append(
        _row(run, tomos[0].name, np.array([300.0, 300.0, -150.0]), "doubtful")
    )  # off the volume
    kinds.append("outside")
    store.db["consensus"].insert_all(rows)
    noise = []
    for tomo, centres in zip(tomos, truth, strict=True):
        for c in _empty_points(rng, centres, tomo, 60):
            noise.append({"run_id": run, "tomogram": tomo.name, "x": c[0], "y": c[1], "z": c[2]})
    store.db["noise"].insert_all(noise)
    return store, run, tomos, np.array(kinds)


def _row(run, tomogram, xyz, status):
    return {
        "run_id": run,
        "tomogram": tomogram,
        "particle": "apo-ferritin",
        "x": float(xyz[0]),
        "y": float(xyz[1]),
        "z": float(xyz[2]),
        "support": 3.0 if status == "positive" else 2.0,
        "n_members": 3,
        "pickers": "a,b,c",
        "vote_score": 1.0 if status == "positive" else 0.67,
        "status": status,
        "accepted": int(status == "positive"),
        "reason": f"support: {status}",
    }


def _empty_points(rng, centres, tomo, n):
    extent = np.array(tomo.shape) * VOXEL
    out = []
    while len(out) < n:
        c = rng.uniform(80, extent - 80)
        if np.min(np.linalg.norm(centres - c, axis=1)) > 110 and all(
            np.linalg.norm(c - q) > 60 for q in out
        ):
            out.append(c)
    return np.array(out)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The world after one CNN rescoring (trained on the run): shared by several tests."""
    from picks.workflows.rescore import rescore_run

    root = tmp_path_factory.mktemp("world")
    store, run, _tomos, kinds = build_world(root)
    summary = rescore_run(
        store,
        run,
        # positives full: here 2 of 3 pickers also agree on empty places, by design
        CnnOptions(epochs=8, box=16, device="cpu", positives="full", threshold=0.5),
        tomograms=store.tomograms(),
        catalog=CATALOG,
        seed=0,
        models_dir=root / "models",
    )
    yield {"store": store, "run": run, "kinds": kinds, "summary": summary, "root": root}
    store.close()


def consensus(store, run) -> pd.DataFrame:
    return store.consensus(run)


# -- quiet start -------------------------------------------------------------------------------
def test_native_stderr_is_captured_and_restored(capfd) -> None:
    import tempfile

    with tempfile.TemporaryFile() as log:
        with device._native_stderr_into(log):
            os.write(2, b"I0000 native noise\n")
        log.seek(0)
        assert log.read() == b"I0000 native noise\n"
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "after\n"  # fd 2 is back where it was


# -- devices -----------------------------------------------------------------------------------
def test_device_selection_with_mocked_gpus(monkeypatch) -> None:
    assert device.select_device("auto", gpus=[]) == device.DevicePlan("cpu")
    one = device.select_device("auto", gpus=["/physical_device:GPU:0"])
    assert (one.kind, one.mixed_precision, one.strategy, one.replicas) == (
        "gpu",
        True,
        "one_device",
        1,
    )
    two = device.select_device("gpu", gpus=["/physical_device:GPU:0", "/physical_device:GPU:1"])
    assert (two.strategy, two.replicas, two.default_batch_size()) == ("mirrored", 2, 512)
    forced = device.select_device("cpu", gpus=["/physical_device:GPU:0"])
    assert (forced.kind, forced.strategy, forced.mixed_precision) == ("cpu", "one_device", False)
    with pytest.raises(PicksError, match="sees no GPU"):
        device.select_device("gpu", gpus=[])
    with pytest.raises(PicksError, match="expected one of"):
        device.select_device("tpu", gpus=[])
    monkeypatch.setattr(device, "list_gpus", lambda: ["/physical_device:GPU:0"] * 3)
    assert device.select_device("auto").replicas == 3
    monkeypatch.setattr(device, "list_gpus", lambda: [])
    assert device.select_device("auto").kind == "cpu"


def test_split_modules_keep_the_old_import_paths() -> None:
    """device.py and ood.py were split out of network.py; callers that import the names from
    network (train, rescore, plugins) must get the very same objects."""
    for name in ("DEVICES", "DevicePlan", "list_gpus", "select_device", "tensorflow"):
        assert getattr(cnn, name) is getattr(device, name)
    for name in ("DEFAULT_ALPHA", "fit_typicality", "typicality"):
        assert getattr(cnn, name) is getattr(ood, name)


def test_strategies_and_precision_policy() -> None:
    import keras
    import tensorflow as tf

    assert device.make_strategy(device.DevicePlan("cpu")) is tf.distribute.get_strategy()
    pinned = device.make_strategy(device.DevicePlan("cpu", (), False, "one_device"))
    assert isinstance(pinned, tf.distribute.OneDeviceStrategy)
    plan = device.DevicePlan("gpu", ("g0",), True, "one_device")
    with device.precision(plan):
        assert keras.mixed_precision.global_policy().name == "mixed_float16"
        model = cnn.build_model(16, 3)
        assert model.get_layer("probabilities").dtype_policy.name == "float32"
    assert keras.mixed_precision.global_policy().name == "float32"


# -- network pieces ----------------------------------------------------------------------------
def test_architecture_parameter_count() -> None:
    model = cnn.build_model(32, 6)
    assert model.count_params() == 73_662
    assert model.output_shape == (None, 6)


def test_augmentation_is_a_crop_plus_flips_only() -> None:
    """Every augmented box equals one of the 8 flip combinations of some shifted crop."""
    rng = np.random.default_rng(0)
    boxes = rng.standard_normal((12, 12, 12, 12)).astype(np.float16)
    out = cnn.augment(boxes, 8, np.random.default_rng(1))
    assert out.shape == (12, 8, 8, 8) and out.dtype == np.float32
    seen_flips = set()
    for i in range(12):
        found = None
        for oz in range(5):
            for oy in range(5):
                for ox in range(5):
                    crop = boxes[i, oz : oz + 8, oy : oy + 8, ox : ox + 8].astype(np.float32)
                    for flips in np.ndindex(2, 2, 2):
                        axes = tuple(a for a in range(3) if flips[a])
                        cand = np.flip(crop, axis=axes) if axes else crop
                        if np.array_equal(cand, out[i]):
                            found = flips
        assert found is not None, "augmentation produced something other than a flipped crop"
        seen_flips.add(found)
    assert len(seen_flips) > 1


def _blob_data(n: int, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 18, 18, 18)).astype(np.float32)
    g = np.indices((18, 18, 18)) - 8.5
    blob = np.exp(-(g**2).sum(axis=0) / (2 * 2.5**2))
    y = (np.arange(n) % 2).astype(np.int64)
    x[y == 1] += 1.2 * blob
    x = (x - x.mean(axis=(1, 2, 3), keepdims=True)) / x.std(axis=(1, 2, 3), keepdims=True)
    return x.astype(np.float16), y


def _train_tiny(seed: int, epochs: int = 3):
    x, y = _blob_data(240, 0)
    idx = np.arange(len(x))
    return cnn.train(
        x,
        y,
        np.ones(len(x), np.float32),
        idx[:192],
        idx[192:],
        n_outputs=2,
        box=16,
        epochs=epochs,
        seed=seed,
        plan=device.DevicePlan("cpu"),
        widths=(4, 8, 16),
        batch_size=32,
    )


def test_learns_a_separable_case() -> None:
    model, result = _train_tiny(seed=0, epochs=8)
    x_test, y_test = _blob_data(200, 99)
    p = cnn.predict(model, x_test, box=16)
    assert p.shape == (200, 2)
    auc = cnn.binary_auc(1 - p[:, 0], y_test > 0)
    assert auc > 0.9
    assert result.epochs_run <= 8 and 1 <= result.best_epoch <= result.epochs_run
    assert all({"loss", "val_loss", "val_auc"} <= set(h) for h in result.history)
    # the best epoch's weights are the ones kept
    best = min(result.history, key=lambda h: h["val_loss"])
    assert best["epoch"] == result.best_epoch


def test_the_best_epoch_is_restored_not_the_last() -> None:
    """Training labels inverted against validation: validation gets worse as training goes
    on, so the best epoch is early and the returned weights must be that epoch's."""
    x, y = _blob_data(240, 0)
    labels = y.copy()
    labels[:192] = 1 - labels[:192]
    idx = np.arange(len(x))
    model, result = cnn.train(
        x,
        labels,
        np.ones(len(x), np.float32),
        idx[:192],
        idx[192:],
        n_outputs=2,
        box=16,
        epochs=8,
        seed=0,
        plan=device.DevicePlan("cpu"),
        widths=(4, 8, 16),
        batch_size=32,
        patience=3,
    )
    losses = [h["val_loss"] for h in result.history]
    assert result.best_epoch < result.epochs_run and min(losses) < losses[-1] - 1e-3
    again = cnn.weighted_loss(cnn.predict(model, x[192:], box=16), labels[192:], np.ones(48))
    assert again == pytest.approx(min(losses), rel=1e-4, abs=1e-6)


def test_training_is_deterministic_for_a_seed() -> None:
    x_test, _ = _blob_data(32, 7)
    a, _ = _train_tiny(seed=3)
    b, _ = _train_tiny(seed=3)
    c, _ = _train_tiny(seed=4)
    pa, pb, pc = (cnn.predict(m, x_test, box=16) for m in (a, b, c))
    np.testing.assert_array_equal(pa, pb)
    assert not np.array_equal(pa, pc)


def test_save_load_round_trip(tmp_path) -> None:
    model, _ = _train_tiny(seed=0, epochs=1)
    x, _ = _blob_data(16, 5)
    path = tmp_path / "m.keras"
    card = {"box": 16, "voxel_size": 9.0, "classes": ["noise", "blob"]}
    digest = cnn.save(model, path, card)
    assert digest == cnn.sha256_file(path) and cnn.card_path(path).name == "m.card.json"
    loaded, loaded_card = cnn.load(path)
    assert loaded_card["classes"] == ["noise", "blob"] and loaded_card["sha256"] == digest
    np.testing.assert_allclose(
        cnn.predict(loaded, x, box=16), cnn.predict(model, x, box=16), atol=1e-6
    )
    with pytest.raises(PicksError, match="exists"):
        cnn.save(model, path, card)
    cnn.card_path(path).unlink()
    with pytest.raises(PicksError, match="model card"):
        cnn.load(path)


def test_typicality_flags_features_unlike_the_positives() -> None:
    rng = np.random.default_rng(0)
    feats = rng.normal(0, 1, (200, 8))
    labels = np.repeat([1, 2], 100)
    feats[labels == 2] += 3.0
    params = ood.fit_typicality(feats, labels, rng.normal(0, 1, (50, 8)))
    _, _p_in, t_in = ood.typicality(rng.normal(0, 1, (100, 8)), params)
    _, _p_out, t_out = ood.typicality(rng.normal(0, 1, (20, 8)) + 12.0, params)
    assert np.mean(t_in == 1.0) > 0.95 and np.all(t_out < 0.01)
    assert np.all(ood.typicality(feats[:3], None)[2] == 1.0)


# -- training data -----------------------------------------------------------------------------
def test_training_table_uses_only_full_support_and_references(tmp_path) -> None:
    from picks.consensus.cnn.split import spatial_split
    from picks.consensus.cnn.train import training_table
    from picks.core import picks as canonical
    from picks.workflows.rescore import load_run_data

    store, run, _tomos, _ = build_world(tmp_path, n_particles=14)
    cons = consensus(store, run)
    first = cons.iloc[0]
    refs = canonical.make(
        {
            "tomogram": [first["tomogram"]] * 2,
            "particle": ["apo-ferritin", None],
            "x": [first["x"] + 5, 700.0],
            "y": [first["y"], 700.0],
            "z": [first["z"], 200.0],
            "record": [1, 1],
        }
    )
    store.add_source(
        {"path": "pos.csv", "sha256": "p", "picker": "hand", "role": "positive"}, refs.iloc[:1]
    )
    store.add_source(
        {"path": "neg.csv", "sha256": "n", "picker": "beads", "role": "negative"}, refs.iloc[1:]
    )
    data = training_table(load_run_data(store, run), run, catalog=CATALOG, positives="full")
    table = data.table
    used = set(table.loc[table["kind"] == "consensus", "ref_id"])
    status = cons.set_index("id")["status"]
    assert used == set(status[status == "positive"].index)  # doubtful ones never become labels
    assert data.counts["positive_references_already_in_consensus"] == (
        1 if first["status"] == "positive" else 0
    )
    negref = table[table["kind"] == "reference"]
    assert (negref["label"] == 0).sum() == 1
    assert data.outputs == ["noise", "apo-ferritin"]
    pos_w = table.loc[table["label"] > 0, "weight"].sum()
    neg_w = table.loc[table["label"] == 0, "weight"].sum()
    assert pos_w == pytest.approx(neg_w)
    val, how = spatial_split(table, block=300.0, seed=0)
    assert "spatial blocks" in how and 0 < val.sum() < len(val)
    cells = pd.Series(
        list(
            zip(
                table["tomogram"],
                *(np.floor(table[c] / float(how.split()[3])).astype(int) for c in "xyz"),
                strict=True,
            )
        )
    )
    assert not set(cells[val]) & set(cells[~val])  # no block on both sides
    store.close()


def test_guard_band_keeps_training_boxes_off_validation_boxes() -> None:
    from picks.consensus.cnn.split import _guard_band

    rows = pd.DataFrame(
        {
            "tomogram": ["T"] * 5 + ["U"],
            "x": [0.0, 90.0, 150.0, 400.0, 500.0, 10.0],
            "y": [0.0, 90.0, 0.0, 0.0, 0.0, 0.0],  # point 1: 127 Å away, corners overlap
            "z": 0.0,
        }
    )
    positive = np.array([True, True, False, True, False, False])
    train, how = _guard_band(
        rows, np.array([1, 2, 3, 4, 5]), np.array([0]), positive, 100.0, "spatial"
    )
    # (90, 90) Å from the validation point: the 100 Å boxes share a corner; U: other tomogram
    assert train.tolist() == [2, 3, 4, 5] and "1 training points" in how
    # never empties a class on the training side
    kept, how = _guard_band(rows, np.array([1, 2]), np.array([0]), positive, 100.0, "spatial")
    assert kept.tolist() == [1, 2] and how == "spatial"


# -- rescore_run -------------------------------------------------------------------------------
def test_rescore_run_scores_every_candidate_and_records_everything(world) -> None:
    store, run, kinds, summary = world["store"], world["run"], world["kinds"], world["summary"]
    cons = consensus(store, run)
    assert summary["n_candidates"] == len(cons) and summary["n_dropped"] == 1
    outside = kinds == "outside"
    assert (
        cons.loc[outside, "cnn_score"].isna().all() and (cons.loc[outside, "accepted"] == 0).all()
    )
    assert cons.loc[outside, "reason"].str.startswith("not scored: centre outside").all()
    dropped = list(store.db["dropped"].rows_where("run_id = ?", [run]))
    assert [(d["kind"], d["stage"]) for d in dropped] == [("consensus", "cnn-score")]
    assert dropped[0]["ref_id"] == int(cons.loc[outside, "id"].iloc[0])
    scored = cons[~outside]
    assert scored["cnn_score"].between(0, 1).all()
    np.testing.assert_array_equal(
        scored["accepted"].to_numpy() == 1, scored["score"].to_numpy() >= 0.5
    )
    assert scored["reason"].str.match(r"cnn \d\.\d{3} (≥|<) 0\.5: (accepted|rejected)").all()
    # per-class scores: one row per pick and output (noise, class) plus the typicality
    from picks.workflows.rescore import scores_table

    table = scores_table(store, run)
    assert len(table) == len(scored)
    assert {"noise", "apo-ferritin", "typicality"} <= set(table.columns)
    np.testing.assert_allclose(table["noise"] + table["apo-ferritin"], 1.0, atol=1e-5)
    merged = table.merge(cons[["id", "cnn_score"]], left_on="consensus_id", right_on="id")
    np.testing.assert_allclose(
        merged["cnn_score"], (1 - merged["noise"]) * merged["typicality"], atol=1e-6
    )
    # ... and in candidates.csv's table: every candidate, its decision and those scores
    from picks.workflows.outputs import candidates_table

    decisions = candidates_table(store, run)
    assert len(decisions) == len(cons)
    assert list(decisions.columns[-4:]) == ["p_apo-ferritin", "p_noise", "typicality", "model_ids"]
    by_id = decisions.set_index("consensus_id")
    row = by_id.loc[int(merged["consensus_id"].iloc[0])]
    assert row["p_noise"] == pytest.approx(float(merged["noise"].iloc[0]), abs=1e-6)
    not_scored = cons.loc[outside, "id"].astype(int)
    assert by_id.loc[not_scored, "p_noise"].isna().all()  # not scored: no probabilities
    # the model, its card and its record
    (model_row,) = store.db["models"].rows
    card = json.loads(model_row["card"])
    assert card["box"] == 16 and card["classes"] == ["noise", "apo-ferritin"]
    assert card["voxel_size"] == pytest.approx(2 * 60 * 1.25 / 16)
    assert {"training_table_sha256", "boxes_sha256", "tomograms"} <= set(card["data"])
    assert card["training"]["counts"]["positives"]["apo-ferritin"] > 0
    assert card["seed"] == 0 and card["picks_version"] and card["typicality"]["means"]
    assert card["decision"]["threshold"] == pytest.approx(1 / 17, abs=1e-4)  # β = 4
    assert 0 <= card["decision"]["validation"]["fbeta_at_threshold"] <= 1
    assert card["training"]["counts"]["positive_rule"].startswith("full")
    assert summary["models"][0]["sha256"] == model_row["sha256"]


def test_a_class_with_few_training_positives_is_judged_by_typicality_only(world) -> None:
    from picks.workflows.rescore import MIN_CLASS_POSITIVES, _rare_class_mask

    summary = world["summary"]
    # the world's one class had enough positives: the network's P(particle) decided
    assert summary["models"] and summary["typicality_only_classes"] == []
    frame = pd.DataFrame({"particle": ["ribosome", "apo-ferritin", "virus-like-particle"]})
    card = {
        "training": {"counts": {"positives": {"ribosome": 544, "apo-ferritin": 3}}},
        "typicality": {"means": [[0.0]]},
    }
    mask = _rare_class_mask(frame, {"card": card})
    assert mask.tolist() == [False, True, True] and MIN_CLASS_POSITIVES == 20
    assert not _rare_class_mask(frame, {"card": {}}).any()  # an old card: no such rule
    # no typicality to judge by (turned off, or not in the card): P(particle) decides
    assert not _rare_class_mask(frame, {"card": card}, typicality=False).any()
    assert not _rare_class_mask(frame, {"card": {**card, "typicality": None}}).any()
    unlabelled = pd.DataFrame({"particle": [None]})
    assert not _rare_class_mask(unlabelled, {"card": card}).any()


def test_typicality_only_decision_end_to_end(world, monkeypatch) -> None:
    from picks.workflows import rescore
    from picks.workflows.rescore import scores_table

    store, run = world["store"], world["run"]
    path = world["summary"]["models"][0]["path"]
    options = CnnOptions(model=path, device="cpu", threshold=0.5)  # as the world was scored
    kwargs = dict(tomograms=store.tomograms(), catalog=CATALOG)
    before = consensus(store, run)
    from picks.consensus.cnn import reasons

    monkeypatch.setattr(reasons, "MIN_CLASS_POSITIVES", 10**6)  # every class is "rare"
    summary = rescore.rescore_run(store, run, options, **kwargs)
    assert summary["typicality_only_classes"] == ["apo-ferritin"]
    cons = consensus(store, run)
    table = scores_table(store, run).merge(
        cons[["id", "cnn_score", "reason"]], left_on="consensus_id", right_on="id"
    )
    np.testing.assert_allclose(table["cnn_score"], table["typicality"], atol=1e-6)
    assert table["reason"].str.contains("judged by typicality only").all()
    monkeypatch.undo()
    rescore.rescore_run(store, run, options, **kwargs)  # the shared world as it was
    np.testing.assert_allclose(
        consensus(store, run)["cnn_score"], before["cnn_score"], atol=1e-6, equal_nan=True
    )


def test_rescoring_separates_particles_from_empty_candidates(world) -> None:
    cons = consensus(world["store"], world["run"])
    kinds = world["kinds"]
    doubtful = (cons["status"] == "doubtful").to_numpy()
    particle_rate = cons.loc[doubtful & (kinds == "particle"), "accepted"].mean()
    empty_rate = cons.loc[doubtful & (kinds == "empty"), "accepted"].mean()
    assert particle_rate > 0.8 and empty_rate < 0.3


def test_reuse_saved_model_and_ensemble(world, tmp_path) -> None:
    from picks.consensus.cnn.train import fit
    from picks.workflows.rescore import load_run_data, rescore_run

    store, run = world["store"], world["run"]
    path = world["summary"]["models"][0]["path"]
    before = consensus(store, run)
    store.db["dropped"].insert(
        {"run_id": run, "kind": "noise", "ref_id": 1, "stage": "cnn-train", "reason": "test"}
    )
    again = rescore_run(
        store,
        run,
        CnnOptions(model=path, device="cpu"),
        tomograms=store.tomograms(),
        catalog=CATALOG,
        models_dir=None,
    )
    kept = store.db["dropped"].count_where("run_id = ? AND stage = 'cnn-train'", [run])
    assert kept == 1  # scoring with a saved model keeps what the training left out
    after = consensus(store, run)
    np.testing.assert_allclose(after["cnn_score"], before["cnn_score"], atol=1e-6, equal_nan=True)
    assert again["models"][0]["id"] == world["summary"]["models"][0]["id"]
    # no threshold given: the model card's decision rule (1/(1 + β²)) decides
    assert again["threshold"] == pytest.approx(1 / 17, abs=1e-4)
    assert again["threshold_rule"].startswith("model card")
    np.testing.assert_array_equal(
        after["accepted"].to_numpy() == 1, after["cnn_score"].fillna(-1).to_numpy() >= 0.0588
    )
    assert store.db["scores"].count == 3 * again["n_scored"]  # replaced, not duplicated
    other = fit(
        load_run_data(store, run),
        run,
        CnnOptions(epochs=2, box=16, device="cpu"),
        tomograms=store.tomograms(),
        catalog=CATALOG,
        seed=1,
    )
    second = tmp_path / "second.keras"
    cnn.save(other.model, second, other.card)
    rescore_run(
        store,
        run,
        CnnOptions(model=[path, str(second)], device="cpu"),
        tomograms=store.tomograms(),
        catalog=CATALOG,
    )
    ensemble = consensus(store, run)
    rescore_run(
        store,
        run,
        CnnOptions(model=str(second), device="cpu"),
        tomograms=store.tomograms(),
        catalog=CATALOG,
    )
    single = consensus(store, run)
    np.testing.assert_allclose(
        ensemble["cnn_score"],
        (before["cnn_score"] + single["cnn_score"]) / 2,
        atol=1e-5,
        equal_nan=True,
    )
    assert store.db["models"].count == 2
    # the scores rows are the current decision's: the second model only, not the ensemble's
    second_id = max(r["id"] for r in store.db["models"].rows)
    assert {r["model_id"] for r in store.db["scores"].rows} == {second_id}


def test_combine_uses_a_calibrated_logistic_regression(world) -> None:
    from picks.workflows.rescore import rescore_run

    store, run = world["store"], world["run"]
    path = world["summary"]["models"][0]["path"]
    out = rescore_run(
        store,
        run,
        CnnOptions(model=path, combine=True, threshold=0.5, device="cpu"),
        tomograms=store.tomograms(),
        catalog=CATALOG,
    )
    info = out["combine_model"]
    assert info["features"][:2] == ["cnn_logit", "support"]
    assert len(info["coefficients"]) == len(info["features"]) and info["coefficients"][0] > 0
    cons = consensus(store, run)
    scored = cons[cons["cnn_score"].notna()]
    assert scored["score"].between(0, 1).all()
    assert scored["reason"].str.startswith("combined").all()
    np.testing.assert_array_equal(scored["accepted"] == 1, scored["score"] >= 0.5)


def test_gpu_request_without_gpu_is_a_clear_error(world, monkeypatch) -> None:
    from picks.workflows.rescore import rescore_run

    monkeypatch.setattr(device, "list_gpus", lambda: [])
    with pytest.raises(PicksError, match="sees no GPU"):
        rescore_run(
            world["store"],
            world["run"],
            CnnOptions(device="gpu", model=world["summary"]["models"][0]["path"]),
            catalog=CATALOG,
        )


# -- CLI ---------------------------------------------------------------------------------------
def test_cli_train_and_score(tmp_path) -> None:
    from typer.testing import CliRunner

    from picks.cli import get_app
    from picks.core.store import Store

    store, run, _, _ = build_world(tmp_path, n_particles=20)
    store.close()
    runner = CliRunner()
    app = get_app()
    db = str(tmp_path / "picks.db")
    model = tmp_path / "out" / "m.keras"
    res = runner.invoke(
        app,
        [
            "train",
            "--run",
            str(run),
            "--db",
            db,
            "--out",
            str(model),
            "--epochs",
            "2",
            "--box",
            "16",
            "--device",
            "cpu",
            "--seed",
            "1",
            "--positives",
            "full",
            "--hard-negatives",
            "0",
            "--patience",
            "3",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    info = json.loads(res.output)
    assert info["counts"]["positive_rule"].startswith("full")
    card = json.loads(cnn.card_path(model).read_text())
    assert card["training"]["hard_negatives"] is None  # --hard-negatives 0: one round
    assert (
        model.exists()
        and cnn.card_path(model).exists()
        and info["classes"] == ["noise", "apo-ferritin"]
    )
    res = runner.invoke(
        app, ["score", "--run", str(run), "--db", db, "--model", str(model), "--threshold", "0.3"]
    )
    assert res.exit_code == 0, res.output
    assert "consensus picks scored" in res.output
    with Store(db) as s:
        commands = [r["command"] for r in s.runs()]
        assert commands[-2:] == ["train", "score"]
        (row,) = s.db["models"].rows
        assert row["run_id"] == s.runs()[-2]["id"]
        cons = consensus(s, run)
        scored = cons[cons["cnn_score"].notna()]
        np.testing.assert_array_equal(scored["accepted"] == 1, scored["score"] >= 0.3)
    res = runner.invoke(
        app, ["score", "--run", str(run), "--db", db, "--model", str(tmp_path / "nope.keras")]
    )
    assert res.exit_code != 0


def test_hard_negatives_are_mined_and_unseen_classes_are_flagged(world) -> None:
    from picks.workflows.rescore import rescore_run

    store, run = world["store"], world["run"]
    model_id = world["summary"]["models"][0]["id"]
    (model_row,) = [r for r in store.db["models"].rows if r["id"] == model_id]
    training = json.loads(model_row["card"])["training"]
    mined = training["hard_negatives"]
    assert mined["kept"] > 0 and mined["pool"] >= mined["kept"]
    # the bounds in force are on the card: the pool at most 2 per positive, the top 1/8 kept
    assert training["train_boxes"] == CnnOptions().train_boxes and mined["pool_per_positive"] == 2
    assert mined["kept"] <= mined["wanted"] <= max(1, mined["pool"] // 8)
    first = consensus(store, run).iloc[0]
    row = _row(run, first["tomogram"], np.array([first["x"], first["y"], first["z"]]), "doubtful")
    row["particle"] = "ribosome"
    store.db["consensus"].insert_all([row])
    out = rescore_run(
        store,
        run,
        CnnOptions(device="cpu", model=world["summary"]["models"][0]["path"], threshold=0.0),
        tomograms=store.tomograms(),
        catalog=CATALOG,
    )
    assert out["unseen_classes"] == ["ribosome"]
    cons = consensus(store, run)
    ribo = cons[cons["particle"] == "ribosome"].iloc[0]
    assert ribo["accepted"] == 1 and "no training positives of ribosome" in ribo["reason"]
    store.db.conn.execute(
        "DELETE FROM scores WHERE consensus_id IN (SELECT id FROM consensus WHERE particle = 'ribosome')"
    )
    store.db.conn.execute("DELETE FROM consensus WHERE particle = 'ribosome'")
    store.db.conn.commit()


def test_auto_positives_fall_back_to_all_but_one_picker_when_full_support_is_rare() -> None:
    from picks.consensus.cnn import train

    def row(support, vote, pickers, status):
        return {
            "id": len(rows),
            "support": support,
            "vote_score": vote,
            "pickers": pickers,
            "status": status,
            "reason": "",
        }

    rows: list[dict] = []
    for _ in range(5):
        rows.append(row(4.0, 1.0, "a,b,c,d", "positive"))  # full support
    for _ in range(5):
        rows.append(row(3.0, 0.75, "a,b,c", "positive"))  # all but one
    for _ in range(5):
        rows.append(row(2.0, 0.5, "a,b", "doubtful"))  # two missing: never a label
    for _ in range(5):
        rows.append(row(3.0, 0.75, "a,b,d", "doubtful"))  # one missing, but --min-support all
    frame = pd.DataFrame(rows)
    full, _ = train.positive_selection(frame, "full")
    auto, how = train.positive_selection(frame, "auto")
    assert full.sum() == 5 and auto.sum() == 10 and "but one" in how
    assert not auto[10:].any()  # doubtful picks are never labels
    many = pd.concat([frame] + [frame.iloc[:5]] * 10, ignore_index=True)  # 55 full-support
    auto, how = train.positive_selection(many, "auto")
    assert auto.sum() == 55 and how.startswith("full")


def test_threshold_is_tuned_for_recall_on_the_held_out_split() -> None:
    from picks.consensus.cnn.threshold import choose_threshold

    positive = np.array([True] * 10 + [False] * 10)
    scores = np.array([0.9] * 8 + [0.22, 0.22] + [0.1] * 10)
    t, f = choose_threshold(scores, positive)
    assert t == pytest.approx(0.15) and f == pytest.approx(1.0)  # lowest perfect threshold
    t, _ = choose_threshold(np.where(positive, 0.9, 0.01), positive)
    assert t == pytest.approx(0.05)
    t, _ = choose_threshold(np.where(positive, 0.01, 0.9), positive)  # never above 0.5
    assert t <= 0.5


@pytest.mark.slow
def test_cnn_consensus_beats_best_picker_and_voting_on_simulated_data(tmp_path) -> None:
    """``picks simulate`` data at demo size (2 tomograms of 200 × 200 × 80): with default
    options the CNN consensus (CNN score refitting the latent model) beats every single
    picker and the vote (docs/cnn.md §6)."""
    from picks.core.store import Store
    from picks.evaluate.metric import score
    from picks.simulate.world import simulate
    from picks.workflows import evaluate as ev
    from picks.workflows.aggregate import aggregate
    from picks.workflows.demo import aggregate_inputs

    sim = simulate(tmp_path / "sim", seed=0, n_tomograms=2)
    with Store(tmp_path / "picks.db") as store:
        result = aggregate(
            store,
            aggregate_inputs(sim),
            out=tmp_path / "out",
            tomograms=[sim.out / "tomograms"],
            formats=["czii-csv"],
            method="cnn",
            seed=0,
        )
        assert result.method == "cnn"
        # the CNN refits the latent model; the classes it barely saw are said to be left out
        assert result.cnn["decision"] == "cnn+latent"
        assert result.cnn["cnn_feature_skipped"]
        assert any("not used as evidence" in w for w in result.warnings)
        candidates = ev.consensus_picks(store, result.run_id)
        status = pd.DataFrame(store.db["consensus"].rows_where("run_id = ?", [result.run_id]))
    truth = sim.truth
    fused = score(truth, candidates[candidates["accepted"]].reset_index(drop=True)).overall
    voted = candidates[(status.sort_values("id")["status"] == "positive").to_numpy()]
    vote = score(truth, voted.reset_index(drop=True)).overall
    singles = {
        p.label: score(truth, p.picks[["tomogram", "particle", "x", "y", "z", "score"]]).overall
        for p in sim.pickers
    }
    assert fused > max(singles.values()) and fused > vote, (fused, vote, singles)
