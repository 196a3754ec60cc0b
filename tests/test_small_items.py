"""Small items of issue 9: one default database path, one JSON rule, no process state touched
at import, and the store's lookups turning only a missing row into NotFound."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from picks.core.errors import NotFound
from picks.core.store import Store


def test_import_does_not_touch_the_umask():
    code = (
        "import os\n"
        "def refuse(mask):\n    raise AssertionError('os.umask called at import')\n"
        "os.umask = refuse\n"
        "import picks.core.files, picks.workflows.outputs, picks.workflows.aggregate\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_atomic_files_get_the_umask_mode(tmp_path):
    from picks.core.files import atomic_path

    mask = os.umask(0o027)
    try:
        import picks.core.files as files

        files._umask.cache_clear()
        with atomic_path(tmp_path / "a.txt") as tmp:
            tmp.write_text("x")
        assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(mask)
        files._umask.cache_clear()


def test_store_lookups_turn_only_a_missing_row_into_not_found(tmp_path, monkeypatch):
    with Store(tmp_path / "p.db") as store:
        with pytest.raises(NotFound):
            store.get_run(42)
        with pytest.raises(NotFound):
            store.get_source(42)
        table = type(store.db["runs"])

        def locked(self, pk):
            raise sqlite3.OperationalError("database is locked")

        monkeypatch.setattr(table, "get", locked)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            store.get_run(1)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            store.get_source(1)


def test_one_default_database_path(tmp_path, monkeypatch):
    from picks.cli import aggregate, cnn_cmds, pickers_cmd, store_cmds
    from picks.core.defaults import DEFAULT_DB
    from picks.core.store import default_path

    monkeypatch.delenv("PICKS_DB", raising=False)
    assert str(default_path()) == DEFAULT_DB
    for module in (aggregate, cnn_cmds, pickers_cmd, store_cmds):
        assert str(module.DB_DEFAULT) == DEFAULT_DB


def test_one_json_rule():
    import json

    from picks.core.jsonable import is_jsonable, jsonable

    assert json.dumps({"a": np.int64(3), "b": np.float32(0.5)}, default=jsonable) == (
        '{"a": 3, "b": 0.5}'
    )
    assert is_jsonable({"a": [1, "x"]}) and not is_jsonable({"a": object()})
