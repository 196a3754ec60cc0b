"""The rescoring network: a compact 3-D CNN (TensorFlow/Keras), its training and prediction.

Architecture (``widths=(8, 16, 32, 64)``, 32³ input; see docs/cnn.md for the table)::

    input 32³×1 → [Conv3D 3³ stride 2 → BatchNorm → ReLU] × 4  (16³×8, 8³×16, 4³×32, 2³×64)
    → global average pooling → dropout → Dense(1 + classes) → softmax

73,662 parameters with five particle classes. Output 0 is *noise*, output ``k ≥ 1`` the
``k``-th particle class of the model card; the CNN score of a candidate is
``P(particle) = 1 − P(noise)``. Stride-2 convolutions downsample without pooling layers, so
a 2-core CPU trains about a thousand boxes per second.

Devices (:func:`select_device`, GPUs, mixed precision, seeds) are set up in
:mod:`picks.consensus.cnn.device`; the typicality gate on the pooled features is in
:mod:`picks.consensus.cnn.ood`. Both are re-exported here.

Training (:func:`train`): weighted cross-entropy, Adam, per-epoch validation on held-out
boxes (loss and AUC of ``P(particle)``), learning rate halved after ``lr_patience`` epochs
without improvement, early stopping after ``patience`` epochs, and the weights of the best
epoch (lowest validation loss) restored at the end. ``max_boxes`` is a budget in augmented
boxes seen: training stops after the batch that reaches it (the partial epoch is validated
like a whole one), so its cost no longer grows with the number of labelled points. Augmentation keeps the missing-wedge
geometry (the wedge is symmetric about the tilt axis y and the beam z): random flips along
x, y and z — their combinations are the 180° rotations about x, y and z — and random shifts
of up to ``border`` voxels (a random crop of the larger extracted cube). No 90° rotations:
they would turn the wedge.

TensorFlow is imported inside functions only (it costs seconds to import).
"""

from __future__ import annotations

import json
import math
import os
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

# device set-up and the typicality gate moved out; ``X as X`` keeps them importable from here
from picks.consensus.cnn.device import CPU_BATCH as CPU_BATCH
from picks.consensus.cnn.device import DEVICES as DEVICES
from picks.consensus.cnn.device import GPU_BATCH_PER_REPLICA as GPU_BATCH_PER_REPLICA
from picks.consensus.cnn.device import DevicePlan as DevicePlan
from picks.consensus.cnn.device import _native_stderr_into as _native_stderr_into
from picks.consensus.cnn.device import list_gpus as list_gpus
from picks.consensus.cnn.device import make_strategy as make_strategy
from picks.consensus.cnn.device import precision as precision
from picks.consensus.cnn.device import seed_everything as seed_everything
from picks.consensus.cnn.device import select_device as select_device
from picks.consensus.cnn.device import tensorflow as tensorflow
from picks.consensus.cnn.ood import DEFAULT_ALPHA as DEFAULT_ALPHA
from picks.consensus.cnn.ood import fit_typicality as fit_typicality
from picks.consensus.cnn.ood import typicality as typicality
from picks.core.errors import PicksError
from picks.core.files import sha256_file

NOISE = "noise"
DEFAULT_WIDTHS = (8, 16, 32, 64)


# -- the model --------------------------------------------------------------------------------
def build_model(
    box: int, n_outputs: int, *, widths: Sequence[int] = DEFAULT_WIDTHS, dropout: float = 0.2
):
    """The 3-D CNN (uncompiled). ``n_outputs`` = 1 (noise) + number of particle classes."""
    tensorflow()  # quiet first import (keras imports TensorFlow)
    import keras
    from keras import layers

    inputs = keras.Input((box, box, box, 1), name="box")
    x = inputs
    for i, width in enumerate(widths):
        x = layers.Conv3D(
            width,
            3,
            strides=2,
            padding="same",
            use_bias=False,
            kernel_initializer="he_normal",
            name=f"conv{i + 1}",
        )(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"bn{i + 1}")(x)
        x = layers.ReLU(name=f"relu{i + 1}")(x)
    x = layers.GlobalAveragePooling3D(name="pool")(x)
    x = layers.Dropout(dropout, name="dropout")(x)
    x = layers.Dense(n_outputs, name="logits")(x)
    outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="picks_cnn")


# -- augmentation and batches -----------------------------------------------------------------
def crop(boxes: np.ndarray, box: int, offsets: np.ndarray | None = None) -> np.ndarray:
    """``box``³ windows as float32: the centre one, or the ones at ``offsets`` (n, 3).

    Not renormalised: extraction already gives the central ``box``³ of every cube zero mean
    and unit s.d., and a window shifted by a few voxels stays within a few per cent of that.
    """
    n, size = len(boxes), boxes.shape[1]
    border = (size - box) // 2
    if offsets is None:
        if border == 0:
            return boxes.astype(np.float32, copy=False)
        inner = slice(border, border + box)
        return boxes[:, inner, inner, inner].astype(np.float32)
    out = np.empty((n, box, box, box), dtype=np.float32)
    for i, (oz, oy, ox) in enumerate(offsets):
        out[i] = boxes[i, oz : oz + box, oy : oy + box, ox : ox + box]
    return out


def augment(boxes: np.ndarray, box: int, rng: np.random.Generator) -> np.ndarray:
    """Wedge-preserving augmentation: random shift (crop) and random flips of z, y, x.

    The eight flip combinations are the identity, the three mirror flips, the three 180°
    rotations (about x: flip y+z; about y: flip x+z; about z: flip x+y) and the inversion;
    each keeps a wedge that is symmetric about the y axis and the z axis in place.
    """
    n, size = len(boxes), boxes.shape[1]
    offsets = rng.integers(0, size - box + 1, size=(n, 3))
    out = crop(boxes, box, offsets)
    flips = rng.integers(0, 2, size=(n, 3)).astype(bool)
    for i in range(n):
        axes = tuple(a for a in range(3) if flips[i, a])
        if axes:
            out[i] = np.flip(out[i], axis=axes)
    return out


def _epoch_batches(
    boxes: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    train_idx: np.ndarray,
    box: int,
    batch_size: int,
    seed: int,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Endless augmented batches: one reshuffled pass over ``train_idx`` per epoch."""
    epoch = 0
    while True:
        rng = np.random.default_rng([seed, epoch])
        order = train_idx[rng.permutation(len(train_idx))]
        for start in range(0, len(order), batch_size):
            idx = np.sort(order[start : start + batch_size])
            x = augment(boxes[idx], box, rng)[..., None]
            yield x, labels[idx].astype(np.int32), weights[idx].astype(np.float32)
        epoch += 1


# -- training ---------------------------------------------------------------------------------
@dataclass
class TrainResult:
    """What training did: per-epoch history, the best epoch and its validation metrics."""

    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    val_loss: float = float("nan")
    val_auc: float = float("nan")
    val_accuracy: float = float("nan")
    epochs_run: int = 0
    stopped_early: bool = False
    boxes_seen: int = 0  # augmented training boxes fed to the network
    box_budget: int | None = None
    stopped_at_budget: bool = False
    train_seconds: float = 0.0
    samples_per_s: float = 0.0
    device: str = "CPU"

    def as_dict(self) -> dict:
        return asdict(self)


def predict(
    model,
    boxes: np.ndarray | Iterable[np.ndarray],
    *,
    box: int | None = None,
    batch_size: int = 256,
    features: bool = False,
):
    """Class probabilities for boxes (an array, or an iterable of arrays), float32 (n, k).

    With ``features=True`` returns ``(probabilities, features)``, the features being the
    pooled activations (the input of the last layer) used by :func:`typicality`.
    """
    chunks: Iterable[np.ndarray]
    if isinstance(boxes, np.ndarray):
        chunks = (boxes[i : i + batch_size] for i in range(0, len(boxes), batch_size))
    else:
        chunks = boxes
    size = int(model.input_shape[1])
    net = _feature_net(model) if features else model
    probs, feats = [], []
    for chunk in chunks:
        if not len(chunk):
            continue
        x = (
            crop(chunk, box or size)
            if chunk.shape[1] != size or chunk.dtype != np.float32
            else chunk
        )
        out = net.predict_on_batch(x[..., None])
        if features:
            probs.append(np.asarray(out[0], dtype=np.float32))
            feats.append(np.asarray(out[1], dtype=np.float32))
        else:
            probs.append(np.asarray(out, dtype=np.float32))
    k = int(model.output_shape[-1])
    p = np.concatenate(probs) if probs else np.zeros((0, k), dtype=np.float32)
    if not features:
        return p
    width = int(model.get_layer("pool").output.shape[-1])
    return p, (np.concatenate(feats) if feats else np.zeros((0, width), dtype=np.float32))


_FEATURE_NETS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _feature_net(model):
    """The model with a second output, the pooled features (cached per model)."""
    tensorflow()  # quiet first import (keras imports TensorFlow)
    import keras

    net = _FEATURE_NETS.get(model)
    if net is None:
        net = keras.Model(model.input, [model.output, model.get_layer("pool").output])
        _FEATURE_NETS[model] = net
    return net


def weighted_loss(probs: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> float:
    """Mean weighted cross-entropy (the training loss, evaluated in NumPy)."""
    p = np.clip(probs[np.arange(len(labels)), labels], 1e-7, 1.0)
    return float(np.sum(-np.log(p) * weights) / max(np.sum(weights), 1e-12))


def binary_auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """ROC AUC of a score for a boolean target; NaN when one class is missing."""
    from sklearn.metrics import roc_auc_score

    if positive.all() or not positive.any():
        return float("nan")
    return float(roc_auc_score(positive, scores))


def train(
    boxes: np.ndarray,
    labels: np.ndarray,
    weights: np.ndarray,
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    *,
    n_outputs: int,
    box: int,
    epochs: int = 30,
    batch_size: int | None = None,
    seed: int = 0,
    plan: DevicePlan | None = None,
    widths: Sequence[int] = DEFAULT_WIDTHS,
    learning_rate: float = 1e-3,
    patience: int = 5,
    lr_patience: int = 2,
    deterministic: bool | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    max_boxes: int | None = None,
):
    """Train the CNN; returns ``(model, TrainResult)`` with the best epoch's weights.

    ``boxes`` (n, size, size, size) may be float16 and larger than ``box`` (the border is for
    shift augmentation); ``labels`` are 0 (noise) .. n_outputs−1; ``weights`` per sample
    balance the classes. ``on_epoch`` gets each epoch's record (for progress bars).
    ``max_boxes``: stop once this many training boxes were seen (None: ``epochs`` only).
    """
    tf = tensorflow()
    import keras

    plan = plan or select_device("auto")
    if deterministic is None:
        deterministic = plan.kind == "cpu"
    seed_everything(seed, deterministic=deterministic)
    batch_size = int(batch_size or plan.default_batch_size())
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise PicksError("training needs samples in both the training and the validation split")
    x_val = crop(boxes[val_idx], box)[..., None]
    y_val = labels[val_idx].astype(np.int64)
    w_val = weights[val_idx].astype(np.float64)
    result = TrainResult(device=plan.describe(), box_budget=max_boxes)
    strategy = make_strategy(plan)
    with precision(plan), strategy.scope():
        model = build_model(box, n_outputs, widths=widths)
        optimizer = keras.optimizers.Adam(learning_rate)
        model.compile(
            optimizer=optimizer,
            loss=keras.losses.SparseCategoricalCrossentropy(),
            jit_compile=False,
        )
    spec = (
        tf.TensorSpec((None, box, box, box, 1), tf.float32),
        tf.TensorSpec((None,), tf.int32),
        tf.TensorSpec((None,), tf.float32),
    )
    dataset = tf.data.Dataset.from_generator(
        lambda: _epoch_batches(
            boxes, labels, weights, np.asarray(train_idx), box, batch_size, seed
        ),
        output_signature=spec,
    ).prefetch(2)
    if plan.strategy == "mirrored":
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA
        )
        dataset = dataset.with_options(options)
    steps = math.ceil(len(train_idx) / batch_size)
    monitor = _Monitor(x_val, y_val, w_val, patience, lr_patience, learning_rate, result, on_epoch)
    monitor.budget = _BoxBudget(max_boxes, len(train_idx), batch_size)
    start = time.perf_counter()
    model.fit(
        dataset,
        epochs=int(epochs),
        steps_per_epoch=steps,
        verbose=0,
        shuffle=False,
        callbacks=[monitor.callback()],
    )
    result.train_seconds = time.perf_counter() - start
    fit_seconds = sum(h["train_seconds"] for h in result.history)
    result.samples_per_s = (result.boxes_seen / fit_seconds) if fit_seconds else 0.0
    return model, result


@dataclass
class _BoxBudget:
    """Counts the training boxes seen, batch by batch (the last batch of an epoch is short)."""

    limit: int | None
    n_train: int
    batch_size: int
    seen: int = 0

    def add(self, batch: int) -> int:
        """Count batch number ``batch`` of the current epoch; returns the boxes seen so far."""
        self.seen += max(0, min(self.batch_size, self.n_train - batch * self.batch_size))
        return self.seen

    @property
    def spent(self) -> bool:
        return self.limit is not None and self.seen >= self.limit


class _Monitor:
    """Validation, learning-rate schedule, early stopping and best-weight restore."""

    def __init__(self, x_val, y_val, w_val, patience, lr_patience, lr, result, on_epoch):
        self.x_val, self.y_val, self.w_val = x_val, y_val, w_val
        self.patience, self.lr_patience, self.lr = patience, lr_patience, lr
        self.result, self.on_epoch = result, on_epoch
        self.best = math.inf
        self.best_weights = None
        self.wait = self.wait_lr = 0
        self.started = 0.0
        self.budget: _BoxBudget | None = None

    def callback(self):
        tensorflow()  # quiet first import (keras imports TensorFlow)
        import keras

        monitor = self

        class Callback(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                monitor.started = time.perf_counter()

            def on_train_batch_end(self, batch, logs=None):
                budget = monitor.budget
                if budget is not None:
                    monitor.result.boxes_seen = budget.add(batch)
                    if budget.spent:
                        monitor.result.stopped_at_budget = True
                        self.model.stop_training = True

            def on_epoch_end(self, epoch, logs=None):
                monitor.epoch_end(self.model, epoch, logs or {})

            def on_train_end(self, logs=None):
                if monitor.best_weights is not None:
                    self.model.set_weights(monitor.best_weights)

        return Callback()

    def epoch_end(self, model, epoch: int, logs: dict) -> None:
        fit_seconds = time.perf_counter() - self.started
        probs = predict(model, self.x_val[..., 0])
        val_loss = weighted_loss(probs, self.y_val, self.w_val)
        particle = 1.0 - probs[:, 0]
        positive = self.y_val > 0
        auc = binary_auc(particle, positive)
        accuracy = float(np.mean((particle >= 0.5) == positive))
        record = {
            "epoch": epoch + 1,
            "loss": float(logs.get("loss", float("nan"))),
            "val_loss": val_loss,
            "val_auc": auc,
            "val_accuracy": accuracy,
            "learning_rate": self.lr,
            "train_seconds": fit_seconds,
        }
        self.result.history.append(record)
        self.result.epochs_run = epoch + 1
        if val_loss < self.best - 1e-4:
            self.best = val_loss
            self.best_weights = model.get_weights()
            self.result.best_epoch = epoch + 1
            self.result.val_loss, self.result.val_auc, self.result.val_accuracy = (
                val_loss,
                auc,
                accuracy,
            )
            self.wait = self.wait_lr = 0
        else:
            self.wait += 1
            self.wait_lr += 1
            if self.wait_lr >= self.lr_patience and self.lr > 1e-5:
                self.lr = max(self.lr * 0.5, 1e-5)
                model.optimizer.learning_rate.assign(self.lr)
                self.wait_lr = 0
            if self.wait >= self.patience:
                model.stop_training = True
                self.result.stopped_early = True
        if self.on_epoch is not None:
            self.on_epoch(record)


# -- saving and loading -----------------------------------------------------------------------
def card_path(model_path: str | Path) -> Path:
    """The model card written next to a model: ``name.keras`` → ``name.card.json``."""
    path = Path(model_path)
    return path.with_name(path.name.removesuffix(".keras") + ".card.json")


def save(model, path: str | Path, card: dict, *, force: bool = False) -> str:
    """Write ``path`` (.keras) and its model card atomically; returns the model's sha256.

    An existing file is an error unless ``force``.
    """

    path = Path(path)
    if path.suffix != ".keras":
        raise PicksError(f"model file {path}: the name must end in .keras")
    if path.exists() and not force:
        raise PicksError(f"{path} exists", hint="Use `force=True` to replace it, or another `out`.")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")  # Keras wants .keras
    try:
        model.save(str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    digest = sha256_file(path)
    card = dict(card, sha256=digest, file=path.name)
    sidecar = card_path(path)
    tmp_card = sidecar.with_name(f".{sidecar.name}.{os.getpid()}.tmp")
    tmp_card.write_text(json.dumps(card, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp_card, sidecar)
    return digest


def load(path: str | Path, *, card: dict | None = None):
    """Load a saved model and its card: ``(model, card)``.

    The card comes from ``card`` (e.g. the store's copy) or the ``.card.json`` beside the model.
    """
    tensorflow()  # quiet first import (keras imports TensorFlow)
    import keras

    path = Path(path)
    if not path.exists():
        raise PicksError(f"model {path} does not exist")
    if card is None:
        sidecar = card_path(path)
        if not sidecar.exists():
            raise PicksError(
                f"model {path}: its model card {sidecar.name} is missing",
                hint="Models are saved by 'picks train' with a card beside them.",
            )
        card = json.loads(sidecar.read_text())
    try:
        model = keras.models.load_model(str(path), compile=False)
    except Exception as exc:
        raise PicksError(f"model {path}: cannot load it ({type(exc).__name__}: {exc})") from None
    for key in ("box", "voxel_size", "classes"):
        if key not in card:
            raise PicksError(f"model card of {path} lacks {key!r}")
    return model, card
