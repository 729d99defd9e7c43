"""The ``sim`` format: the built-in simulator's L3 venue feed (see ``messages`` for the wire)."""

from __future__ import annotations

from tapeflow.wire.registry import VenueFormat

# parts are imported on first use: listing the formats imports no decoder
FORMAT = VenueFormat(
    "sim",
    decode="tapeflow.venues.sim.parse:decode",
    verify="tapeflow.venues.sim.verify:verify",
    client="tapeflow.venues.sim.client:SimClient",
    replay="tapeflow.venues.sim.replay:SimReplay",
    description="tapeflow simulator L3 feed (sim/<symbol>/<date>.events.csv.gz)",
)
