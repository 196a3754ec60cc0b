"""Shared fixtures. Tests never touch the user's files: the store lives in tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only ../shared folder (real format fixtures and simulated data)."""
    if not SHARED.exists():
        pytest.fail(f"{SHARED} is missing: CI and developers keep ../shared beside the repo")
    return SHARED


@pytest.fixture(scope="session")
def formats_dir(shared_dir: Path) -> Path:
    return shared_dir / "fixtures" / "formats"


@pytest.fixture(scope="session")
def polnet_dir(shared_dir: Path) -> Path:
    return shared_dir / "fixtures" / "data" / "polnet-czii-analog"


@pytest.fixture(autouse=True)
def _isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep PICKS_* settings of the developer's shell out of tests; no progress bars."""
    for var in (
        "PICKS_DB",
        "PICKS_REGISTRY",
        "PICKS_LOAD_PLUGINS",
        "PICKS_DEBUG",
        "PICKS_TRACE_PLUGINS",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PICKS_USER_DIR", str(tmp_path / "user"))
    monkeypatch.setenv("PICKS_NO_PROGRESS", "1")


@pytest.fixture
def store(tmp_path: Path):
    from picks.core.store import Store

    with Store(tmp_path / "picks.db") as s:
        yield s


@pytest.fixture
def registry():
    from picks.plugins.manager import get_registry

    return get_registry(load_entrypoints=False, local=False)
