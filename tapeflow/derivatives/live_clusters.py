"""The live stage of the liquidation clusters (``tapeflow.derivatives.derived.liquidation_clusters``)
on the flow's micro-batches, equal to the batch function over the rows it accepted.

Liquidations of one ``(venue, symbol, side)`` wait in their chain; a chain is closed once its
instrument's watermark (the latest event time of any of its derivatives rows) is ``window_ns`` past
its last liquidation, plus ``lateness_ns``: no liquidation that could still join it is to come. The
closed chain goes through the batch function itself (a cluster when its notional reaches
``min_notional``). :meth:`LiveClusters.flush` closes every chain at the end of the stream. A
liquidation that would have joined a closed chain (less than the window after its end) came too
late: a ``too_late`` dead letter; one without a price or size, or with a negative size, is
``out_of_range`` (the batch function raises on it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.derivatives import derived
from tapeflow.errors import ConfigError
from tapeflow.schemas.derivatives import LIQUIDATION, LIQUIDATION_CLUSTER
from tapeflow.schemas.records import REJECTED, UNDEF_PRICE
from tapeflow.wire.rejects import Reason, Rejects

ChainKey = tuple[str, str, int]
# the records whose event times move an instrument's clock (a quiet side's chain closes on them)
CLOCKS = ("liquidation", "mark_price", "index_price", "open_interest", "funding_rate")


@dataclass(frozen=True)
class ClusterConfig:
    """Settings of the cluster stage.

    Attributes:
        window_ns: the largest gap (exclusive) inside a cluster.
        min_notional: the smallest summed notional (quote units) of a cluster.
        lateness_ns: how long after a chain's reach its liquidations may still arrive (event time).
    """

    window_ns: int = 5_000_000_000
    min_notional: float = 100_000.0
    lateness_ns: int = 0

    def __post_init__(self) -> None:
        if self.window_ns <= 0 or self.lateness_ns < 0:
            raise ConfigError(f"cluster window_ns must be > 0 and lateness_ns >= 0, got {self.window_ns}, "
                              f"{self.lateness_ns}")
        if not math.isfinite(self.min_notional) or self.min_notional <= 0:
            raise ConfigError(f"cluster min_notional must be finite and > 0, got {self.min_notional!r}")


class LiveClusters:
    """Liquidation clusters, incrementally (see the module docstring)."""

    def __init__(self, config: ClusterConfig | Callable[[str], ClusterConfig] | None = None) -> None:
        # one config, or a function of the symbol (per-instrument thresholds, derived_config)
        self.config = config or ClusterConfig()

        self._open: dict[ChainKey, list[pa.Table]] = {}
        self._closed_end: dict[ChainKey, int] = {}  # last liquidation of the last closed chain
        self._watermark: dict[tuple[str, str], int] = {}
        self.late_rows = 0

    def _config(self, symbol: str) -> ClusterConfig:
        return self.config(symbol) if callable(self.config) else self.config

    def update(self, tables: dict[str, pa.Table]) -> list[tuple[str, pa.Table]]:
        """Take a micro-batch's tables; the clusters now closed, and dead letters."""
        for name in CLOCKS:
            table = tables.get(name)
            if table is not None:
                for key, ts in zip(_pairs(table), table.column("ts_event_ns").to_pylist(), strict=True):
                    self._watermark[key] = max(self._watermark.get(key, ts), ts)
        rejects = Rejects("derived")
        table = tables.get(LIQUIDATION.name)
        if table is not None and table.num_rows:
            self._accept(table, rejects)
        out = self._close(final=False)
        if len(rejects):
            out.append((REJECTED.name, rejects.table()))
        return out

    def flush(self) -> list[tuple[str, pa.Table]]:
        """End of the stream: every chain closed."""
        return self._close(final=True)

    def _accept(self, table: pa.Table, rejects: Rejects) -> None:
        ts = table.column("ts_event_ns").to_numpy()
        price, size = table.column("price_nanos").to_numpy(), table.column("size_nanos").to_numpy()
        sides = table.column("side").to_pylist()
        keep = np.ones(table.num_rows, dtype=bool)
        for i, (venue, symbol) in enumerate(_pairs(table)):
            key = (venue, symbol, sides[i])
            end = self._closed_end.get(key)
            why = reason = None
            if price[i] == UNDEF_PRICE or size[i] == UNDEF_PRICE or size[i] < 0:
                reason = Reason.OUT_OF_RANGE
                why = f"liquidation without a usable price or size: {price[i]}, {size[i]}"
            elif end is not None and ts[i] < end + self._config(symbol).window_ns:
                reason = Reason.TOO_LATE
                why = f"liquidation at {ts[i]} of {venue} {symbol} came after its chains to {end} were closed"
                self.late_rows += 1
            if reason is not None:
                rejects.add(reason, why or "", "derived", repr(table.slice(i, 1).to_pylist()[0]),
                            ts_event_ns=int(ts[i]), symbol=symbol)
                keep[i] = False
        kept = table if keep.all() else table.filter(pa.array(keep))
        sides = kept.column("side").to_pylist()
        for i, (venue, symbol) in enumerate(_pairs(kept)):
            self._open.setdefault((venue, symbol, sides[i]), []).append(kept.slice(i, 1))

    def _close(self, *, final: bool) -> list[tuple[str, pa.Table]]:
        parts = []
        for key in sorted(self._open):
            c = self._config(key[1])
            rows = pa.concat_tables(self._open[key])
            ts = rows.column("ts_event_ns").to_numpy()
            order = np.argsort(ts, kind="stable")  # the batch function's order: by time, ties as they came
            sorted_ts = ts[order]
            gaps = np.flatnonzero(np.diff(sorted_ts) >= c.window_ns) + 1
            ends = np.concatenate((gaps, [sorted_ts.size]))
            reach = self._watermark.get(key[:2], int(sorted_ts[-1])) - (0 if final else c.lateness_ns)
            done = [e for e in ends if final or int(sorted_ts[e - 1]) + c.window_ns <= reach]
            if not done:
                continue
            cut = int(done[-1])
            closed = rows.take(pa.array(order[:cut]))
            parts.append(derived.liquidation_clusters(closed, window_ns=c.window_ns,
                                                      min_notional=c.min_notional))
            self._closed_end[key] = int(sorted_ts[cut - 1])
            rest = rows.take(pa.array(order[cut:]))
            if rest.num_rows:
                self._open[key] = [rest]
            else:
                del self._open[key]
        clusters = pa.concat_tables(parts) if parts else None
        if clusters is None or not clusters.num_rows:
            return []
        return [(LIQUIDATION_CLUSTER.name, cluster_record(clusters))]


def batch_clusters(liquidations: pa.Table,
                   config: ClusterConfig | Callable[[str], ClusterConfig] | None = None) -> pa.Table:
    """The ``liquidation_cluster`` records of whole liquidation rows (the batch definition);
    ``config``: one config, or a function of the symbol giving each instrument's."""
    if not callable(config):
        c = config or ClusterConfig()
        return cluster_record(derived.liquidation_clusters(liquidations, window_ns=c.window_ns,
                                                           min_notional=c.min_notional))
    symbols = liquidations.column("symbol")
    parts = []
    for symbol in sorted(set(symbols.to_pylist())):
        c = config(symbol)
        rows = liquidations.filter(pc.equal(symbols, symbol))
        parts.append(derived.liquidation_clusters(rows, window_ns=c.window_ns, min_notional=c.min_notional))
    if not parts:
        return cluster_record(derived.liquidation_clusters(liquidations, window_ns=1, min_notional=1.0))
    order = [(k, "ascending") for k in ("venue", "symbol", "side", "start_ns")]
    return cluster_record(pa.concat_tables(parts).sort_by(order))


def cluster_record(table: pa.Table) -> pa.Table:
    """``derived.liquidation_clusters`` rows as ``liquidation_cluster`` records (times: its end)."""
    return LIQUIDATION_CLUSTER.table({
        "ts_event_ns": table.column("end_ns"), "ts_recv_ns": table.column("end_ns"),
        "venue": table.column("venue"), "symbol": table.column("symbol"), "side": table.column("side"),
        "start_ns": table.column("start_ns"), "end_ns": table.column("end_ns"),
        "count": table.column("count"), "notional": table.column("notional")})


def _pairs(table: pa.Table) -> list[tuple[str, str]]:
    return list(zip(table.column("venue").to_pylist(), table.column("symbol").to_pylist(), strict=True))
