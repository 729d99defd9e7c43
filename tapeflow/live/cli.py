"""``tapeflow live``: run the Bytewax market flow (``flows.market``) on a live feed or a capture."""

from __future__ import annotations

SUMMARY_PREFIX = "live-summary "
