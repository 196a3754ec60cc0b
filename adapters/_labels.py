"""``KEY=NAME`` maps: class labels, tomogram indices and index files, for every adapter.

Many formats store classes or tomograms as numbers (DeepFinder ``class_label``/``tomo_idx``,
DeepETPicker's first column, Dynamo ``tomo``/``class``, STOPGAP ``tomo_num``) or as names that
need renaming (IMOD objects, TomoTwin references); the names live elsewhere. Users give them as
an adapter option, in any of these forms, read here and nowhere else:

* inline pairs: ``--option labels=1=apo-ferritin,2=ribosome`` (``,`` or ``;`` between pairs);
* a text file, one pair a line: ``1 ribosome``, ``1=ribosome``, ``1,ribosome`` or
  ``1<TAB>ribosome`` (a line starting with ``#``, or `` #`` after the pair, is a comment) —
  Dynamo tomogram ``.doc`` files and STOPGAP index files (``index<TAB>tomogram path``) are
  such files;
* a JSON file: ``{"1": "ribosome", "2": "apo-ferritin"}`` (for number maps the inverse
  ``{"ribosome": 1}`` is accepted too).

:func:`parse_int_map` gives number -> name (keys must be integers; ``3.0`` counts),
:func:`parse_name_map` text -> name (IMOD object numbers or names, TomoTwin references) and
:func:`read_map_file` reads a file of pairs. A key given twice with different names is an
error. Errors in a file name the file and line (:class:`~picks.core.errors.InputFormatError`);
errors in an inline value name the option.

Writers that have to invent numbers assign ``1..N`` to the class names in sorted order
(:func:`assign_numbers`) and record the map in a comment of the file they write (``picks
labels: 1=apo-ferritin 2=ribosome``); :func:`comment_map` reads it back, so a round trip keeps
the names without any option.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from picks.core.errors import InputFormatError, PicksError
from picks.core.particles import canonical_name

_PAIR_SPLIT = re.compile(r"\s*[=,:\t ]\s*|\s+")
_INLINE_COMMENT = re.compile(r"\s#.*$")
_COMMENT_MAP = re.compile(r"picks (?P<kind>labels|tomograms):(?P<body>[^\n]*)")


def parse_int_map(value: str | Mapping | None, option: str) -> dict[int, str]:
    """Number -> name from an option value (inline pairs, text or JSON file); ``{}`` for none."""
    return _parse(value, option, integer_keys=True)


def parse_name_map(value: str | Mapping | None, option: str) -> dict[str, str]:
    """Text key -> name from an option value (inline pairs, text or JSON file); ``{}`` for none."""
    return _parse(value, option, integer_keys=False)


def read_map_file(
    path: Path, option: str, *, integer_keys: bool = True, entry: str = "'INDEX NAME'"
) -> dict:
    """A file of pairs (text lines or a JSON object); ``entry`` describes a line in errors."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # a BOM is not part of the first key
    except OSError as exc:
        raise PicksError(
            f"`options` {option}: cannot read {path} ({exc.strerror or exc})"
        ) from None
    except UnicodeDecodeError:
        raise InputFormatError(path, f"not a text file; expected lines {entry}") from None
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise InputFormatError(path, f"not valid JSON ({exc.msg})", line=exc.lineno) from None
        except RecursionError:
            raise InputFormatError(path, "JSON nested too deeply to read", line=1) from None
        return _from_mapping(data, option, str(path), integer_keys)
    result: dict = {}
    for number, line in enumerate(text.splitlines(), start=1):
        body = line.strip()
        if not body or body.startswith("#"):
            continue
        body = _INLINE_COMMENT.sub("", body)
        parts = [p for p in _PAIR_SPLIT.split(body, maxsplit=1) if p != ""]
        if len(parts) != 2:
            raise InputFormatError(path, f"expected {entry}, found {line!r}", line=number)
        try:
            _add(result, parts[0], parts[1], option, "", integer_keys)
        except PicksError as exc:
            raise InputFormatError(path, str(exc), line=number) from None
    if not result:
        raise InputFormatError(path, f"holds no {entry} lines")
    return result


def _parse(value: str | Mapping | None, option: str, *, integer_keys: bool) -> dict:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return _from_mapping(value, option, "the option", integer_keys)
    text = str(value).strip()
    if not text:
        return {}
    path = Path(text).expanduser()
    if path.is_file():
        return read_map_file(path, option, integer_keys=integer_keys)
    key = "NUMBER" if integer_keys else "KEY"
    if "=" not in text:
        raise PicksError(
            f"`options` {option}={text!r}: expected {key}=NAME pairs separated by commas, "
            "or the path of a file of such pairs",
            hint=f"Give e.g. `options` {option}=1=ribosome,2=apo-ferritin, or a file with "
            "lines '1 ribosome'.",
        )
    result: dict = {}
    for chunk in re.split(r"[,;]", text):
        if not chunk.strip():
            continue
        key_text, sep, name = chunk.partition("=")
        _add(
            result, key_text, name if sep else "", option, f"pair {chunk.strip()!r}: ", integer_keys
        )
    return result


def _from_mapping(data: object, option: str, where: str, integer_keys: bool) -> dict:
    if not isinstance(data, Mapping):
        raise PicksError(f"`options` {option}: {where} must be a JSON object of KEY: NAME")
    items = list(data.items())
    # Accept the inverse {"ribosome": 1} when every key is a name and every value a number.
    if integer_keys and items and all(_is_int(v) and not _is_int(k) for k, v in items):
        items = [(v, k) for k, v in items]
    result: dict = {}
    for key, name in items:
        _add(result, key, name, option, f"{where}: ", integer_keys)
    return result


def _is_int(value: object) -> bool:
    try:
        return float(str(value)) == int(float(str(value)))
    except (TypeError, ValueError, OverflowError):
        return False


def _add(
    result: dict, key: object, name: object, option: str, where: str, integer_keys: bool
) -> None:
    if integer_keys and not _is_int(key):
        raise PicksError(f"`options` {option}: {where}index {key!r} is not an integer")
    index: int | str = int(float(str(key))) if integer_keys else str(key).strip()
    what = f"index {index}" if integer_keys else f"key {index!r}"
    label = str(name).strip()
    if index == "" or not label:
        raise PicksError(f"`options` {option}: {where}{what} has no name")
    if index in result and result[index] != label:
        raise PicksError(
            f"`options` {option}: {where}{what} is given twice ({result[index]!r} and {label!r})"
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
    """Percent-encode what would break the ``key=name`` token or the XML comment around it:
    ``%``, ``=``, whitespace and control characters, and ``--`` (not allowed inside an XML
    comment: a class named ``a--b`` once made the DeepFinder writer's output unreadable)."""
    text = "".join(
        f"%{ord(ch):02X}" if ch in "%=" or ch.isspace() or ord(ch) < 0x20 or ch == "\x7f" else ch
        for ch in name
    )
    while "--" in text:
        text = text.replace("--", "-%2D")
    return text


def _unquote(name: str) -> str:
    # one pass, so an encoded "%" never starts another escape ("%2541" -> "%41")
    return re.sub(r"%([0-9A-Fa-f]{2})", lambda m: chr(int(m.group(1), 16)), name)


def assign_numbers(
    names: Iterable[str | None], given: Mapping[int, str] | None = None
) -> dict[str, int]:
    """Class name -> integer label for writing.

    ``given`` (the ``labels`` option) first; then a name that is itself a number (an unnamed
    class read as ``"3"``) keeps that number when it is free; the other names take the next
    free numbers from 1, in sorted order. Keys are :func:`class_key` (``""`` for no class).
    """
    inverse = {canonical_name(v): k for k, v in (given or {}).items()}
    wanted = sorted({class_key(n) for n in names})
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


def class_key(particle: object) -> str:
    """The key of a pick's class in :func:`assign_numbers`' result: its canonical name, or
    ``""`` for a pick without one (``None``, NaN or ``pd.NA``)."""
    if particle is None or pd.isna(particle):
        return ""
    return canonical_name(str(particle))


def name_for(label: int, mapping: Mapping[int, str], single_class_default: str | None) -> str:
    """Particle name for an integer label: the map, else ``--particle`` when the file holds one
    class only (``single_class_default``), else the label itself as a string."""
    if label in mapping:
        return mapping[label]
    if single_class_default:
        return canonical_name(single_class_default)
    return str(label)
