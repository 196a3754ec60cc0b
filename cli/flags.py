"""Library errors name parameters (`` `threshold` ``, `` `force=True` ``); the command line shows
the flag a user types instead (``--threshold``, ``--force``). The library writes a parameter in
single backticks; :func:`to_flags` rewrites the known ones when an error leaves a command."""

from __future__ import annotations

import re

# parameter of the library functions -> the flag of the command that sets it
FLAGS = {
    "allow_incomplete": "--allow-incomplete",
    "box_size": "--box-size",
    "combine": "--combine",
    "device": "--device",
    "force": "--force",
    "formats": "--format",
    "input_options": "--input-option",
    "method": "--method",
    "min_support": "--min-support",
    "model": "--model",
    "out": "--out",
    "particle": "--particle",
    "positives": "--positive",
    "radii": "--radius",
    "scheduler": "--scheduler",
    "threshold": "--threshold",
    "tomograms": "--tomograms",
    "voxel_size": "--voxel-size",
    "weights": "--weights",
    "workers": "--workers",
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
