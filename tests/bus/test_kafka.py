"""Kafka through Bytewax's own Kafka connector: the messages, a broker that is not there, and a
real broker when ``TAPEFLOW_KAFKA_BROKERS`` names one (none is installed here: that test skips)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pyarrow as pa
import pytest
from bytewax.testing import run_main

from flows.bus import KafkaBusSink
from flows.market import MarketSinks, build_market_flow
from flows.sinks import LakeSink
from flows.sources import CaptureSource
from tapeflow.bus import decode_rows, read_dead_letters, record_of_stream
from tapeflow.bus.kafka import ID_HEADER, STREAM_HEADER, first_delivery, kafka_rows
from tapeflow.bus.server import free_port
from tapeflow.bus.settings import DEFAULT_TABLES
from tapeflow.bus.streams import split_streams
from tapeflow.storage.batches import REPLACE_KEYS, last_per_key
from tests.bus.compare import multiset, read_lake
from tests.bus.rows import batch
from tests.flows.flowdata import sim_market


def test_messages_carry_the_redis_ids_and_a_replay_is_dropped_by_the_consumer() -> None:
    table = pa.concat_tables([batch(0, 5), batch(0, 3, symbol="ETHUSDT")])
    messages = list(kafka_rows("trade", table, {}, prefix="tf."))
    redis_ids = [i for rows in split_streams("trade", table, {}) for i in rows.ids]
    assert [dict(m.headers)[ID_HEADER].decode() for m in messages] == redis_ids
    assert {m.topic for m in messages} == {"tf.trades"}
    assert [m.key for m in messages] == [b"binance:BTCUSDT"] * 5 + [b"binance:ETHUSDT"] * 3
    # what a consumer sees after a resume re-sent the last three messages: each row once
    seen = [(m.key, dict(m.headers)[ID_HEADER], m.value) for m in messages]
    kept = first_delivery(seen + seen[-3:])
    assert [v for _, v in kept] == [m.value for m in messages]


def test_a_broker_that_is_not_there_dead_letters_every_row_after_the_timeout(tmp_path: Path) -> None:
    dead = tmp_path / "dead.jsonl"
    sink = KafkaBusSink([f"127.0.0.1:{free_port()}"], dead, tables=("trade",), retry_s=1)
    part = sink.build_part("kafka", "0", None)
    part.write_batch([batch(0, 20)])  # the connector flushes: back once every message failed
    part.close()
    lines = read_dead_letters(dead)
    assert len(lines) == 20 and {line["reason"] for line in lines} == {"unavailable"}
    assert sorted(line["row"]["price_nanos"] for line in lines) == list(range(20))
    assert {line["stream"] for line in lines} == {"trades:binance:BTCUSDT"}
    assert part.snapshot() == {"trades:binance:BTCUSDT": (19, 0)}


def test_a_consumer_reads_exactly_the_rows_of_the_lake_from_kafka(tmp_path: Path) -> None:
    brokers = os.environ.get("TAPEFLOW_KAFKA_BROKERS")
    if not brokers:
        pytest.skip("no Kafka broker: set TAPEFLOW_KAFKA_BROKERS=host:port (none installs on this machine)")
    from confluent_kafka import Consumer

    prefix = f"tapeflow-test-{uuid.uuid4().hex[:8]}."
    files = sim_market(10 * 1_000_000_000)
    source = CaptureSource("sim", list(files), batch_events=2000, batch_ns=None, heartbeat_ns=1_000_000_000)
    sink = KafkaBusSink(brokers.split(","), tmp_path / "dead.jsonl", tables=DEFAULT_TABLES, prefix=prefix)
    run_main(build_market_flow(source, MarketSinks(tables=LakeSink(tmp_path / "lake"), extra=(sink,)),
                               intervals=("1s", "1m")))
    lake = read_lake(tmp_path / "lake", DEFAULT_TABLES)
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": prefix, "auto.offset.reset": "earliest"})
    topics = sorted({f"{prefix}{s.split(':')[0]}" for s in lake})
    consumer.subscribe(topics)
    got: dict[str, list[tuple[bytes, bytes, bytes]]] = {}
    idle = 0
    while idle < 10:
        msg = consumer.poll(1.0)
        if msg is None:
            idle += 1
            continue
        assert msg.error() is None, msg.error()
        headers = dict(msg.headers())
        stream = headers[STREAM_HEADER].decode()
        got.setdefault(stream, []).append((msg.key(), headers[ID_HEADER], msg.value()))
    consumer.close()
    bus = {}
    for stream, messages in got.items():
        record = record_of_stream(stream)
        table = decode_rows(record, [v for _, v in first_delivery(messages)])
        if record.name in REPLACE_KEYS:
            table = last_per_key(table, REPLACE_KEYS[record.name])
        bus[stream] = multiset(table, record.name)
    assert bus == lake
