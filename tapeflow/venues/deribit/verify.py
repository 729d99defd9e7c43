"""Deribit's own oracle: every book ``change`` names the ``change_id`` it follows (``prev_change_id``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tapeflow.venues.deribit.parse import DeribitDecoder
from tapeflow.wire.registry import VerifyReport


def verify(paths: Sequence[Path]) -> list[VerifyReport]:
    """Decode the captures; check every book change's ``prev_change_id`` against the book's last id.

    Returns:
        ``verified: N of N deribit change_id links``; failures name file:line and the instrument.
    """
    decoder = DeribitDecoder()
    rejected = sum(c.counts().get("rejected", 0) for c in decoder.run(paths))
    s = decoder.changes
    details = {"instruments": len(decoder.change_ids), "snapshots": s.snapshots, "rejected": rejected}
    return [VerifyReport(s.links_ok, s.links_total, "deribit change_id links", s.failures, details)]
