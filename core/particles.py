"""Particle catalog: class names, radii (Å) and CZII metric weights.

The six classes of the CZII CryoET Object Identification challenge are built in with the
radii and weights its metric uses. Users add or override classes with ``--radius NAME=Å``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from picks.core.errors import PicksError


@dataclass(frozen=True)
class Particle:
    """One particle class: canonical name, radius in Å, CZII metric weight."""

    name: str
    radius: float
    weight: float = 1.0


CZII: dict[str, Particle] = {
    p.name: p
    for p in (
        Particle("apo-ferritin", 60.0, 1.0),
        Particle("beta-amylase", 65.0, 0.0),
        Particle("beta-galactosidase", 90.0, 2.0),
        Particle("ribosome", 150.0, 1.0),
        Particle("thyroglobulin", 130.0, 2.0),
        Particle("virus-like-particle", 135.0, 1.0),
    )
}

# Spellings seen in picker outputs and training configs -> canonical name.
_ALIASES = {
    "apoferritin": "apo-ferritin",
    "ferritin": "apo-ferritin",
    "betaamylase": "beta-amylase",
    "betagalactosidase": "beta-galactosidase",
    "bgal": "beta-galactosidase",
    "ribo": "ribosome",
    "ribosomes": "ribosome",
    "80s": "ribosome",
    "thyro": "thyroglobulin",
    "virus": "virus-like-particle",
    "viruslikeparticle": "virus-like-particle",
    "vlp": "virus-like-particle",
}


def canonical_name(name: str) -> str:
    """Map common spellings (``apoferritin``, ``VLP``, ``beta_galactosidase``) to one name."""
    key = re.sub(r"[\s_\-]+", "", name.strip().lower())
    if key in _ALIASES:
        return _ALIASES[key]
    for canonical in CZII:
        if key == canonical.replace("-", ""):
            return canonical
    return name.strip()


class Catalog:
    """The particle classes a run knows about, with their radii."""

    def __init__(self, particles: Iterable[Particle] = CZII.values()) -> None:
        self._by_name = {p.name: p for p in particles}

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and canonical_name(name) in self._by_name

    def __iter__(self):
        return iter(self._by_name.values())

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def get(self, name: str) -> Particle:
        key = canonical_name(name)
        try:
            return self._by_name[key]
        except KeyError:
            raise PicksError(
                f"unknown particle class {name!r}; known: {', '.join(self.names())}",
                hint=f"Give its size with `radii` {name}=ÅNGSTROM.",
            ) from None

    def radius(self, name: str) -> float:
        return self.get(name).radius

    def with_radii(self, radii: Mapping[str, float]) -> Catalog:
        """A copy with classes added or their radii replaced."""
        merged = dict(self._by_name)
        for raw, radius in radii.items():
            name = canonical_name(raw)
            old = merged.get(name)
            merged[name] = Particle(name, float(radius), old.weight if old else 1.0)
        return Catalog(merged.values())


def parse_radius_options(values: Iterable[str]) -> dict[str, float]:
    """Parse ``--radius NAME=Å`` options into a dict; errors name the bad value."""
    radii: dict[str, float] = {}
    for value in values:
        name, sep, number = value.partition("=")
        try:
            radius = float(number)
        except ValueError:
            radius = -1.0
        if not sep or not name.strip() or radius <= 0:
            raise PicksError(f"`radii` {value!r}: expected NAME=ÅNGSTROM, e.g. ribosome=150")
        radii[canonical_name(name)] = radius
    return radii
