"""Where the rescoring network runs: TensorFlow's quiet first import, the device plan
(CPU, one GPU, several GPUs), its ``tf.distribute`` strategy, precision and seeds.

Devices (:func:`select_device`): ``auto`` uses the GPUs TensorFlow sees and the CPU
otherwise; ``gpu`` is an error without a GPU; ``cpu`` ignores GPUs. On GPU the model runs
in mixed precision (float16 compute, float32 variables and softmax) and several GPUs are used
through ``tf.distribute.MirroredStrategy``. Seeds go through ``keras.utils.set_random_seed``;
op determinism (``tf.config.experimental.enable_op_determinism``) is on by default on the CPU,
where it costs nothing measurable, and off on GPU, where deterministic kernels are slower
(``deterministic=True`` forces it).

TensorFlow is imported inside functions only (it costs seconds to import). Split from
:mod:`picks.consensus.cnn.network`, which re-exports these names.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from picks.core.errors import PicksError

# TensorFlow's C++ start-up notes (oneDNN, CUDA probes) are noise on a terminal. Every
# ``import tensorflow``/``keras`` of the package goes through :func:`tensorflow` below, so setting
# the level when this module is imported comes before the first one; a level the user set wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
_TF = None
_TF_LOCK = threading.Lock()


@contextlib.contextmanager
def _native_stderr_into(file) -> Iterator[None]:
    """Point file descriptor 2 (where C++ code logs) at ``file`` for the block."""
    if sys.stderr is not None:
        sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(file.fileno(), 2)
    try:
        yield
    finally:
        if sys.stderr is not None:
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def tensorflow():
    """The ``tensorflow`` module, imported once with its native start-up log kept quiet.

    TensorFlow 2.2x logs oneDNN and CUDA probe notes from C++ before ``absl`` reads
    ``TF_CPP_MIN_LOG_LEVEL``, so the variable alone does not silence them. While the level is
    2 or more (the default here), the first import and device probe write their native log to
    a temporary file that is shown only if the import fails; ``TF_CPP_MIN_LOG_LEVEL=0`` shows
    everything. A lock makes the first import one thread's (fd 2 is process-wide).
    """
    global _TF
    if _TF is not None:
        return _TF
    with _TF_LOCK:
        if _TF is not None:
            return _TF
        try:
            quiet = int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0")) >= 2
        except ValueError:
            quiet = True
        if not quiet or sys.stderr is None:
            import tensorflow as tf
        else:
            with tempfile.TemporaryFile() as log:
                try:
                    with _native_stderr_into(log):
                        import tensorflow as tf

                        tf.config.list_physical_devices("GPU")  # the CUDA probe logs here
                except BaseException:
                    log.seek(0)
                    sys.stderr.write(log.read().decode("utf-8", errors="replace"))
                    raise
        _TF = tf
    return tf


DEVICES = ("auto", "cpu", "gpu")
CPU_BATCH = 64
GPU_BATCH_PER_REPLICA = 256


# -- devices ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class DevicePlan:
    """Where the network runs: ``kind`` cpu|gpu, GPU count, precision and strategy."""

    kind: str
    gpus: tuple[str, ...] = ()
    mixed_precision: bool = False
    strategy: str = "default"  # default | one_device | mirrored

    @property
    def replicas(self) -> int:
        return max(1, len(self.gpus)) if self.kind == "gpu" else 1

    def default_batch_size(self) -> int:
        return GPU_BATCH_PER_REPLICA * self.replicas if self.kind == "gpu" else CPU_BATCH

    def describe(self) -> str:
        if self.kind == "cpu":
            return "CPU"
        return f"{len(self.gpus)} GPU ({self.strategy}, {'mixed float16' if self.mixed_precision else 'float32'})"


def list_gpus() -> list[str]:
    """Names of the GPUs TensorFlow sees (empty without CUDA)."""
    tf = tensorflow()

    return [d.name for d in tf.config.list_physical_devices("GPU")]


def select_device(device: str = "auto", gpus: Sequence[str] | None = None) -> DevicePlan:
    """Decide where to run. ``gpus`` defaults to :func:`list_gpus` (pass a list to test)."""
    device = (device or "auto").lower()
    if device not in DEVICES:
        raise PicksError(f"`device` {device!r}: expected one of {', '.join(DEVICES)}")
    if device == "cpu":
        gpus = list(gpus) if gpus is not None else []
        # with GPUs present, pin the work to the CPU explicitly
        return DevicePlan("cpu", (), False, "one_device" if gpus else "default")
    found = tuple(gpus if gpus is not None else list_gpus())
    if not found:
        if device == "gpu":
            raise PicksError(
                "`device` gpu: TensorFlow sees no GPU on this machine",
                hint="Use `device` cpu or auto, or install a CUDA-enabled TensorFlow "
                "(pip install 'tensorflow[and-cuda]').",
            )
        return DevicePlan("cpu")
    return DevicePlan("gpu", found, True, "mirrored" if len(found) > 1 else "one_device")


def make_strategy(plan: DevicePlan):
    """The ``tf.distribute`` strategy for a plan."""
    tf = tensorflow()

    if plan.strategy == "mirrored":
        return tf.distribute.MirroredStrategy()
    if plan.strategy == "one_device":
        return tf.distribute.OneDeviceStrategy("/gpu:0" if plan.kind == "gpu" else "/cpu:0")
    return tf.distribute.get_strategy()


@contextlib.contextmanager
def precision(plan: DevicePlan) -> Iterator[None]:
    """Keras dtype policy for the plan (mixed float16 on GPU), restored afterwards."""
    tensorflow()  # quiet first import (keras imports TensorFlow)
    import keras

    old = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16" if plan.mixed_precision else "float32")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(old)


def seed_everything(seed: int, *, deterministic: bool) -> None:
    """Python, NumPy and TensorFlow seeds; optionally deterministic TensorFlow kernels."""
    tf = tensorflow()
    import keras

    keras.utils.set_random_seed(int(seed))
    if deterministic:
        tf.config.experimental.enable_op_determinism()
