"""Build the plugin manager and the adapter registry.

Every adapter arrives through the one ``register_adapters`` hook, in this order:

1. **built-in** – the package's own plugin (:mod:`picks.plugins.builtin`) registers the cards
   of ``registry.toml``; a card is the adapter's only description (name, picker, patterns,
   formats, whether it writes), so its module is imported only when the adapter is used
   (``picks plugins`` and ``--help`` import none);
2. **entry point** – installed packages that declare ``[project.entry-points.picks]``;
3. **local** – the cards of a local registry file, only when one is named: ``--registry FILE``
   (:func:`use_local_registry`), else ``$PICKS_REGISTRY``, else ``registry.toml`` in
   ``$PICKS_USER_DIR`` (the user's own folder). A ``picks-registry.toml`` in the working
   directory is *not* read: opening a shared data folder must not run its code.

``PICKS_LOAD_PLUGINS=name1,name2`` restricts which entry-point plugins load (empty string: none).
``PICKS_TRACE_PLUGINS=1`` prints every hook call to stderr.
"""

from __future__ import annotations

import contextvars
import importlib
import importlib.metadata
import importlib.util
import os
import sys
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from picks.core.errors import AdapterConflict, PicksError, UnknownAdapter
from picks.plugins import hookspecs
from picks.plugins.adapter import Adapter, AdapterCard

ENTRY_POINT_GROUP = "picks"
BUILTIN_PLUGIN = "picks"
# The local registry named on the command line (--registry); None: $PICKS_REGISTRY or none.
_LOCAL_REGISTRY: contextvars.ContextVar[Path | None] = contextvars.ContextVar(
    "picks_local_registry", default=None
)


def use_local_registry(path: str | Path | None) -> None:
    """Name the local registry file for this context (``picks --registry FILE``)."""
    _LOCAL_REGISTRY.set(Path(path) if path else None)


@dataclass
class AdapterEntry:
    """An adapter as listed by the registry; the adapter object is loaded on first use."""

    name: str
    picker: str
    description: str
    patterns: tuple[str, ...]
    origin: str  # "built-in", "entry point" or "local"
    version: str
    formats: tuple[str, ...] = ()
    plugin: str = ""
    write: bool | None = None  # from the card; None: ask the loaded adapter
    _target: str | None = None  # "module:Class" for lazy entries
    _path: str | None = None  # .py file for local entries
    _adapter: Adapter | None = field(default=None, repr=False)

    @classmethod
    def from_card(cls, card: AdapterCard, origin: str, version: str, plugin: str) -> AdapterEntry:
        return cls(
            name=card.name,
            picker=card.picker,
            description=card.description,
            patterns=tuple(card.patterns),
            origin=origin,
            version=card.version or version,
            formats=tuple(card.formats),
            plugin=plugin,
            write=card.write,
            _target=card.object,
            _path=card.path,
        )

    def check(self) -> None:
        """Raise the error :meth:`load` would for a file or module that is not there, without
        importing anything (``picks plugins`` lists broken entries this way)."""
        if self._adapter is not None:
            return
        if self._path:
            if not Path(self._path).is_file():
                raise self._broken(FileNotFoundError(f"no such file: {self._path}"))
            return
        module = (self._target or "").partition(":")[0]
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError) as exc:
            raise self._broken(exc) from None
        if not found:
            raise self._broken(ModuleNotFoundError(f"no module named {module!r}"))

    def _broken(self, exc: BaseException) -> PicksError:
        where = self._path or self._target
        return PicksError(
            f"adapter {self.name!r} ({self.origin}, from {self.plugin}): cannot load "
            f"{where}: {type(exc).__name__}: {exc}",
            hint="Fix or remove the entry; `picks plugins` lists the adapters that load.",
        )

    def load(self) -> Adapter:
        if self._adapter is None:
            try:
                self._adapter = _instantiate(self._target or "", self._path)
            except PicksError:
                raise
            except Exception as exc:  # a plugin's own import or file error: name the entry
                raise self._broken(exc) from exc
            if self._adapter.name != self.name:
                raise PicksError(
                    f"registry entry {self.name!r} loads an adapter named {self._adapter.name!r}"
                )
            if self._target is not None:
                # The card is the adapter's description: the loaded object shows the same.
                self._adapter.picker = self.picker
                self._adapter.description = self.description
                self._adapter.patterns = self.patterns
        return self._adapter

    @property
    def can_write(self) -> bool:
        if self.write is not None and self._adapter is None:
            return self.write
        return self.load().can_write

    def matches(self, path: Path) -> bool:
        return Adapter.matches(self, path)  # type: ignore[arg-type]


def _instantiate(target: str, path: str | None) -> Adapter:
    module_name, _, attr = target.partition(":")
    if path:
        spec = importlib.util.spec_from_file_location(f"picks_local_{Path(path).stem}", path)
        if spec is None or spec.loader is None:
            raise PicksError(f"cannot import local adapter file {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
        attr = attr or module_name
    else:
        module = importlib.import_module(module_name)
    try:
        cls = getattr(module, attr)
    except AttributeError:
        raise PicksError(
            f"adapter {target!r}: {module.__name__} has no attribute {attr!r}"
        ) from None
    return cls() if isinstance(cls, type) else cls


def read_cards(path: Path | Any) -> list[AdapterCard]:
    """The ``[[adapter]]`` cards of a registry file (``path`` of a ``.py`` file made absolute)."""
    with path.open("rb") as handle:
        try:
            data = tomllib.load(handle)
        except tomllib.TOMLDecodeError as exc:
            raise PicksError(f"registry file {path}: {exc}") from None
    cards = []
    base = Path(str(path)).parent
    for item in data.get("adapter", []):
        try:
            file = item.get("path")
            write = item.get("write")
            cards.append(
                AdapterCard(
                    name=item["name"],
                    object=item["object"],
                    picker=item.get("picker", ""),
                    description=item.get("description", ""),
                    patterns=tuple(item.get("patterns", ())),
                    formats=tuple(item.get("formats", ())),
                    write=None if write is None else bool(write),
                    version=item.get("version", ""),
                    path=str((base / file).resolve()) if file else None,
                )
            )
        except KeyError as exc:
            raise PicksError(f"registry file {path}: an [[adapter]] entry lacks {exc}") from None
    return cards


def local_registry_path() -> Path | None:
    """The local registry file in effect, if any (see module docstring)."""
    named = _LOCAL_REGISTRY.get()
    if named is not None:
        return named
    if os.environ.get("PICKS_REGISTRY"):
        return Path(os.environ["PICKS_REGISTRY"])
    user_dir = os.environ.get("PICKS_USER_DIR")
    if user_dir and (Path(user_dir) / "registry.toml").exists():
        return Path(user_dir) / "registry.toml"
    return None


def get_plugin_manager(*, load_entrypoints: bool = True) -> pluggy.PluginManager:
    """A fresh manager with the hookspecs and (optionally) entry-point plugins loaded."""
    from picks.plugins import builtin

    pm = pluggy.PluginManager("picks")
    pm.add_hookspecs(hookspecs)
    pm.register(builtin, name=BUILTIN_PLUGIN)  # first: built-in names cannot be shadowed
    if load_entrypoints:
        allow = os.environ.get("PICKS_LOAD_PLUGINS")
        if allow is None:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        else:
            # Block everything not allowed, then let pluggy load (and record distributions).
            wanted = {n.strip() for n in allow.split(",") if n.strip()}
            for dist in importlib.metadata.distributions():
                for ep in dist.entry_points:
                    if ep.group == ENTRY_POINT_GROUP and ep.name not in wanted:
                        pm.set_blocked(ep.name)
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
    if os.environ.get("PICKS_TRACE_PLUGINS"):
        pm.add_hookcall_monitoring(
            lambda name, impls, kw: print(
                f"picks hook {name} -> {[i.plugin_name for i in impls]}", file=sys.stderr
            ),
            lambda outcome, name, impls, kw: None,
        )
    pm.check_pending()
    return pm


class AdapterRegistry:
    """All adapters, by name, with auto-detection of a file's format."""

    def __init__(self, entries: list[AdapterEntry]) -> None:
        self._entries: dict[str, AdapterEntry] = {}
        for entry in entries:
            self.add(entry)

    def add(self, entry: AdapterEntry) -> None:
        if entry.name in self._entries:
            other = self._entries[entry.name]
            raise AdapterConflict(
                f"adapter name {entry.name!r} is registered twice ({other.origin} {other.plugin!r} "
                f"and {entry.origin} {entry.plugin!r})",
                hint="Give the plugin's adapter a distinct name.",
            )
        self._entries[entry.name] = entry

    def __iter__(self) -> Iterator[AdapterEntry]:
        return iter(self._entries.values())

    def __len__(self) -> int:
        return len(self._entries)

    def names(self) -> list[str]:
        return list(self._entries)

    def get(self, name: str) -> Adapter:
        try:
            return self._entries[name].load()
        except KeyError:
            raise UnknownAdapter(
                f"no adapter named {name!r}; known: {', '.join(sorted(self._entries))}",
                hint="Run 'picks plugins' to list adapters.",
            ) from None

    def entry(self, name: str) -> AdapterEntry:
        self.get(name)
        return self._entries[name]

    def writers(self) -> list[str]:
        return [e.name for e in self if e.can_write]

    def detect(self, path: Path) -> Adapter:
        """The adapter for ``path``: the most certain ``sniff`` among name-matching adapters."""
        candidates = [e for e in self if e.matches(path)]
        scored = []
        for entry in candidates:
            certainty = safe_sniff(entry.load(), path)
            if certainty > 0:
                scored.append((certainty, entry.name))
        if not scored:
            tried = (
                ", ".join(e.name for e in candidates) or "none (no adapter pattern fits the name)"
            )
            raise UnknownAdapter(
                f"{path}: no adapter recognised this file (tried: {tried})",
                hint="Name one with `adapter` NAME; 'picks plugins' lists them.",
            )
        scored.sort(reverse=True)
        if len(scored) > 1 and scored[0][0] == scored[1][0]:
            tied = [n for c, n in scored if c == scored[0][0]]
            raise UnknownAdapter(
                f"{path}: several adapters claim this file equally ({', '.join(tied)})",
                hint="Choose one with `adapter` NAME.",
            )
        return self.get(scored[0][1])


def safe_sniff(adapter: Adapter, path: Path) -> float:
    """``adapter.sniff(path)``, 0 when the sniffer fails: a malformed file is then reported
    by the reader chosen (with its line) or as recognised by none, never as a traceback."""
    try:
        return float(adapter.sniff(path))
    except Exception:
        return 0.0


def get_registry(*, load_entrypoints: bool = True, local: bool = True) -> AdapterRegistry:
    """Collect built-in, entry-point and local adapters into one registry, all through the
    ``register_adapters`` hook."""
    from picks import __version__

    registry = AdapterRegistry([])
    pm = get_plugin_manager(load_entrypoints=load_entrypoints)
    versions = {id(plugin): dist.version for plugin, dist in pm.list_plugin_distributions()}

    for plugin_name, plugin in pm.list_name_plugin():
        if getattr(plugin, "register_adapters", None) is None:
            continue
        builtin = plugin_name == BUILTIN_PLUGIN

        def register(
            adapter: Adapter | AdapterCard, _plugin=plugin, _name=plugin_name, _builtin=builtin
        ) -> None:
            origin = "built-in" if _builtin else "entry point"
            version = __version__ if _builtin else versions.get(id(_plugin), "")
            if isinstance(adapter, AdapterCard):
                registry.add(AdapterEntry.from_card(adapter, origin, version, _name))
                return
            _check_adapter(adapter, _name)
            registry.add(
                AdapterEntry(
                    name=adapter.name,
                    picker=adapter.picker,
                    description=adapter.description,
                    patterns=tuple(adapter.patterns),
                    origin=origin,
                    version=versions.get(id(_plugin), adapter.version),
                    plugin=_name,
                    _adapter=adapter,
                )
            )

        pm.subset_hook_caller(
            "register_adapters",
            remove_plugins=[p for _, p in pm.list_name_plugin() if p is not plugin],
        )(register=register)

    if local and (path := local_registry_path()) is not None:
        if not path.exists():
            raise PicksError(
                f"local registry file {path} (from `registry` or PICKS_REGISTRY) does not exist"
            )
        for card in read_cards(path):
            registry.add(AdapterEntry.from_card(card, "local", "local", str(path)))
    return registry


def _check_adapter(adapter: Adapter, plugin: str) -> None:
    if not isinstance(adapter, Adapter):
        raise PicksError(f"plugin {plugin!r} registered {adapter!r}, which is not a picks Adapter")
    if not adapter.name or not adapter.patterns:
        raise PicksError(
            f"plugin {plugin!r}: adapter {type(adapter).__name__} needs a name and patterns"
        )
