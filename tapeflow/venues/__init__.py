"""Venue and vendor formats: one folder per venue, each declaring ``FORMAT`` in its ``__init__.py``.

The registry (:mod:`tapeflow.wire.registry`) finds the folders; ``formats()`` and ``get_format()``
are re-exported here, where callers above the venues look for them. The shared decoder base is
:mod:`tapeflow.venues.decoder`; ``docs/venues.md`` says how to add a venue.
"""

from __future__ import annotations

from tapeflow.wire.registry import VenueFormat, format_names, formats, get_format

__all__ = ["VenueFormat", "format_names", "formats", "get_format"]
