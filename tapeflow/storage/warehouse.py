"""The ClickHouse warehouse, embedded (chdb) or a server, through one clickhouse-connect client.

``chdb:///abs/dir`` (or ``chdb:relative/dir``) runs the real ClickHouse engine in this process;
``http(s)://user:pass@host:8123/db`` talks to a server. Both get the same DDL
(:meth:`RecordType.clickhouse_ddl`) and the same SQL.

Idempotency: batch loads replace whole (venue, symbol, day) slices atomically. Rows go to a
staging table of the same definition first, together with the rows of the touched ClickHouse
partitions (venue, day) that the load does not replace, and each staged partition then swaps in
with ``ALTER TABLE ... REPLACE PARTITION``: re-running a load leaves exactly one copy, and other
symbols of the same venue and day survive. ``replace_partitions=False`` is a plain append (not
idempotent on its own: the live sink of a later issue keys its rows itself). Tables are plain
MergeTree, so no background merge ever collapses two distinct rows that share a sorting key.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import clickhouse_connect
import pyarrow as pa
from clickhouse_connect.driver.exceptions import ClickHouseError

from tapeflow.errors import ConfigError, StorageError
from tapeflow.schemas import ALL_RECORDS, RecordType
from tapeflow.schemas.core import PARTITION_DAY_SQL

# Strings come back as Arrow binary so a ``bytes`` column survives; record reads cast to the schema.
_BINARY_STRINGS = {"output_format_arrow_string_as_string": 0}


class Warehouse:
    """A ClickHouse database holding one table per record type.

    Args:
        dsn: ``chdb:///abs/dir``, ``chdb:rel/dir`` or ``http(s)://user:pass@host:port/db``.

    Raises:
        ConfigError: the DSN has another scheme.
        StorageError: the engine cannot be opened, e.g. another process holds the chdb directory.
    """

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.chdb_path: Path | None = None
        if dsn.startswith("chdb:"):
            self.chdb_path = _chdb_path(dsn)
            self.client = _open_chdb(self.chdb_path)
        elif dsn.startswith(("http://", "https://")):
            try:
                self.client = clickhouse_connect.get_client(dsn=dsn)
            except Exception as exc:
                raise StorageError(f"cannot connect to ClickHouse at {redact_dsn(dsn)}: {exc}") from exc
        else:
            raise ConfigError(f"warehouse DSN {redact_dsn(dsn)!r} is neither chdb:... nor http(s)://...")
        self._stage_suffix = uuid.uuid4().hex[:8]

    def close(self) -> None:
        """Release the engine (chdb frees its directory once every client in the process closed)."""
        self.client.close()

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ensure_tables(self, records: Iterable[RecordType] | None = None) -> None:
        """Create the tables of ``records`` (default: every record type) when missing."""
        for record in ALL_RECORDS.values() if records is None else records:
            self._command(record.clickhouse_ddl())

    def load(self, record: RecordType, table: pa.Table, *, replace_partitions: bool = True,
             mode: str = "replace") -> int:
        """Load rows of ``record``; creates its table when missing.

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
        table = table.select(record.column_names).cast(record.arrow_schema())
        self._command(record.clickhouse_ddl())
        if not replace_partitions:
            self._insert(record.name, table)
            return table.num_rows
        stage = f"_stage_{record.name}_{self._stage_suffix}"
        self._command(f"DROP TABLE IF EXISTS {stage}")
        self._command(record.clickhouse_ddl(stage))
        try:
            self._insert(stage, table)
            ids = self._partition_ids(stage)
            id_list = ", ".join(_quote(p) for p in ids)
            touched = f"SELECT * FROM {record.name} WHERE _partition_id IN ({id_list})"
            if mode == "merge":
                self._command(f"INSERT INTO {stage} {touched} AND sipHash64(*) NOT IN "
                              f"(SELECT sipHash64(*) FROM {stage})")
            elif mode == "append":
                self._command(f"INSERT INTO {stage} {touched}")
            elif mode != "replace":
                raise StorageError(f"load mode was {mode!r}; expected 'replace', 'merge' or 'append'")
            else:
                slices = f"SELECT DISTINCT venue, symbol, {_DAY} FROM {stage}"
                self._command(f"INSERT INTO {stage} {touched} AND (venue, symbol, {_DAY}) NOT IN ({slices})")
            for pid in ids:
                self._command(f"ALTER TABLE {record.name} REPLACE PARTITION ID {_quote(pid)} FROM {stage}")
        finally:
            self._command(f"DROP TABLE IF EXISTS {stage}")
        return table.num_rows

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

    def _partition_ids(self, table: str) -> list[str]:
        rows = self.client.query(
            "SELECT DISTINCT partition_id FROM system.parts "
            "WHERE database = currentDatabase() AND table = {t:String} AND active ORDER BY partition_id",
            parameters={"t": table},
        ).result_rows
        return [r[0] for r in rows]

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

    def _insert(self, table_name: str, table: pa.Table) -> None:
        try:
            self.client.insert_arrow(table_name, table)
        except ClickHouseError as exc:
            raise StorageError(f"insert of {table.num_rows} rows into {table_name} failed: {exc}") from exc


_DAY = PARTITION_DAY_SQL


def _quote(value: str) -> str:
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


def redact_dsn(dsn: str) -> str:
    """``dsn`` with its user and password masked, for messages and summaries."""
    scheme, sep, rest = dsn.partition("://")
    if sep and "@" in rest:
        rest = "***@" + rest.rpartition("@")[2]
    return f"{scheme}{sep}{rest}"
