"""The ``option_ticker`` record: one venue option ticker, with the implied vol and delta we compute.

Declared in :mod:`tapeflow.schemas.options` beside the ``option_surface`` record and registered in
:data:`tapeflow.schemas.records.ALL_RECORDS` (a lake dataset, a warehouse table and a quality suite
each); re-exported here for the options package.
"""

from __future__ import annotations

from tapeflow.schemas.options import OPTION_SURFACE, OPTION_TICKER

__all__ = ["OPTION_SURFACE", "OPTION_TICKER"]
