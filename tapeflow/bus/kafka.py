"""The flow's rows as Kafka messages (the Kafka alternative of the bus; docs/bus.md#kafka).

One topic per kind (``<prefix>bars``), keyed by instrument (``<venue>:<symbol>``) so one
instrument's rows stay in one partition, in order; the value is the same JSON row as a Redis
entry, and the headers carry the stream name and the same derived id (:mod:`tapeflow.bus.streams`).
Bytewax's Kafka sink is at-least-once (a resume re-sends the epoch's messages), so a consumer
that must see each row once drops a message whose ``tapeflow-id`` is not above the last one it
saw for that key: the ids of a replay are the ids of the first time.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from tapeflow.bus.deadletter import Drop, write_dead_letters
from tapeflow.bus.streams import parse_id, split_streams, stream_kind

ID_HEADER, STREAM_HEADER = "tapeflow-id", "tapeflow-stream"


@dataclass(frozen=True)
class KafkaRow:
    """One message: ``topic``, ``key`` (instrument), ``value`` (JSON row), headers, timestamp (ms)."""

    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    timestamp_ms: int


def kafka_rows(name: str, table: pa.Table, last_ids: dict[str, tuple[int, int]], prefix: str = ""
               ) -> Iterator[KafkaRow]:
    """The messages of one micro-batch, ids assigned as for Redis (``last_ids`` advanced)."""
    topic = f"{prefix}{stream_kind(name)}"
    for rows in split_streams(name, table, last_ids):
        key = rows.stream.split(":", 1)[1].encode()
        for entry_id, row in zip(rows.ids, rows.rows, strict=True):
            headers = [(STREAM_HEADER, rows.stream.encode()), (ID_HEADER, entry_id.encode())]
            yield KafkaRow(topic, key, row, headers, parse_id(entry_id)[0])


def first_delivery(messages: list[tuple[bytes, bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The consumer's de-duplication: ``(key, id, value)`` in partition order -> ``(key, value)`` of
    each message whose id is above the last one kept for its key."""
    last: dict[bytes, tuple[int, int]] = {}
    kept = []
    for key, entry_id, value in messages:
        ident = parse_id(entry_id)
        if ident > last.get(key, (-1, -1)):
            last[key] = ident
            kept.append((key, value))
    return kept


class InFlight:
    """The messages of one produced batch, so a failed delivery report (which carries no headers)
    is dead-lettered with its stream and id (:mod:`tapeflow.bus.deadletter`).

    Args:
        dead_letters: the dead-letter file.
    """

    def __init__(self, dead_letters: Path) -> None:
        self.dead_letters = dead_letters
        self._waiting: dict[tuple[str, bytes, bytes], list[tuple[str, str]]] = {}

    def add(self, row: KafkaRow) -> None:
        """Remember a message about to be produced."""
        headers = dict(row.headers)
        self._waiting.setdefault((row.topic, row.key, row.value), []).append(
            (headers[STREAM_HEADER].decode(), headers[ID_HEADER].decode()))

    def delivered(self, err: Any, msg: Any) -> None:
        """librdkafka's delivery report (``on_delivery``): a failure becomes a dead letter,
        ``unavailable`` when the broker was not reached in time, else ``refused``."""
        if err is None:
            return
        waiting = self._waiting.get((msg.topic(), msg.key(), msg.value())) or [("", "")]
        stream, entry_id = waiting.pop(0) if len(waiting) > 1 else waiting[0]
        retriable = bool(getattr(err, "retriable", lambda: False)())
        reason = Drop.UNAVAILABLE if retriable or "timed out" in str(err).lower() else Drop.REFUSED
        write_dead_letters(self.dead_letters, [(stream, entry_id, msg.value())], reason, f"kafka: {err}")

    def clear(self) -> None:
        """Forget the batch (every report is in once the producer flushed)."""
        self._waiting.clear()
