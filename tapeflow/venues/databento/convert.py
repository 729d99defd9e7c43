"""Per-rtype converters: a numpy view of DBN records -> tapeflow record tables.

Each handler takes the file context, the records (a structured numpy view), the rtype and the
block coordinates (for rejects) and yields ``(record name, table, rows)`` where ``rows`` says
which of the given records each table row came from (None: one row per record).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from tapeflow.schemas.records import (
    BAR,
    BOOK_SNAPSHOT,
    INSTRUMENT,
    ORDER_EVENT,
    QUOTE,
    SCALE,
    STATISTIC,
    TRADE,
    UNDEF_PRICE,
)
from tapeflow.venues.databento import messages as m
from tapeflow.venues.databento.checks import MboColumns, check_mbo, check_trades
from tapeflow.venues.databento.framing import Block
from tapeflow.wire.rejects import Rejects

if TYPE_CHECKING:
    from tapeflow.venues.databento.parse import FileContext

DBN_FLAG_MASK = 0xFC  # DBN bits 2..7 keep their meaning; 0..1 are tapeflow's own
_MAX_UNITS = (2**63 - 1) // SCALE  # the largest whole-unit size that still fits int64 nanos
_SNAPSHOT_LEVELS = 10


def _ts(values: np.ndarray) -> np.ndarray:
    # u64 -> i64 by reinterpretation: UNDEF_TIMESTAMP (u64 max) becomes exactly -1 (UNDEF_TS).
    return np.ascontiguousarray(values).view(np.int64)


def _char(values: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(values).view(np.uint8)


def _flags(recs: np.ndarray) -> np.ndarray:
    return (recs["flags"] & DBN_FLAG_MASK).astype(np.uint8)


def _units(values: np.ndarray) -> np.ndarray:
    return values.astype(np.int64) * SCALE


def _header_columns(ctx: FileContext, recs: np.ndarray, *, ts_recv: bool = True,
                    ids: np.ndarray | None = None) -> dict[str, object]:
    return {
        "ts_event_ns": _ts(recs["ts_event"]),
        "ts_recv_ns": _ts(recs["ts_recv"]) if ts_recv else np.full(len(recs), -1, np.int64),
        "symbol": ctx.symbol_column(recs["instrument_id"] if ids is None else ids),
    }


def _sequence(recs: np.ndarray) -> np.ndarray:
    if "sequence" in recs.dtype.names:
        return recs["sequence"].astype(np.int64)
    return np.full(len(recs), -1, np.int64)


def _trades(ctx: FileContext, recs: np.ndarray, rows: np.ndarray) -> tuple[str, pa.Table, np.ndarray]:
    t = recs[rows]
    cols = _header_columns(ctx, t)
    cols.update(
        sequence=_sequence(t),
        trade_id=pa.array([""] * len(t), pa.string()),
        price_nanos=t["price"],
        size_nanos=_units(t["size"]),
        aggressor_side=_char(t["side"]),
        flags=_flags(t),
    )
    return "trade", TRADE.table(cols, constants={"venue": ctx.venue}), rows


def _on_trade(ctx: FileContext, recs: np.ndarray, rtype: int, *where: object) -> Iterator[tuple]:
    rows = _dead_letters(ctx, check_trades(recs), len(recs), where)
    yield _trades(ctx, recs, np.arange(len(recs)) if rows is None else rows)


def _dead_letters(
    ctx: FileContext, bad: list[tuple[str, np.ndarray, Callable[[int], str]]], n: int, where: tuple
) -> np.ndarray | None:
    """Dead-letter the records a check found, each with its own detail; ``where`` is the handler's
    ``(rejects, block, offsets, length, index)``. The rows to keep, or None when all are kept."""
    if not bad:
        return None
    keep = np.ones(n, bool)
    for reason, which, detail in bad:
        keep[which] = False
        for i in which.tolist():
            ctx.reject_rows(*where, reason, detail(i), np.array([i]))
    return np.flatnonzero(keep)


def _trade_rows(recs: np.ndarray, rtype: int) -> np.ndarray:
    if "action" in recs.dtype.names:
        return np.nonzero(_char(recs["action"]) == ord("T"))[0]
    if rtype == m.TCBBO:
        return np.arange(len(recs))
    return np.zeros(0, np.int64)  # bbo/cbbo: price/size there is the interval's last trade, not a trade


def _on_top_of_book(ctx: FileContext, recs: np.ndarray, rtype: int, *_: object) -> Iterator[tuple]:
    cols = _header_columns(ctx, recs)
    cols.update(
        sequence=_sequence(recs),
        bid_price_nanos=recs["bid_px_00"],
        bid_size_nanos=_units(recs["bid_sz_00"]),
        ask_price_nanos=recs["ask_px_00"],
        ask_size_nanos=_units(recs["ask_sz_00"]),
        flags=_flags(recs),
    )
    yield "quote", QUOTE.table(cols, constants={"venue": ctx.venue}), None
    rows = _trade_rows(recs, rtype)
    if rows.size:
        yield _trades(ctx, recs, rows)


def _levels(recs: np.ndarray, field: str, *, units: bool) -> pa.Array:
    stacked = np.stack([recs[f"{field}_{k:02d}"] for k in range(_SNAPSHOT_LEVELS)], axis=1).astype(np.int64)
    if units:
        stacked *= SCALE
    offsets = np.arange(0, stacked.size + 1, _SNAPSHOT_LEVELS, dtype=np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(stacked.reshape(-1)))


def _on_mbp10(ctx: FileContext, recs: np.ndarray, rtype: int, *_: object) -> Iterator[tuple]:
    cols = _header_columns(ctx, recs)
    cols.update(
        sequence=_sequence(recs),
        levels=np.full(len(recs), _SNAPSHOT_LEVELS, np.uint16),
        bid_price_nanos=_levels(recs, "bid_px", units=False),
        bid_size_nanos=_levels(recs, "bid_sz", units=True),
        ask_price_nanos=_levels(recs, "ask_px", units=False),
        ask_size_nanos=_levels(recs, "ask_sz", units=True),
        flags=_flags(recs),
    )
    yield "book_snapshot", BOOK_SNAPSHOT.table(cols, constants={"venue": ctx.venue}), None
    rows = _trade_rows(recs, rtype)
    if rows.size:
        yield _trades(ctx, recs, rows)


def _on_mbo(ctx: FileContext, recs: np.ndarray, rtype: int, *where: object) -> Iterator[tuple]:
    fields = MboColumns.of(recs)
    rows = _dead_letters(ctx, check_mbo(recs, fields, ctx.mbo), len(recs), where)
    if rows is not None:
        recs, fields = recs[rows], fields.take(rows)
    cols = _header_columns(ctx, recs, ids=fields.instrument_id)
    cols.update(
        sequence=fields.sequence.astype(np.int64),
        order_id=fields.order_id,
        action=fields.action.view(np.uint8),
        side=fields.side.view(np.uint8),
        price_nanos=fields.price,
        size_nanos=_units(fields.size),
        flags=fields.flags & DBN_FLAG_MASK,
    )
    yield "order_event", ORDER_EVENT.table(cols, constants={"venue": ctx.venue}), rows


def _on_ohlcv(
    ctx: FileContext,
    recs: np.ndarray,
    rtype: int,
    rejects: Rejects,
    block: Block,
    offsets: np.ndarray,
    length: int,
    index: np.ndarray,
) -> Iterator[tuple]:
    interval = m.OHLCV_INTERVALS.get(rtype) or m.SCHEMA_INTERVALS.get(ctx.schema, "unknown")
    too_big = recs["volume"] > _MAX_UNITS
    if too_big.any():
        bad = np.nonzero(too_big)[0]
        ctx.reject_rows(
            rejects,
            block,
            offsets,
            length,
            index,
            "out_of_range",
            f"ohlcv volume {int(recs['volume'][bad[0]])} units does not fit int64 nanos",
            bad,
        )
    rows = np.nonzero(~too_big)[0]
    r = recs[rows]
    n = len(r)
    # DBN bars carry no VWAP, count or aggressor split: explicit unknowns, never zeros.
    cols = _header_columns(ctx, r, ts_recv=False)
    cols.update(
        interval=pa.array([interval] * n, pa.string()),
        open_price_nanos=r["open"],
        high_price_nanos=r["high"],
        low_price_nanos=r["low"],
        close_price_nanos=r["close"],
        volume_nanos=_units(r["volume"]),
        vwap_price_nanos=np.full(n, UNDEF_PRICE, np.int64),
        trade_count=np.full(n, -1, np.int64),
        buy_volume_nanos=np.full(n, -1, np.int64),
        sell_volume_nanos=np.full(n, -1, np.int64),
        flags=np.zeros(n, np.uint8),
        revision=np.zeros(n, np.uint32),
    )
    yield "bar", BAR.table(cols, constants={"venue": ctx.venue}), rows


def _on_statistic(
    ctx: FileContext,
    recs: np.ndarray,
    rtype: int,
    rejects: Rejects,
    block: Block,
    offsets: np.ndarray,
    length: int,
    index: np.ndarray,
) -> Iterator[tuple]:
    qty = recs["quantity"].astype(np.int64)
    undef = m.UNDEF_STAT_QUANTITY_V1 if recs.dtype["quantity"].itemsize == 4 else m.UNDEF_STAT_QUANTITY_V3
    missing = qty == undef
    too_big = ~missing & (np.abs(qty) > _MAX_UNITS)
    if too_big.any():
        bad = np.nonzero(too_big)[0]
        ctx.reject_rows(
            rejects,
            block,
            offsets,
            length,
            index,
            "out_of_range",
            f"statistic quantity {int(qty[bad[0]])} does not fit int64 nanos",
            bad,
        )
    rows = np.nonzero(~too_big)[0]
    r = recs[rows]
    # An absent quantity keeps the DBN convention of an i64-max sentinel (as UNDEF_PRICE).
    quantity = np.where(missing[rows], UNDEF_PRICE, qty[rows] * SCALE)
    cols = _header_columns(ctx, r)
    cols.update(
        sequence=_sequence(r),
        stat_type=r["stat_type"],
        price_nanos=r["price"],
        quantity_nanos=quantity,
        flags=np.zeros(len(r), np.uint8),
    )
    yield "statistic", STATISTIC.table(cols, constants={"venue": ctx.venue}), rows


def _text(value: object) -> object:
    if isinstance(value, bytes):
        return value.rstrip(b"\0").decode("ascii", "replace")
    return value.item() if isinstance(value, np.generic) else value


def _on_definition(ctx: FileContext, recs: np.ndarray, *_: object) -> Iterator[tuple]:
    rows = [{k: _text(rec[k]) for k in recs.dtype.names if not k.startswith("_")} for rec in recs]
    for row in rows:
        ctx.symbols[int(row["instrument_id"])] = str(row["raw_symbol"])
    uom = recs["unit_of_measure_qty"].astype(np.int64)
    mult = recs["contract_multiplier"].astype(np.int64)
    multiplier = np.where(uom != UNDEF_PRICE, uom, np.where(mult != m.I32_UNDEF, mult * SCALE, 0))
    lot = recs["min_lot_size_round_lot"].astype(np.int64)
    cols = _header_columns(ctx, recs)
    cols.update(
        instrument_id=recs["instrument_id"].astype(np.uint64),
        instrument_class=[str(r["instrument_class"]) for r in rows],
        tick_size_nanos=recs["min_price_increment"],
        lot_size_nanos=np.where(lot != m.I32_UNDEF, lot * SCALE, 0),
        multiplier_nanos=multiplier,
        currency=[str(r["currency"]) for r in rows],
        expiration_ns=_ts(recs["expiration"]),
        raw=[json.dumps(r, default=str) for r in rows],
    )
    yield "instrument", INSTRUMENT.table(cols, constants={"venue": ctx.venue}), None


def _on_symbol_mapping(ctx: FileContext, recs: np.ndarray, *_: object) -> Iterator[tuple]:
    for iid, out_symbol in zip(
        recs["instrument_id"].tolist(), recs["stype_out_symbol"].tolist(), strict=True
    ):
        ctx.symbols[int(iid)] = _text(out_symbol)
    return iter(())


def _on_unsupported(
    ctx: FileContext,
    recs: np.ndarray,
    rtype: int,
    rejects: Rejects,
    block: Block,
    offsets: np.ndarray,
    length: int,
    index: np.ndarray,
) -> Iterator[tuple]:
    name = "status" if rtype == m.STATUS else "imbalance"
    ctx.reject_rows(
        rejects,
        block,
        offsets,
        length,
        index,
        "unsupported_schema",
        f"DBN {name} records (rtype 0x{rtype:02x}) have no tapeflow record type",
    )
    return iter(())


def _on_error(
    ctx: FileContext,
    recs: np.ndarray,
    rtype: int,
    rejects: Rejects,
    block: Block,
    offsets: np.ndarray,
    length: int,
    index: np.ndarray,
) -> Iterator[tuple]:
    for i, text in enumerate(recs["err"].tolist()):
        ctx.reject_rows(
            rejects,
            block,
            offsets,
            length,
            index,
            "venue_error",
            f"Databento error record: {_text(text)}",
            np.array([i]),
        )
    return iter(())


def _on_system(*_: object) -> Iterator[tuple]:
    return iter(())  # heartbeats and subscription acks: control traffic, not market data


HANDLERS: dict[int, Callable[..., Iterator[tuple]]] = {
    m.MBO: _on_mbo,
    m.MBP_0: _on_trade,
    m.MBP_1: _on_top_of_book,
    m.TBBO: _on_top_of_book,
    m.CMBP_1: _on_top_of_book,
    m.TCBBO: _on_top_of_book,
    m.BBO_1S: _on_top_of_book,
    m.BBO_1M: _on_top_of_book,
    m.CBBO_1S: _on_top_of_book,
    m.CBBO_1M: _on_top_of_book,
    m.MBP_10: _on_mbp10,
    **{rt: _on_ohlcv for rt in (m.OHLCV_DEPRECATED, *m.OHLCV_INTERVALS)},
    m.STATISTICS: _on_statistic,
    m.INSTRUMENT_DEF: _on_definition,
    m.SYMBOL_MAPPING: _on_symbol_mapping,
    m.STATUS: _on_unsupported,
    m.IMBALANCE: _on_unsupported,
    m.ERROR: _on_error,
    m.SYSTEM: _on_system,
}
