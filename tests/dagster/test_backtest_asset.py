"""``model_backtest`` (group ``ml``) on two simulated instrument-days: the first says why it cannot
run (no earlier day), the second follows the model trained on the first, backtests the model-driven
strategy on the day, and puts its risk report and plots in the metadata and in files. The model is
the one the ``model`` asset trained and stored (``champion`` reads it too: nothing is trained twice),
and the report equals the library's walk-forward backtest training its own model over the same lake
rows."""

from __future__ import annotations

import json
import random

import dagster as dg
import pytest

from tests.dagster.conftest import Deployment, materializations, register

S = 1_000_000_000
DAY_NS = 86_400 * S
ASSETS = ("order_events", "book_deltas", "trades", "book_snapshots", "training_examples", "model", "champion",
          "model_backtest")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    import assets.ml
    from assets.partitions import partition_key
    from tapeflow.ml.walkforward import WalkForwardConfig
    from tapeflow.simulator import simulate
    from tests.dagster.conftest import definitions

    seed = random.randrange(10**6)
    print(f"simulator seed {seed}")
    root = tmp_path_factory.mktemp("bt")
    start_ns = 1_704_153_660 * S  # 2024-01-02 00:01 UTC
    for d in range(2):
        simulate(seed + d, 1, 5 * 60 * S, root / "landing", "equity", progress=False,
                 start_ns=start_ns + d * DAY_NS)
    dep = Deployment(root)
    instance = dg.DagsterInstance.ephemeral()
    days = register(instance, dep)
    defs = [a for a in definitions().assets if set(ASSETS) & {k.path[-1] for k in a.keys}]
    with pytest.MonkeyPatch.context() as mp:  # the backtest's kind only: what it trained before
        quick = WalkForwardConfig(horizon_s=10, train_folds=3, models=("logreg",))
        mp.setattr(assets.ml, "MODEL_CONFIG", quick)
        results = [dg.materialize(defs, partition_key=partition_key(date, venue, symbol),
                                  resources=dep.resources(), instance=instance, raise_on_error=False,
                                  selection=[dg.AssetKey(n) for n in ASSETS]) for venue, symbol, date in days]
    return dep, results, days


def test_backtest_asset_reports_risk_and_plots(built) -> None:
    from assets.backtests import MODEL, QTY
    from assets.ml import PARAMS, _examples
    from tapeflow.backtest.model_driven import walk_forward_backtest
    from tapeflow.schemas.records import ORDER_EVENT, TRADE
    from tapeflow.storage import lake

    dep, results, days = built
    assert all(r.success for r in results)
    [first] = materializations(results[0])["model_backtest"].values()
    assert first["status"].startswith("not run") and "earlier day" in first["status"]
    [meta] = materializations(results[1])["model_backtest"].values()
    assert meta["status"] == "ok" and meta["train_days"] == [days[0][2]]
    assert meta["candidates"] == "read (model asset)"
    [champ] = materializations(results[1])["champion"].values()
    assert champ["candidates"] == "read (model asset)" and champ["challenger_kind"] == "logreg"
    report = meta["report"]
    for key in ("final_equity", "sharpe", "sortino", "max_drawdown", "var95_hist", "cvar99_param", "fills"):
        assert key in report
    for plot in ("equity", "drawdown", "pnl_hist"):
        assert meta[f"plot_{plot}"].startswith(f"![{plot}](data:image/png;base64,")
    out = dep.lake.parent / "backtests" / days[1][0] / days[1][1] / days[1][2]
    assert {p.name for p in out.iterdir()} >= {"report.json", "fills.parquet", "equity.parquet", "equity.png",
                                                 "drawdown.png", "pnl_hist.png"}
    venue, symbol, date = days[1]
    book = {r.name: lake.read(r, dep.lake, venue=venue, symbol=symbol, date=date).sort_by("ts_recv_ns")
            for r in (ORDER_EVENT, TRADE)}
    result, preds = walk_forward_backtest([_examples(dep.lake, venue, symbol, days[0][2])],
                                          _examples(dep.lake, venue, symbol, date), book, PARAMS, model=MODEL,
                                          qty=QTY, start_synced=True)
    print({k: report[k] for k in ("final_equity", "fills", "sharpe", "max_drawdown", "var95_hist")})
    assert report["fills"] == result.report()["fills"] > 0
    # the same report to the last bit: the stored model is the one the backtest trained itself
    assert json.dumps(report, sort_keys=True) == json.dumps(result.report(), sort_keys=True)
    assert meta["predictions"] == preds.num_rows > 200
