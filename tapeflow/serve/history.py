"""History for the read API: the lake's Parquet by default, a ClickHouse warehouse when configured.

Both sources answer the same three questions: which instruments exist (:meth:`instruments`), one
page of a dataset over a half-open time range after a cursor (:meth:`page`), and the whole range
as Arrow record batches (:meth:`scan`, what the Arrow IPC / Parquet / CSV downloads stream).
Rows come in time order (``ts_event_ns``, or ``ts_recv_ns`` where the venue gave no time), ties in the
store's order, so a cursor (timestamp, rows of that
timestamp already returned) resumes exactly where the last page stopped.

Bars are restated live (``revision``): both sources return only each bar's final row, the one with
the highest revision.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.schemas import RecordType, concat
from tapeflow.schemas.alerts import ALERT_DELIVERY
from tapeflow.schemas.options import OPTION_SURFACE, OPTION_TICKER
from tapeflow.schemas.records import BAR, BBO, BOOK_SNAPSHOT, METRIC, SIGNAL, STATUS, TRADE
from tapeflow.serve.params import Cursor
from tapeflow.storage import lake

# The API's resource names and the record each reads.
DATASETS: dict[str, RecordType] = {
    "bars": BAR,
    "snapshots": BOOK_SNAPSHOT,
    "metrics": METRIC,
    "signals": SIGNAL,
    "status": STATUS,
    "trades": TRADE,
    "bbo": BBO,
    "alerts": ALERT_DELIVERY,
    "option_tickers": OPTION_TICKER,
    "surfaces": OPTION_SURFACE,
}
# Columns a route may filter on with equality (query parameter = column name).
FILTERS: dict[str, tuple[str, ...]] = {
    "bars": ("interval",),
    "metrics": ("interval",),
    "signals": ("kind",),
    "status": ("state",),
    "alerts": ("rule", "channel", "severity", "alert_id"),
}
SCAN_BATCH_ROWS = 65_536
_SQL_TIME = "if(ts_event_ns >= 0, ts_event_ns, ts_recv_ns)"  # as time_key


@dataclass(frozen=True)
class Query:
    """One read: a dataset, an instrument (either part may be None: all), ``[start_ns, end_ns)``,
    equality filters and a minimum signal confidence."""

    record: RecordType
    venue: str | None
    symbol: str | None
    start_ns: int
    end_ns: int
    equals: Mapping[str, str]
    min_confidence: float | None = None


class History(Protocol):
    """Where the API reads history from."""

    name: str

    def instruments(self) -> list[dict[str, Any]]: ...

    def page(self, query: Query, cursor: Cursor | None, limit: int) -> tuple[pa.Table, Cursor | None]: ...

    def scan(self, query: Query) -> Iterator[pa.RecordBatch]: ...

    def ready(self) -> tuple[bool, str]: ...


def time_key(table: pa.Table) -> np.ndarray:
    """Each row's time for ranges and cursors: ``ts_event_ns``, or ``ts_recv_ns`` where the venue gave
    no time (-1: a connection's STATUS rows), as the lake's day partitioning does."""
    ts = table.column("ts_event_ns").to_numpy()
    if "ts_recv_ns" not in table.column_names:
        return ts
    return np.where(ts >= 0, ts, table.column("ts_recv_ns").to_numpy())


def next_cursor(table: pa.Table, cursor: Cursor | None, more: bool) -> Cursor | None:
    """The cursor after a page ``table`` read from ``cursor``; None when ``more`` is False."""
    if not more or table.num_rows == 0:
        return None
    ts = time_key(table)
    last = int(ts[-1])
    same = int(np.count_nonzero(ts == last))
    if cursor is not None and cursor.ts_ns == last:
        same += cursor.skip
    return Cursor(last, same)


def final_bars(table: pa.Table) -> pa.Table:
    """Each bar's row with the highest revision (bars are restated by late trades), in time order."""
    if table.num_rows == 0:
        return table
    frame = pl.from_arrow(table).with_row_index("_i")
    keep = (
        frame.sort(["revision", "_i"])
        .unique(["venue", "symbol", "interval", "ts_event_ns"], keep="last")
        .sort(["ts_event_ns", "_i"])["_i"]
        .to_numpy()
    )
    return table.take(pa.array(keep))


class LakeHistory:
    """History read from the Parquet lake (``tapeflow.storage.lake``); safe beside any writer.

    Args:
        root: the lake root.
    """

    name = "lake"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def ready(self) -> tuple[bool, str]:
        if not self.root.is_dir():
            return False, f"the lake {self.root} does not exist yet"
        return True, f"lake {self.root}"

    def instruments(self) -> list[dict[str, Any]]:
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for name, record in DATASETS.items():
            if name == "alerts":
                continue
            for venue, symbol, date, _ in lake.partitions(record, self.root):
                row = found.setdefault(
                    (venue, symbol),
                    {"venue": venue, "symbol": symbol, "datasets": [], "first_date": date, "last_date": date},
                )
                if name not in row["datasets"]:
                    row["datasets"].append(name)
                row["first_date"] = min(row["first_date"], date)
                row["last_date"] = max(row["last_date"], date)
        return [found[k] for k in sorted(found)]

    def _rows(self, query: Query) -> pa.Table:
        first, last = lake.day_of(query.start_ns), lake.day_of(max(query.start_ns, query.end_ns - 1))
        tables = [
            lake.read_partition(query.record, path, v, s)
            for v, s, date, path in lake.partitions(
                query.record, self.root, venue=query.venue, symbol=query.symbol
            )
            if first <= date <= last
        ]
        table = concat(query.record, tables) if tables else query.record.empty_table()
        ts = pa.array(time_key(table))
        mask = pc.and_(pc.greater_equal(ts, query.start_ns), pc.less(ts, query.end_ns))
        for column, value in query.equals.items():
            mask = pc.and_(mask, pc.equal(table.column(column), value))
        if query.min_confidence is not None:
            mask = pc.and_(mask, pc.greater_equal(table.column("confidence"), query.min_confidence))
        table = table.filter(mask)
        if query.record is BAR:
            return final_bars(table)
        order = np.argsort(time_key(table), kind="stable")
        return table.take(pa.array(order))

    def page(self, query: Query, cursor: Cursor | None, limit: int) -> tuple[pa.Table, Cursor | None]:
        table = self._rows(query)
        offset = 0
        if cursor is not None:
            offset = int(np.searchsorted(time_key(table), cursor.ts_ns, side="left")) + cursor.skip
        rows = table.slice(offset, limit)
        return rows, next_cursor(rows, cursor, offset + limit < table.num_rows)

    def scan(self, query: Query) -> Iterator[pa.RecordBatch]:
        yield from self._rows(query).to_batches(max_chunksize=SCAN_BATCH_ROWS)


class WarehouseHistory:
    """History read from ClickHouse (``tapeflow.storage.warehouse``): a server DSN, or a chdb
    directory no other process holds (chdb allows one process per directory; docs/dashboard.md).

    Args:
        dsn: ``http(s)://...`` or ``chdb:...``.
    """

    name = "clickhouse"

    def __init__(self, dsn: str) -> None:
        from tapeflow.storage.warehouse import Warehouse

        self.warehouse = Warehouse(dsn)

    def ready(self) -> tuple[bool, str]:
        from tapeflow.errors import StorageError

        try:
            self.warehouse.query("SELECT 1")
        except StorageError as exc:
            return False, f"ClickHouse does not answer: {str(exc).splitlines()[0]}"
        return True, "clickhouse"

    def _exists(self, record: RecordType) -> bool:
        found = self.warehouse.query(
            "SELECT count() AS n FROM system.tables WHERE database = currentDatabase() "
            "AND name = {name:String}",
            {"name": record.name},
        )
        return bool(found.column("n")[0].as_py())

    def instruments(self) -> list[dict[str, Any]]:
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for name, record in DATASETS.items():
            if name == "alerts" or not self._exists(record):
                continue
            rows = self.warehouse.query(
                f"SELECT venue, symbol, toString(toDate(fromUnixTimestamp64Nano(min(ts_event_ns)))) AS lo, "
                f"toString(toDate(fromUnixTimestamp64Nano(max(ts_event_ns)))) AS hi FROM {record.name} "
                "GROUP BY venue, symbol"
            ).to_pylist()
            for r in rows:
                row = found.setdefault(
                    (r["venue"], r["symbol"]),
                    {
                        "venue": r["venue"],
                        "symbol": r["symbol"],
                        "datasets": [],
                        "first_date": r["lo"],
                        "last_date": r["hi"],
                    },
                )
                row["datasets"].append(name)
                row["first_date"], row["last_date"] = (
                    min(row["first_date"], r["lo"]),
                    max(row["last_date"], r["hi"]),
                )
        return [found[k] for k in sorted(found)]

    def _select(self, query: Query, after: Cursor | None, limit: int | None) -> tuple[str, dict[str, Any]]:
        record = query.record
        params: dict[str, Any] = {"lo": max(query.start_ns, after.ts_ns if after else 0), "hi": query.end_ns}
        t = _SQL_TIME if "ts_recv_ns" in record.column_names else "ts_event_ns"
        where = [f"{t} >= {{lo:Int64}}", f"{t} < {{hi:Int64}}"]
        for i, (column, value) in enumerate(
            [("venue", query.venue), ("symbol", query.symbol), *query.equals.items()]
        ):
            if value is not None:
                where.append(f"`{column}` = {{p{i}:String}}")
                params[f"p{i}"] = value
        if query.min_confidence is not None:
            where.append("confidence >= {conf:Float64}")
            params["conf"] = query.min_confidence
        cols = ", ".join(f"`{c}`" for c in record.column_names)
        source = record.name
        if record is BAR:  # the final revision of each bar
            source = (
                f"(SELECT {cols} FROM {record.name} ORDER BY revision DESC "
                "LIMIT 1 BY venue, symbol, interval, ts_event_ns)"
            )
        keys = ", ".join([t, *(k for k in record.order_by if k != "ts_event_ns")])
        sql = f"SELECT {cols} FROM {source} WHERE {' AND '.join(where)} ORDER BY {keys}"
        if limit is not None:
            sql += f" LIMIT {int(limit)} OFFSET {after.skip if after else 0}"
        return sql, params

    def _typed(self, record: RecordType, raw: pa.Table) -> pa.Table:
        arrays = [raw.column(f.name).cast(f.arrow_type) for f in record.fields]
        return pa.Table.from_arrays(arrays, schema=record.arrow_schema())

    def page(self, query: Query, cursor: Cursor | None, limit: int) -> tuple[pa.Table, Cursor | None]:
        if not self._exists(query.record):
            return query.record.empty_table(), None
        sql, params = self._select(query, cursor, limit + 1)
        rows = self._typed(query.record, self.warehouse.query(sql, params))
        page = rows.slice(0, limit)
        return page, next_cursor(page, cursor, rows.num_rows > limit)

    def scan(self, query: Query) -> Iterator[pa.RecordBatch]:
        if not self._exists(query.record):
            return
        sql, params = self._select(query, None, None)
        yield from self._typed(query.record, self.warehouse.query(sql, params)).to_batches(
            max_chunksize=SCAN_BATCH_ROWS
        )
