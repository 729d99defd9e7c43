"""Paper trading as a stream: bounded memory (rows the engine has passed are forgotten), the
data-driven latency model, and the live scorer's ``prediction`` rows, each with the backtest of the
same rows as the reference."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from tapeflow.backtest.engine import Backtest, BacktestConfig
from tapeflow.backtest.feed import build_feed
from tapeflow.backtest.model_driven import ModelFollower
from tapeflow.backtest.models import ConstantLatency, DataLatency, Fees, Limits, PowerProbQueue
from tapeflow.backtest.paper import PaperTrader
from tapeflow.backtest.strategies import MarketMaker
from tapeflow.errors import ConfigError
from tapeflow.schemas.ml import PREDICTION
from tapeflow.schemas.paper import PAPER_ORDER
from tests.backtest.helpers import CONST, N
from tests.backtest.test_paper import CONFIG, micro_batches, random_l2

TICK, LOT = 100_000_000, 1_000_000


def _mm() -> MarketMaker:
    return MarketMaker(half_spread_ticks=0.5, qty=0.001, max_position=0.01)


def _paper(tables, make, config, seed, mean_rows, compact_rows=1):
    trader = PaperTrader("s", make(), tick_nanos=TICK, lot_nanos=LOT, config=config)
    trader.broker.compact_rows = compact_rows
    rows: dict[str, list[pa.Table]] = {}
    peak: dict[str, int] = {}
    for batch in micro_batches(tables, np.random.default_rng(seed), mean_rows):
        for name, t in trader.on_batch(batch).items():
            rows.setdefault(name, []).append(t)
        for k, v in trader.broker.retained().items():
            peak[k] = max(peak.get(k, 0), v)
    last, result = trader.close()
    for name, t in last.items():
        rows.setdefault(name, []).append(t)
    return result, {k: pa.concat_tables(v) for k, v in rows.items()}, peak, trader


def _same(ref, paper):
    assert ref.fills.num_rows > 5
    assert paper.fills.equals(ref.fills)
    for name in ref.equity.column_names:
        np.testing.assert_array_equal(paper.equity.column(name).to_numpy(),
                                      ref.equity.column(name).to_numpy())
    assert paper.report() == ref.report()


def test_session_state_does_not_grow_with_the_rows_fed():
    """Feed 15 s and 60 s (4x the rows) of a random book: what the session holds per row (rows
    kept, column buffers, level index, carried levels, order journal) stays within a few batches
    whatever the rows fed; only the equity samples (one a second) and the fills grow, with time
    and trading."""
    sizes = {}
    for seconds in (15, 60):
        tables = random_l2(5, seconds=seconds)
        tables[PREDICTION.name] = _predictions(tables, 5)
        n = sum(t.num_rows for t in tables.values())
        biggest = max(sum(t.num_rows for t in b.values())
                      for b in micro_batches(tables, np.random.default_rng(3), 100))
        _, _, peak, trader = _paper(tables, _mm, CONFIG, 3, mean_rows=100, compact_rows=256)
        sizes[seconds] = (n, peak, trader.broker.retained())
        # kept: the rows the engine has not passed (the last batch or two) plus 256 passed ones
        assert peak["rows"] <= 256 + 3 * biggest, (seconds, peak, biggest)
        assert peak["index_entries"] <= peak["rows"] + peak["carried_levels"]
        assert peak["journal"] == 0  # emitted as paper_order rows, then forgotten
        assert peak["prediction_rows"] <= 10  # one a second, kept while in the window (60 fed)
    (n1, p1, _), (n4, p4, end4) = sizes[15], sizes[60]
    print({k: (p1[k], p4[k]) for k in p1}, n1, n4)
    assert n4 > 3.5 * n1
    for k in ("buffer_bytes", "carried_levels", "levels", "live_orders"):
        assert p4[k] <= 1.5 * p1[k] + 16, (k, p1[k], p4[k])
    # without forgetting, the rows kept would be all of them: the bounds above are not vacuous
    assert p4["rows"] < n4 / 8
    assert end4["samples"] <= 62  # one equity sample a second: grows with time, not rows


def _jitter_event_times(tables: dict[str, pa.Table], seed: int) -> dict[str, pa.Table]:
    """ts_event = ts_recv - a latency of 1-40 ms that drifts, with a clock offset of -3 s (the
    venue's clock ahead of ours), so the running minimum moves during the session."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, t in tables.items():
        recv = t.column("ts_recv_ns").to_numpy()
        lat = rng.integers(1_000_000, 40_000_000, recv.size) - (recv - recv[0]) // 200  # lower later on
        event = recv - lat + 3 * N
        out[name] = t.set_column(t.schema.get_field_index("ts_event_ns"), "ts_event_ns", pa.array(event))
    return out


def test_data_latency_parity_with_the_backtest():
    seed = int(np.random.default_rng().integers(1 << 31))
    print("seed", seed)
    tables = _jitter_event_times(random_l2(seed, seconds=40), seed)
    config = BacktestConfig(DataLatency(base_ns=2_000_000, order_scale=1.0, running=True), PowerProbQueue(3),
                            Fees(-0.00005, 0.0004), Limits(0.01))
    feed = build_feed(tables, config.latency, tick_nanos=TICK, lot_nanos=LOT)
    d = feed.t_local - feed.t_exch
    assert d.min() >= 2_000_000 and np.unique(d).size > 100  # the latency varies row by row
    ref = Backtest(feed, _mm(), config).run()
    paper, _, _, _ = _paper(tables, _mm, config, seed, mean_rows=30)
    _same(ref, paper)
    # the running offset differs from the whole-capture one: the model is really per row
    whole = build_feed(tables, DataLatency(base_ns=2_000_000), tick_nanos=TICK, lot_nanos=LOT)
    assert not np.array_equal(whole.t_exch, feed.t_exch)


def test_paper_refuses_the_whole_capture_data_latency():
    with pytest.raises(ConfigError, match="running=True"):
        PaperTrader("x", _mm(), tick_nanos=1, lot_nanos=1, config=BacktestConfig(DataLatency()))


def _predictions(tables: dict[str, pa.Table], seed: int) -> pa.Table:
    """A prediction row every second (as the live scorer emits them: ts = the grid instant), random
    calls, a few not warmed up."""
    rng = np.random.default_rng(seed)
    recv = tables["book_delta"].column("ts_recv_ns").to_numpy()
    ts = np.arange((recv[0] // N + 1) * N, recv[-1], N)
    n = ts.size
    p = rng.dirichlet([1, 1, 1], n)
    warm = np.arange(n) >= 3
    return PREDICTION.table({
        "ts_event_ns": ts, "ts_recv_ns": ts, "model_name": ["m"] * n, "model_version": [1] * n,
        "model_kind": ["logreg"] * n, "horizon_s": [10] * n, "predicted": rng.integers(-1, 2, n),
        "p_down": p[:, 0], "p_flat": p[:, 1], "p_up": p[:, 2], "warmed_up": warm, "two_sided": [True] * n,
        "feature_schema_hash": ["h"] * n}, constants=CONST)


def test_model_follower_on_prediction_rows_gives_the_backtests_orders():
    """The model-driven strategy acts on ``prediction`` rows (no scoring of its own): the paper
    session over micro-batches with them sends the orders and gets the fills of the backtest of
    the same rows, which are those of the batch mode (a predictions table)."""
    seed = int(np.random.default_rng().integers(1 << 31))
    print("seed", seed)
    tables = random_l2(seed, seconds=40)
    preds = _predictions(tables, seed)
    tables = {**tables, PREDICTION.name: preds}
    config = BacktestConfig(ConstantLatency(0, 5_000_000, 5_000_000), PowerProbQueue(3), Fees(0.0, 0.0004))

    def follower() -> ModelFollower:
        return ModelFollower(qty=0.001)

    bt = Backtest(build_feed(tables, config.latency, tick_nanos=TICK, lot_nanos=LOT), follower(), config)
    bt.ctx.journal = []
    bt.start()
    bt.advance(None)
    ref = bt.finish()
    assert bt.ctx.counts["orders"] > 5
    paper, rows, _, _ = _paper(tables, follower, config, seed, mean_rows=40)
    _same(ref, paper)
    orders = rows[PAPER_ORDER.name]
    cols = ("ts_event_ns", "action", "order_id", "side", "qty")
    got = list(zip(*(orders.column(c).to_pylist() for c in cols), strict=True))
    assert got == [(j[0], j[1], j[2], j[5], j[7]) for j in bt.ctx.journal]
    # batch mode: the same calls given as a table (not-warmed rows call flat) give the same fills
    table = pa.table({"ts_ns": preds.column("ts_event_ns"),
                      "pred": pa.array(np.where(preds.column("warmed_up").to_numpy(zero_copy_only=False),
                                                preds.column("predicted").to_numpy(), 0), pa.int8())})
    book = {k: v for k, v in tables.items() if k != PREDICTION.name}
    feed = build_feed(book, config.latency, tick_nanos=TICK, lot_nanos=LOT)
    batch = Backtest(feed, ModelFollower(table, qty=0.001), config).run()
    assert batch.fills.equals(ref.fills)


class GridScorer:
    """A stand-in for the live scorer stage: once a batch holds a book row at or after a whole
    second, that second's prediction row is made (stamped at the second, as the scorer stamps
    them; a call drawn from the seed) and comes out with the next batch (a slow model)."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.next_s: int | None = None
        self.pending: list = []

    def apply(self, batch) -> list:
        out, self.pending = self.pending, self._made(batch)
        return out

    def _made(self, batch) -> list:
        book = batch.get("book_delta")
        if book is None or not book.num_rows:
            return []
        last = int(book.column("ts_recv_ns").to_numpy().max())
        if self.next_s is None:
            self.next_s = (int(book.column("ts_recv_ns")[0].as_py()) // N + 1) * N
        ts = np.arange(self.next_s, last + 1, N)
        if not ts.size:
            return []
        self.next_s = int(ts[-1]) + N
        n = ts.size
        return [(PREDICTION.name, PREDICTION.table({
            "ts_event_ns": ts, "ts_recv_ns": ts, "model_name": ["m"] * n, "model_version": [1] * n,
            "model_kind": ["logreg"] * n, "horizon_s": [10] * n, "predicted": self.rng.integers(-1, 2, n),
            "p_down": [0.3] * n, "p_flat": [0.3] * n, "p_up": [0.4] * n, "warmed_up": [True] * n,
            "two_sided": [True] * n, "feature_schema_hash": ["h"] * n}, constants=CONST))]

    def close(self) -> list:
        return self.pending


def test_session_with_a_scorer_trades_its_predictions_as_the_backtest_does():
    """In the flow's session the scorer's prediction rows join each batch, restamped to when the
    session got them; the backtest of the book rows plus the emitted prediction rows sends the
    same orders and gets the same fills."""
    from tapeflow.backtest.session import PaperSession
    from tapeflow.schemas.paper import PAPER_FILL

    seed = int(np.random.default_rng().integers(1 << 31))
    print("seed", seed)
    tables = random_l2(seed, seconds=40)
    config = BacktestConfig(ConstantLatency(0, 5_000_000, 5_000_000), PowerProbQueue(3), Fees(0.0, 0.0004))
    session = PaperSession("model", lambda: ModelFollower(qty=0.001), tick_nanos=TICK, lot_nanos=LOT,
                           config=config, new_scorer=lambda: GridScorer(seed))
    items = []
    for batch in micro_batches(tables, np.random.default_rng(seed), 60):
        items += session.apply(batch)
    items += session.close()
    got: dict[str, list[pa.Table]] = {}
    for name, t in items:
        got.setdefault(name, []).append(t)
    out = {k: pa.concat_tables(v) for k, v in got.items()}
    preds = out[PREDICTION.name]
    assert preds.num_rows >= 35
    late = pc_sub(preds)
    assert (late >= 0).all() and (late > 0).any()  # restamped: some arrived after their instant
    ref_bt = Backtest(build_feed({**tables, PREDICTION.name: preds}, config.latency, tick_nanos=TICK,
                                 lot_nanos=LOT), ModelFollower(qty=0.001), config)
    ref_bt.ctx.journal = []
    ref = ref_bt.run()
    orders = out[PAPER_ORDER.name]
    cols = ("ts_event_ns", "action", "order_id", "side", "qty")
    assert list(zip(*(orders.column(c).to_pylist() for c in cols), strict=True)) == [
        (j[0], j[1], j[2], j[5], j[7]) for j in ref_bt.ctx.journal]
    assert len(ref_bt.ctx.journal) > 5
    fills = out[PAPER_FILL.name]
    assert fills.column("ts_event_ns").to_pylist() == ref.fills.column("ts_ns").to_pylist()
    prices = [round(p * 1e9) for p in ref.fills.column("price").to_pylist()]
    assert fills.column("price_nanos").to_pylist() == prices


def pc_sub(preds: pa.Table) -> np.ndarray:
    return preds.column("ts_recv_ns").to_numpy() - preds.column("ts_event_ns").to_numpy()


def test_paper_settings_for_data_latency_and_the_model_follower():
    from tapeflow.backtest.paper_cli import PaperSettings

    session = PaperSettings("model_follower", TICK, LOT, latency="data", latency_base_ns=1_000,
                            order_scale=0.5).new_session()()
    latency = session.trader.broker.config.latency
    assert latency == DataLatency(1_000, 0.5, running=True)
    assert isinstance(session.trader.guard.inner, ModelFollower) and session.trader.guard.inner.rows
    with pytest.raises(ConfigError, match="latency"):
        PaperSettings("market_maker", TICK, LOT, latency="guess")
