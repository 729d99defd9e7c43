"""End to end: a model trained by the ML stack, promoted in a registry, scored live inside the paper
session over an L2 feed (``book_delta`` rows: the simulator's L3 day aggregated by its decoder),
and the model follower's orders: they follow the champion's prediction rows, and the backtest of
the same rows (the book rows plus the emitted prediction rows) sends the same orders and gets the
same fills.

The same runs over the real Binance capture (``$TAPEFLOW_REAL_DATA``, skipped saying why when absent).
The model trains on the first two minutes (the registry tests' quick training); the session trades
the whole day or capture, so its predictions are partly in sample: what is tested is the plumbing,
not the model's edge (docs/models.md has that)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from kernels.ml_train import TrainConfig
from tapeflow.backtest.engine import Backtest, BacktestConfig
from tapeflow.backtest.feed import build_feed
from tapeflow.backtest.model_driven import ModelFollower
from tapeflow.backtest.models import ConstantLatency, Fees, PowerProbQueue
from tapeflow.backtest.session import PaperSession
from tapeflow.schemas.ml import PREDICTION
from tapeflow.schemas.paper import PAPER_FILL, PAPER_ORDER
from tests.backtest.test_paper import micro_batches

S = 1_000_000_000
# tick, lot, order size, rows per micro-batch: the simulator's equity preset (0.01, whole shares)
# and Binance's BTCUSDT perpetual (0.1 USDT, 0.001 BTC)
MARKETS = {"sim": (10_000_000, S, 1.0, 150), "binance": (100_000_000, 1_000_000, 0.001, 3000)}
# a fixed seed: its model calls up and down often enough to trade (a random one may call all flat)
SEED = 7
QUICK = TrainConfig(max_steps=60, eval_every=20, patience=2)
CONFIG = BacktestConfig(ConstantLatency(0, 5_000_000, 5_000_000), PowerProbQueue(3), Fees(0.0, 0.0004))


@pytest.fixture(scope="module", params=sorted(MARKETS))
def session_run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict:
    from flows.market import prediction_stage
    from tapeflow.book.rebuild import snapshots_for_format
    from tapeflow.live.pipeline import pipeline_factory
    from tapeflow.ml import training_examples
    from tapeflow.ml.artifact import train_artifact
    from tapeflow.ml.dataset import segment
    from tapeflow.ml.examples import ExampleParams
    from tapeflow.ml.registry import Registry, model_name
    from tapeflow.ml.walkforward import WalkForwardConfig
    from tapeflow.simulator import simulate
    from tapeflow.wire.capture import merge

    market = request.param
    tick, lot, qty, batch_rows = MARKETS[market]
    root = tmp_path_factory.mktemp("paper_model")
    if market == "sim":
        files = sorted(simulate(SEED, 1, 3 * 60 * S, root / "sim", "equity", progress=False).files)
    else:
        from tests.conftest import need

        real = request.getfixturevalue("real_data")
        files = [need(real / "binance" / "usdm_btcusdt_20240808.gz")]
    chunks: list = []
    snaps, _ = snapshots_for_format(market, files, levels=10, interval_ns=S, on_chunk=chunks.append)
    decoded = merge(chunks)
    examples = training_examples(snaps, decoded["trade"].sort_by("ts_recv_ns"))
    venue, symbol = snaps.column("venue")[0].as_py(), snaps.column("symbol")[0].as_py()
    ts = examples.column("ts_event_ns")
    first = examples.filter(pc.less(ts, pc.add(pc.min(ts), pa.scalar(120 * S, pa.int64()))))
    params = ExampleParams()
    cfg = WalkForwardConfig(horizon_s=10, seed=SEED, train=QUICK, window=8)
    model = train_artifact([segment(first, 10, params, "first")], params, "logreg", cfg)
    registry = Registry(root / "models")
    name = model_name(venue, symbol, 10)
    version = registry.register(name, model, metrics={}, training_partitions=["first"], held_out="none",
                                code="test")
    registry.promote(name, version)
    # the flow's scorer stage (flows/paper.py): L2 book -> 1 s snapshots -> the champion's predictions
    scorer = pipeline_factory("l2", 10, S, new_bars=None, new_metrics=None, raw=False, bbo_as_quote=False,
                              new_predictor=prediction_stage(root / "models", min_interval_s=0.0))
    l2 = {k: decoded[k] for k in ("book_delta", "trade")}  # no order_event: an L2 feed
    session = PaperSession("model", lambda: ModelFollower(qty=qty), tick_nanos=tick, lot_nanos=lot,
                           config=CONFIG, new_scorer=scorer, results_root=root / "results")
    items = []
    for batch in micro_batches(l2, np.random.default_rng(SEED), batch_rows):
        items += session.apply(batch)
    items += session.close()
    got: dict[str, list[pa.Table]] = {}
    for n, t in items:
        got.setdefault(n, []).append(t)
    return {"l2": l2, "out": {k: pa.concat_tables(v) for k, v in got.items()}, "version": version,
            "tick": tick, "lot": lot, "qty": qty,
            "examples": examples, "results": root / "results" / venue / symbol / "model"}


def _expected_orders(preds: pa.Table, start_ns: int, end_ns: int, qty: float) -> list[tuple[int, int, float]]:
    """What following the predictions means, worked here from the rows alone: every second from the
    first row, the latest prediction received at or before then (flat when not warmed up, one-sided
    or older than 5 s) sets the position to hold, and a market order of the difference is sent;
    nothing is sent while the book is one-sided (the latest grid snapshot says so)."""
    recv = preds.column("ts_recv_ns").to_numpy()
    event = preds.column("ts_event_ns").to_numpy()
    two_sided = preds.column("two_sided").to_numpy(zero_copy_only=False)
    call = np.where(preds.column("warmed_up").to_numpy(zero_copy_only=False) & two_sided,
                    preds.column("predicted").to_numpy(), 0)
    out, held = [], 0.0
    for t in range(start_ns + S, end_ns + 1, S):
        seen = np.flatnonzero(recv <= t)
        if seen.size:
            k = seen[np.argmax(event[seen])]
            want = float(call[k]) * qty if t - event[k] <= 5 * S else 0.0
            if not two_sided[k]:
                continue
        else:
            want = 0.0
        if want != held:
            out.append((t, 1 if want > held else -1, abs(want - held)))
            held = want
    return out


def test_orders_follow_the_trained_models_predictions(session_run: dict) -> None:
    out = session_run["out"]
    preds = out[PREDICTION.name]
    # the champion scored every grid instant of the day, with real calls both ways
    assert set(preds.column("model_version").to_pylist()) == {session_run["version"]}
    assert set(preds.column("model_kind").to_pylist()) == {"logreg"}
    assert preds.num_rows >= session_run["examples"].num_rows - 2
    calls = preds.column("predicted").to_numpy()
    assert (calls == 1).sum() >= 2 and (calls == -1).sum() >= 2
    orders = out[PAPER_ORDER.name]
    assert set(orders.column("action").to_pylist()) == {"new"}
    assert set(orders.column("order_type").to_pylist()) == {"market"}
    got = list(zip(orders.column("ts_event_ns").to_pylist(), orders.column("side").to_pylist(),
                   orders.column("qty").to_pylist(), strict=True))
    recv = np.concatenate([t.column("ts_recv_ns").to_numpy() for t in session_run["l2"].values()])
    want = _expected_orders(preds, int(recv.min()), int(recv.max()), session_run["qty"])
    print(f"{preds.num_rows} predictions ({(calls == 1).sum()} up, {(calls == -1).sum()} down), "
          f"{orders.num_rows} orders")
    assert len(want) > 5
    assert got == want
    # each market order filled (the position reached what the model asked for)
    fills = out[PAPER_FILL.name]
    assert fills.column("order_id").to_pylist() == orders.column("order_id").to_pylist()
    report = json.loads((session_run["results"] / "report.json").read_text())
    assert report["fills"] == fills.num_rows and report["orders"] == orders.num_rows


def test_backtest_of_the_same_rows_sends_the_same_orders(session_run: dict) -> None:
    out = session_run["out"]
    tables = {**session_run["l2"], PREDICTION.name: out[PREDICTION.name]}
    feed = build_feed(tables, CONFIG.latency, tick_nanos=session_run["tick"], lot_nanos=session_run["lot"])
    bt = Backtest(feed, ModelFollower(qty=session_run["qty"]), CONFIG)
    bt.ctx.journal = []
    ref = bt.run()
    orders = out[PAPER_ORDER.name]
    cols = ("ts_event_ns", "action", "order_id", "side", "qty")
    assert list(zip(*(orders.column(c).to_pylist() for c in cols), strict=True)) == [
        (j[0], j[1], j[2], j[5], j[7]) for j in bt.ctx.journal]
    fills = out[PAPER_FILL.name]
    assert fills.num_rows == ref.fills.num_rows > 5
    assert fills.column("ts_event_ns").to_pylist() == ref.fills.column("ts_ns").to_pylist()
    prices = [round(p * 1e9) for p in ref.fills.column("price").to_pylist()]
    assert fills.column("price_nanos").to_pylist() == prices
    assert fills.column("fee").to_pylist() == ref.fills.column("fee").to_pylist()
    report = json.loads((session_run["results"] / "report.json").read_text())
    assert report["final_equity"] == ref.report()["final_equity"]

