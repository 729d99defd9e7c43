"""What a consumer group reads from the bus and what the lake holds, per stream, as row multisets."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import polars as pl
import pyarrow as pa
import redis

from tapeflow.bus import decode_rows, record_of_stream, stream_name
from tapeflow.bus.consume import drain, streams_matching
from tapeflow.schemas import ALL_RECORDS
from tapeflow.storage import lake
from tapeflow.storage.batches import REPLACE_KEYS, last_per_key

Contents = dict[str, Counter[int]]


def multiset(table: pa.Table, record_name: str) -> Counter[int]:
    """The rows of ``table`` (cast to the record's schema) as a multiset of row hashes."""
    schema = ALL_RECORDS[record_name].arrow_schema()
    table = table.select(schema.names).cast(schema)
    return Counter(pl.from_arrow(table).hash_rows(seed=0).to_list()) if table.num_rows else Counter()


def read_bus(url: str, group: str, tables: tuple[str, ...] | None = None) -> tuple[Contents, dict[str, int]]:
    """Every stream drained by consumer group ``group``: ``({stream: rows}, {stream: entries})``.
    A restated table (bars) keeps the last row per key, as the lake does."""
    client = redis.Redis.from_url(url)
    try:
        streams = streams_matching(client)
        read = drain(client, group, f"{group}-1", streams)
    finally:
        client.close()
    out: Contents = {}
    entries: dict[str, int] = {}
    for stream, items in read.items():
        record = record_of_stream(stream)
        if tables is not None and record.name not in tables:
            continue
        table = decode_rows(record, [row for _, row in items])
        entries[stream] = table.num_rows
        if record.name in REPLACE_KEYS:
            table = last_per_key(table, REPLACE_KEYS[record.name])
        out[stream] = multiset(table, record.name)
    return out, entries


def read_lake(root: Path, tables: tuple[str, ...]) -> Contents:
    """Every lake dataset of ``tables`` cut per stream (venue and symbol)."""
    out: Contents = {}
    for name in tables:
        table = lake.read(ALL_RECORDS[name], root)
        if not table.num_rows:
            continue
        frame = pl.from_arrow(table.select(["venue", "symbol"])).with_row_index("_i")
        for (venue, symbol), part in frame.group_by(["venue", "symbol"], maintain_order=True):
            rows = table.take(pa.array(part["_i"].to_numpy()))
            out[stream_name(name, venue, symbol)] = multiset(rows, name)
    return out
