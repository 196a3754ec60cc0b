"""The layer rule (docs/architecture.md), checked over every module's imports, function-level
ones included:

    cli → workflows → {consensus, plugins, evaluate, simulate} → core
    adapters → plugins → core

A layer may import itself and the layers below it, never one above or beside it; ``core``
imports nothing of picks but ``core``. The root package (``from picks import __version__``)
is below everything. ``core.store`` is the store: only workflows and cli reach it, so the
algorithms (consensus, evaluate, simulate) pass DataFrames, never a database. SQL statements
live only in ``core/store/``.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = (
    "core",
    "plugins",
    "adapters",
    "consensus",
    "evaluate",
    "simulate",
    "report",
    "workflows",
    "cli",
)

# What each layer may import (besides itself and the root package's __version__).
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "plugins": {"core"},
    "adapters": {"plugins", "core"},
    "consensus": {"core"},
    "evaluate": {"core"},
    "simulate": {"core"},
    "report": {"consensus", "evaluate", "core"},  # reads a stored run, draws it
    "workflows": {"consensus", "plugins", "evaluate", "simulate", "report", "core"},
    "cli": {"workflows", "consensus", "plugins", "evaluate", "simulate", "report", "core"},
}
STORE = "picks.core.store"
STORE_USERS = {
    "core",
    "report",
    "workflows",
    "cli",
}  # core.store itself, and the layers that persist


def imported_modules(source: str) -> list[tuple[int, str]]:
    """``(line, dotted name)`` of every picks import in a module, at any depth: ``from a
    import b`` yields ``a.b`` too, since ``b`` may be a module."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return [(line, name) for line, name in found if name == "picks" or name.startswith("picks.")]


def violations(layer: str, source: str) -> list[str]:
    """Imports of ``source`` (a module of ``layer``) that break the layer rule."""
    bad = []
    for line, name in imported_modules(source):
        parts = name.split(".")
        if len(parts) == 1 or parts[1] == "__version__":
            continue  # the root package: below every layer
        target = parts[1]
        if target not in PACKAGES:
            if target == "hookimpl" and layer in ("adapters", "plugins"):
                continue  # picks.hookimpl is the plugin contract's decorator
            bad.append(f"line {line}: {name} (not a layer)")
        elif target != layer and target not in ALLOWED[layer]:
            bad.append(f"line {line}: {name} ({layer} may not import {target})")
        elif name.startswith(STORE) and layer not in STORE_USERS:
            bad.append(f"line {line}: {name} ({layer} must not touch the store)")
    return sorted(set(bad))


def package_modules() -> list[tuple[str, Path]]:
    modules = []
    for layer in PACKAGES:
        modules += [(layer, p) for p in sorted((ROOT / layer).rglob("*.py"))]
    return modules


def test_every_layer_exists() -> None:
    for layer in PACKAGES:
        assert (ROOT / layer / "__init__.py").is_file(), layer


@pytest.mark.parametrize(
    ("layer", "path"),
    package_modules(),
    ids=lambda v: str(v.relative_to(ROOT)) if isinstance(v, Path) else v,
)
def test_imports_follow_the_layer_rule(layer: str, path: Path) -> None:
    assert violations(layer, path.read_text(encoding="utf-8")) == []


def test_the_checker_catches_upward_imports() -> None:
    """The rule can fail: upward and sideways imports, at module or function level."""
    upward = (
        "from picks.core.errors import PicksError\n"
        "def f():\n"
        "    from picks.workflows.aggregate import aggregate\n"
        "    import picks.cli\n"
    )
    found = violations("consensus", upward)
    assert any("picks.workflows.aggregate" in v for v in found)
    assert any("picks.cli" in v for v in found)
    assert not any("picks.core.errors" in v for v in found)
    assert violations("core", "from picks.plugins.adapter import Adapter\n")
    assert violations("plugins", "from picks.adapters import relion\n")
    assert violations("simulate", "from picks.consensus import vote\n")  # sideways
    assert violations("consensus", "from picks.core.store import Store\n")  # the store
    assert violations("consensus", "from picks.core import store\n")
    assert not violations("workflows", "from picks.core.store import Store\n")
    assert not violations("cli", "from picks import __version__\n")


# A SQL statement: a keyword, then what that statement needs next.
SQL = re.compile(
    r"\b(SELECT\b.+\bFROM|INSERT\s+INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM)\b", re.IGNORECASE
)


def sql_strings(source: str) -> list[tuple[int, str]]:
    """String constants that hold SQL; docstrings are prose and skipped."""
    tree = ast.parse(source)
    docstrings = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
    parts = {
        id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
            if SQL.search(text):
                found.append((node.lineno, text))
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings | parts
            and SQL.search(node.value)
        ):
            found.append((node.lineno, node.value))
    return found


def test_sql_lives_only_in_the_store() -> None:
    offenders = []
    for _layer, path in package_modules():
        if path.is_relative_to(ROOT / "core" / "store"):
            continue
        offenders += [
            f"{path.relative_to(ROOT)}:{line}: {text[:60]!r}"
            for line, text in sql_strings(path.read_text(encoding="utf-8"))
        ]
    assert offenders == []


def test_the_sql_check_can_fail() -> None:
    source = (
        '"""SELECT the best FROM the picks (prose)."""\n'
        'def f(db):\n    return db.execute("SELECT id FROM picks WHERE run_id = ?")\n'
        'def g(db, t):\n    return db.execute(f"DELETE FROM {t} WHERE id = 1")\n'
    )
    assert [line for line, _ in sql_strings(source)] == [3, 5]
