"""Shared fixtures. Tests never touch the user's files: the store lives in tmp_path."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

# Plain helper modules in tests/ (e.g. adapter_support) are imported by name: with
# --import-mode=importlib and no __init__.py, tests/ is not on sys.path by itself.
if str(Path(__file__).parent) not in sys.path:
    sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only ../shared folder (real format fixtures and simulated data). Absent (a
    checkout on its own): the tests that need it are skipped, saying why; what the suite
    cannot do without lives in tests/data/."""
    if not SHARED.exists():
        if os.environ.get("PICKS_REQUIRE_SHARED", "") not in ("", "0"):  # CI: never skip quietly
            pytest.fail(f"{SHARED} is missing and PICKS_REQUIRE_SHARED is set")
        pytest.skip(f"{SHARED} is absent: this test reads ../shared (kept beside the repo)")
    return SHARED


@pytest.fixture(scope="session")
def formats_dir(shared_dir: Path) -> Path:
    return shared_dir / "fixtures" / "formats"


@pytest.fixture(scope="session")
def polnet_dir(shared_dir: Path) -> Path:
    return shared_dir / "fixtures" / "data" / "polnet-czii-analog"


@pytest.fixture(scope="session")
def polnet_or_skip() -> Path:
    """The polnet fixture when ../shared holds it; otherwise the test is skipped (not failed):
    the independent-data checks are extra evidence, not a requirement to run picks."""
    path = SHARED / "fixtures" / "data" / "polnet-czii-analog"
    if not (path / "ground_truth.csv").is_file():
        pytest.skip(f"the polnet fixture is absent ({path}): independent-data check not run")
    return path


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


@pytest.fixture
def rejects_import(store, registry):
    """Factory: ``rejects_import(path, error=InputFormatError, match=None, **import_kwargs)``.

    Imports ``path`` into the test store; it must raise ``error`` and leave no source and no
    pick behind. Returns the ``pytest.ExceptionInfo`` for further checks on the message.
    """
    from adapter_support import expect_import_error

    def rejects(path: Path, **kwargs):
        return expect_import_error(store, registry, path, **kwargs)

    return rejects
