"""Which historical request fills a gap the live Databento client recorded.

The client writes one closed ``gap`` STATUS row per symbol when a session resumes after an outage:
venue = the dataset, ``ts_recv_ns`` .. ``until_ns`` = the capture times no record arrived for, and a
detail that starts with ``schema=<schema>:``. The same request to ``timeseries.get_range`` (which
filters on ``ts_recv``) returns exactly the records of that range.
"""

from __future__ import annotations

import re
from typing import Any

from tapeflow.venues.databento.client import GAP_SCHEMA
from tapeflow.venues.databento.historical import RangeRequest

_DATASET = re.compile(r"^[A-Z0-9]+\.[A-Z0-9]+$")  # GLBX.MDP3, XNAS.ITCH, OPRA.PILLAR ...


def gap_request(row: dict[str, Any]) -> RangeRequest | None:
    """The request that fills ``row``'s window, or None when it is no Databento live gap.

    Args:
        row: a STATUS row (``venue``, ``symbol``, ``state``, ``ts_recv_ns``, ``until_ns``, ``detail``).
    """
    detail = row.get("detail") or ""
    if (row.get("state") != "gap" or not detail.startswith(GAP_SCHEMA) or not _DATASET.match(row["venue"])
            or not row.get("symbol") or row["until_ns"] <= row["ts_recv_ns"]):
        return None
    schema = detail[len(GAP_SCHEMA):].split(":", 1)[0]
    return RangeRequest(row["venue"], schema, (row["symbol"],), int(row["ts_recv_ns"]), int(row["until_ns"]))
