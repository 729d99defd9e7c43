"""What a venue folder declares and returns, in one import for venue code and its callers.

A folder ``tapeflow/venues/<venue>/`` declares ``FORMAT = VenueFormat(...)``
(:mod:`tapeflow.wire.registry`); its decoder yields :class:`Decoded` chunks
(:mod:`tapeflow.wire.capture`) whose dead letters come from :class:`Rejects`
(:mod:`tapeflow.wire.rejects`); its verifier returns :class:`VerifyReport` s. :func:`merge` joins
a decode's chunks into one table per record type.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from tapeflow.schemas import ALL_RECORDS, concat
from tapeflow.wire.capture import Decoded
from tapeflow.wire.registry import VenueFormat, VerifyReport
from tapeflow.wire.rejects import Rejects

__all__ = ["Decoded", "Rejects", "VenueFormat", "VerifyReport", "merge"]


def merge(chunks: Sequence[Decoded]) -> dict[str, pa.Table]:
    """Concatenate chunks per record type."""
    names = sorted({n for c in chunks for n in c.tables})
    return {n: concat(ALL_RECORDS[n], [c.tables[n] for c in chunks if n in c.tables]) for n in names}
