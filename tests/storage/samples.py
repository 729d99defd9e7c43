"""Test inputs for storage: a few hand-built rows of every record type, and a seeded L2 stream."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from tapeflow.schemas import ALL_RECORDS, RecordType
from tapeflow.schemas.records import ASK, BID, BOOK_DELTA, F_LAST, F_SNAPSHOT, L2_DELETE, L2_SET, UNDEF_PRICE

DAY_NS = 86_400_000_000_000
T0 = 1_723_161_255_030_314_667  # 2024-08-08T23:54:15Z: rows around it fall on two UTC days
U64_MAX = 2**64 - 1

# (venue, symbol, ts_event_ns): odd symbols must survive the path escaping
KEYS = [
    ("binance-usdm", "BTCUSDT", T0),
    ("binance-usdm", "BTCUSDT", T0 + DAY_NS),
    ("binance-usdm", "ETH/USDT", T0),
    ("GLBX.MDP3", "ESH4", T0),
    ("weird venue", "..", T0 - DAY_NS),
    ("weird venue", "", -1),
    ("kraken", "XBT=EUR%é", T0),
]


def _value(record: RecordType, name: str, kind: str, i: int) -> Any:
    if kind == "i64" and name in ("price_nanos", "bid_price_nanos", "ask_price_nanos"):
        return UNDEF_PRICE if i % 3 == 2 else 60_000_000_000_000 + i
    if kind == "i64":
        return -5 + i if name == "expiration_ns" else 1_000 + i
    if kind == "i32":
        return i % 3 - 1
    if kind in ("u64",):
        return U64_MAX - i if i % 2 == 0 else i
    if kind in ("u32", "u16"):
        return 7 + i
    if kind == "u8":
        return (F_LAST | F_SNAPSHOT) if i % 2 else BID
    if kind == "f64":
        return 0.1 * i
    if kind == "bool":
        return i % 2 == 0
    if kind in ("str", "lstr"):
        return ["", "x", "ünïcode ✓", "quote's"][i % 4]
    if kind == "bytes":
        return [b"", b"\x00\xff\xfe raw", b"{\"a\":1}", bytes(range(256))][i % 4]
    if kind == "dec38":  # past int64 either way, and the 38-digit edge
        return [10_148_045_273_618_073_000 + i, -(10**37) - i, 10**38 - 1 - i][i % 3]
    if kind == "list_i64":
        return [[], [1, 2, 3], [UNDEF_PRICE, -1]][i % 3]
    raise AssertionError(f"no sample for kind {kind}")


def sample_table(record: RecordType) -> pa.Table:
    """Two rows per key in KEYS, distinct on the record's order_by key, every kind exercised."""
    cols: dict[str, list[Any]] = {n: [] for n in record.column_names}
    for k, (venue, symbol, ts_event) in enumerate(KEYS):
        for j in range(2):
            i = 2 * k + j
            for f in record.fields:
                if f.name == "venue":
                    v: Any = venue
                elif f.name == "symbol":
                    v = symbol
                elif f.name == "ts_event_ns":
                    v = ts_event
                elif f.name == "ts_recv_ns":
                    v = T0 + 1_000 * i
                else:
                    v = _value(record, f.name, f.kind, i)
                cols[f.name].append(v)
    return record.table(cols)


def all_samples() -> dict[str, pa.Table]:
    return {name: sample_table(record) for name, record in ALL_RECORDS.items()}


def rows(table: pa.Table) -> list[str]:
    """Order-insensitive, exact comparison form of a table's rows."""
    return sorted(repr(sorted(r.items())) for r in table.to_pylist())


def synthetic_deltas(n_messages: int = 20_000, seed: int = 7) -> pa.Table:
    """A seeded stream shaped like a Binance USD-M depth feed (tick 0.1, lot 0.001).

    Each message carries 2-60 level updates near a random-walk mid price, ~15% of them deletes;
    messages arrive every ~1-5 ms, venue time in whole ms a few ms before capture, update ids
    rising by irregular jumps.
    """
    rng = np.random.default_rng(seed)
    tick, lot = 100_000_000, 1_000_000
    per_msg = rng.integers(2, 61, n_messages)
    n = int(per_msg.sum())
    msg = np.repeat(np.arange(n_messages), per_msg)
    recv = T0 + np.cumsum(rng.exponential(2_500_000, n_messages)).astype(np.int64)
    event = (recv - rng.integers(1_000_000, 6_000_000, n_messages)) // 1_000_000 * 1_000_000
    seq = 5_123_107_832_006 + np.cumsum(rng.integers(1, 4_000, n_messages))
    mid_ticks = 600_000 + np.cumsum(rng.integers(-3, 4, n_messages))
    side = np.where(rng.random(n) < 0.5, BID, ASK).astype(np.uint8)
    dist = rng.geometric(0.02, n)
    price_ticks = mid_ticks[msg] + np.where(side == BID, -dist, dist)
    deleted = rng.random(n) < 0.15
    size_lots = np.where(deleted, 0, np.ceil(rng.lognormal(3.0, 1.6, n))).astype(np.int64)
    # bids then asks within a message, each ascending in price, one row per level, as Binance sends them
    order = np.lexsort((price_ticks, side != BID, msg))
    msg, side, price_ticks = msg[order], side[order], price_ticks[order]
    size_lots, deleted = size_lots[order], deleted[order]
    first = np.ones(n, dtype=bool)
    first[1:] = (msg[1:] != msg[:-1]) | (side[1:] != side[:-1]) | (price_ticks[1:] != price_ticks[:-1])
    msg, side, price_ticks = msg[first], side[first], price_ticks[first]
    size_lots, deleted = size_lots[first], deleted[first]
    last = np.zeros(len(msg), dtype=np.uint8)
    last[np.append(msg[1:] != msg[:-1], True)] = F_LAST
    return BOOK_DELTA.table(
        {
            "ts_event_ns": event[msg],
            "ts_recv_ns": recv[msg],
            "sequence": seq[msg],
            "side": side,
            "action": np.where(deleted, L2_DELETE, L2_SET).astype(np.uint8),
            "price_nanos": price_ticks * tick,
            "size_nanos": size_lots * lot,
            "flags": last,
        },
        constants={"venue": "synthetic", "symbol": "BTCUSDT"},
    )
