"""The derived metrics' live stage: micro-batches == the batch definition, late rows dead letters."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from tapeflow.derivatives import decoder
from tapeflow.derivatives.live_derived import DerivedConfig, LiveDerived, batch_derived
from tapeflow.errors import ConfigError
from tapeflow.schemas.derivatives import INDEX_PRICE, MARK_PRICE, OPEN_INTEREST
from tapeflow.schemas.records import UNDEF_PRICE
from tapeflow.venues.base import merge
from tapeflow.wire.capture import RECV, CaptureLine
from tests.conftest import need
from tests.derivatives.live_streams import FORMATS, PAIRS, T0, real_frames

S = 1_000_000_000


def _stream(seed: int, n: int = 600, jitter_ns: int = 0) -> list[tuple[str, dict]]:
    """Marks, indexes and open interest of three instruments, ~every 0.3-1.7 s, event times out of
    order by up to ``jitter_ns``; one instrument without an index, one mark with the absent price."""
    rng = random.Random(seed)
    out = []
    t = T0
    for i in range(n):
        t += rng.randrange(S // 3, 17 * S // 10)
        ts = t - rng.randrange(jitter_ns + 1)
        sym = rng.choice(["BTCUSDT", "ETHUSDT", "SOLUSDT"])
        common = {"ts_event_ns": ts, "ts_recv_ns": t, "venue": "binance-usdm", "symbol": sym}
        kind = rng.choice(["mark_price", "index_price", "open_interest"])
        px = 60_000 * S + rng.randrange(-500, 500) * S // 10
        if kind == "mark_price":
            out.append((kind, common | {"mark_price_nanos": UNDEF_PRICE if i == 50 else px}))
        elif kind == "index_price" and sym != "SOLUSDT":
            out.append((kind, common | {"index_price_nanos": px - rng.randrange(0, 40) * S}))
        elif kind == "open_interest":
            out.append((kind, common | {"open_interest_nanos": rng.randrange(0, 10**6) * S,
                                        "open_interest_value_nanos": UNDEF_PRICE}))
    return out


_RECORDS = {"mark_price": MARK_PRICE, "index_price": INDEX_PRICE, "open_interest": OPEN_INTEREST}


def _tables(rows: list[tuple[str, dict]]) -> dict[str, pa.Table]:
    out = {}
    for name, record in _RECORDS.items():
        mine = [r for n, r in rows if n == name]
        if mine:
            out[name] = record.table({k: [r[k] for r in mine] for k in mine[0]})
    return out


def _live(rows: list[tuple[str, dict]], cuts: list[int], config: DerivedConfig
          ) -> tuple[LiveDerived, dict[str, pa.Table]]:
    stage = LiveDerived(config)
    items = []
    bounds = [0, *sorted(cuts), len(rows)]
    for a, b in zip(bounds, bounds[1:], strict=False):
        items += stage.update(_tables(rows[a:b]))
    items += stage.flush()
    out: dict[str, list[pa.Table]] = {}
    for name, table in items:
        out.setdefault(name, []).append(table)
    return stage, {k: pa.concat_tables(v) for k, v in out.items()}


def _text(table: pa.Table) -> list[str]:
    return sorted(repr(r) for r in table.to_pylist())  # NaN prints the same on both sides


def test_micro_batches_equal_the_batch_definition() -> None:
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    rng = random.Random(seed)
    config = DerivedConfig(interval_ns=S, max_staleness_ns=3 * S, window_ns=20 * S, lateness_ns=2 * S)
    rows = _stream(seed, jitter_ns=2 * S)
    batch = batch_derived(_tables(rows), config)
    for _ in range(3):
        cuts = rng.sample(range(1, len(rows)), rng.randrange(1, 80))
        stage, live = _live(rows, cuts, config)
        assert stage.late_rows == 0 and "rejected" not in live
        assert set(live) == set(batch) == {"derivative_basis", "open_interest_change"}
        for name in batch:
            assert _text(live[name]) == _text(batch[name]), name
    basis = batch["derivative_basis"].to_pylist()
    fresh = [r for r in basis if not math.isnan(r["basis_bps"])]
    assert fresh and len(fresh) < len(basis)  # stale pairs and SOLUSDT (no index) give NaN
    r = fresh[len(fresh) // 2]
    # the basis from the mark and index rows themselves: the last of each at or before the time
    mine = [x for n, x in rows if x["symbol"] == r["symbol"] and x["ts_event_ns"] <= r["ts_event_ns"]]
    mark = max((x for x in mine if "mark_price_nanos" in x and x["mark_price_nanos"] != UNDEF_PRICE),
               key=lambda x: x["ts_event_ns"])["mark_price_nanos"]
    index = max((x for x in mine if "index_price_nanos" in x),
                key=lambda x: x["ts_event_ns"])["index_price_nanos"]
    assert (r["mark_price_nanos"], r["index_price_nanos"]) == (mark, index)
    assert r["basis_bps"] == pytest.approx((mark - index) / index * 1e4, rel=1e-12)
    assert {x["symbol"] for x in basis if not math.isnan(x["basis_bps"])} == {"BTCUSDT", "ETHUSDT"}


def test_late_rows_are_dead_letters_and_the_rest_still_equals_batch() -> None:
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")
    config = DerivedConfig(interval_ns=S, max_staleness_ns=3 * S, window_ns=20 * S, lateness_ns=0)
    rows = _stream(seed, jitter_ns=3 * S)
    cuts = list(range(1, len(rows)))  # one row per micro-batch: the most late rows
    stage, live = _live(rows, cuts, config)
    late = live["rejected"].to_pylist()
    assert stage.late_rows == len(late) > 0 and {r["reason"] for r in late} == {"too_late"}
    late_keys = {(r["symbol"], r["ts_event_ns"]) for r in late}
    accepted = [(n, r) for n, r in rows if (r["symbol"], r["ts_event_ns"]) not in late_keys]
    batch = batch_derived(_tables(accepted), config)
    for name in batch:
        assert _text(live[name]) == _text(batch[name]), name


def test_an_index_at_or_below_zero_is_a_dead_letter() -> None:
    rows = _stream(7, n=60)
    name, row = next((n, r) for n, r in rows if n == "index_price")
    row["index_price_nanos"] = 0
    _, live = _live(rows, [20, 40], DerivedConfig())
    rejected = live["rejected"].to_pylist()
    assert [r["reason"] for r in rejected] == ["out_of_range"] and "no basis" in rejected[0]["detail"]


def test_bad_settings_are_config_errors() -> None:
    for bad in ({"interval_ns": 0}, {"max_staleness_ns": -1}, {"window_ns": 0}, {"lateness_ns": -1}):
        with pytest.raises(ConfigError):
            DerivedConfig(**bad)
    assert DerivedConfig(interval_ns=250_000_000).interval == "250ms"


@pytest.mark.parametrize("venue", sorted(FORMATS))
def test_real_frames_live_equals_batch(real_data: Path, venue: str) -> None:
    need(real_data / PAIRS)
    frames = real_frames(real_data, venue)
    dec = decoder(FORMATS[venue])
    # the captures are single messages days apart: a 10-minute grid, values fresh for a day
    config = DerivedConfig(interval_ns=600 * S, max_staleness_ns=86_400 * S, window_ns=3600 * S)
    stage = LiveDerived(config)
    chunks, items = [], []
    for start in range(0, len(frames), 3):  # the decoders' micro-batches of three frames
        dec.feed_many([CaptureLine(T0 + i, RECV, "", f, f"live:{i}")
                       for i, f in enumerate(frames[start:start + 3], start)])
        chunk = dec.flush(0, "live")
        chunks.append(chunk)
        items += stage.update(dict(chunk.tables))
    items += stage.flush()
    decoded = merge(chunks)
    live: dict[str, list[pa.Table]] = {}
    for name, table in items:
        live.setdefault(name, []).append(table)
    late = pa.concat_tables(live.pop("rejected")).to_pylist() if "rejected" in live else []
    late_keys = {(r["symbol"], r["ts_event_ns"]) for r in late}
    accepted = {}
    for name in ("mark_price", "index_price", "open_interest"):
        if name in decoded:
            t = decoded[name]
            pairs = zip(t.column("symbol").to_pylist(), t.column("ts_event_ns").to_pylist(), strict=True)
            keep = [p not in late_keys for p in pairs]
            accepted[name] = t.filter(pa.array(keep))
    batch = batch_derived(accepted, config)
    print(venue, {k: v.num_rows for k, v in batch.items()}, "late", len(late))
    assert set(live) == set(batch)
    assert batch or venue == "bybit"  # each Bybit instrument's frames lie within one 10-minute step
    for name in batch:
        assert _text(pa.concat_tables(live[name])) == _text(batch[name]), name
    if "derivative_basis" in batch:
        finite = np.isfinite(batch["derivative_basis"].column("basis_bps").to_numpy())
        print(venue, "finite basis", int(finite.sum()))
