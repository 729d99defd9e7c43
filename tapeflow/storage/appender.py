"""Exactly-once appends to lake partitions, and the compactions that keep them few.

Each flush of a partition writes ONE new part file holding the batches buffered since the last
flush (their tokens in its footer), so the bytes a flush writes depend on the flush, not on how
much of the day the partition already holds. Parts are then merged like a base-``fanout`` counter
(a tiered, contiguous merge): whenever the newest ``fanout`` parts each hold the same number of
appends, they become one part, unless together they exceed ``max_merge_bytes``. Every row is
rewritten at most about ``log_fanout(flushes)`` times in a day, no flush rewrites more than
``max_merge_bytes`` (however long the day), and a partition holds ``(fanout - 1)`` parts per level
plus one per ``max_merge_bytes`` of the day. :meth:`Appender.compact` folds everything into
``part-0.parquet`` (at close, and when a later day starts for the same instrument).

A batch whose token the partition already holds (in any part, within the last ``dedup_window``
tokens of the base) is skipped. Tables in ``REPLACE_KEYS`` drop the rows whose key a later batch
restates: within the buffer directly, on disk by a full compaction that leaves them out (rare).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tapeflow.errors import StorageError
from tapeflow.schemas import RecordType
from tapeflow.storage import lake
from tapeflow.storage.batches import REPLACE_KEYS, key_hashes
from tapeflow.storage.compact import Run, merge_runs, write_part
from tapeflow.storage.lake import PartitionWrite
from tapeflow.storage.parts import (
    BASE,
    Part,
    PartMeta,
    link_into,
    list_parts,
    new_version,
    part_name,
    publish,
    read_meta,
    swap,
    temp_path,
)

FANOUT = 8
MAX_MERGE_BYTES = 128 << 20


@dataclass
class FlushStats:
    """What flushes and compactions wrote, for tests and benchmarks (bytes, not time).

    Attributes:
        appended_bytes, appended_rows: the new parts written by flushes.
        rewritten_bytes, rewritten_rows: parts written by merges and compactions.
        skipped: batches skipped because their token was already there.
        writes: every file committed, in order.
    """

    appended_bytes: int = 0
    appended_rows: int = 0
    rewritten_bytes: int = 0
    rewritten_rows: int = 0
    skipped: int = 0
    writes: list[PartitionWrite] = field(default_factory=list)


@dataclass
class _Partition:
    """A partition's parts as this writer last committed them (loaded from disk on first touch)."""

    record: RecordType
    venue: str
    symbol: str
    date: str
    directory: Path
    metas: dict[str, PartMeta]  # part name -> footer
    parts: list[Part]  # base first, then appends in sequence order
    tokens: set[str]
    next_seq: int
    keys: set[int] | None = None  # key hashes of REPLACE_KEYS rows on disk, loaded when needed
    inode: int = -1  # of the directory as last seen: a swap (ours or another writer's) changes it
    pending: list[tuple[str | None, pa.Table]] = field(default_factory=list)

    @property
    def tail(self) -> list[Part]:
        return [p for p in self.parts if not p.is_base]


class Appender:
    """Buffered, exactly-once appends to the partitions of one lake (one per writer; writers of a
    lake commit in turn under its lock, and a partition another writer changed is reloaded).

    Args:
        root: the lake root.
        zstd_level: compression level of the parts.
        dedup_window: tokens a compacted base remembers.
        fanout: appends per level of the tiered merge (>= 2).
        max_merge_bytes: parts are not merged past this size (bounds what one flush rewrites).
    """

    def __init__(self, root: Path, *, zstd_level: int = lake.ZSTD_LEVEL, dedup_window: int,
                 fanout: int = FANOUT, max_merge_bytes: int = MAX_MERGE_BYTES) -> None:
        if fanout < 2:
            raise StorageError(f"compaction fanout was {fanout}; it must be at least 2")
        self.root = Path(root)
        self.zstd_level = zstd_level
        self.dedup_window = dedup_window
        self.fanout = fanout
        self.max_merge_bytes = max_merge_bytes
        self.stats = FlushStats()
        self._partitions: dict[tuple[RecordType, str, str, str], _Partition] = {}
        self._buffered = False

    def add(self, record: RecordType, table: pa.Table, token: str | None) -> None:
        """Buffer rows (conformed to ``record``) for the next :meth:`flush`; ``None``: no token."""
        for venue, symbol, date, rows in lake.split(table):
            self._state(record, venue, symbol, date).pending.append((token, rows))
            self._buffered = True

    @property
    def buffered(self) -> bool:
        """Batches wait for the next flush."""
        return self._buffered

    @property
    def idle(self) -> bool:
        """Nothing buffered and no partition touched: a flush or a compaction would do nothing."""
        return not self._buffered and not self._partitions

    def flush(self) -> list[PartitionWrite]:
        """Write what is buffered: one part per touched partition, then the merges it triggers."""
        if not self._buffered:
            return []
        before = len(self.stats.writes)
        latest: dict[tuple[str, str, str], str] = {}
        for state in self._partitions.values():
            if state.pending:
                self._refresh(state)
                self._flush_partition(state)
            key = (state.record.name, state.venue, state.symbol)
            latest[key] = max(latest.get(key, state.date), state.date)
        # a later day began for the instrument: its earlier day is (almost surely) complete, so it
        # becomes one file and its state is let go (a late row reloads it from disk)
        for key, state in list(self._partitions.items()):
            if state.date < latest[(state.record.name, state.venue, state.symbol)]:
                if len(state.parts) > 1:
                    self._compact(state)
                del self._partitions[key]
        self._buffered = False
        return self.stats.writes[before:]

    def compact(self) -> list[PartitionWrite]:
        """Fold every partition this appender touched into one ``part-0.parquet`` (flushing first)."""
        self.flush()
        before = len(self.stats.writes)
        for state in self._partitions.values():
            self._refresh(state)
            if len(state.parts) > 1 or (state.parts and not state.parts[0].is_base):
                self._compact(state)
        return self.stats.writes[before:]

    def _state(self, record: RecordType, venue: str, symbol: str, date: str) -> _Partition:
        key = (record, venue, symbol, date)
        state = self._partitions.get(key)
        if state is None:
            directory = lake.partition_dir(self.root, record, venue, symbol, date)
            state = _Partition(record, venue, symbol, date, directory, {}, [], set(), 1)
            self._refresh(state)
            self._partitions[key] = state
        return state

    def _refresh(self, state: _Partition) -> None:
        """Reload a partition's parts when another writer committed into it since (under the lock)."""
        parts = list_parts(state.directory)
        inode = _inode(state.directory)
        if parts == state.parts and inode == state.inode:
            return
        # appended parts' names are never reused with other content; the base's is
        known = {n: m for n, m in state.metas.items() if n != BASE}
        state.metas = {p.name: known.get(p.name) or read_meta(state.directory / p.name) for p in parts}
        state.parts, state.inode = parts, inode
        state.tokens = {t for m in state.metas.values() for t in m.tokens}
        seq = max([m.seq for m in state.metas.values()] + [p.hi for p in parts], default=0)
        state.next_seq = max(state.next_seq, seq + 1)
        state.keys = None

    def _flush_partition(self, state: _Partition) -> None:
        record = state.record
        keys = _stored_keys(record)
        rows: list[pa.Table] = []
        tokens: list[str] = []
        restated = np.empty(0, np.uint64)  # keys restated whose earlier rows are on disk
        for token, table in state.pending:
            if token is not None and token in state.tokens:
                self.stats.skipped += 1
                continue
            if token is not None and keys is not None:
                h = key_hashes(table, keys)
                rows = [r.filter(pa.array(~np.isin(key_hashes(r, keys), h))) for r in rows]
                on_disk = self._disk_keys(state, keys)
                again = [k for k in h.tolist() if k in on_disk]
                restated = np.concatenate([restated, np.array(again, np.uint64)]) if again else restated
                on_disk.update(h.tolist())
            rows.append(table)
            if token is not None:
                tokens.append(token)
                state.tokens.add(token)
        state.pending = []
        if not rows:
            return
        stored = lake.sort_stable(record, pa.concat_tables(rows)).drop_columns(list(lake.PARTITION_KEYS))
        if restated.size:
            self._compact(state, extra=stored, extra_tokens=tokens, drop_keys=(keys or (), restated))
            return
        seq = state.next_seq
        tmp = temp_path(self.root)
        size = write_part(record, stored, tmp, tokens=tokens, seq=seq, zstd_level=self.zstd_level)
        part = Part(part_name(seq, seq), seq, seq)
        path = publish(tmp, state.directory, part.name)
        state.inode = _inode(state.directory)
        state.parts.append(part)
        state.metas[part.name] = PartMeta(stored.num_rows, size, tuple(tokens), seq)
        state.next_seq += 1
        self.stats.appended_bytes += size
        self.stats.appended_rows += stored.num_rows
        self.stats.writes.append(_written(state, path, stored.num_rows, size))
        self._merge_tail(state)

    def _merge_tail(self, state: _Partition) -> None:
        while True:
            newest = state.tail[-self.fanout:]
            if len(newest) < self.fanout or len({_level(p.appends, self.fanout) for p in newest}) != 1:
                return
            if sum(state.metas[p.name].bytes for p in newest) > self.max_merge_bytes:
                return
            name = part_name(newest[0].lo, newest[-1].hi)
            tokens = [t for p in newest for t in state.metas[p.name].tokens][-self.dedup_window:]
            runs = [Run(path=state.directory / p.name) for p in newest]
            older = [p for p in state.parts if p not in newest]
            self._rewrite(state, runs, name, tokens, newest[-1].hi, keep=older)

    def _compact(self, state: _Partition, *, extra: pa.Table | None = None,
                 extra_tokens: list[str] | None = None,
                 drop_keys: tuple[tuple[str, ...], np.ndarray] | None = None) -> None:
        keep_rows = None
        if drop_keys is not None:
            keys, hashes = drop_keys

            def keep_rows(t: pa.Table) -> pa.Table:
                return t.filter(pa.array(~np.isin(key_hashes(t, keys), hashes)))

        runs = [Run(path=state.directory / p.name, keep=keep_rows) for p in state.parts]
        tokens = [t for p in state.parts for t in state.metas[p.name].tokens] + list(extra_tokens or [])
        if extra is not None:
            runs.append(Run(table=extra))
        seq = max([state.metas[p.name].seq for p in state.parts] + [state.next_seq - 1])
        self._rewrite(state, runs, BASE, tokens[-self.dedup_window:], seq, keep=[])
        if drop_keys is not None:
            state.keys = None  # reload from the new base when next needed

    def _rewrite(self, state: _Partition, runs: list[Run], name: str, tokens: list[str], seq: int, *,
                 keep: list[Part]) -> None:
        version = new_version(self.root)
        for part in keep:
            link_into(state.directory, part.name, version)
        rows = merge_runs(state.record, runs, version / name, tokens=tokens, seq=seq,
                          zstd_level=self.zstd_level)
        size = (version / name).stat().st_size
        swap(self.root, version, state.directory)
        state.inode = _inode(state.directory)
        part = Part(name, 0, 0) if name == BASE else Part(name, int(name[5:17]), int(name[18:30]))
        state.parts = sorted([*keep, part], key=lambda p: (not p.is_base, p.lo))
        state.metas = {p.name: state.metas[p.name] for p in keep}
        state.metas[name] = PartMeta(rows, size, tuple(tokens), seq)
        state.next_seq = max(state.next_seq, seq + 1)
        self.stats.rewritten_bytes += size
        self.stats.rewritten_rows += rows
        self.stats.writes.append(_written(state, state.directory / name, rows, size))

    def _disk_keys(self, state: _Partition, keys: tuple[str, ...]) -> set[int]:
        if state.keys is None:
            found: set[int] = set()
            for part in state.parts:
                try:
                    found.update(key_hashes(pq.read_table(state.directory / part.name, columns=list(keys)),
                                            keys).tolist())
                except (OSError, pa.ArrowException) as exc:
                    raise StorageError(f"reading {state.directory / part.name} failed: {exc}") from exc
            state.keys = found
        return state.keys


def _inode(directory: Path) -> int:
    try:
        return directory.stat().st_ino
    except FileNotFoundError:
        return -1


def _written(state: _Partition, path: Path, rows: int, size: int) -> PartitionWrite:
    return PartitionWrite(state.record.name, state.venue, state.symbol, state.date, path, rows, size)


def _stored_keys(record: RecordType) -> tuple[str, ...] | None:
    """The restatement key of ``record`` without the partition columns (constant in a partition)."""
    keys = REPLACE_KEYS.get(record.name)
    return None if keys is None else tuple(k for k in keys if k not in lake.PARTITION_KEYS)


def _level(appends: int, fanout: int) -> int:
    level = 0
    while appends >= fanout:
        appends //= fanout
        level += 1
    return level
