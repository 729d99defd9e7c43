"""The streaming detectors (``tapeflow.signals.stream``) fed in micro-batches equal the batch
detectors over the whole input: the look-back is cut (whole baseline blocks) and refractory
periods chain across batch cuts."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from tapeflow.schemas.records import ASK, BID, BOOK_SNAPSHOT, TRADE
from tapeflow.signals.config import DEFAULT_PATH, load
from tapeflow.signals.detect import detect_tables
from tapeflow.signals.stream import StreamingSignals

S = 1_000_000_000
KEY = [(c, "ascending") for c in ("kind", "side", "ts_event_ns", "detector")]


def _trades(seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    n = 3000  # 2.5 h of ordinary prints, one every 3 s: the look-back (5 blocks of 125) is cut often
    ts = list(np.arange(n) * 3 * S)
    side = list(rng.choice([BID, ASK], n))
    size = list(np.maximum(1, rng.lognormal(np.log(100), 0.3, n)).astype(np.int64))
    price = [10_000] * n
    # sweeps: pairs 20 s apart (inside the 60 s refractory period) all through the day, so a batch
    # cut often falls between the alert and the candidate it suppresses
    for k, t0 in enumerate(range(600, 8800, 700)):
        for dt in (0, 20):
            ts += [(t0 + dt) * S + S // 2] * 5
            side += [BID if k % 2 else ASK] * 5
            size += [300] * 5
            price += [10_000 + i for i in range(5)]
    order = np.argsort(np.asarray(ts), kind="stable")
    cols = {c: np.asarray(v)[order] for c, v in
            (("ts_event_ns", ts), ("price_nanos", price), ("size_nanos", size), ("aggressor_side", side))}
    cols["ts_recv_ns"] = cols["ts_event_ns"] + 1000
    cols["aggressor_side"] = cols["aggressor_side"].astype(np.uint8)
    cols["sequence"] = np.arange(len(order), dtype=np.int64)
    cols["trade_id"] = [str(i) for i in range(len(order))]
    cols["flags"] = np.zeros(len(order), np.uint8)
    return TRADE.table(cols, constants={"venue": "sim", "symbol": "SIMA"})


@pytest.mark.parametrize("batch_rows", [97, 1000])
def test_streaming_whales_equal_the_batch_detector(batch_rows: int) -> None:
    thresholds = load(DEFAULT_PATH)
    trades = _trades(5)
    batch = detect_tables(trades, BOOK_SNAPSHOT.empty_table(), thresholds).sort_by(KEY)
    stream = StreamingSignals("sim", "SIMA")
    parts = [stream.add(trades.slice(i, batch_rows), None, thresholds)
             for i in range(0, trades.num_rows, batch_rows)]
    parts.append(stream.add(None, None, thresholds, final=True))
    live = pa.concat_tables(parts).sort_by(KEY)
    print(f"{batch.num_rows} alerts, {stream.dropped_prints} prints cut from the look-back")
    assert stream.dropped_prints > 0  # the look-back was cut
    assert batch.num_rows >= 10
    # the refractory period suppressed the second of each pair: fewer alerts than candidates
    assert batch.num_rows < 2 * len(range(600, 8800, 700))
    assert live.to_pylist() == batch.to_pylist()
