"""What a venue folder declares and returns, in one import for venue code and its callers.

A folder ``tapeflow/venues/<venue>/`` declares ``FORMAT = VenueFormat(...)``
(:mod:`tapeflow.wire.registry`); its decoder yields :class:`Decoded` chunks
(:mod:`tapeflow.wire.capture`) whose dead letters come from :class:`Rejects`
(:mod:`tapeflow.wire.rejects`); its verifier returns :class:`VerifyReport` s. :func:`merge` joins
a decode's chunks into one table per record type. Code below the venues (``tapeflow.live``,
``tapeflow.replay``) imports these from :mod:`tapeflow.wire` directly.
"""

from __future__ import annotations

from tapeflow.wire.capture import Decoded, merge
from tapeflow.wire.registry import VenueFormat, VerifyReport
from tapeflow.wire.rejects import Rejects

__all__ = ["Decoded", "Rejects", "VenueFormat", "VerifyReport", "merge"]
