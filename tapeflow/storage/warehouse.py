"""The ClickHouse warehouse, embedded (chdb) or a server, through one clickhouse-connect client.

``chdb:///abs/dir`` (or ``chdb:relative/dir``) runs the real ClickHouse engine in this process;
``http(s)://user:pass@host:8123/db`` talks to a server. Both get the same DDL
(:meth:`RecordType.clickhouse_ddl`) and the same SQL.

Idempotency: batch loads replace whole (venue, symbol, day) slices atomically. Rows go to a
staging table of the same definition first, together with the rows of the touched ClickHouse
partitions (venue, day) that the load does not replace, and each staged partition then swaps in
with ``ALTER TABLE ... REPLACE PARTITION``: re-running a load leaves exactly one copy, and other
symbols of the same venue and day survive (:class:`Stage`; a load may stream in pieces). Live
micro-batches are inserted exactly once by their batch token (:meth:`Warehouse.insert_batch`).
Tables are plain MergeTree, so no background merge ever collapses two distinct rows that share a
sorting key. Rows reach the warehouse through :class:`tapeflow.storage.writer.Writer`, which
calls these primitives.
"""

from __future__ import annotations

import fcntl
import io
import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import clickhouse_connect
import pyarrow as pa
import pyarrow.ipc  # noqa: F401 - pa.ipc
from clickhouse_connect.driver.exceptions import ClickHouseError

from tapeflow.errors import ConfigError, StorageError
from tapeflow.schemas import ALL_RECORDS, RecordType
from tapeflow.schemas.core import PARTITION_DAY_SQL
from tapeflow.storage.batches import REPLACE_KEYS
from tapeflow.storage.dsn import connect_server, redact_dsn

if TYPE_CHECKING:
    from tapeflow.storage.stage import Stage

# Strings come back as Arrow binary so a ``bytes`` column survives; record reads cast to the schema.
_BINARY_STRINGS = {"output_format_arrow_string_as_string": 0}


class Warehouse:
    """A ClickHouse database holding one table per record type.

    Args:
        dsn: ``chdb:///abs/dir``, ``chdb:rel/dir`` or ``http(s)://user:pass@host:port/db``
            (credentials, TLS and masking: :mod:`tapeflow.storage.dsn`, docs/security.md).

    Raises:
        ConfigError: the DSN has another scheme.
        StorageError: the engine cannot be opened, e.g. another process holds the chdb directory.
    """

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.chdb_path: Path | None = None
        self._engine: Any = None  # a second chdb handle on the same engine, for streaming inserts
        if dsn.startswith("chdb:"):
            self.chdb_path = _chdb_path(dsn)
            self.client = _open_chdb(self.chdb_path)
            self._engine = _engine_handle(self.chdb_path)
        elif dsn.startswith(("http://", "https://")):
            self.client = connect_server(dsn)
        else:
            raise ConfigError(f"warehouse DSN {redact_dsn(dsn)!r} is neither chdb:... nor http(s)://...")
        self._ready: set[str] = set()  # tables insert_batch has prepared
        self._tables: set[str] = set()  # tables known to exist

    def close(self) -> None:
        """Release the engine (chdb frees its directory once every client in the process closed)."""
        if self._engine is not None:
            self._engine.close()
            self._engine = None
        self.client.close()

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ensure_tables(self, records: Iterable[RecordType] | None = None) -> None:
        """Create the tables of ``records`` (default: every record type) when missing.

        A table this instance created or saw is not looked up again (drop one from elsewhere, and
        open a new ``Warehouse``). An existing table whose column predates its widening (an
        ``Int64`` where the record now declares ``Decimal(38, 0)``) is widened in place, exactly
        (docs/storage.md, "Widened columns").

        Raises:
            StorageError: ClickHouse refused, or a widened column holds a type that no lossless
                widening reaches.
        """
        records = ALL_RECORDS.values() if records is None else records
        wanted = [r for r in records if r.name not in self._tables]
        if not wanted:
            return
        # one look at the catalogue instead of a DDL statement per table (~20 ms each on chdb)
        found = self.client.query("SELECT name FROM system.tables WHERE database = currentDatabase()")
        self._tables |= {row[0] for row in found.result_rows}
        for record in wanted:
            if record.name not in self._tables:
                self._command(record.clickhouse_ddl())
                self._tables.add(record.name)
            elif any(f.widened for f in record.fields):
                self._widen(record)

    def _widen(self, record: RecordType) -> None:
        rows = self.client.query(
            "SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = {t:String}",
            parameters={"t": record.name},
        ).result_rows
        stored = {name: kind for name, kind in rows}
        for f in record.fields:
            have = stored.get(f.name)
            if not f.widened or have is None or have == f.clickhouse_type:
                continue
            if not f.widens_clickhouse(have):
                raise StorageError(
                    f"table {record.name}: column {f.name} is {have}, the record declares "
                    f"{f.clickhouse_type} and no lossless widening reaches it; migrate the table by hand "
                    "(docs/storage.md)")
            # a mutation rewriting every part; waited for, so the next insert meets the new type
            self._command(f"ALTER TABLE {record.name} MODIFY COLUMN `{f.name}` {f.clickhouse_type} "
                          "SETTINGS mutations_sync = 2")

    def load(self, record: RecordType, table: pa.Table, *, replace_partitions: bool = True,
             mode: str = "replace") -> int:
        """Load rows of ``record`` in one call (the writer streams through :meth:`stage` instead).

        Args:
            record: the record type of ``table``.
            table: the rows (any mix of venues, symbols, days).
            replace_partitions: batch semantics: every (venue, symbol, UTC day of ts_event_ns)
                present in ``table`` ends up holding exactly ``table``'s rows for it. False: a
                plain insert.
            mode: with ``replace_partitions``, as the lake's modes: ``replace`` (the slices hold
                exactly ``table``), ``merge`` (keep the rows already there that no loaded row
                repeats exactly, by content, never by key), ``append`` (add to what is there).

        Returns:
            The number of rows inserted from ``table``.

        Raises:
            StorageError: ClickHouse refused a statement.
        """
        if table.num_rows == 0:
            return 0
        if not replace_partitions:
            self.insert(record, table)
            return table.num_rows
        stage = self.stage(record)
        try:
            stage.insert(table)
            return stage.commit(mode)
        finally:
            stage.drop()

    def stage(self, record: RecordType) -> Stage:
        """A staging table for loading ``record`` in pieces, then swapping its slices in at once."""
        from tapeflow.storage.stage import Stage  # stage.py builds on this module

        return Stage(self, record)

    def engine_connection(self) -> Any:
        """A new chdb connection to this warehouse's engine (for a streaming insert of its own).

        Raises:
            StorageError: not a chdb warehouse, or the engine refused.
        """
        if self.chdb_path is None:
            raise StorageError(f"{redact_dsn(self.dsn)} is not an embedded (chdb) warehouse")
        return _engine_handle(self.chdb_path)

    def insert(self, record: RecordType, table: pa.Table, *, settings: dict[str, Any] | None = None,
               into: str | None = None) -> None:
        """Insert rows of ``record`` into its table (or the table ``into``), in record batches.

        On chdb the rows stream into the engine as Arrow IPC, no temporary file (2x faster than
        clickhouse-connect's ``insert_arrow`` on 1.4 M MBO rows); a server gets ``insert_arrow``.
        """
        if table.num_rows == 0:
            return
        table = table.select(record.column_names)
        if not table.schema.equals(record.arrow_schema(), check_metadata=False):
            table = table.cast(record.arrow_schema())
        self._insert(into or record.name, table, settings)

    def insert_batch(self, record: RecordType, table: pa.Table, *, token: str | None,
                     dedup_window: int) -> None:
        """Insert one live micro-batch exactly once (``token``) or as a plain append (None).

        ClickHouse drops a block whose ``insert_deduplication_token`` it has seen among the table's
        last ``dedup_window`` inserts (the log is on disk: it holds across restarts). Tables in
        ``REPLACE_KEYS`` (restated bars) first delete the keys the batch carries, then insert with a
        token of their own, so a redelivery repeats the same two steps and leaves one row per key.
        """
        if record.name not in self._ready:
            self.ensure_tables([record])
            if token is not None:
                self._command(f"ALTER TABLE {record.name} MODIFY SETTING "
                              f"non_replicated_deduplication_window = {dedup_window}")
            self._ready.add(record.name)
        if table.num_rows == 0:
            return
        keys = REPLACE_KEYS.get(record.name)
        if token is not None and keys is not None:
            self.delete_keys(record, table, keys)
        # ``insert_deduplicate=0`` is not honoured through chdb once the window is set (measured): an
        # insert that must never be dropped carries a token of its own instead.
        if token is None or keys is not None:
            token = f"{token or 'append'}:{uuid.uuid4().hex}"
        self.insert(record, table, settings={"insert_deduplicate": 1, "insert_deduplication_token": token})

    def delete_keys(self, record: RecordType, table: pa.Table, keys: tuple[str, ...]) -> None:
        """Delete the rows whose ``keys`` equal those of a row of ``table`` (a restatement)."""
        tuples = ", ".join("(" + ", ".join(_literal(v) for v in row.values()) + ")"
                           for row in table.select(list(keys)).to_pylist())
        where = f"({', '.join(keys)}) IN ({tuples})"
        # A restatement is rare: look before paying for a lightweight-delete mutation.
        if self.count(record, where):
            self._command(f"DELETE FROM {record.name} WHERE {where}")

    def delete_slices(self, record: RecordType, slices: Iterable[tuple[str, str, str]], *,
                      where: str = "") -> None:
        """Delete every row of the given (venue, symbol, ``YYYY-MM-DD``) slices (those meeting
        the SQL condition ``where``, when given)."""
        tuples = ", ".join(f"({quote(v)}, {quote(s)}, toDate({quote(d)}))" for v, s, d in slices)
        if not tuples or not self._exists(record.name):
            return
        condition = where
        where = f"(venue, symbol, {_DAY}) IN ({tuples})" + (f" AND {condition}" if condition else "")
        if self.count(record, where):
            self._command(f"DELETE FROM {record.name} WHERE {where}")

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> pa.Table:
        """Run a SELECT and return Arrow (String columns as Arrow strings)."""
        try:
            return self.client.query_arrow(sql, parameters=parameters)
        except ClickHouseError as exc:
            raise StorageError(f"query failed: {exc}\n{sql}") from exc

    def fetch(self, record: RecordType, where: str = "") -> pa.Table:
        """Rows of ``record`` with its exact Arrow schema (bytes stay bytes), in ``order_by`` order.

        Args:
            record: the record type.
            where: an optional SQL condition, e.g. ``"venue = 'binance-usdm'"``.
        """
        cols = ", ".join(f"`{c}`" for c in record.column_names)
        sql = f"SELECT {cols} FROM {record.name}"
        sql += f" WHERE {where}" if where else ""
        sql += f" ORDER BY {', '.join(record.order_by)}"
        try:
            raw = self.client.query_arrow(sql, settings=_BINARY_STRINGS)
        except ClickHouseError as exc:
            raise StorageError(f"reading {record.name} failed: {exc}") from exc
        arrays = []
        for f in record.fields:
            col = raw.column(f.name)
            arrays.append(col.cast(f.arrow_type) if col.type != f.arrow_type else col)
        return pa.Table.from_arrays(arrays, schema=record.arrow_schema())

    def count(self, record: RecordType, where: str = "") -> int:
        """``SELECT count()`` of a record's table (0 when the table does not exist yet)."""
        if not self._exists(record.name):
            return 0
        sql = f"SELECT count() FROM {record.name}"
        sql += f" WHERE {where}" if where else ""
        return int(self._scalar(sql))

    def _exists(self, name: str) -> bool:
        return bool(self._scalar(f"EXISTS TABLE {name}"))

    def _partition_ids(self, table: str, among: list[str] | None = None) -> list[str]:
        """Partition ids of ``table`` holding rows (only those in ``among``, when given)."""
        rows = self.client.query(
            "SELECT DISTINCT partition_id FROM system.parts "
            "WHERE database = currentDatabase() AND table = {t:String} AND active ORDER BY partition_id",
            parameters={"t": table},
        ).result_rows
        ids = [r[0] for r in rows]
        return ids if among is None else [p for p in ids if p in set(among)]

    def _scalar(self, sql: str) -> Any:
        try:
            return self.client.query(sql).result_rows[0][0]
        except ClickHouseError as exc:
            raise StorageError(f"query failed: {exc}\n{sql}") from exc

    def _command(self, sql: str) -> None:
        try:
            self.client.command(sql)
        except ClickHouseError as exc:
            raise StorageError(f"ClickHouse refused: {exc}\n{sql}") from exc

    def _insert(self, table_name: str, table: pa.Table, settings: dict[str, Any] | None) -> None:
        try:
            if self._engine is None:
                self.client.insert_arrow(table_name, table, settings=settings)
                return
            pairs = ', '.join(f'{k} = {_setting(v)}' for k, v in (settings or {}).items())
            clause = f" SETTINGS {pairs}" if pairs else ""
            with self._engine.send_insert(f"INSERT INTO {table_name}{clause}", "ArrowStream") as inserter:
                sink = io.BytesIO()  # drained after every batch: one batch of bytes in memory at a time
                with pa.ipc.new_stream(sink, table.schema) as stream:
                    for batch in table.to_batches(_INSERT_BATCH_ROWS):
                        stream.write_batch(batch)
                        inserter.append(sink.getvalue())
                        sink.seek(0)
                        sink.truncate()
                inserter.append(sink.getvalue())
                inserter.finish()
        except Exception as exc:  # clickhouse-connect and chdb raise several unrelated types
            raise StorageError(f"insert of {table.num_rows} rows into {table_name} failed: {exc}") from exc


_DAY = PARTITION_DAY_SQL
_INSERT_BATCH_ROWS = 65_536


def _setting(value: object) -> str:
    return quote(value) if isinstance(value, str) else str(value)


def _literal(value: object) -> str:
    if isinstance(value, str):
        return quote(value)
    return str(int(value))  # type: ignore[call-overload]


def quote(value: str) -> str:
    """``value`` as a ClickHouse string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _chdb_path(dsn: str) -> Path:
    rest = dsn[len("chdb:"):]
    if rest.startswith("//"):
        rest = rest[2:]
        if not rest.startswith("/"):
            raise ConfigError(f"chdb DSN {dsn!r}: use chdb:///absolute/dir or chdb:relative/dir")
        rest = "/" + rest.lstrip("/")  # chdb:////abs (a slash too many) still means /abs
    if not rest:
        raise ConfigError(f"chdb DSN {dsn!r} names no directory")
    return Path(rest).resolve()


def _engine_handle(path: Path) -> Any:
    import chdb  # the engine clickhouse-connect's chdb interface has already loaded

    try:
        return chdb.connect(os.path.realpath(path))
    except Exception as exc:  # chdb reports failures as bare RuntimeErrors
        raise StorageError(f"cannot open chdb at {path}: {exc}") from exc


def _open_chdb(path: Path) -> Any:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create the chdb directory {path}: {exc}") from exc
    try:
        return clickhouse_connect.get_client(interface="chdb", path=str(path))
    except Exception as exc:  # chdb reports a locked directory as a bare engine error
        raise StorageError(_chdb_open_failure(path, exc)) from exc


def _chdb_open_failure(path: Path, exc: Exception) -> str:
    status = path / "status"
    if "already initialized with path" in str(exc):
        return (f"cannot open chdb at {path}: this process already has another chdb directory open "
                f"(chdb allows one per process; close that Warehouse first): {exc}")
    if status.exists():
        fd = os.open(status, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            owner = status.read_text(errors="replace").splitlines()[:1]
            return (f"chdb directory {path} is locked by another process ({', '.join(owner) or 'unknown'}); "
                    "only one process may open a chdb directory at a time")
        finally:
            os.close(fd)
    return f"cannot open chdb at {path}: {exc}"
