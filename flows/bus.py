"""The live bus sinks: the flow's ``(table_name, pa.Table)`` items to Redis Streams or Kafka (docs/bus.md).

One partition, like the storage sinks (``flows.sinks``): one worker of the whole cluster
publishes, so each stream's entries go out in one order. The logic is
:class:`tapeflow.bus.RedisPublisher`; its state (each stream's last id, what waits for Redis) is
this partition's resume state, so a resumed flow re-derives the ids of the rows it replays and
Redis refuses them as duplicates. :class:`KafkaBusSink` sends the same rows and ids through
Bytewax's own Kafka connector (at-least-once; consumers drop repeated ids).
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

import pyarrow as pa
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from tapeflow.bus import BusSettings, BusState, RedisPublisher
from tapeflow.bus.kafka import InFlight, kafka_rows
from tapeflow.storage.batches import record_of

_PART = "0"


class _BusPartition(StatefulSinkPartition[pa.Table, BusState]):
    def __init__(self, sink: BusSink, state: BusState | None) -> None:
        self._tables = sink.tables
        self._close_wait_s = sink.close_wait_s
        self.publisher = RedisPublisher(sink.url, sink.dead_letters, maxlen=sink.maxlen, prefix=sink.prefix,
                                        retry_s=sink.retry_s, buffer_rows=sink.buffer_rows, state=state,
                                        idempotent=sink.idempotent)

    def write_batch(self, values: list[pa.Table]) -> None:
        for table in values:
            name = record_of(table).name
            if name in self._tables and table.num_rows:
                self.publisher.publish(name, table)

    def snapshot(self) -> BusState:
        return self.publisher.snapshot()

    def close(self) -> None:
        self.publisher.close(self._close_wait_s)
        stats = self.publisher.stats
        dead = sum(stats.dead_lettered.values())
        where = f" to {self.publisher.dead_letters}" if dead else ""
        print(f"live: bus: {stats.published} rows published to {self.publisher.shown} "
              f"({len(stats.per_stream)} streams), {stats.duplicates} duplicates refused, "
              f"{dead} dead-lettered{where}", flush=True)


class BusSink(FixedPartitionedSink[pa.Table, BusState]):
    """Publish the flow's rows to Redis Streams (wire it as an extra sink of the market flow).

    Args:
        url: ``redis://host:port[/db]``.
        dead_letters: the dead-letter file (JSON lines).
        tables: record names published.
        maxlen: approximate ``MAXLEN`` per stream (0: none).
        prefix: prepended to every stream name.
        retry_s: an outage longer than this dead-letters the rows waiting for Redis.
        buffer_rows: most rows waiting for Redis.
        close_wait_s: at the end of the run, how long to wait for a Redis that is down.
        idempotent: False lets Redis number the entries (the recovery tests' control).
    """

    def __init__(self, url: str, dead_letters: Path, *, tables: Collection[str], maxlen: int = 100_000,
                 prefix: str = "", retry_s: float = 60.0, buffer_rows: int = 100_000,
                 close_wait_s: float = 5.0, idempotent: bool = True) -> None:
        self.url, self.dead_letters = url, Path(dead_letters)
        self.tables = frozenset(tables)
        self.maxlen, self.prefix = maxlen, prefix
        self.retry_s, self.buffer_rows, self.close_wait_s = retry_s, buffer_rows, close_wait_s
        self.idempotent = idempotent

    @classmethod
    def from_settings(cls, settings: BusSettings) -> BusSink:
        """The sink ``TAPEFLOW_BUS*`` describe (:meth:`tapeflow.bus.BusSettings.from_env`)."""
        assert settings.url is not None, "no TAPEFLOW_BUS"
        return cls(settings.url, settings.dead_letters, tables=settings.tables, maxlen=settings.maxlen,
                   prefix=settings.prefix, retry_s=settings.retry_s, buffer_rows=settings.buffer_rows)

    def list_parts(self) -> list[str]:
        return [_PART]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: BusState | None) -> _BusPartition:
        return _BusPartition(self, resume_state)


class _KafkaPartition(StatefulSinkPartition[pa.Table, dict]):
    def __init__(self, sink: KafkaBusSink, step_id: str, last_ids: dict | None) -> None:
        from bytewax.connectors.kafka import KafkaSink

        self._sink = sink
        self.last_ids: dict[str, tuple[int, int]] = dict(last_ids or {})
        self._inflight = InFlight(sink.dead_letters)
        config = {"enable.idempotence": "true", "message.timeout.ms": str(int(sink.retry_s * 1000)),
                  "on_delivery": self._inflight.delivered} | dict(sink.add_config)
        # Bytewax's own Kafka connector produces and flushes each batch
        self._kafka = KafkaSink(sink.brokers, None, config).build(step_id, 0, 1)

    def write_batch(self, values: list[pa.Table]) -> None:
        from bytewax.connectors.kafka import KafkaSinkMessage

        messages = []
        for table in values:
            name = record_of(table).name
            if name in self._sink.tables and table.num_rows:
                for r in kafka_rows(name, table, self.last_ids, self._sink.prefix):
                    messages.append(KafkaSinkMessage(r.key, r.value, topic=r.topic, headers=r.headers,
                                                     timestamp=r.timestamp_ms))
                    self._inflight.add(r)
        if messages:
            try:
                self._kafka.write_batch(messages)  # produces, then flushes: every report is in
            finally:
                self._inflight.clear()

    def snapshot(self) -> dict:
        return dict(self.last_ids)

    def close(self) -> None:
        self._kafka.close()


class KafkaBusSink(FixedPartitionedSink[pa.Table, dict]):
    """Publish the flow's rows to Kafka through Bytewax's Kafka connector (docs/bus.md#kafka).

    Args:
        brokers: ``host:port`` bootstrap servers.
        dead_letters: the dead-letter file for messages Kafka did not take (JSON lines).
        tables: record names published.
        prefix: prepended to every topic name.
        retry_s: ``message.timeout.ms``: how long the producer retries a message before it is
            dead-lettered (the connector flushes each batch, so a down broker holds the flow up
            to this long per batch).
        add_config: more librdkafka producer settings.
    """

    def __init__(self, brokers: Collection[str], dead_letters: Path, *, tables: Collection[str],
                 prefix: str = "", retry_s: float = 60.0, add_config: dict[str, str] | None = None) -> None:
        self.brokers, self.dead_letters = list(brokers), Path(dead_letters)
        self.tables, self.prefix, self.retry_s = frozenset(tables), prefix, retry_s
        self.add_config = dict(add_config or {})

    def list_parts(self) -> list[str]:
        return [_PART]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: dict | None) -> _KafkaPartition:
        return _KafkaPartition(self, step_id, resume_state)
