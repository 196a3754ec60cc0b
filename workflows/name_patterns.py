"""File-name patterns of an input (``name={tomogram}__{particle}``): what a file's name says
about its tomogram and class, and the warning when the file itself says otherwise.

Used by the import (:mod:`picks.workflows.importing`) and ``picks convert``; the pattern is
an input option consumed here and never passed to an adapter.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from picks.core.errors import PicksError
from picks.core.particles import canonical_name
from picks.plugins.adapter import ReadContext

# The adapter option that holds a file-name pattern (consumed here, never passed to adapters).
NAME_OPTION = "name"

_FIELD = re.compile(r"\{([^{}]*)\}")
NAME_FIELDS = {"tomogram": "tomogram", "particle": "particle", "class": "particle"}


class NamePattern:
    """A file-name pattern such as ``{tomogram}__{particle}`` or ``{particle}/{tomogram}``.

    * ``{tomogram}`` and ``{particle}`` (alias ``{class}``) capture one name each; ``{}`` or
      ``*`` match any text that is not kept (``{tomogram}_{}_{particle}``); anything else is
      literal text.
    * ``/`` separates folders: the pattern is matched against as many trailing parts of the
      path as it has (the file and the folders above it).
    * The file's extension is not part of the pattern unless the pattern ends with it
      (``{tomogram}__{particle}`` and ``{tomogram}__{particle}.cbox`` both fit
      ``TS_01__ribosome.cbox``).

    A name that does not fit is an error (never a silent fallback to the file name), and so is
    a name that fits in two ways giving different parts (``TS__01__ribosome`` for
    ``{tomogram}__{particle}``): the pattern then needs more literal text.
    """

    def __init__(self, text: str) -> None:
        self.text = text.strip()
        if not self.text:
            raise PicksError(f"`options` {NAME_OPTION}=: empty pattern")
        fields = [NAME_FIELDS.get(f.strip().lower(), f) for f in _FIELD.findall(self.text)]
        unknown = [f for f in fields if f not in ("tomogram", "particle", "")]
        if unknown:
            raise PicksError(
                f"`options` {NAME_OPTION}={self.text}: unknown field(s) "
                + ", ".join(f"{{{f}}}" for f in unknown),
                hint="Use {tomogram}, {particle} (or {class}) and {} for text to skip.",
            )
        if not {"tomogram", "particle"} & set(fields):
            raise PicksError(
                f"`options` {NAME_OPTION}={self.text}: the pattern names neither {{tomogram}} "
                "nor {particle}",
                hint="e.g. name={tomogram}__{particle} for crYOLO's TS_01__ribosome.cbox",
            )
        if len(fields) != len(set(f for f in fields if f)) + fields.count(""):
            raise PicksError(f"`options` {NAME_OPTION}={self.text}: a field is named twice")
        self.depth = self.text.count("/") + 1
        self.keeps_extension = "." in self.text.rsplit("}", 1)[-1]
        self._lazy = self._compile("+?")
        self._greedy = self._compile("+")

    def _compile(self, quantifier: str) -> re.Pattern:
        out = []
        for piece in re.split(r"(\{[^{}]*\}|\*)", self.text):
            if piece == "*" or (piece.startswith("{") and piece.endswith("}")):
                name = NAME_FIELDS.get(piece[1:-1].strip().lower(), "") if piece != "*" else ""
                group = f"[^/]{quantifier}"
                out.append(f"(?P<{name}>{group})" if name else f"(?:{group})")
            else:
                out.append(re.escape(piece))
        return re.compile("".join(out))

    def subject(self, path: Path) -> str:
        """The part of ``path`` the pattern is matched against."""
        parts = list(Path(path).parts)
        name = parts[-1] if self.keeps_extension else Path(parts[-1]).stem
        return "/".join([*parts[-self.depth : -1], name]) if self.depth > 1 else name

    def match(self, path: Path) -> dict[str, str]:
        """``{"tomogram": ..., "particle": ...}`` (the fields the pattern has) for ``path``."""
        subject = self.subject(path)
        lazy, greedy = self._lazy.fullmatch(subject), self._greedy.fullmatch(subject)
        if lazy is None or greedy is None:
            raise PicksError(
                f"{path}: the name {subject!r} does not fit `options` {NAME_OPTION}={self.text}",
                hint="Every file of the input must fit the pattern; give the files that do "
                "not as a separate input (or fix the pattern).",
            )
        found, other = lazy.groupdict(), greedy.groupdict()
        if found != other:
            raise PicksError(
                f"{path}: the name {subject!r} fits `options` {NAME_OPTION}={self.text} in two "
                f"ways ({describe_named(found)} or {describe_named(other)})",
                hint="Add literal text to the pattern so that it fits one way only.",
            )
        return {key: value for key, value in found.items() if value}


def describe_named(parts: dict[str, str]) -> str:
    """``tomogram TS_01, class ribosome`` (class names canonical, as they are stored)."""
    words = []
    if "tomogram" in parts:
        words.append(f"tomogram {parts['tomogram']}")
    if "particle" in parts:
        words.append(f"class {canonical_name(parts['particle'])}")
    return ", ".join(words)


def names_from_pattern(
    path: Path,
    options: dict[str, str] | None,
    tomogram: str | None,
    particle: str | None,
) -> tuple[str | None, str | None, dict[str, str], dict[str, str]]:
    """Apply ``options['name']`` to ``path``: (tomogram, particle, what the name gave, the
    options without ``name``). Without the option everything passes through unchanged."""
    rest = dict(options or {})
    text = rest.pop(NAME_OPTION, None)
    if text is None or str(text).strip() == "":
        return tomogram, particle, {}, rest
    found = NamePattern(str(text)).match(path)
    return found.get("tomogram", tomogram), found.get("particle", particle), found, rest


def check_named(frame: pd.DataFrame, from_name: dict[str, str], ctx: ReadContext) -> None:
    """Say so when the file's own classes or tomograms differ from what its name gave.

    The name's class only fills picks the file leaves without one (as ``--particle``); a file
    that names its classes keeps them, and the user must know the pattern did not apply.
    """
    _warn_named(_own_classes(frame, from_name), from_name, ctx)


def _own_classes(frame: pd.DataFrame, from_name: dict[str, str]) -> set[str]:
    """The classes the file names itself, other than the one its name gave."""
    if "particle" not in from_name:
        return set()
    return {str(p) for p in frame["particle"].dropna().unique()} - {
        canonical_name(from_name["particle"])
    }


def _warn_named(own: set[str], from_name: dict[str, str], ctx: ReadContext) -> None:
    if own:
        ctx.warn(
            f"the file names its own class(es) {', '.join(sorted(own))}, kept over class "
            f"{canonical_name(from_name['particle'])} from its name ({NAME_OPTION}= only fills "
            "picks without a class)"
        )
