"""Every package folder is installed: a folder missing from pyproject's list works in the
editable checkout and fails after `pip install .` (what the README's demo command does)."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOT_INSTALLED = {"tests", "benchmarks", "build", "docs"}


def test_every_package_folder_is_listed_in_pyproject():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    listed = set(config["tool"]["setuptools"]["packages"])
    found = {"picks"}
    for init in REPO.rglob("__init__.py"):
        rel = init.parent.relative_to(REPO)
        if not rel.parts or rel.parts[0] in NOT_INSTALLED or rel.parts[0].startswith("."):
            continue
        if any(p.startswith(".") or p in ("venv", "__pycache__") for p in rel.parts):
            continue
        found.add("picks." + ".".join(rel.parts))
    assert found <= listed, f"not installed: {sorted(found - listed)}"
