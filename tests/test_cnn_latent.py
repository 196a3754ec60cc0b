"""The CNN inside the latent-class model (issue 10 §4): training labels from the posteriors,
the CNN score as one more feature, the per-class guard and the fallback when the CNN cannot
train. Pure functions where possible (no TensorFlow); one store-level fallback test."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from picks.consensus.cnn.labels import P_HIGH, P_LOW, negative_selection, positive_selection
from picks.consensus.cnn.options import CnnOptions
from picks.consensus.cnn.train import RunData, TooLittleTraining, training_table
from picks.consensus.reliability import fit_latent
from picks.core.errors import PicksError
from picks.core.particles import Catalog, Particle
from picks.workflows.cnn_latent import (
    MIN_FEATURE_POSITIVES,
    LatentRefit,
    cnn_feature,
    refit_reasons,
)

CATALOG = Catalog([Particle("apo-ferritin", 60.0), Particle("ribosome", 150.0)])


def _candidates(posterior, *, full=None, forced=None, status=None) -> pd.DataFrame:
    n = len(posterior)
    full = np.ones(n, dtype=bool) if full is None else np.asarray(full)
    return pd.DataFrame(
        {
            "id": np.arange(1, n + 1),
            "tomogram": "TS_1",
            "particle": "apo-ferritin",
            "x": np.arange(n) * 500.0,
            "y": 100.0,
            "z": 100.0,
            "support": np.where(full, 3.0, 1.0),
            "pickers": np.where(full, "a,b,c", "a"),
            "vote_score": np.where(full, 1.0, 1 / 3),
            "status": status if status is not None else np.where(full, "positive", "doubtful"),
            "forced": forced if forced is not None else np.zeros(n, dtype=bool),
            "posterior": np.asarray(posterior, dtype=float),
        }
    )


def test_labels_come_from_the_posterior_and_doubtful_candidates_are_never_labels():
    # every candidate has full support: the support rule would make them all positives
    p = [0.99, P_HIGH, 0.5, 0.3, P_LOW, 0.02, np.nan]
    cands = _candidates(p)
    pos, rule = positive_selection(cands, "posterior")
    neg = negative_selection(cands, "posterior")
    assert "posterior" in rule
    assert pos.tolist() == [True, True, False, False, False, False, False]
    # confident junk with full support is a negative; doubtful (0.5, 0.3) and unknown are neither
    assert neg.tolist() == [False, False, False, False, True, True, False]
    assert not (pos & neg).any()
    full, _ = positive_selection(cands, "full")
    assert full.all()  # what the old rule would have taught


def test_a_trusted_reference_outranks_the_posterior():
    cands = _candidates([0.01, 0.01], forced=np.array([True, True]))
    cands.loc[1, "status"] = "negative"  # a trusted negative reference forced this one
    pos, _ = positive_selection(cands, "posterior")
    neg = negative_selection(cands, "posterior")
    assert pos.tolist() == [True, False]
    assert not neg.any()  # the reference decides; never a posterior label


def test_the_posterior_rule_needs_posteriors():
    cands = _candidates([0.9]).drop(columns=["posterior"])
    with pytest.raises(PicksError, match="no latent-class posteriors"):
        positive_selection(cands, "posterior")


def _run(cands: pd.DataFrame, n_noise: int = 20) -> RunData:
    noise = pd.DataFrame(
        {
            "id": np.arange(n_noise),
            "tomogram": "TS_1",
            "x": 3000.0 + np.arange(n_noise) * 400.0,
            "y": 900.0,
            "z": 100.0,
        }
    )
    empty = pd.DataFrame(columns=["id", "tomogram", "particle", "x", "y", "z", "role"])
    return RunData(candidates=cands, references=empty, noise=noise, avoid=empty)


def test_training_table_holds_confident_particles_junk_and_noise_only():
    p = np.r_[np.full(12, 0.97), np.full(5, 0.5), np.full(4, 0.03)]
    cands = _candidates(p)
    data = training_table(_run(cands), 1, catalog=CATALOG, positives="posterior")
    table = data.table
    used = set(table.loc[table["kind"] != "noise", "ref_id"])
    assert used == set(cands["id"][p >= P_HIGH]) | set(cands["id"][p <= P_LOW])
    assert (table.loc[table["kind"] == "latent-junk", "label"] == 0).all()
    assert data.counts["latent_junk"] == 4
    assert data.counts["positive_rule"].startswith("latent posterior")


def test_too_few_confident_particles_is_its_own_error():
    cands = _candidates(np.r_[np.full(3, 0.97), np.full(30, 0.5)])
    with pytest.raises(TooLittleTraining, match="too little training data"):
        training_table(_run(cands), 1, catalog=CATALOG, positives="posterior")


def _agreement_world(seed: int = 0):
    """One class, three pickers; particles and junk share the ambiguous one-picker pattern."""
    rng = np.random.default_rng(seed)
    recall, false = np.array([0.8, 0.7, 0.6]), np.array([0.2, 0.3, 0.25])
    z = np.r_[np.ones(300, int), np.zeros(300, int)]
    det = rng.random((600, 3)) < np.where(z[:, None] == 1, recall, false)
    keep = det.any(axis=1)
    return det[keep], z[keep], rng


def test_a_cnn_feature_moves_the_posterior_the_way_the_cnn_says():
    det, z, rng = _agreement_world()
    groups, eligible = np.zeros(len(z), int), np.ones((1, 3), bool)
    base = fit_latent(det, groups, eligible).posterior
    # a CNN that separates particles from junk (noisily): P(particle) high on particles
    cnn = np.where(z == 1, rng.beta(5, 2, len(z)), rng.beta(2, 5, len(z)))
    with_cnn = fit_latent(det, groups, eligible, features=cnn[:, None]).posterior
    assert with_cnn[z == 1].mean() > base[z == 1].mean() + 0.05
    assert with_cnn[z == 0].mean() < base[z == 0].mean() - 0.05
    # on the same detection pattern, a high CNN score gives the higher posterior
    one = det.sum(axis=1) == 1
    hi, lo = one & (cnn > 0.7), one & (cnn < 0.3)
    assert with_cnn[hi].mean() > with_cnn[lo].mean() + 0.2
    # a CNN that knows nothing (its score is noise) barely moves anything
    blind = fit_latent(det, groups, eligible, features=rng.random((len(z), 1))).posterior
    assert np.abs(blind - base).mean() < 0.05


def test_the_cnn_feature_is_left_out_for_classes_with_few_confident_particles():
    cands = pd.DataFrame({"particle": ["apo-ferritin", "ribosome", "apo-ferritin", None]})
    models = [
        {
            "card": {
                "training": {
                    "counts": {
                        "positives": {
                            "apo-ferritin": MIN_FEATURE_POSITIVES,
                            "ribosome": MIN_FEATURE_POSITIVES - 1,
                        }
                    }
                }
            }
        }
    ]
    particle = np.array([0.9, 0.8, np.nan, 0.4])
    feature, used, skipped = cnn_feature(cands, particle, models)
    assert used == ["apo-ferritin"] and skipped == ["ribosome"]
    assert feature[0] == 0.9 and np.isnan(feature[1:]).all()
    table = pd.DataFrame({"reason": ["r0", "r1", "r2", "r3"]})
    reasons = refit_reasons(table, feature, particle, used, cands["particle"].tolist())
    assert reasons[0].startswith("cnn+latent (CNN 0.900 as evidence): r0")
    assert "not used" in reasons[1] and "ribosome" in reasons[1] and "pickers decide" in reasons[1]
    assert "no CNN score" in reasons[2]


def test_latent_refit_maps_store_rows_to_cluster_rows():
    seen = {}

    class Decision:
        def __init__(self, extra):
            seen["extra"] = extra
            n = len(extra)
            self.votes = pd.DataFrame(
                {
                    "posterior": np.arange(n) / 10,
                    "accepted": np.arange(n) % 2 == 0,
                    "reason": [f"row {i}" for i in range(n)],
                }
            )

    index = pd.RangeIndex(3)
    refit = LatentRefit(Decision, index, np.array([2, 3, 0, 1]))  # 3: a reference-only row
    out = refit(np.array([0.2, 0.9, 0.0, 0.5]))
    assert seen["extra"]["cnn"].tolist() == [0.0, 0.5, 0.2]
    assert out["reason"].tolist() == ["row 2", None, "row 0", "row 1"]
    assert out["posterior"].iloc[[0, 2, 3]].tolist() == [0.2, 0.0, 0.1]
    assert np.isnan(out["posterior"].iloc[1]) and not out["accepted"].iloc[1]


def test_a_cnn_that_cannot_train_falls_back_to_the_latent_decision_and_says_so(tmp_path):
    import mrcfile

    from picks.core.store import Store
    from picks.core.tomograms import read_tomogram
    from picks.workflows.rescore import rescore_run

    path = tmp_path / "TS_1.mrc"
    with mrcfile.new(path) as mrc:
        mrc.set_data(np.random.default_rng(0).standard_normal((20, 40, 40)).astype(np.float32))
        mrc.voxel_size = 10.0
    with Store(tmp_path / "p.db") as store:
        store.add_tomograms([read_tomogram(path)])
        run = store.start_run("aggregate", {}, method="cnn", seed=0)
        # three confident particles (too few to train on), the rest doubtful
        cands = _candidates(np.r_[np.full(3, 0.95), np.full(12, 0.5)]).drop(columns=["id"])
        cands[["x", "y", "z"]] = np.random.default_rng(1).uniform(50, 150, (len(cands), 3))
        rows = cands.assign(run_id=run, accepted=1, reason="latent", decided_by="latent")
        store.db["consensus"].insert_all(rows.to_dict("records"))
        before = store.consensus(run)

        def never(_feature):
            raise AssertionError("no CNN, so no refit")

        options = CnnOptions(device="cpu", positives="posterior")
        kwargs = dict(tomograms=store.tomograms(), catalog=CATALOG, models_dir=tmp_path)
        summary = rescore_run(store, run, options, refit=never, **kwargs)
        assert summary["fallback"] == "latent"
        assert "could not train" in summary["warnings"][0]
        assert "keeps the latent-class decision" in summary["warnings"][0]
        after = store.consensus(run)
        pd.testing.assert_frame_equal(before, after)  # the latent decision stands, untouched
        with pytest.raises(TooLittleTraining):  # without a refit there is nothing to fall to
            rescore_run(store, run, options, **kwargs)


@pytest.mark.slow
def test_cnn_latent_runs_are_deterministic_and_order_independent(tmp_path):
    """Two ``method="cnn"`` runs, inputs in opposite orders: the same decisions, byte for byte,
    and the CNN feature did enter the model (decided_by cnn+latent)."""
    from picks.core.store import Store
    from picks.simulate.world import simulate
    from picks.workflows.aggregate import aggregate
    from picks.workflows.demo import aggregate_inputs

    sim = simulate(tmp_path / "sim", seed=0, n_tomograms=2)
    inputs = aggregate_inputs(sim)
    outputs = []
    for k, order in enumerate((inputs, inputs[::-1])):
        with Store(tmp_path / f"{k}.db") as store:
            result = aggregate(
                store, order, out=tmp_path / f"o{k}", tomograms=[sim.out / "tomograms"],
                formats=["czii-csv"], method="cnn", seed=0, cnn=CnnOptions(epochs=3),
            )  # fmt: skip
            assert result.cnn["decision"] == "cnn+latent" and result.cnn["cnn_feature_classes"]
            frame = store.consensus(result.run_id)
        assert set(frame["decided_by"]) <= {"cnn+latent", "reference"}
        outputs.append(frame[["x", "y", "z", "particle", "posterior", "accepted", "reason"]])
    pd.testing.assert_frame_equal(outputs[0], outputs[1])
