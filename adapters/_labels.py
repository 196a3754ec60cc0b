"""Integer-label maps shared by adapters whose files store classes or tomograms as numbers.

DeepFinder (``class_label``, ``tomo_idx``) and DeepETPicker (first column) write integers; the
names live elsewhere (a training config, a ``num_name.csv``). Users give them as an adapter
option, in any of these forms:

* inline pairs: ``--option labels=1=apo-ferritin,2=ribosome`` (``,`` or ``;`` between pairs);
* a text file, one pair a line: ``1 ribosome``, ``1=ribosome``, ``1,ribosome`` or
  ``1<TAB>ribosome`` (``#`` starts a comment);
* a JSON file: ``{"1": "ribosome", "2": "apo-ferritin"}`` (the inverse ``{"ribosome": 1}`` is
  accepted too).

Writers that have to invent numbers assign ``1..N`` to the class names in sorted order and
record the map in a comment of the file they write (``picks labels: 1=apo-ferritin
2=ribosome``); :func:`comment_map` reads it back, so a round trip keeps the names without any
option.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from picks.core.errors import PicksError
from picks.core.particles import canonical_name

_PAIR_SPLIT = re.compile(r"\s*[=,:\t ]\s*|\s+")
_COMMENT_MAP = re.compile(r"picks (?P<kind>labels|tomograms):(?P<body>[^\n]*)")


def parse_int_map(value: str | Mapping | None, option: str) -> dict[int, str]:
    """Parse an index -> name map from an option value (inline pairs, text or JSON file).

    ``option`` is the option's name, used in error messages. Returns ``{}`` for no value.
    """
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return _from_mapping(value, option, "the option")
    text = str(value).strip()
    if not text:
        return {}
    path = Path(text).expanduser()
    if path.is_file():
        return _from_file(path, option)
    if "=" not in text:
        raise PicksError(
            f"--option {option}={text!r}: neither INDEX=NAME pairs nor an existing file",
            hint=f"Give e.g. --option {option}=1=ribosome,2=apo-ferritin, or a file with "
            "lines '1 ribosome'.",
        )
    result: dict[int, str] = {}
    for chunk in re.split(r"[,;]", text):
        if not chunk.strip():
            continue
        key, sep, name = chunk.partition("=")
        _add(result, key, name if sep else "", option, f"pair {chunk.strip()!r}")
    return result


def _from_file(path: Path, option: str) -> dict[int, str]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PicksError(f"--option {option}: cannot read {path} ({exc})") from None
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise PicksError(f"--option {option}: {path} is not valid JSON ({exc})") from None
        return _from_mapping(data, option, str(path))
    result: dict[int, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        body = line.split("#", 1)[0].strip()
        if not body:
            continue
        parts = [p for p in _PAIR_SPLIT.split(body, maxsplit=1) if p != ""]
        if len(parts) != 2:
            raise PicksError(
                f"--option {option}: {path}, line {number}: expected 'INDEX NAME', found {line!r}"
            )
        _add(result, parts[0], parts[1], option, f"{path}, line {number}")
    if not result:
        raise PicksError(f"--option {option}: {path} holds no 'INDEX NAME' lines")
    return result


def _from_mapping(data: object, option: str, where: str) -> dict[int, str]:
    if not isinstance(data, Mapping):
        raise PicksError(f"--option {option}: {where} must be a JSON object of INDEX: NAME")
    items = list(data.items())
    # Accept the inverse {"ribosome": 1} when every key is a name and every value a number.
    if items and all(_is_int(v) and not _is_int(k) for k, v in items):
        items = [(v, k) for k, v in items]
    result: dict[int, str] = {}
    for key, name in items:
        _add(result, key, name, option, where)
    return result


def _is_int(value: object) -> bool:
    try:
        return float(str(value)) == int(float(str(value)))
    except (TypeError, ValueError, OverflowError):
        return False


def _add(result: dict[int, str], key: object, name: object, option: str, where: str) -> None:
    if not _is_int(key):
        raise PicksError(f"--option {option}: {where}: index {key!r} is not an integer")
    index = int(float(str(key)))
    label = str(name).strip()
    if not label:
        raise PicksError(f"--option {option}: {where}: index {index} has no name")
    if index in result and result[index] != label:
        raise PicksError(
            f"--option {option}: {where}: index {index} is given twice "
            f"({result[index]!r} and {label!r})"
        )
    result[index] = label


def class_map(value: str | Mapping | None) -> dict[int, str]:
    """The ``labels`` option as integer class -> canonical particle name."""
    return {k: canonical_name(v) for k, v in parse_int_map(value, "labels").items()}


def comment_map(text: str, kind: str) -> dict[int, str]:
    """A ``picks labels: 1=a 2=b`` (or ``picks tomograms: ...``) map written by our writers.

    Names are percent-encoded for spaces and ``=`` by :func:`format_comment_map`.
    """
    for match in _COMMENT_MAP.finditer(text):
        if match.group("kind") != kind:
            continue
        result: dict[int, str] = {}
        for token in match.group("body").split():
            key, sep, name = token.partition("=")
            if sep and _is_int(key):
                result[int(float(key))] = _unquote(name)
        return result
    return {}


def format_comment_map(kind: str, mapping: Mapping[int, str]) -> str:
    """The comment body :func:`comment_map` reads: ``picks labels: 1=apo-ferritin 2=ribosome``."""
    body = " ".join(f"{k}={_quote(v)}" for k, v in sorted(mapping.items()))
    return f"picks {kind}: {body}"


def _quote(name: str) -> str:
    return name.replace("%", "%25").replace(" ", "%20").replace("=", "%3D").replace("-->", "%2D->")


def _unquote(name: str) -> str:
    return name.replace("%2D->", "-->").replace("%3D", "=").replace("%20", " ").replace("%25", "%")


def assign_numbers(
    names: Iterable[str | None], given: Mapping[int, str] | None = None
) -> dict[str, int]:
    """Class name -> integer label for writing.

    ``given`` (the ``labels`` option) first; then a name that is itself a number (an unnamed
    class read as ``"3"``) keeps that number when it is free; the other names take the next
    free numbers from 1, in sorted order. ``None`` (no class) is keyed as ``""``.
    """
    inverse = {canonical_name(v): k for k, v in (given or {}).items()}
    wanted = sorted({"" if n is None else canonical_name(str(n)) for n in names})
    result = {name: inverse[name] for name in wanted if name in inverse}
    used = set(inverse.values())
    for name in wanted:
        if name not in result and name.isdigit() and int(name) > 0 and int(name) not in used:
            result[name] = int(name)
            used.add(int(name))
    next_free = 1
    for name in wanted:
        if name in result:
            continue
        while next_free in used:
            next_free += 1
        result[name] = next_free
        used.add(next_free)
    return result


def name_for(label: int, mapping: Mapping[int, str], single_class_default: str | None) -> str:
    """Particle name for an integer label: the map, else ``--particle`` when the file holds one
    class only (``single_class_default``), else the label itself as a string."""
    if label in mapping:
        return mapping[label]
    if single_class_default:
        return canonical_name(single_class_default)
    return str(label)
