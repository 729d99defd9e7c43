"""What the bus publishes: stream names, entry ids derived from the batch, and the row encoding.

One Redis stream per kind of row and instrument: ``<kind>:<venue>:<symbol>`` (``bars:binance:BTCUSDT``).
One entry per row, its one field ``row`` a JSON object of the record's columns (docs/bus.md says
why JSON and not Arrow IPC or msgpack).

An entry's id is ``<ms>-<seq>``: ``ms`` is the row's capture time in milliseconds, held at the
stream's last ``ms`` when a row arrives out of capture-time order (ids must grow), and ``seq``
counts the rows of one ``ms``. The ids depend only on the rows published to the stream before, in
order, and a resumed flow re-emits the same rows per instrument in the same order from the state
it snapshotted, so a replayed row gets the id it had: Redis refuses an id at or below the stream's
last one, which is what makes a replay after recovery publish nothing twice.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.errors import TapeflowError
from tapeflow.schemas import ALL_RECORDS, RecordType

# stream kinds of the record names the issue and the dashboard speak of; others keep their name
KINDS: dict[str, str] = {
    "bar": "bars", "metric": "metrics", "signal": "signals", "trade": "trades", "quote": "quotes",
    "book_delta": "book_deltas", "order_event": "order_events", "book_snapshot": "book_snapshots",
}
FIELD = "row"  # the one field of every entry
_NS_PER_MS = 1_000_000
# below this many rows orjson per row beats polars' NDJSON writer, whose fixed cost is ~0.3 ms
_SMALL_ROWS = 128
_NEW_STREAM = (0, 0)  # Redis takes no id 0-0: a stream's first id is at least 0-1


class BusError(TapeflowError):
    """A bus setting is invalid or a stream entry cannot be read back as its record."""


def stream_kind(table: str) -> str:
    """The stream kind of a record name: ``bar`` -> ``bars``, ``status`` -> ``status``."""
    return KINDS.get(table, table)


def stream_name(table: str, venue: str, symbol: str, prefix: str = "") -> str:
    """``<prefix><kind>:<venue>:<symbol>``; a venue-wide row (empty symbol) goes to ``<kind>:<venue>:*``."""
    return f"{prefix}{stream_kind(table)}:{venue}:{symbol or '*'}"


def record_of_stream(name: str, prefix: str = "") -> RecordType:
    """The record type a stream carries, from its name.

    Raises:
        BusError: the name is not ``<kind>:<venue>:<symbol>`` of a known kind.
    """
    kind = name.removeprefix(prefix).split(":", 1)[0]
    table = {v: k for k, v in KINDS.items()}.get(kind, kind)
    if table not in ALL_RECORDS or name.count(":") < 2:
        raise BusError(f"stream {name!r} is not <kind>:<venue>:<symbol> of a known record kind")
    return ALL_RECORDS[table]


@dataclass(frozen=True)
class StreamRows:
    """The rows of one micro-batch for one stream, encoded, with their ids.

    Attributes:
        stream: the stream name.
        table: the record name.
        ids: ``<ms>-<seq>`` per row, increasing.
        rows: the JSON object of each row.
    """

    stream: str
    table: str
    ids: list[str]
    rows: list[bytes]


def encode_rows(table: pa.Table) -> list[bytes]:
    """Each row of ``table`` as a compact JSON object (binary columns as base64, NaN as null)."""
    if table.num_rows < _SMALL_ROWS:
        return _encode_small(table)
    frame = pl.from_arrow(table)
    binary = [name for name, dtype in frame.schema.items() if dtype == pl.Binary]
    if binary:
        frame = frame.with_columns(pl.col(binary).bin.encode("base64"))
    text = frame.write_ndjson().encode()
    return text.split(b"\n")[: table.num_rows]


def _encode_small(table: pa.Table) -> list[bytes]:
    import base64

    columns = table.to_pydict()
    for field in table.schema:
        if pa.types.is_binary(field.type) or pa.types.is_large_binary(field.type):
            columns[field.name] = [base64.b64encode(v).decode() for v in columns[field.name]]
        elif pa.types.is_decimal(field.type):  # as text, like polars' NDJSON (JSON ints stop at 64 bits)
            columns[field.name] = [str(v) for v in columns[field.name]]
    names = list(columns)
    rows = zip(*columns.values(), strict=True)
    return [orjson.dumps(dict(zip(names, values, strict=True))) for values in rows]


def decode_rows(record: RecordType, rows: list[bytes]) -> pa.Table:
    """Entries' ``row`` fields back into a table of ``record`` (the consumer side of :func:`encode_rows`).

    Raises:
        BusError: a row is not a JSON object of the record's columns.
    """
    import base64

    schema = record.arrow_schema()
    try:
        objects = [orjson.loads(r) for r in rows]
        columns: dict[str, list[object]] = {name: [o[name] for o in objects] for name in schema.names}
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise BusError(f"an entry is not a JSON {record.name} row: {exc}") from None
    arrays = []
    for field in schema:
        values = columns[field.name]
        if pa.types.is_binary(field.type):
            values = [base64.b64decode(v) for v in values]
        elif pa.types.is_decimal(field.type):  # text (or a JSON integer) of a dec38 column
            try:
                values = [Decimal(str(v)) for v in values]
            except InvalidOperation as exc:
                raise BusError(f"an entry is not a JSON {record.name} row: {field.name} {exc}") from None
        elif pa.types.is_floating(field.type):
            values = [float("nan") if v is None else v for v in values]
        arrays.append(pa.array(values, field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def assign_ids(recv_ns: np.ndarray, last: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Entry ids for rows with these capture times, after a stream whose last id is ``last``.

    Args:
        recv_ns: capture time of each row in order, int64 ns.
        last: ``(ms, seq)`` of the stream's last entry (``(0, 0)`` for a new stream: Redis's ids
            start above 0-0).

    Returns:
        ``(ms, seq)`` arrays: ``ms`` never below the previous one, ``seq`` counting rows of one ``ms``,
        so every id is above the one before it.
    """
    ms = np.maximum.accumulate(np.maximum(recv_ns // _NS_PER_MS, last[0]))
    n = len(ms)
    if n == 0:
        return ms, np.empty(0, np.int64)
    starts = np.flatnonzero(np.r_[True, ms[1:] != ms[:-1]])
    run_start = np.repeat(starts, np.diff(np.r_[starts, n]))
    seq = np.arange(n, dtype=np.int64) - run_start
    # rows continuing the stream's last millisecond count on from its last seq
    seq[ms == last[0]] += last[1] + 1
    return ms, seq


def split_streams(name: str, table: pa.Table, last_ids: dict[str, tuple[int, int]],
                  prefix: str = "") -> Iterator[StreamRows]:
    """Cut one micro-batch into its streams (per venue and symbol, row order kept), assigning ids
    and advancing ``last_ids`` (the caller's state, snapshotted with the flow)."""
    if table.num_rows == 0:
        return
    for v, s, rows in _instruments(table):
        stream = stream_name(name, v, s, prefix)
        ms, seq = assign_ids(rows.column("ts_recv_ns").to_numpy(), last_ids.get(stream, _NEW_STREAM))
        last_ids[stream] = (int(ms[-1]), int(seq[-1]))
        ids = [f"{m}-{q}" for m, q in zip(ms.tolist(), seq.tolist(), strict=True)]
        yield StreamRows(stream, name, ids, encode_rows(rows))


def _instruments(table: pa.Table) -> list[tuple[str, str, pa.Table]]:
    # (venue, symbol, rows) per instrument in order of first appearance, rows in their order
    codes = []
    dictionaries = []
    for name in ("venue", "symbol"):
        column = table.column(name)
        if pa.types.is_dictionary(column.type):
            column = pc.cast(column, pa.string())
        encoded = pc.dictionary_encode(column.combine_chunks())
        codes.append(encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64))
        dictionaries.append(encoded.dictionary.to_pylist())
    key = codes[0] * len(dictionaries[1]) + codes[1]
    if key.min() == key.max():
        return [(dictionaries[0][codes[0][0]], dictionaries[1][codes[1][0]], table)]
    _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    out = []
    for group in np.argsort(first, kind="stable"):
        rows = np.flatnonzero(inverse == group)
        i = rows[0]
        out.append((dictionaries[0][codes[0][i]], dictionaries[1][codes[1][i]], table.take(pa.array(rows))))
    return out


def parse_id(entry_id: str | bytes) -> tuple[int, int]:
    """``b"1700000000000-3"`` -> ``(1700000000000, 3)``."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)
