"""Databento DBN files: every schema, DBN v1/v2/v3, zstd or plain, whole files or fragments."""

from __future__ import annotations

from tapeflow.venues.base import VenueFormat
from tapeflow.venues.databento.parse import decode
from tapeflow.venues.databento.verify import verify

FORMAT = VenueFormat("dbn", decode, verify, "Databento DBN (.dbn, .dbn.zst, .frag): all schemas")
