"""The ``sim`` format: the built-in simulator's L3 venue feed (see ``messages`` for the wire)."""

from __future__ import annotations

from tapeflow.venues.base import VenueFormat
from tapeflow.venues.sim.parse import decode, l3_to_l2
from tapeflow.venues.sim.verify import verify

FORMAT = VenueFormat(
    "sim", decode, verify=verify, description="tapeflow simulator L3 feed (sim/<symbol>/<date>.events.csv.gz)"
)

__all__ = ["FORMAT", "decode", "l3_to_l2", "verify"]
