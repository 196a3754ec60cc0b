"""The hook specification: the documented contract between picks and its plugins.

A plugin is a module (or object) with functions decorated by :data:`hookimpl` whose names
match the specs below. Built-in adapters are plugins too (declared in ``registry.toml``).
Third-party plugins arrive through the ``picks`` entry-point group or a local registry file;
see ``docs/writing-an-adapter.md``.

Hooks are called with keyword arguments only; an implementation may accept any subset of
a spec's arguments (pluggy's opt-in rule), so specs can grow without breaking plugins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from picks.plugins.adapter import Adapter

hookspec = pluggy.HookspecMarker("picks")
hookimpl = pluggy.HookimplMarker("picks")


@hookspec
def register_adapters(register: Callable[[Adapter], None]) -> None:
    """Register picker adapters by calling ``register(adapter)`` once per adapter.

    An adapter reads (and optionally writes) one picker's file format and converts it to the
    canonical pick table (:mod:`picks.core.picks`). Subclass :class:`picks.plugins.adapter.Adapter`
    and set ``name``, ``picker``, ``patterns`` and ``description``; implement ``sniff`` and
    ``read``, and ``write`` if the format can be written.

    :param register: Callback taking one :class:`~picks.plugins.adapter.Adapter` instance.
        Raises :class:`~picks.core.errors.AdapterConflict` if the name is already taken
        (built-in names cannot be shadowed; pick a distinct name such as ``mylab-cbox``).
    :returns: Nothing; results are passed through ``register``.

    Who implements this: built-in adapter modules (via ``registry.toml``), third-party
    packages (entry-point group ``picks``) and local plugin modules.

    .. versionadded:: 0.1
    """
