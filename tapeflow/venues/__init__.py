"""Venue and vendor formats: one folder per venue, each exposing ``FORMAT``."""

from __future__ import annotations

import importlib
import pkgutil

from tapeflow.errors import ConfigError
from tapeflow.venues.base import VenueFormat


def formats() -> dict[str, VenueFormat]:
    """Every format found in the venue folders, by CLI name."""
    found: dict[str, VenueFormat] = {}
    for info in pkgutil.iter_modules(__path__):
        if not info.ispkg:
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        fmt = getattr(module, "FORMAT", None)
        if isinstance(fmt, VenueFormat):
            found[fmt.name] = fmt
    return found


def get_format(name: str) -> VenueFormat:
    """The format called ``name``.

    Raises:
        ConfigError: no venue folder provides it.
    """
    known = formats()
    if name not in known:
        raise ConfigError(f"unknown format {name!r}; known formats: {', '.join(sorted(known))}")
    return known[name]
