"""DBN records -> tapeflow records, a whole block of records per numpy operation.

Mapping (DBN schema -> record): mbo -> ``order_event``; trades -> ``trade``; mbp-1, tbbo, cmbp-1,
tcbbo -> ``quote`` plus a ``trade`` for every record whose action is T; bbo/cbbo -> ``quote``;
mbp-10 -> ``book_snapshot`` (10 levels) plus the trades it carries; ohlcv-* -> ``bar``;
definition -> ``instrument``; statistics -> ``statistic``. Status and imbalance records become
``rejected`` rows with reason ``unsupported_schema``; error records ``venue_error``. Symbol
mapping and system (heartbeat) records are consumed, not emitted.

Units: DBN prices are already int64 1e-9 and pass through (``UNDEF_PRICE`` included); DBN sizes
are whole units (contracts, shares) and become ``* 1e9``. ``UNDEF_TIMESTAMP`` becomes -1.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa

from tapeflow.venues.base import Decoded, Rejects, merge
from tapeflow.venues.databento import messages as m
from tapeflow.venues.databento.checks import MboState
from tapeflow.venues.databento.convert import HANDLERS
from tapeflow.venues.databento.framing import Block, CorruptStream, DbnHeader, open_dbn

VENUE_WITHOUT_METADATA = "databento"  # fragments carry no dataset code


def decode(paths: Sequence[Path]) -> Iterator[Decoded]:
    """Decode DBN files (v1/v2/v3, zstd or plain, whole files or fragments) chunk by chunk.

    Yields one :class:`Decoded` per ~4 MiB of decompressed records, rows in file order within
    each record type.

    Raises:
        FormatError: a legacy DBZ file or a file that is not DBN.
    """
    for path in paths:
        yield from decode_file(Path(path))


def decode_file(path: Path) -> Iterator[Decoded]:
    """Decode one DBN file; see :func:`decode`."""
    header, blocks = open_dbn(path)
    ctx = FileContext(path, header)
    reported = 0  # Block.bytes_read is the file position; Decoded wants the increment
    try:
        for block in blocks:
            yield Decoded(ctx.convert(block), bytes_read=block.bytes_read - reported, source=str(path))
            reported = block.bytes_read
    except CorruptStream as exc:
        rejects = Rejects(ctx.venue)
        detail = (
            f"{len(exc.rest)} bytes at record section offset {exc.stream_offset} are not a whole "
            f"DBN record (length byte {exc.rest[0] * 4 if exc.rest else 0} bytes)"
        )
        rejects.add(exc.reason, detail, f"{path}:record {exc.first_index}", exc.rest)
        yield Decoded({"rejected": rejects.table()}, bytes_read=max(0, path.stat().st_size - reported),
                      source=str(path))


class FileContext:
    """Per-file state: venue, schema, the instrument_id -> symbol map."""

    def __init__(self, path: Path, header: DbnHeader) -> None:
        self.path = path
        meta = header.metadata
        self.venue = meta.dataset if meta is not None and meta.dataset else VENUE_WITHOUT_METADATA
        self.schema = str(meta.schema) if meta is not None and meta.schema is not None else ""
        self.symbols: dict[int, str] = {}
        if meta is not None and str(meta.stype_out) in ("instrument_id", "SType.INSTRUMENT_ID"):
            # Metadata symbology: requested symbol -> intervals whose ``symbol`` is the instrument id.
            for requested, intervals in (meta.mappings or {}).items():
                for interval in intervals:
                    text = str(interval["symbol"] if isinstance(interval, dict) else interval.symbol)
                    if text.isdigit():
                        self.symbols[int(text)] = requested
        self.unknown_ids: set[int] = set()
        self.mbo = MboState()
        self.records_at = header.records_at
        self.frame = header.frame

    def symbol_column(self, ids: np.ndarray) -> pa.Array:
        if ids.size and ids.min() == ids.max():  # one instrument (the common block): no sort
            return pa.repeat(pa.scalar(self._name(int(ids[0])), pa.string()), ids.size)
        uniq, inverse = np.unique(ids, return_inverse=True)
        names = [self._name(iid) for iid in uniq.tolist()]
        # A take, not a dictionary cast: the cast pulls in pandas on first use (~0.8 s).
        return pa.array(names, pa.string()).take(pa.array(inverse.astype(np.int32)))

    def _name(self, iid: int) -> str:
        name = self.symbols.get(iid)
        if name is None:
            # unknown_symbol: keep the record, named by its instrument id.
            self.unknown_ids.add(iid)
            name = str(iid)
        return name

    def convert(self, block: Block) -> dict[str, pa.Table]:
        rtypes = block.buf[block.offsets + 1].astype(np.int64)
        keys = rtypes * 4096 + block.lengths
        rejects = Rejects(self.venue)
        out: dict[str, list[tuple[pa.Table, np.ndarray]]] = {}
        groups = np.unique(keys).tolist()
        # Symbol sources first, so the records of this block are named by them.
        groups.sort(key=lambda k: k // 4096 not in (m.SYMBOL_MAPPING, m.INSTRUMENT_DEF))
        for key in groups:
            rtype, length = divmod(key, 4096)
            sel = np.nonzero(keys == key)[0]
            offsets = block.offsets[sel]
            index = block.first_index + sel
            dtype = m.record_dtype(rtype, length)
            handler = HANDLERS.get(rtype)
            if dtype is None or handler is None:
                what = (
                    "rtype"
                    if dtype is None and rtype not in m._FIXED and rtype not in m._VERSIONED
                    else "layout"
                )
                self.reject_rows(
                    rejects,
                    block,
                    offsets,
                    length,
                    index,
                    "unknown_message",
                    f"DBN {what} unknown: rtype 0x{rtype:02x}, {length} bytes",
                )
                continue
            recs = _view(block.buf, offsets, length, dtype)
            for name, table, rows in handler(self, recs, rtype, rejects, block, offsets, length, index):
                out.setdefault(name, []).append((table, index[rows] if rows is not None else index))
        for start, end in block.damaged:
            self.reject_damaged(rejects, block, start, end)
        tables = {name: _in_record_order(parts) for name, parts in out.items()}
        if len(rejects):
            tables["rejected"] = rejects.table()
        return tables

    def reject_damaged(self, rejects: Rejects, block: Block, start: int, end: int) -> None:
        """Dead-letter the bytes ``block.buf[start:end]`` that framing skipped to resynchronize:
        one dead letter per record when they are whole records of the schema's length (damaged
        headers), else one for them all."""
        step = self.frame.length if self.frame is not None else end - start
        if (end - start) % step:
            step = end - start
        for piece in range(start, end, step):
            raw = block.buf[piece : piece + step].tobytes()
            at = self.records_at + block.stream_offset + piece
            rejects.add(
                "bad_length",
                f"{len(raw)} bytes at byte offset {at:,} of the decompressed stream are no {self.schema} "
                f"record (length byte {raw[0] * 4} bytes, rtype 0x{raw[1] if len(raw) > 1 else 0:02x}); "
                "framing resumed at the next record header",
                f"{self.path}:byte {at}",
                raw,
            )

    def reject_rows(
        self,
        rejects: Rejects,
        block: Block,
        offsets: np.ndarray,
        length: int,
        index: np.ndarray,
        reason: str,
        detail: str,
        rows: np.ndarray | None = None,
    ) -> None:
        """Dead-letter the records at ``offsets`` (all, or only ``rows``), each with its raw bytes.

        Args:
            rejects: the block's dead-letter builder.
            block: the block the records were cut from.
            offsets: byte offset of each record in ``block.buf``.
            length: record length, bytes.
            index: record index in the file of each record (for ``location``).
            reason: reason code, e.g. ``unsupported_schema``.
            detail: what was wrong, naming the value.
            rows: which of the records to reject (None: all).
        """
        chosen = range(len(offsets)) if rows is None else rows.tolist()
        for i in chosen:
            off = int(offsets[i])
            raw = block.buf[off : off + length].tobytes()
            ts_event = int.from_bytes(raw[8:16], "little")
            rejects.add(
                reason,
                detail,
                f"{self.path}:record {int(index[i])}",
                raw,
                ts_event_ns=ts_event if ts_event < 2**63 else -1,
                symbol=self.symbols.get(int.from_bytes(raw[4:8], "little"), ""),
            )


def _view(buf: np.ndarray, offsets: np.ndarray, length: int, dtype: np.dtype) -> np.ndarray:
    n = offsets.shape[0]
    contiguous = n > 0 and int(offsets[-1] - offsets[0]) == (n - 1) * length
    if not contiguous:
        buf = buf[offsets[:, None] + np.arange(length)].reshape(-1)
        start = 0
    else:
        start = int(offsets[0])
    return np.ndarray((n,), dtype=dtype, buffer=buf, offset=start, strides=(length,))


def _in_record_order(parts: list[tuple[pa.Table, np.ndarray]]) -> pa.Table:
    if len(parts) == 1:
        return parts[0][0]
    table = pa.concat_tables([t for t, _ in parts])
    order = np.argsort(np.concatenate([i for _, i in parts]), kind="stable")
    return table.take(pa.array(order))


def decode_all(paths: Sequence[Path]) -> dict[str, pa.Table]:
    """Decode whole files into one table per record type (for small files and tests)."""
    return merge(list(decode(paths)))
