"""Library errors and warnings name parameters (`` `threshold` ``, `` `force=True` ``); the command
line shows the flag a user types instead (``--threshold``, ``--force``). The library writes a
parameter in single backticks; :func:`to_flags` rewrites the known ones when an error leaves a
command, the stderr handler of :mod:`picks.cli.logs` does it for every warning and note, and
:func:`warnings_to_flags` for the ``warnings`` lists of ``--json`` output."""

from __future__ import annotations

import re
from typing import Any

# parameter of the library functions -> the flag of the command that sets it. A name maps to
# one flag in every command: adapter options are `options` (--option of import/convert)
# and `input_options` (aggregate's --input-option); simulate's count is `n_tomograms`.
FLAGS = {
    "adapter": "--adapter",
    "allow_incomplete": "--allow-incomplete",
    "batch_size": "--batch-size",
    "binning": "--binning",
    "box": "--box",
    "box_size": "--box-size",
    "combine": "--combine",
    "contrast": "--contrast",
    "device": "--device",
    "edge": "--edge",
    "epochs": "--epochs",
    "force": "--force",
    "formats": "--format",
    "hard_negatives": "--hard-negatives",
    "input_options": "--input-option",
    "margin": "--margin",
    "max_outside": "--max-outside",
    "method": "--method",
    "min_support": "--min-support",
    "model": "--model",
    "n_tomograms": "--tomograms",
    "options": "--option",
    "out": "--out",
    "particle": "--particle",
    "patience": "--patience",
    "pick": "--pick",
    "pool_per_positive": "--pool-per-positive",
    "positives": "--positive",
    "radii": "--radius",
    "registry": "--registry",
    "scheduler": "--scheduler",
    "size": "--size",
    "snr": "--snr",
    "threshold": "--threshold",
    "to": "--to",
    "to_options": "--to-option",
    "to_voxel_size": "--to-voxel-size",
    "tomogram": "--tomogram",
    "tomograms": "--tomograms",
    "train_boxes": "--train-boxes",
    "voxel_size": "--voxel-size",
    "weights": "--weights",
    "workers": "--workers",
    "working_voxel_size": "--working-voxel-size",
}
_PARAMETER = re.compile(r"`(\w+)(=True)?`")


def flag_text(text: str | None) -> str | None:
    """``text`` with each backticked known parameter replaced by its flag."""
    if not text:
        return text

    def flag(match: re.Match) -> str:
        return FLAGS.get(match.group(1), match.group(0))

    return _PARAMETER.sub(flag, text)


def to_flags(exc: BaseException) -> BaseException:
    """Rewrite a :class:`~picks.core.errors.PicksError`'s message and hint for the command line
    (in place; returns it)."""
    if exc.args and isinstance(exc.args[0], str):
        exc.args = (flag_text(exc.args[0]), *exc.args[1:])
    hint = getattr(exc, "hint", None)
    if isinstance(hint, str):
        exc.hint = flag_text(hint)
    return exc


def warnings_to_flags(data: Any) -> Any:
    """``data`` (JSON-ready) with the strings of every ``warnings`` list rewritten by
    :func:`flag_text`; everything else (paths, names, values) is left as it is."""
    if isinstance(data, dict):
        return {
            key: (
                [flag_text(w) if isinstance(w, str) else w for w in value]
                if key == "warnings" and isinstance(value, list)
                else warnings_to_flags(value)
            )
            for key, value in data.items()
        }
    if isinstance(data, list | tuple):
        return [warnings_to_flags(item) for item in data]
    return data
