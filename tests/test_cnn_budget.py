"""The CNN's bounded cost: a training budget in boxes seen (``train_boxes``) and a
hard-negative pool bounded by the positives (``pool_per_positive``)."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from picks.cli import get_app
from picks.consensus.cnn import device
from picks.consensus.cnn import network as cnn
from picks.consensus.cnn.labels import MIN_POOL, mining_sizes
from picks.consensus.cnn.options import CnnOptions
from picks.core.errors import PicksError


def _train(max_boxes: int | None, epochs: int = 5):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((120, 12, 12, 12)).astype(np.float16)
    y = (np.arange(120) % 2).astype(np.int64)
    idx = np.arange(120)
    return cnn.train(
        x,
        y,
        np.ones(120, np.float32),
        idx[:100],  # 100 training boxes: batches of 32, 32, 32 and 4 per epoch
        idx[100:],
        n_outputs=2,
        box=8,
        epochs=epochs,
        seed=0,
        plan=device.DevicePlan("cpu"),
        widths=(2, 4),
        batch_size=32,
        patience=99,  # early stopping must not interfere with the count
        max_boxes=max_boxes,
    )


def test_training_stops_at_the_box_budget() -> None:
    # 150 boxes: epoch 1 sees 100, epoch 2 stops after its second batch (164 ≥ 150)
    model, result = _train(max_boxes=150)
    assert result.boxes_seen == 164 and result.stopped_at_budget
    assert result.epochs_run == 2 and len(result.history) == 2  # the partial epoch validated
    assert int(model.optimizer.iterations.numpy()) == 4 + 2  # optimiser steps actually taken
    assert result.box_budget == 150 and not result.stopped_early


def test_without_a_budget_the_epochs_decide_and_boxes_are_still_counted() -> None:
    model, result = _train(max_boxes=None, epochs=2)
    assert result.boxes_seen == 200 and not result.stopped_at_budget
    assert result.epochs_run == 2 and int(model.optimizer.iterations.numpy()) == 8
    # a budget larger than the epochs allow changes nothing
    _, capped = _train(max_boxes=10_000, epochs=2)
    assert capped.boxes_seen == 200 and not capped.stopped_at_budget


def test_the_mining_pool_is_bounded_by_the_positives() -> None:
    unbounded = CnnOptions(pool_per_positive=None)
    assert mining_sizes(3000, 3000, unbounded) == (3000, 24000)  # 1 per noise sample, pool 8×
    # bounded (default 2 boxes per positive), of which the top 1/8 are kept
    assert mining_sizes(3000, 3000, CnnOptions()) == (750, 6000)
    assert mining_sizes(3000, 3000, CnnOptions(pool_per_positive=4.0)) == (1500, 12000)
    # never below MIN_POOL (2048) boxes: small runs mine as before
    assert MIN_POOL == 2048
    assert mining_sizes(300, 100, CnnOptions()) == (256, 2048)
    assert mining_sizes(30, 100, CnnOptions()) == (30, 240)  # a looser bound changes nothing
    assert mining_sizes(3000, 3000, CnnOptions(hard_negatives=0.05)) == (150, 1200)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"train_boxes": 0}, "`train_boxes` must be at least 1"),
        ({"train_boxes": 1.5}, "`train_boxes` 1.5: expected a whole number"),
        ({"pool_per_positive": 0}, "`pool_per_positive` 0: expected a number > 0"),
        ({"pool_per_positive": float("inf")}, "`pool_per_positive` inf: expected a finite"),
    ],
)
def test_bad_bounds_are_errors_that_name_the_parameter(options, message) -> None:
    with pytest.raises(PicksError) as info:
        CnnOptions(**options)
    assert str(info.value).startswith(message), str(info.value)


def test_bounds_are_recorded_and_none_lifts_them() -> None:
    recorded = CnnOptions().as_dict()
    assert recorded["train_boxes"] == 30_000 and recorded["pool_per_positive"] == 2.0
    lifted = CnnOptions(train_boxes=None, pool_per_positive=None)
    assert lifted.changed() == ["pool_per_positive", "train_boxes"]
    assert CnnOptions.from_mapping(lifted.as_dict()) == lifted
    assert CnnOptions(train_boxes=2e4).train_boxes == 20_000


@pytest.mark.parametrize(
    ("flags", "shown"),
    [
        (["--train-boxes", "-5"], "--train-boxes must be at least 1"),
        (["--pool-per-positive", "-1"], "--pool-per-positive -1.0: expected a number > 0"),
    ],
)
def test_the_command_line_names_the_flags(tmp_path, flags, shown) -> None:
    csv = tmp_path / "a.csv"
    csv.write_text("experiment,particle_type,x,y,z\nTS_1,ribosome,1,2,3\n")
    result = CliRunner().invoke(
        get_app(), ["aggregate", f"a={csv}", *flags, "--db", str(tmp_path / "p.db")]
    )
    assert isinstance(result.exception, PicksError), result.output
    assert str(result.exception).startswith(shown), str(result.exception)


@pytest.mark.parametrize("command", ["aggregate", "train"])
def test_help_shows_the_bounds(command) -> None:
    result = CliRunner().invoke(get_app(), [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "--train-boxes" in result.output and "--pool-per-positive" in result.output
