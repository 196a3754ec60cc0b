"""The hook specification: the documented contract between picks and its plugins.

A plugin is a module (or object) with functions decorated by :data:`hookimpl` whose names
match the specs below. The built-in adapters come through the same hook
(:mod:`picks.plugins.builtin` registers the cards of ``registry.toml``). Third-party plugins
arrive through the ``picks`` entry-point group or a local registry file named with
``--registry`` or ``$PICKS_REGISTRY``; see ``docs/writing-an-adapter.md``.

Hooks are called with keyword arguments only; an implementation may accept any subset of
a spec's arguments (pluggy's opt-in rule), so specs can grow without breaking plugins.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from picks.plugins.adapter import Adapter, AdapterCard

hookspec = pluggy.HookspecMarker("picks")
hookimpl = pluggy.HookimplMarker("picks")


@hookspec
def register_adapters(register: Callable[[Adapter | AdapterCard], None]) -> None:
    """Register picker adapters by calling ``register(adapter)`` once per adapter.

    ``adapter`` is an instance, or an :class:`~picks.plugins.adapter.AdapterCard` that names
    the class by import string, so that the module is imported only when the adapter is used
    (the built-in adapters register cards).

    An adapter reads (and optionally writes) one picker's file format and converts it to the
    canonical pick table (:mod:`picks.core.picks`). Subclass :class:`picks.plugins.adapter.Adapter`
    and set ``name``, ``picker``, ``patterns`` and ``description``; implement ``sniff`` and
    ``read``, and ``write`` if the format can be written. A format whose files can be very
    large may also implement ``read_chunks(path, ctx, chunk_size)`` (an iterator of canonical
    tables; the default yields ``read`` once): ``picks import`` stores a file chunk by chunk in
    one transaction, so it is never whole in memory (docs/writing-an-adapter.md §2).

    :param register: Callback taking one :class:`~picks.plugins.adapter.Adapter` instance or
        :class:`~picks.plugins.adapter.AdapterCard`.
        Raises :class:`~picks.core.errors.AdapterConflict` if the name is already taken
        (built-in names cannot be shadowed; pick a distinct name such as ``mylab-cbox``).
    :returns: Nothing; results are passed through ``register``.

    Who implements this: the built-in plugin (the cards of ``registry.toml``), third-party
    packages (entry-point group ``picks``) and local plugin modules.

    .. versionadded:: 0.1
    """
