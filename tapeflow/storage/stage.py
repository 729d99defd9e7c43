"""Staged warehouse loads: rows go to a staging table block by block, then swap in by partition.

A :class:`Stage` is a table of the record's definition under a fresh name. Rows reach it through
a :class:`BlockStream`: ONE streaming ``INSERT`` that takes a whole block per call and writes each
block as it is (no squashing), so a block holding one (venue, day) partition becomes one part,
with nothing to scatter. That is the cheapest way into a MergeTree measured here (``python -m
bench.ingest``): 1.38 M MBO rows in 21 partition blocks cost ~0.52-0.59 s of CPU, against
0.70-0.91 s through clickhouse-connect's ``insert_arrow`` (65,536-row inserts, squashed, then
scattered into parts) and ~0.75 s for ``INSERT ... SELECT FROM file(Parquet)`` of the same rows;
parsing the stream alone (into a ``Null`` table) is ~0.15 s of it. On chdb the stream runs on a
connection of its own (a connection takes no other statement while an insert is open) and the
engine parses and writes each block on its own threads while the caller prepares the next one.

:meth:`Stage.commit` then swaps every touched ClickHouse partition in with one ``ALTER TABLE ...
REPLACE PARTITION`` per partition (one statement), so other symbols of the same venue and day
survive and a re-run leaves exactly one copy.
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterable
from typing import Any

import pyarrow as pa
import pyarrow.ipc  # noqa: F401 - pa.ipc

from tapeflow.errors import StorageError
from tapeflow.schemas import RecordType
from tapeflow.schemas.core import PARTITION_DAY_SQL
from tapeflow.storage.scope import Scope
from tapeflow.storage.warehouse import Warehouse, quote

# Rows per block at most (ClickHouse's own max_insert_block_size): a larger partition is several parts.
BLOCK_ROWS = 1_048_449
_UNSQUASHED = "SETTINGS min_insert_block_size_rows = 0, min_insert_block_size_bytes = 0"
_DAY = PARTITION_DAY_SQL
# Stages of loads running in this process: start-up cleanup drops every other one of a chdb warehouse.
LIVE_STAGES: set[str] = set()


class BlockStream:
    """One ``INSERT`` into ``table`` fed a block at a time; :meth:`finish` commits, :meth:`cancel` not.

    Each :meth:`add` is written as its own block(s): give it rows of one ClickHouse partition
    (venue, day) to get one part per call. Not thread-safe: one thread feeds it.
    """

    def __init__(self, warehouse: Warehouse, record: RecordType, table: str) -> None:
        self.wh, self.record, self.table = warehouse, record, table
        self.rows = 0
        self._schema = record.arrow_schema()
        self._conn: Any = None
        self._inserter: Any = None
        self._sink = io.BytesIO()
        self._writer: pa.RecordBatchStreamWriter | None = None
        if warehouse.chdb_path is not None:
            self._conn = warehouse.engine_connection()
            try:
                self._inserter = self._conn.send_insert(f"INSERT INTO {table} {_UNSQUASHED}", "ArrowStream")
            except Exception as exc:  # chdb raises bare RuntimeErrors
                self._conn.close()
                raise StorageError(f"cannot start an insert into {table}: {exc}") from exc
            self._writer = pa.ipc.new_stream(self._sink, self._schema)

    def add(self, table: pa.Table) -> None:
        """Insert rows of the record as block(s) of their own (one ClickHouse partition per call)."""
        if table.num_rows == 0:
            return
        table = table.select(self.record.column_names)
        if not table.schema.equals(self._schema, check_metadata=False):
            table = table.cast(self._schema)
        try:
            if self._writer is None:  # a server: one insert per block
                self.wh.client.insert_arrow(self.table, table, settings=_settings())
            else:
                # one record batch is one block: chunks are joined so a partition is one part
                for batch in table.combine_chunks().to_batches(BLOCK_ROWS):
                    self._writer.write_batch(batch)
                    self._inserter.append(self._sink.getvalue())
                    self._sink.seek(0)
                    self._sink.truncate()
        except Exception as exc:  # clickhouse-connect and chdb raise several unrelated types
            self.cancel()
            raise StorageError(f"insert of {table.num_rows} rows into {self.table} failed: {exc}") from exc
        self.rows += table.num_rows

    def finish(self) -> None:
        """Commit the insert: every block added is in the table afterwards."""
        if self._writer is None:
            return
        try:
            self._writer.close()
            self._inserter.append(self._sink.getvalue())
            self._inserter.finish()
        except Exception as exc:
            self.cancel()
            raise StorageError(f"insert of {self.rows} rows into {self.table} failed: {exc}") from exc
        self._close()

    def cancel(self) -> None:
        """Abandon the insert (blocks the engine already wrote stay: stages are dropped anyway)."""
        if self._inserter is not None:
            try:
                self._inserter.cancel()
            except Exception:  # noqa: BLE001 - already failed or finished: nothing left to cancel
                pass
        self._close()

    def _close(self) -> None:
        self._writer = None
        self._inserter = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class Stage:
    """Rows of one record staged in a table of the same definition, then swapped in slice by slice.

    :meth:`insert` or :meth:`stream` as rows arrive (a day streams in pieces); :meth:`commit` makes
    every (venue, symbol, day) slice present in the stage hold the staged rows (``replace``), or
    those plus the rows already there that no staged row repeats (``merge``), or both (``append``),
    each touched ClickHouse partition swapped in with ``ALTER TABLE ... REPLACE PARTITION``, so
    other symbols of the same venue and day survive. :meth:`drop` always, afterwards.
    """

    def __init__(self, warehouse: Warehouse, record: RecordType) -> None:
        self.wh, self.record = warehouse, record
        self.name = f"_stage_{record.name}_{uuid.uuid4().hex[:12]}"  # never met before: no DROP first
        self.rows = 0
        self._streams: list[BlockStream] = []
        LIVE_STAGES.add(self.name)
        warehouse.ensure_tables([record])
        warehouse._command(record.clickhouse_ddl(self.name))

    def insert(self, table: pa.Table) -> None:
        """Stage rows (any mix of venues, symbols, days) in one insert."""
        self.wh.insert(self.record, table, into=self.name)
        self.rows += table.num_rows

    def stream(self) -> BlockStream:
        """A streaming insert into the stage (:class:`BlockStream`); its rows count once finished."""
        stream = BlockStream(self.wh, self.record, self.name)
        self._streams.append(stream)
        return stream

    def commit(self, mode: str = "replace", *, clear: Iterable[tuple[str, str, str]] = (),
               scope: Scope | None = None) -> int:
        """Swap the staged slices in; ``clear`` lists (venue, symbol, day) slices to empty as well.

        ``scope`` (replace only): in the staged and cleared slices only the producer's rows go;
        the rows other producers own there are copied into the stage first, so the one
        ``REPLACE PARTITION`` per partition keeps them (the same commit point as a plain replace).

        Returns:
            The number of rows staged.
        """
        if mode not in ("replace", "merge", "append"):
            raise StorageError(f"load mode was {mode!r}; expected 'replace', 'merge' or 'append'")
        self.rows += sum(s.rows for s in self._streams)
        self._streams = []
        if scope is not None and mode != "replace":
            raise StorageError(f"a scope applies to a replace, not a {mode}")
        wh, target = self.wh, self.record.name
        clear = set(clear)
        if clear and self.rows:
            staged = wh.query(f"SELECT DISTINCT venue, symbol, toString({_DAY}) AS day FROM {self.name}")
            columns = (staged.column(c).to_pylist() for c in ("venue", "symbol", "day"))
            clear -= set(zip(*columns, strict=True))
        wh.delete_slices(self.record, sorted(clear), where=scope.sql() if scope is not None else "")
        if self.rows == 0:
            return 0
        ids = wh._partition_ids(self.name)
        id_list = ", ".join(quote(p) for p in ids)
        touched = f"SELECT * FROM {target} WHERE _partition_id IN ({id_list})"
        # the rows already in the touched partitions that survive the swap (none on a first load)
        if wh._partition_ids(target, among=ids):
            if mode == "merge":
                wh._command(f"INSERT INTO {self.name} {touched} AND sipHash64(*) NOT IN "
                            f"(SELECT sipHash64(*) FROM {self.name})")
            elif mode == "append":
                wh._command(f"INSERT INTO {self.name} {touched}")
            else:
                slices = f"SELECT DISTINCT venue, symbol, {_DAY} FROM {self.name}"
                kept = f"(venue, symbol, {_DAY}) NOT IN ({slices})"
                if scope is not None:  # other producers' rows of the staged slices survive too
                    kept = f"({kept} OR NOT {scope.sql()})"
                wh._command(f"INSERT INTO {self.name} {touched} AND {kept}")
        # one ALTER for every partition: ClickHouse applies its commands in order
        wh._command(f"ALTER TABLE {target} " + ", ".join(
            f"REPLACE PARTITION ID {quote(pid)} FROM {self.name}" for pid in ids))
        return self.rows

    def drop(self) -> None:
        """Cancel unfinished streams and remove the staging table."""
        for stream in self._streams:
            stream.cancel()
        self._streams = []
        self.wh._command(f"DROP TABLE IF EXISTS {self.name}")
        LIVE_STAGES.discard(self.name)


def _settings() -> dict[str, int]:
    return {"min_insert_block_size_rows": 0, "min_insert_block_size_bytes": 0}
