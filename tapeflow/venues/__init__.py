"""Venue and vendor formats: one folder per venue, each exposing ``FORMAT``."""

from __future__ import annotations

import importlib
import pkgutil

from tapeflow.errors import ConfigError
from tapeflow.venues.base import VenueFormat


def _scan() -> tuple[dict[str, VenueFormat], dict[str, str]]:
    found: dict[str, VenueFormat] = {}
    broken: dict[str, str] = {}
    for info in pkgutil.iter_modules(__path__):
        if not info.ispkg:
            continue
        try:
            module = importlib.import_module(f"{__name__}.{info.name}")
        except Exception as exc:  # one broken folder must not hide every other format
            broken[info.name] = f"{type(exc).__name__}: {exc}"
            continue
        fmt = getattr(module, "FORMAT", None)
        if isinstance(fmt, VenueFormat):
            found[fmt.name] = fmt
    return found, broken


def formats() -> dict[str, VenueFormat]:
    """Every format found in the venue folders, by CLI name (folders that fail to import are left out)."""
    return _scan()[0]


def get_format(name: str) -> VenueFormat:
    """The format called ``name``.

    Raises:
        ConfigError: no venue folder provides it (naming folders that failed to import).
    """
    known, broken = _scan()
    if name not in known:
        why = "".join(f"\n  tapeflow/venues/{d}/ failed to import: {err}" for d, err in broken.items())
        raise ConfigError(f"unknown format {name!r}; known formats: {', '.join(sorted(known))}{why}")
    return known[name]
