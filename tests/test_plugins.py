"""Plugin system: built-ins from registry.toml, entry points, local registry, detection."""

from __future__ import annotations

import importlib
import inspect
import tomllib
from pathlib import Path
from typing import ClassVar

import pytest

from picks.core.errors import AdapterConflict, UnknownAdapter
from picks.plugins import hookspecs
from picks.plugins.adapter import Adapter
from picks.plugins.manager import AdapterEntry, AdapterRegistry, get_plugin_manager, get_registry

REPO = Path(__file__).resolve().parents[1]


def registry_toml() -> dict:
    return tomllib.loads((REPO / "registry.toml").read_text())


def test_every_adapter_module_is_listed_and_every_entry_loads():
    entries = registry_toml()["adapter"]
    listed_modules = {e["object"].split(":")[0] for e in entries}
    modules = {
        f"picks.adapters.{p.stem}"
        for p in (REPO / "adapters").glob("*.py")
        if not p.name.startswith("_")
    }
    assert modules == listed_modules, "adapters/*.py and registry.toml disagree"
    names = [e["name"] for e in entries]
    assert len(names) == len(set(names))
    registry = get_registry(load_entrypoints=False, local=False)
    for entry in entries:
        adapter = registry.get(entry["name"])
        assert isinstance(adapter, Adapter)
        assert adapter.name == entry["name"]
        assert tuple(adapter.patterns) == tuple(entry["patterns"]), entry["name"]
        assert adapter.picker and adapter.description
        module = importlib.import_module(entry["object"].split(":")[0])
        assert len(inspect.getdoc(module) or "") > 200, (
            f"{module.__name__} must document its convention"
        )


def test_builtin_adapters_are_not_imported_until_used(monkeypatch):
    import sys

    monkeypatch.delitem(sys.modules, "picks.adapters.czii_csv", raising=False)
    registry = get_registry(load_entrypoints=False, local=False)
    assert "czii-csv" in registry.names()
    assert "picks.adapters.czii_csv" not in sys.modules
    registry.get("czii-csv")
    assert "picks.adapters.czii_csv" in sys.modules


def test_hookspecs_are_documented():
    doc = (REPO / "docs" / "writing-an-adapter.md").read_text()
    pm = get_plugin_manager(load_entrypoints=False)
    for name in pm.hook.__dict__:
        if name.startswith("_"):
            continue
        spec = getattr(hookspecs, name)
        assert ":param" in (spec.__doc__ or ""), name
        assert name in doc, f"hook {name} missing from docs/writing-an-adapter.md"


class _Dummy(Adapter):
    name = "dummy-fmt"
    picker = "Dummy"
    patterns = ("*.dummy",)
    description = "test adapter"

    def sniff(self, path):
        return 1.0

    def read(self, path, ctx):
        raise NotImplementedError


class _DummyPlugin:
    @hookspecs.hookimpl
    def register_adapters(self, register):
        register(_Dummy())


def test_entry_point_plugins_are_loaded(monkeypatch):
    """Discovery through a fake installed distribution, as pluggy's own tests do."""
    import importlib.metadata

    class EntryPoint:
        name = "dummy"
        group = "picks"
        value = "dummy_module"

        def load(self):
            return _DummyPlugin()

    class Distribution:
        entry_points = (EntryPoint(),)
        metadata: ClassVar[dict] = {"name": "picks-dummy"}
        version = "9.9"

        @property
        def _normalized_name(self):
            return "picks-dummy"

    monkeypatch.setattr(importlib.metadata, "distributions", lambda: (Distribution(),))
    registry = get_registry(local=False)
    entry = registry.entry("dummy-fmt")
    assert entry.origin == "entry point" and entry.version == "9.9" and entry.plugin == "dummy"
    monkeypatch.setenv("PICKS_LOAD_PLUGINS", "")
    assert "dummy-fmt" not in get_registry(local=False).names()


def test_local_registry_file(tmp_path: Path, monkeypatch):
    module = tmp_path / "my_adapter.py"
    module.write_text(
        "from picks.plugins.adapter import Adapter\n"
        "class Mine(Adapter):\n"
        "    name = 'mine'\n    picker = 'Mine'\n    patterns = ('*.mine',)\n    description = 'x'\n"
        "    def sniff(self, path):\n        return 1.0\n"
    )
    (tmp_path / "picks-registry.toml").write_text(
        '[[adapter]]\nname = "mine"\nobject = "Mine"\npath = "my_adapter.py"\npicker = "Mine"\n'
        'patterns = ["*.mine"]\ndescription = "local"\n'
    )
    monkeypatch.setenv("PICKS_REGISTRY", str(tmp_path / "picks-registry.toml"))
    registry = get_registry(load_entrypoints=False)
    entry = registry.entry("mine")
    assert entry.origin == "local" and entry.version == "local"
    assert registry.detect(tmp_path / "x.mine").name == "mine"


def test_broken_local_entry_is_named_not_a_traceback(tmp_path: Path, monkeypatch):
    from typer.testing import CliRunner

    from picks.cli import get_app

    (tmp_path / "picks-registry.toml").write_text(
        '[[adapter]]\nname = "gone"\nobject = "Gone"\npath = "missing.py"\npicker = "G"\n'
        'patterns = ["*.gone"]\n'
    )
    monkeypatch.chdir(tmp_path)
    registry = str(tmp_path / "picks-registry.toml")
    result = CliRunner().invoke(get_app(), ["--registry", registry, "plugins"])
    assert result.exit_code == 1 and not isinstance(result.exception, FileNotFoundError)
    assert "BROKEN" in result.stdout and "czii-csv" in result.stdout  # the others still listed
    assert "'gone'" in result.output and "missing.py" in result.output


def test_duplicate_names_conflict():
    entry = AdapterEntry("a", "p", "d", ("*.a",), "built-in", "1")
    registry = AdapterRegistry([entry])
    with pytest.raises(AdapterConflict):
        registry.add(AdapterEntry("a", "p", "d", ("*.a",), "local", "1"))


def test_detect_reports_what_it_tried(tmp_path: Path, registry):
    path = tmp_path / "nothing.unknownext"
    path.write_text("1 2 3\n")
    with pytest.raises(UnknownAdapter, match="no adapter"):
        registry.detect(path)
    with pytest.raises(UnknownAdapter, match="known:"):
        registry.get("no-such-adapter")


def test_detect_tie_is_an_error(tmp_path: Path):
    class Other(_Dummy):
        name = "dummy-two"

    registry = AdapterRegistry(
        [
            AdapterEntry("dummy-fmt", "D", "", ("*.dummy",), "local", "1", _adapter=_Dummy()),
            AdapterEntry("dummy-two", "D", "", ("*.dummy",), "local", "1", _adapter=Other()),
        ]
    )
    path = tmp_path / "f.dummy"
    path.write_text("x")
    with pytest.raises(UnknownAdapter, match="equally"):
        registry.detect(path)


# -- one registration path (issue 9) -------------------------------------------------------------
def test_builtins_register_through_the_hook_as_cards():
    from picks.plugins import builtin
    from picks.plugins.adapter import AdapterCard

    pm = get_plugin_manager(load_entrypoints=False)
    assert pm.get_plugin("picks") is builtin
    cards = []
    builtin.register_adapters(register=cards.append)
    assert [c.name for c in cards] == [e["name"] for e in registry_toml()["adapter"]]
    assert all(isinstance(c, AdapterCard) for c in cards)
    entry = get_registry(load_entrypoints=False, local=False).entry("relion5")
    assert entry.origin == "built-in" and entry.plugin == "picks"


def test_registry_card_is_the_only_description():
    """registry.toml says whether each adapter writes (so listing imports none), and that
    matches the class; the classes carry no description of their own."""
    registry = get_registry(load_entrypoints=False, local=False)
    for card in registry_toml()["adapter"]:
        adapter = registry.get(card["name"])
        assert card["write"] == adapter.can_write, card["name"]
        assert "description" not in type(adapter).__dict__, card["name"]
        assert adapter.description == card["description"]


def test_listing_adapters_imports_none(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from picks.cli import get_app\n"
        "result = CliRunner().invoke(get_app(), ['plugins', '--json'])\n"
        "assert result.exit_code == 0, result.output\n"
        'assert \'"write": "yes"\' in result.output\n'
        "print(sorted(m for m in sys.modules if m.startswith('picks.adapters.')))\n"
    )
    env = {"PICKS_USER_DIR": str(tmp_path), "PATH": "", "PICKS_LOAD_PLUGINS": ""}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_registry_in_the_current_folder_is_not_loaded(tmp_path: Path, monkeypatch):
    """Opening a shared data folder must not run its code: a picks-registry.toml there is
    read only when named (--registry or $PICKS_REGISTRY)."""
    marker = tmp_path / "ran"
    (tmp_path / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    (tmp_path / "picks-registry.toml").write_text(
        '[[adapter]]\nname = "evil"\nobject = "Evil"\npath = "evil.py"\npicker = "E"\n'
        'patterns = ["*.csv"]\n'
    )
    monkeypatch.chdir(tmp_path)
    registry = get_registry(load_entrypoints=False)
    assert "evil" not in registry.names()
    assert not marker.exists()
    from picks.plugins.manager import use_local_registry

    use_local_registry(tmp_path / "picks-registry.toml")
    try:
        assert "evil" in get_registry(load_entrypoints=False).names()
    finally:
        use_local_registry(None)
