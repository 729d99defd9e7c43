"""The liquidation clusters' live stage: micro-batches == the batch function over the accepted rows."""

from __future__ import annotations

import random
from pathlib import Path

import pyarrow as pa
import pytest

from tapeflow.derivatives import decoder
from tapeflow.derivatives.live_clusters import ClusterConfig, LiveClusters, batch_clusters
from tapeflow.errors import ConfigError
from tapeflow.schemas.derivatives import LIQUIDATION, MARK_PRICE
from tapeflow.schemas.records import ASK, BID, UNDEF_PRICE
from tapeflow.venues.base import merge
from tapeflow.wire.capture import RECV, CaptureLine
from tests.conftest import need
from tests.derivatives.live_streams import PAIRS, T0, real_frames

S = 1_000_000_000


def _liquidations(seed: int, n: int = 400, jitter_ns: int = 0) -> list[dict]:
    """Bursts of liquidations of two instruments, both sides, gaps of 0.1-12 s, times out of order
    by up to ``jitter_ns``."""
    rng = random.Random(seed)
    out, t = [], T0
    for i in range(n):
        t += rng.choice([S // 10, S // 2, 2 * S, 7 * S, 12 * S])
        out.append({"ts_event_ns": t - rng.randrange(jitter_ns + 1), "ts_recv_ns": t, "venue": "bybit",
                    "symbol": rng.choice(["BTCUSDT", "ETHUSDT"]), "liquidation_id": str(i),
                    "side": rng.choice([BID, ASK]), "price_nanos": rng.randrange(50_000, 70_000) * S,
                    "size_nanos": rng.randrange(1, 300) * S // 100})
    return out


def _table(rows: list[dict]) -> pa.Table:
    if not rows:
        return LIQUIDATION.empty_table()
    return LIQUIDATION.table({k: [r[k] for r in rows] for k in rows[0]})


def _live(rows: list[dict], cuts: list[int], config: ClusterConfig) -> tuple[LiveClusters, dict[str, list]]:
    stage, items = LiveClusters(config), []
    bounds = [0, *sorted(cuts), len(rows)]
    for a, b in zip(bounds, bounds[1:], strict=False):
        items += stage.update({"liquidation": _table(rows[a:b])} if b > a else {})
    items += stage.flush()
    out: dict[str, list] = {}
    for name, table in items:
        out.setdefault(name, []).extend(table.to_pylist())
    return stage, out


def _text(rows: list[dict]) -> list[str]:
    return sorted(map(repr, rows))


def test_micro_batches_equal_the_batch_function() -> None:
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    rng = random.Random(seed)
    config = ClusterConfig(window_ns=5 * S, min_notional=2_000.0, lateness_ns=3 * S)
    rows = _liquidations(seed, jitter_ns=3 * S)
    want = batch_clusters(_table(rows), config).to_pylist()
    assert len(want) > 10 and max(r["count"] for r in want) > 3
    for _ in range(3):
        stage, live = _live(rows, rng.sample(range(1, len(rows)), rng.randrange(1, 60)), config)
        assert stage.late_rows == 0 and "rejected" not in live
        assert _text(live["liquidation_cluster"]) == _text(want)


def test_late_and_unusable_liquidations_are_dead_letters() -> None:
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    config = ClusterConfig(window_ns=5 * S, min_notional=2_000.0)
    rows = _liquidations(seed, jitter_ns=20 * S)
    rows[7]["price_nanos"] = UNDEF_PRICE
    stage, live = _live(rows, list(range(1, len(rows))), config)
    reasons = [r["reason"] for r in live["rejected"]]
    assert reasons.count("out_of_range") == 1 and reasons.count("too_late") == stage.late_rows > 0
    bad = {r["raw"] for r in live["rejected"]}
    accepted = [r for r in rows if repr(_table([r]).to_pylist()[0]).encode() not in bad]
    assert len(accepted) == len(rows) - len(bad)
    assert _text(live["liquidation_cluster"]) == _text(batch_clusters(_table(accepted), config).to_pylist())


def test_a_quiet_side_closes_on_the_instrument_clock() -> None:
    config = ClusterConfig(window_ns=5 * S, min_notional=1.0)
    stage = LiveClusters(config)
    liq = [{"ts_event_ns": T0 + i * S, "ts_recv_ns": T0 + i * S, "venue": "bybit", "symbol": "BTCUSDT",
            "liquidation_id": "", "side": BID, "price_nanos": 100 * S, "size_nanos": S} for i in range(3)]
    assert stage.update({"liquidation": _table(liq)}) == []
    mark = MARK_PRICE.table({"ts_event_ns": [T0 + 7 * S], "ts_recv_ns": [T0 + 7 * S], "venue": ["bybit"],
                             "symbol": ["BTCUSDT"], "mark_price_nanos": [100 * S]})
    (name, table), = stage.update({"mark_price": mark})  # 2 s + 5 s window: the chain is closed
    assert name == "liquidation_cluster" and table.to_pylist()[0]["count"] == 3
    assert table.to_pylist()[0]["notional"] == 300.0


def test_bad_settings() -> None:
    for bad in ({"window_ns": 0}, {"min_notional": float("nan")}, {"min_notional": 0}, {"lateness_ns": -1}):
        with pytest.raises(ConfigError):
            ClusterConfig(**bad)


def test_real_liquidations_live_equals_batch(real_data: Path) -> None:
    need(real_data / PAIRS)
    config = ClusterConfig(window_ns=60 * S, min_notional=1.0)
    for venue, fmt in (("binance", "binance-futures"), ("bybit", "bybit"), ("okx", "okx")):
        frames = real_frames(real_data, venue)
        dec, stage, chunks, items = decoder(fmt), LiveClusters(config), [], []
        for start in range(0, len(frames), 2):
            dec.feed_many([CaptureLine(T0 + i, RECV, "", f, f"live:{i}")
                           for i, f in enumerate(frames[start:start + 2], start)])
            chunk = dec.flush(0, "live")
            chunks.append(chunk)
            items += stage.update(dict(chunk.tables))
        items += stage.flush()
        decoded = merge(chunks)["liquidation"]
        late = [t for n, t in items if n == "rejected"]
        bad = {r["raw"] for t in late for r in t.to_pylist()}
        keep = [repr(r).encode() not in bad for r in decoded.to_pylist()]
        want = batch_clusters(decoded.filter(pa.array(keep)), config).to_pylist()
        got = [r for n, t in items if n == "liquidation_cluster" for r in t.to_pylist()]
        print(venue, len(want), "clusters", len(bad), "late")
        assert _text(got) == _text(want) and want
