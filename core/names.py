"""Tomogram names that do not line up across pickers (said loudly, never guessed silently).

Without registered tomograms, picks keeps each picker's tomogram names as written. Pickers
decorate names differently (crYOLO ``TS_01_1__ribosome``, DeepFinder ``TS_01_1_objl``,
DeepETPicker ``TS_01_1_bin2``): the same tomogram then becomes several, no candidate gets
support from more than one picker, and every agreement-based decision silently collapses
(the vote's F4 fell from 0.35 to 0.06 in one such case). :func:`name_mismatches` finds the
names of one picker that no other picker uses, and the other pickers' name each one contains
(or is contained in), so the caller can show the mapping it would apply and the option that
applies it (``tomogram=NAME``, ``name={tomogram}__{particle}``, or ``--tomograms``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from picks.core.tomograms import name_key


@dataclass(frozen=True)
class NameMismatch:
    picker: str
    name: str  # as the picker wrote it
    matches: tuple[str, ...]  # other pickers' names it contains / is contained in
    others: tuple[str, ...]  # the pickers that use those names

    def describe(self) -> str:
        if len(self.matches) == 1:
            return (
                f"{self.picker}: tomogram {self.name!r} is used by no other picker; it looks "
                f"like {self.matches[0]!r} of {', '.join(self.others)}"
            )
        if self.matches:
            return (
                f"{self.picker}: tomogram {self.name!r} is used by no other picker and looks "
                f"like several: {', '.join(map(repr, self.matches))}"
            )
        return f"{self.picker}: tomogram {self.name!r} is used by no other picker"


def name_mismatches(names: Mapping[str, set[str]]) -> list[NameMismatch]:
    """Names of each picker that no other picker uses, for the pickers where it matters.

    ``names`` maps a picker label to the tomogram names of its picks. A name counts when it
    contains (or is contained in) another picker's name after :func:`name_key` cleaning, or
    when *none* of the picker's names is shared with any other picker (then nothing of it
    can agree with anything). A tomogram in which only one picker found particles, while its
    other names are shared, is normal and not reported.
    """
    pickers = sorted(names)
    if len(pickers) < 2:
        return []
    users: dict[str, set[str]] = {}
    for picker in pickers:
        for name in names[picker]:
            users.setdefault(name, set()).add(picker)
    out: list[NameMismatch] = []
    for picker in pickers:
        own = sorted(names[picker])
        alone = [n for n in own if users[n] == {picker}]
        if not alone:
            continue
        isolated = len(alone) == len(own)
        for name in alone:
            key = name_key(name)
            matches = sorted(
                other
                for other, who in users.items()
                if other != name
                and who - {picker}
                and (k := name_key(other))
                and (k == key or k in key or key in k)
            )
            if matches or isolated:
                others = sorted({p for m in matches for p in users[m]} - {picker})
                out.append(NameMismatch(picker, name, tuple(matches), tuple(others)))
    return out


def mismatch_warning(mismatches: list[NameMismatch], limit: int = 6) -> str | None:
    """One loud warning for the caller to show (None when all names line up)."""
    if not mismatches:
        return None
    lines = [m.describe() for m in mismatches[:limit]]
    more = len(mismatches) - limit
    if more > 0:
        lines.append(f"... and {more} more")
    return (
        "tomogram names do not line up across pickers, so their picks cannot agree: "
        + "; ".join(lines)
        + ". Give the tomograms (`tomograms` DIR: names are matched to the files), or name "
        "them per input (`input_options` LABEL:tomogram=NAME, or LABEL:name={tomogram}__{particle} "
        "for names taken from file names)"
    )
