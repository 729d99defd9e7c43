"""Group ``ml``: the walk-forward backtest of the model-driven strategy, one per instrument-day.

Wiring only: :func:`tapeflow.backtest.model_driven.walk_forward_backtest` follows the model trained
on the instrument's previous days of ``training_example`` rows (the ``model`` asset's stored
candidates, ``tapeflow.ml.candidates``; trained here only when they are missing, stale or trained
otherwise), predicts the day, and backtests the
:class:`tapeflow.backtest.model_driven.ModelFollower` over the day's book rows and trades
(docs/backtest.md). The risk report, fills, equity and the plots (equity, drawdown, PnL
distribution) are written under ``<lake>/../backtests/<venue>/<symbol>/<date>/``; the report and
the plots (embedded PNGs) are also the materialization's metadata.
"""

import base64
from pathlib import Path

from dagster import AssetExecutionContext, BackfillPolicy, MaterializeResult, MetadataValue, asset

from assets import common, ml
from assets.ingest import RETRY
from assets.partitions import DAY_BY_INSTRUMENT, target_key, targets
from assets.resources import TapeflowResource
from tapeflow.backtest.model_driven import ModelConfig, trains_like, walk_forward_backtest
from tapeflow.errors import TapeflowError
from tapeflow.schemas.records import BOOK_DELTA, ORDER_EVENT, TRADE

MODEL = ModelConfig(kind="logreg", horizon_s=ml.MODEL_CONFIG.horizon_s)
QTY = 1.0


def _metadata(report: dict, plots: list[Path], out: Path) -> dict:
    meta: dict = {"report": MetadataValue.json(report), "out_dir": MetadataValue.path(str(out))}
    for key in ("final_equity", "sharpe", "max_drawdown", "var95_hist", "cvar95_hist", "fills"):
        meta[key] = report[key]
    for p in plots:
        png = base64.b64encode(p.read_bytes()).decode()
        meta[f"plot_{p.stem}"] = MetadataValue.md(f"![{p.stem}](data:image/png;base64,{png})")
    return meta


@asset(
    group_name="ml",
    deps=["training_examples", "model", "order_events", "book_deltas", "trades"],
    partitions_def=DAY_BY_INSTRUMENT,
    backfill_policy=BackfillPolicy.single_run(),
    retry_policy=RETRY,
    metadata={"strategy": "ModelFollower", "model": MODEL.kind, "horizon_s": MODEL.horizon_s,
              "train_days": ml.MODEL_CONFIG.train_folds, "qty": QTY},
)
def model_backtest(context: AssetExecutionContext, tapeflow: TapeflowResource) -> MaterializeResult:
    """The model-driven strategy backtested on the day with a model trained on the days before:
    risk report (PnL, Sharpe, Sortino, drawdown, VaR/CVaR) and equity, drawdown and PnL plots."""
    wanted = targets(context.partition_keys)
    lake = tapeflow.lake
    for t in wanted:
        days = ml.train_days(lake, t)
        # the model the ``model`` asset trained for this day when it is the one this backtest trains
        # (same settings, every earlier day used); else (e.g. an earlier day too short) trained here
        stored = ml.stored_candidates(lake, t, days) if trains_like(MODEL, ml.MODEL_CONFIG) else None
        trained = stored.artifacts[MODEL.kind] if stored and stored.train_days == stored.history else None
        book = {r.name: common.read(r, lake, [t])[t] for r in (ORDER_EVENT, BOOK_DELTA, TRADE)}
        book = {k: v.sort_by("ts_recv_ns") for k, v in book.items() if v.num_rows}
        out = lake.parent / "backtests" / t.venue / t.symbol / t.date
        meta: dict = {"train_days": days, "candidates": "read (model asset)" if trained else "trained here"}
        try:
            history = [] if trained else [ml._examples(lake, t.venue, t.symbol, d) for d in days]
            today = ml._examples(lake, t.venue, t.symbol, t.date)
            result, preds = walk_forward_backtest(history, today, book, ml.PARAMS, model=MODEL, qty=QTY,
                                                  start_synced=t.venue == "sim", trained=trained)
        except TapeflowError as exc:
            meta["status"] = f"not run: {exc}"
        else:
            written = result.write(out)
            meta.update(status="ok", predictions=preds.num_rows,
                        **_metadata(result.report(), [p for p in written if p.suffix == ".png"], out))
        context.add_asset_metadata(meta, partition_key=target_key(t))
    return MaterializeResult(metadata=common.run_metadata(wanted))
