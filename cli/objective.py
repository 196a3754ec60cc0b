"""``--objective``: the text a user types, parsed into the library's typed objective.

``f1``, ``f4``, ``fBETA`` (``f2``, ``f0.5``): maximise the expected F-beta (the same as
``--beta``); ``precision@recall=R``: the most precise set whose expected recall reaches R;
``precision=P``: the largest set whose expected precision is at least P (R, P in (0, 1]).
See :class:`picks.consensus.decide.Objective`.
"""

from __future__ import annotations

import math
import re

from picks.consensus.decide import Objective
from picks.core.errors import PicksError

OBJECTIVE_HELP = "f1, f4, fBETA (e.g. f2), precision@recall=R or precision=P (R, P in (0, 1])"

_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_FBETA = re.compile(rf"f{_NUMBER}")
_TARGET = re.compile(rf"precision(@recall)?={_NUMBER}")


def parse_objective(text: str, *, where: str = "--objective") -> Objective:
    """``text`` as an :class:`Objective`; a clear error naming ``where`` otherwise."""
    value = str(text).strip().lower().replace(" ", "")
    if match := _FBETA.fullmatch(value):
        beta = float(match.group(1))
        if beta > 0 and math.isfinite(beta):
            return Objective.fbeta(beta)
    elif match := _TARGET.fullmatch(value):
        target = float(match.group(2))
        if 0 < target <= 1:
            return Objective("recall" if match.group(1) else "precision", target)
        raise PicksError(f"{where} {text!r}: the target must lie in (0, 1], e.g. 0.8 (not 80)")
    raise PicksError(f"{where} {text!r}: expected {OBJECTIVE_HELP}")


def resolve_objective(
    beta: float | None,
    objective: str | None,
    *,
    names: tuple[str, str] = ("--beta", "--objective"),
    default_beta: float = 4.0,
) -> Objective:
    """The objective from ``--beta`` and ``--objective`` (``None``: not given).

    Both given is fine only when they say the same thing (``--beta 4 --objective f4``);
    otherwise it is an error naming both, since which one wins would change the result.
    """
    if beta is not None and not (math.isfinite(beta) and beta > 0):
        raise PicksError(f"{names[0]} {beta!r}: expected a number > 0 (4 for the CZII metric)")
    if objective is None:
        return Objective.fbeta(default_beta if beta is None else float(beta))
    parsed = parse_objective(objective, where=names[1])
    if beta is not None and not (parsed.kind == "fbeta" and parsed.beta == float(beta)):
        raise PicksError(
            f"{names[0]} {beta:g} and {names[1]} {objective} disagree: give one of them "
            f"({names[1]} f{beta:g} is the same as {names[0]} {beta:g})"
        )
    return parsed
