"""The built-in adapters as a plugin: the cards of the package's ``registry.toml``, registered
through the same ``register_adapters`` hook as any third-party plugin.

A card (:class:`~picks.plugins.adapter.AdapterCard`) names the adapter's class by import
string, so no adapter module is imported until the adapter is used.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources

from picks.plugins.adapter import AdapterCard
from picks.plugins.hookspecs import hookimpl


@hookimpl
def register_adapters(register: Callable[[AdapterCard], None]) -> None:
    from picks.plugins.manager import read_cards

    for card in read_cards(resources.files("picks").joinpath("registry.toml")):
        register(card)
