"""Group ``ml``: the walk-forward backtest of the model-driven strategy, one per instrument-day.

Wiring only: :func:`tapeflow.ml.selection.followed_model` chooses the model,
:func:`tapeflow.backtest.model_driven.walk_forward_backtest` follows its calls on the day and
backtests the :class:`tapeflow.backtest.model_driven.ModelFollower` over the day's book rows and
trades (docs/backtest.md). The model is the registry's **champion** of the instrument
(``tapeflow.ml.registry``, horizon ``MODEL.horizon_s``), whatever its kind (a ``deeplob`` reads the
day's raw book inputs, joined from the lake's ``book_snapshot`` rows as the ``model`` asset joins
them):

* when the champion saw nothing of the day or later (its training days and held-out day all before
  it: the daily run, after the night's retraining), the champion itself is followed;
* otherwise (a backfill of a day the champion was trained or judged on or before; the walk-forward
  must not look ahead) a model of the champion's kind trained on the instrument's previous days of
  ``training_example`` rows: the ``model`` asset's stored candidates (``tapeflow.ml.candidates``)
  where they hold that kind, else trained here;
* no champion yet: the logistic regression (``MODEL``), as before.

The metadata's ``model`` says which. The risk report, fills, equity and the plots (equity, drawdown,
PnL distribution) are written under ``<lake>/../backtests/<venue>/<symbol>/<date>/``; the report and
the plots (embedded PNGs) are also the materialization's metadata.
"""

import base64
from pathlib import Path

from dagster import AssetExecutionContext, BackfillPolicy, MaterializeResult, MetadataValue, asset

from assets import common, ml
from assets.ingest import RETRY
from assets.partitions import DAY_BY_INSTRUMENT, target_key, targets
from assets.resources import TapeflowResource
from tapeflow.backtest.model_driven import ModelConfig, walk_forward_backtest
from tapeflow.batch.targets import Target
from tapeflow.book.partition import arrival_order
from tapeflow.errors import TapeflowError
from tapeflow.ml.registry import champion_before
from tapeflow.ml.selection import DayInputs, followed_model
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
    metadata={"strategy": "ModelFollower", "model": "the champion (else logreg)",
              "horizon_s": MODEL.horizon_s, "train_days": ml.MODEL_CONFIG.train_folds, "qty": QTY},
)
def model_backtest(context: AssetExecutionContext, tapeflow: TapeflowResource) -> MaterializeResult:
    """The model-driven strategy backtested on the day, following the registry's champion (or its kind
    trained on the days before, or logreg with no champion yet): risk report (PnL, Sharpe, Sortino,
    drawdown, VaR/CVaR) and equity, drawdown and PnL plots."""
    wanted = targets(context.partition_keys)
    lake = tapeflow.lake
    for t in wanted:
        days = ml.train_days(lake, t)
        # capture order, copied only where the lake's is not (a sort of the whole day held it twice)
        book = {r.name: arrival_order(r, [common.read(r, lake, [t])[t]])
                for r in (ORDER_EVENT, BOOK_DELTA, TRADE)}
        book = {k: v for k, v in book.items() if v.num_rows}
        out = lake.parent / "backtests" / t.venue / t.symbol / t.date
        meta: dict = {"train_days": days}
        try:
            champ = champion_before(lake, t.venue, t.symbol, MODEL.horizon_s, t.date)
            chosen = followed_model(champ, _day(lake, t, days), default=MODEL, protocol=ml.MODEL_CONFIG,
                                    base=ml.PARAMS, flat_share=tapeflow.flat_share)
            model, trained, params = chosen.model, chosen.trained, chosen.params
            history = [] if trained else [ml._examples(lake, t.venue, t.symbol, d) for d in days]
            meta.update(model=chosen.label, candidates=chosen.candidates)
            today = ml._examples(lake, t.venue, t.symbol, t.date, params)
            result, preds = walk_forward_backtest(history, today, book, ml.PARAMS, model=model, qty=QTY,
                                                  start_synced=t.venue == "sim", trained=trained)
        except TapeflowError as exc:
            meta["status"] = f"not run: {exc}"
        else:
            written = result.write(out)
            meta.update(status="ok", predictions=preds.num_rows,
                        **_metadata(result.report(), [p for p in written if p.suffix == ".png"], out))
        context.add_asset_metadata(meta, partition_key=target_key(t))
    return MaterializeResult(metadata=common.run_metadata(wanted))


def _day(lake: Path, t: Target, days: list[str]) -> DayInputs:
    return DayInputs(t.date, days, lambda: ml.stored_candidates(lake, t, days),
                     lambda d, p: ml._examples(lake, t.venue, t.symbol, d, p),
                     lambda d: ml.partition_name(t.venue, t.symbol, d))
