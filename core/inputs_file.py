"""One inputs file for ``picks aggregate --inputs inputs.toml``: every picker, tomogram and
output setting of a job in one place, validated before anything runs.

```toml
[output]
out = "consensus"                  # relative paths are relative to this file's folder
formats = ["relion5", "box"]
force = false

[decision]
method = "auto"                    # auto, latent, vote, cnn
beta = 4.0                         # 4: the CZII metric; 1: a precise set
# objective = "precision@recall=0.8" # instead of beta: f1, f4, fBETA, precision@recall=R,
                                     # precision=P (checked by the CLI, see --objective)
min_support = "all-but-one"        # vote only

[tomograms]
paths = ["tomograms/"]
voxel_size = 10.0                  # only when the headers lack it

[compute]                          # optional: per-tomogram stages on Dask (picks[dask])
scheduler = "local:8"              # local, local:N or tcp://HOST:PORT (docs/dask.md)
workers = 8                        # > 1 without scheduler: local:N

[[picker]]
label = "cryolo"
path = "pickers/cryolo/*/CBOX_3D"  # a file, a folder or a glob (one input per match)
adapter = "cryolo-cbox"            # default: detected from the file
particle = "ribosome"              # class for picks that have none
binning = 1
voxel_size = 10.0
tomogram = "TS_01"
role = "picker"                    # picker, positive or negative (trusted references)
options = { name = "{tomogram}__{particle}" }   # adapter options
```

:func:`read_inputs_file` returns an :class:`InputsFile` (typed; an error names the file, the
table and the key); :func:`write_inputs_file` writes one (``picks demo`` and ``picks init``).
Each :class:`PickerInput` becomes one ``aggregate`` input: its ``label``, ``path`` and
:meth:`PickerInput.input_options`.
"""

from __future__ import annotations

import glob
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from picks.core.errors import PicksError

ROLES = ("picker", "positive", "negative")
METHODS = ("auto", "latent", "vote", "cnn")
_PICKER_KEYS = {
    "label",
    "path",
    "adapter",
    "particle",
    "binning",
    "voxel_size",
    "tomogram",
    "role",
    "options",
}
_TABLES = {
    "output": {"out", "formats", "force"},
    "decision": {"method", "beta", "objective", "min_support", "seed"},
    "tomograms": {"paths", "voxel_size"},
    "compute": {"scheduler", "workers"},
}


class InputsFileError(PicksError):
    """A bad inputs file: the message names the file, the table and the key."""

    exit_code = 2


@dataclass(frozen=True)
class PickerInput:
    """One ``[[picker]]`` table, after validation; ``path`` is absolute."""

    label: str
    path: Path
    adapter: str | None = None
    particle: str | None = None
    binning: float | None = None
    voxel_size: float | None = None
    tomogram: str | None = None
    role: str = "picker"
    options: dict[str, str] = field(default_factory=dict)

    def input_options(self) -> dict[str, str]:
        """The per-input options ``aggregate`` takes (strings, as from the command line)."""
        out = dict(self.options)
        for key in ("adapter", "particle", "tomogram"):
            if getattr(self, key) is not None:
                out[key] = str(getattr(self, key))
        for key in ("binning", "voxel_size"):
            if getattr(self, key) is not None:
                out[key] = repr(float(getattr(self, key)))
        if self.role != "picker":
            out["role"] = self.role
        return out


@dataclass(frozen=True)
class InputsFile:
    path: Path
    pickers: list[PickerInput]
    tomograms: list[Path] = field(default_factory=list)
    voxel_size: float | None = None
    out: Path | None = None
    formats: list[str] | None = None
    force: bool | None = None
    method: str | None = None
    beta: float | None = None
    objective: str | None = None
    min_support: str | None = None
    seed: int | None = None
    scheduler: str | None = None
    workers: int | None = None


def read_inputs_file(path: str | Path) -> InputsFile:
    """Read and validate an inputs file (see the module docstring)."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise InputsFileError(f"{path}: no such inputs file") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputsFileError(f"{path}: not a valid TOML file ({exc})") from None
    base = path.parent.resolve()
    unknown = sorted(set(data) - set(_TABLES) - {"picker"})
    if unknown:
        raise InputsFileError(
            f"{path}: unknown table(s) {', '.join(map(repr, unknown))} "
            f"(known: {', '.join(sorted([*_TABLES, 'picker']))})"
        )
    tables = {}
    for name, keys in _TABLES.items():
        table = data.get(name, {})
        if not isinstance(table, dict):
            raise InputsFileError(f"{path}: [{name}] must be a table")
        extra = sorted(set(table) - keys)
        if extra:
            raise InputsFileError(
                f"{path}: [{name}]: unknown key(s) {', '.join(map(repr, extra))} "
                f"(known: {', '.join(sorted(keys))})"
            )
        tables[name] = table
    raw_pickers = data.get("picker", [])
    if not isinstance(raw_pickers, list) or not raw_pickers:
        raise InputsFileError(f"{path}: no [[picker]] table: name at least one picker output")
    pickers: list[PickerInput] = []
    for number, table in enumerate(raw_pickers, start=1):
        pickers.extend(_picker(path, base, number, table))
    out_t, dec, tom = tables["output"], tables["decision"], tables["tomograms"]
    where = f"{path}: [tomograms]"
    return InputsFile(
        path=path,
        pickers=pickers,
        tomograms=[_path(base, p) for p in _strings(where, "paths", tom.get("paths", []))],
        voxel_size=_number(where, "voxel_size", tom.get("voxel_size"), positive=True),
        out=_path(base, _string(f"{path}: [output]", "out", out_t["out"]))
        if "out" in out_t
        else None,
        formats=_strings(f"{path}: [output]", "formats", out_t["formats"])
        if "formats" in out_t
        else None,
        force=_bool(f"{path}: [output]", "force", out_t.get("force")),
        method=_choice(f"{path}: [decision]", "method", dec.get("method"), METHODS),
        beta=_number(f"{path}: [decision]", "beta", dec.get("beta"), positive=True),
        objective=_opt_string(f"{path}: [decision]", "objective", dec.get("objective")),
        min_support=None if dec.get("min_support") is None else str(dec["min_support"]),
        seed=_integer(f"{path}: [decision]", "seed", dec.get("seed")),
        scheduler=_scheduler(f"{path}: [compute]", tables["compute"].get("scheduler")),
        workers=_positive_integer(
            f"{path}: [compute]", "workers", tables["compute"].get("workers")
        ),
    )


def _picker(path: Path, base: Path, number: int, table: object) -> list[PickerInput]:
    where = f"{path}: [[picker]] #{number}"
    if not isinstance(table, dict):
        raise InputsFileError(f"{where}: must be a table")
    if isinstance(table.get("label"), str):
        where += f" ({table['label']})"
    extra = sorted(set(table) - _PICKER_KEYS)
    if extra:
        raise InputsFileError(
            f"{where}: unknown key(s) {', '.join(map(repr, extra))} "
            f"(known: {', '.join(sorted(_PICKER_KEYS))})"
        )
    for key in ("label", "path"):
        if key not in table:
            raise InputsFileError(f"{where}: key {key!r} is missing")
    label = _string(where, "label", table["label"])
    if not label.strip() or "=" in label or ":" in label:
        raise InputsFileError(f"{where}: key 'label': {label!r} is not a usable label")
    options = table.get("options", {})
    if not isinstance(options, dict):
        raise InputsFileError(f"{where}: key 'options' must be a table of adapter options")
    role = _choice(where, "role", table.get("role", "picker"), ROLES)
    common = {
        "adapter": _opt_string(where, "adapter", table.get("adapter")),
        "particle": _opt_string(where, "particle", table.get("particle")),
        "binning": _number(where, "binning", table.get("binning"), positive=True),
        "voxel_size": _number(where, "voxel_size", table.get("voxel_size"), positive=True),
        "tomogram": _opt_string(where, "tomogram", table.get("tomogram")),
        "role": role,
        "options": {str(k): _option(where, str(k), v, base) for k, v in options.items()},
    }
    raw = _string(where, "path", table["path"])
    if glob.has_magic(raw):
        pattern = raw if Path(raw).is_absolute() else str(base / raw)
        matches = sorted(glob.glob(pattern))
        if not matches:
            raise InputsFileError(f"{where}: key 'path': the pattern {raw!r} matches nothing")
        return [PickerInput(label, Path(m), **common) for m in matches]
    found = _path(base, raw)
    if not found.exists():
        raise InputsFileError(f"{where}: key 'path': {found} does not exist")
    return [PickerInput(label, found, **common)]


def _path(base: Path, raw: str) -> Path:
    path = Path(raw).expanduser()
    return path if path.is_absolute() else base / path


def _string(where: str, key: str, value: object) -> str:
    if not isinstance(value, str):
        raise InputsFileError(f"{where}: key {key!r}: expected text, got {value!r}")
    return value


def _opt_string(where: str, key: str, value: object) -> str | None:
    return None if value is None else _string(where, key, value)


def _strings(where: str, key: str, value: object) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputsFileError(f"{where}: key {key!r}: expected a list of text, got {value!r}")
    return list(value)


def _number(where: str, key: str, value: object, *, positive: bool = False) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputsFileError(f"{where}: key {key!r}: expected a number, got {value!r}")
    if positive and value <= 0:
        raise InputsFileError(f"{where}: key {key!r}: must be > 0, got {value!r}")
    return float(value)


def _integer(where: str, key: str, value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputsFileError(f"{where}: key {key!r}: expected a whole number, got {value!r}")
    return value


def _scheduler(where: str, value: object) -> str | None:
    text = _opt_string(where, "scheduler", value)
    if text is not None and not re.fullmatch(
        r"local(:[1-9][0-9]*)?|(tcp|tls)://[^\s:/]+:[0-9]+", text
    ):
        raise InputsFileError(
            f"{where}: scheduler = {text!r}: expected local, local:N or tcp://HOST:PORT"
        )
    return text


def _positive_integer(where: str, key: str, value: object) -> int | None:
    number = _integer(where, key, value)
    if number is not None and number < 1:
        raise InputsFileError(f"{where}: {key} = {number}: expected a whole number ≥ 1")
    return number


def _bool(where: str, key: str, value: object) -> bool | None:
    if value is None:
        return None
    if not isinstance(value, bool):
        raise InputsFileError(f"{where}: key {key!r}: expected true or false, got {value!r}")
    return value


def _choice(where: str, key: str, value: object, choices: tuple[str, ...]) -> str | None:
    if value is None:
        return None
    if value not in choices:
        raise InputsFileError(f"{where}: key {key!r}: {value!r} is not one of {', '.join(choices)}")
    return str(value)


def _option(where: str, key: str, value: object, base: Path) -> str:
    """Adapter options are strings on the command line; a number or a bool is taken as its
    text. A relative file path (a labels file) is made absolute when it exists here."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if not isinstance(value, str):
        raise InputsFileError(f"{where}: options.{key}: expected text or a number, got {value!r}")
    candidate = base / value
    if key in ("labels", "labels_file") and not Path(value).is_absolute() and candidate.exists():
        return str(candidate)
    return value


# -- writing -------------------------------------------------------------------------------
def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value), ensure_ascii=False)  # JSON escapes are valid in TOML
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"cannot write {value!r} to TOML")


def _key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)


def write_inputs_file(
    path: str | Path,
    pickers: list[dict],
    *,
    tomograms: list[str] | None = None,
    output: dict | None = None,
    decision: dict | None = None,
    notes: list[str] | None = None,
) -> Path:
    """Write an inputs file. ``pickers`` are dicts with the ``[[picker]]`` keys (None values
    left out; a key ``_note`` becomes a comment above the table). Paths are written as given:
    pass them relative to ``path``'s folder for a file that can move with its data."""
    path = Path(path)
    lines = ["# picks inputs file: picks aggregate --inputs " + path.name]
    lines += [f"# {n}" for n in notes or []]
    for name, table in (("output", output), ("decision", decision)):
        if table:
            lines += ["", f"[{name}]"]
            lines += [f"{k} = {_toml_value(v)}" for k, v in table.items() if v is not None]
    if tomograms:
        lines += ["", "[tomograms]", f"paths = {_toml_value(list(tomograms))}"]
    for picker in pickers:
        lines.append("")
        note = picker.get("_note")
        if note:
            lines += [f"# {line}" for line in str(note).splitlines()]
        lines.append("[[picker]]")
        for key in ("label", "path", "adapter", "particle", "binning", "voxel_size", "tomogram"):
            if picker.get(key) is not None:
                lines.append(f"{key} = {_toml_value(picker[key])}")
        if picker.get("role") not in (None, "picker"):
            lines.append(f"role = {_toml_value(picker['role'])}")
        if picker.get("options"):
            lines.append(f"options = {_toml_value(dict(picker['options']))}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
