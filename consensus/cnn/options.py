"""Every option of the rescoring CNN in one typed, frozen value: :class:`CnnOptions`.

``picks aggregate --method cnn``, ``picks score``, ``picks train`` and the library functions
behind them (:func:`picks.workflows.rescore.rescore_run`, :func:`picks.consensus.cnn.train.fit`)
take one ``CnnOptions`` instead of twenty keyword arguments passed along three layers. Each
option is checked once, when the value is built; an error names the *parameter*
(`` `epochs` must be at least 1``), which the command line shows as its flag (``--epochs``,
:mod:`picks.cli.flags`). :func:`dataclasses.asdict` of it is what a run records as its
``cnn_options`` parameter (the keys are the option names, as before).

Pure: no TensorFlow, no numpy import, so building options costs nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from picks.core.errors import PicksError

# The vocabularies, as in picks.consensus.cnn.device.DEVICES, boxes.EDGE_MODES,
# volumes.READERS and labels.POSITIVE_RULES (tests/test_cnn_options.py keeps them equal):
# spelled out so that building options imports none of those modules.
DEVICES = ("auto", "cpu", "gpu")
EDGE_MODES = ("pad", "reflect", "drop")
READERS = ("mmap", "slab")
POSITIVE_RULES = ("auto", "full", "status", "posterior")
DEFAULT_WIDTHS = (8, 16, 32, 64)  # picks.consensus.cnn.network.DEFAULT_WIDTHS
DEFAULT_MAX_OUTSIDE = 0.5  # picks.consensus.cnn.boxes.DEFAULT_MAX_OUTSIDE


@dataclass(frozen=True)
class CnnOptions:
    """How the CNN trains (or which saved models it reuses), scores and decides.

    ``model``: None trains a model on the run; one path, or several for an ensemble (mean
    score), reuses saved models (kept as a tuple of strings). ``threshold``: None is the model
    card's decision rule (0.5 with ``combine``). ``positives``: the training-positive rule
    (:mod:`picks.consensus.cnn.labels`); None leaves it to the caller (``posterior`` after
    aggregate's latent decision, ``auto`` elsewhere). ``max_outside``: None is 0.5.
    The last group (``hard_negatives`` ... ``pool_per_positive``) only changes training.

    ``train_boxes``: the training budget of each round, in augmented boxes seen (a round stops
    at whichever comes first: this many boxes, ``epochs``, or early stopping); None trains by
    epochs only. ``pool_per_positive``: the hard-negative pool holds at most this many
    background boxes per training positive (and the mined negatives are its top
    1/``pool_factor``), so mining costs time in proportion to the positives; None leaves the
    pool at ``pool_factor`` × the hard negatives wanted.
    """

    model: tuple[str, ...] | None = None
    epochs: int = 30
    box: int = 32
    threshold: float | None = None
    combine: bool = False
    device: str = "auto"
    batch_size: int | None = None
    margin: float | None = None
    working_voxel_size: float | None = None
    edge: str = "pad"
    max_outside: float | None = None
    reader: str = "mmap"
    typicality: bool = True
    typicality_alpha: float | None = None
    positives: str | None = None
    # training only
    hard_negatives: float = 1.0
    patience: int = 5
    shift: int = 2
    widths: tuple[int, ...] = DEFAULT_WIDTHS
    val_fraction: float = 0.2
    pool_factor: int = 8
    # The defaults bound the 7-tomogram benchmark's CNN to ~2 min on 2 CPU cores (docs/cnn.md,
    # "Benchmark at the scale of the reference study"); before them training ran by epochs
    # only and mining scored a pool 8 × the noise samples.
    train_boxes: int | None = 30_000
    pool_per_positive: float | None = 2.0

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalised values are set once, here
        set_(self, "model", _models(self.model))
        set_(self, "widths", tuple(_integer("widths", w, 1) for w in _sequence(self.widths)))
        if not self.widths:
            raise PicksError("`widths`: expected at least one layer width")
        for name, low in (("epochs", 1), ("box", 8), ("patience", 1), ("pool_factor", 1)):
            set_(self, name, _integer(name, getattr(self, name), low))
        set_(self, "shift", _integer("shift", self.shift, 0))
        if self.batch_size is not None:
            set_(self, "batch_size", _integer("batch_size", self.batch_size, 1))
        if self.train_boxes is not None:
            set_(self, "train_boxes", _integer("train_boxes", self.train_boxes, 1))
        if self.pool_per_positive is not None:
            set_(self, "pool_per_positive", _positive("pool_per_positive", self.pool_per_positive))
        if self.threshold is not None:
            # the message stays the one users know: the threshold is a probability
            value = _number("threshold", self.threshold)
            if not 0.0 <= value <= 1.0:
                raise PicksError(
                    f"`threshold` {self.threshold}: expected a probability between 0 and 1"
                )
            set_(self, "threshold", value)
        for name in ("margin", "working_voxel_size"):
            value = getattr(self, name)
            if value is not None:
                set_(self, name, _positive(name, value))
        if self.max_outside is not None:
            set_(self, "max_outside", _fraction("max_outside", self.max_outside, closed=True))
        if self.typicality_alpha is not None:
            alpha = _number("typicality_alpha", self.typicality_alpha)
            if not 0.0 < alpha <= 1.0:  # a significance level: p / alpha gates the score
                raise PicksError(f"`typicality_alpha` {alpha}: expected a level in (0, 1]")
            set_(self, "typicality_alpha", alpha)
        set_(self, "val_fraction", _fraction("val_fraction", self.val_fraction))
        hard = _number("hard_negatives", self.hard_negatives)
        if hard < 0:
            raise PicksError(f"`hard_negatives` {self.hard_negatives}: expected a number ≥ 0")
        set_(self, "hard_negatives", hard)
        for name in ("combine", "typicality"):
            if not isinstance(getattr(self, name), bool):
                raise PicksError(f"`{name}` {getattr(self, name)!r}: expected True or False")
        for name, allowed in (("device", DEVICES), ("edge", EDGE_MODES), ("reader", READERS)):
            set_(self, name, _choice(name, getattr(self, name), allowed))
        if self.positives is not None:
            set_(self, "positives", _choice("positives", self.positives, POSITIVE_RULES))

    # -- building and recording ------------------------------------------------------------
    @classmethod
    def from_mapping(cls, options: Mapping[str, Any]) -> CnnOptions:
        """Options from a plain mapping (a run's recorded ``cnn_options``, an older caller's
        dict); an unknown key is an error that names it (a typo must not be ignored)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise PicksError(
                f"`cnn_options`: unknown option(s) {', '.join(map(repr, unknown))}",
                hint=f"Known options: {', '.join(sorted(known))}.",
            )
        return cls(**dict(options))

    def as_dict(self) -> dict[str, Any]:
        """What a run records (``params["cnn_options"]``): every option, JSON-ready."""
        out = asdict(self)
        for name in ("model", "widths"):
            out[name] = None if out[name] is None else list(out[name])
        return out

    def changed(self) -> list[str]:
        """The options that differ from their defaults (sorted): what a user asked for."""
        default = CnnOptions()
        return sorted(
            f.name for f in fields(self) if getattr(self, f.name) != getattr(default, f.name)
        )

    def with_positives(self, rule: str) -> CnnOptions:
        """These options with ``positives`` = ``rule`` unless a rule is already chosen."""
        return self if self.positives is not None else replace(self, positives=rule)

    @property
    def reads_run_data(self) -> bool:
        """Whether the CNN reads more of the run than its candidates: training (no
        ``model``), or ``combine``'s calibration on labelled points (with member picks)."""
        return self.model is None or self.combine

    @property
    def positive_rule(self) -> str:
        """The training-positive rule in force (``auto`` when none is chosen)."""
        return self.positives or "auto"

    @property
    def outside_limit(self) -> float:
        """The largest fraction of a box that may lie outside the tomogram."""
        return DEFAULT_MAX_OUTSIDE if self.max_outside is None else float(self.max_outside)


def as_options(value: CnnOptions | Mapping[str, Any] | None) -> CnnOptions | None:
    """``value`` as :class:`CnnOptions` (a mapping is converted, see
    :meth:`CnnOptions.from_mapping`); None stays None."""
    if value is None or isinstance(value, CnnOptions):
        return value
    if isinstance(value, Mapping):
        return CnnOptions.from_mapping(value)
    raise PicksError(f"`cnn_options` {value!r}: expected CnnOptions or a mapping of options")


# -- checks (each error names the parameter) ----------------------------------------------------
def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PicksError(f"`{name}` {value!r}: expected a finite number")
    return float(value)


def _integer(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise PicksError(f"`{name}` {value!r}: expected a whole number ≥ {low}")
    if int(value) < low:
        raise PicksError(f"`{name}` must be at least {low} (got {int(value)})")
    return int(value)


def _positive(name: str, value: Any) -> float:
    number = _number(name, value)
    if number <= 0:
        raise PicksError(f"`{name}` {value}: expected a number > 0")
    return number


def _fraction(name: str, value: Any, *, closed: bool = False) -> float:
    number = _number(name, value)
    inside = 0.0 <= number <= 1.0 if closed else 0.0 < number < 1.0
    if not inside:
        bounds = "between 0 and 1" if closed else "strictly between 0 and 1"
        raise PicksError(f"`{name}` {value}: expected a fraction {bounds}")
    return number


def _choice(name: str, value: Any, allowed: Sequence[str]) -> str:
    text = str(value)
    if text not in allowed:
        raise PicksError(f"`{name}` {value!r}: expected one of {', '.join(allowed)}")
    return text


def _sequence(value: Any) -> list:
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise PicksError(f"`widths` {value!r}: expected a sequence of layer widths")
    return list(value)


def _models(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    paths = [value] if isinstance(value, str | Path) else value
    if not isinstance(paths, Sequence) or not all(isinstance(p, str | Path) for p in paths):
        raise PicksError(f"`model` {value!r}: expected a path or a list of paths")
    if not paths:
        raise PicksError("`model`: no model given (an empty list)")
    return tuple(str(p) for p in paths)
