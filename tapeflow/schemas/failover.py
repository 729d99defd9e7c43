"""The record of a multi-source failover decision (docs/failover.md).

Provenance needs no column of its own: every row keeps the ``venue`` it came from. What a row
cannot say is why the flow took it from that source; a ``source_switch`` row says when the
failover stage changed the source of one logical instrument, why, and which capture-time window
of the primary is missing from the output (the same window is also written as a closed ``gap``
STATUS row, which the gap-repair sensor reads).
"""

from __future__ import annotations

from tapeflow.schemas.core import Field, RecordType, common

# Why a source switch happened: the active source went stale, gapped, degraded or disconnected,
# or a preferred source came back (``recovered``) and held healthy long enough.
SWITCH_REASONS = ("stale", "gap", "degraded", "disconnected", "recovered")

SOURCE_SWITCH = RecordType(
    "source_switch",
    common(
        Field("instrument", "lstr", "the logical instrument id of the failover config (e.g. BTC-PERP)"),
        Field("from_source", "lstr", "the source name the rows came from before the switch"),
        Field("to_source", "lstr", "the source name the rows come from after it"),
        Field("reason", "lstr", "one of SWITCH_REASONS: stale, gap, degraded, disconnected, recovered"),
        Field("primary_hole_from_ns", "i64", "capture time of the primary's last row in the output "
              "before it was left (-1 if none yet)"),
        Field("primary_hole_to_ns", "i64", "capture time of the primary's newest row when it was taken "
              "back (-1 while the primary is not the source)"),
        Field("detail", "str", "human readable: the evidence, with the offending values"),
    ),
    order_by=("venue", "symbol", "ts_recv_ns", "instrument"),
    doc="A failover decision: ts_event_ns = the venue time the output was spliced at, ts_recv_ns = "
        "when the stage decided (the arrival clock); venue/symbol = the source switched to.",
)

FAILOVER_RECORDS = (SOURCE_SWITCH,)
