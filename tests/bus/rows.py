"""Small trade tables for the bus tests."""

from __future__ import annotations

import pyarrow as pa

from tapeflow.schemas import ALL_RECORDS


def trades(rows: list[tuple[str, str, int]], first_price: int = 2**62) -> pa.Table:
    """``trade`` rows ``(venue, symbol, ts_recv_ns)``, each with its own price (from ``first_price``)."""
    schema = ALL_RECORDS["trade"].arrow_schema()
    n = len(rows)
    cols = {f.name: pa.array([0] * n, f.type) for f in schema if pa.types.is_integer(f.type)}
    cols |= {f.name: pa.array([float("nan")] * n, f.type) for f in schema if pa.types.is_floating(f.type)}
    cols |= {f.name: pa.array(["x"] * n) for f in schema if f.name not in cols}
    cols["venue"] = pa.array([r[0] for r in rows])
    cols["symbol"] = pa.array([r[1] for r in rows])
    cols["ts_recv_ns"] = pa.array([r[2] for r in rows], pa.int64())
    cols["price_nanos"] = pa.array([first_price + i for i in range(n)], pa.int64())
    return pa.Table.from_pydict({f.name: cols[f.name] for f in schema}).cast(schema)


def batch(start: int, n: int, symbol: str = "BTCUSDT") -> pa.Table:
    """``n`` Binance trades of ``symbol``, one per ms from ``start`` ms, prices from ``start``."""
    return trades([("binance", symbol, (start + i) * 1_000_000) for i in range(n)], first_price=start)
