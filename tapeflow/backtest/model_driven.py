"""The model-driven strategy and its walk-forward backtest of one day.

:func:`walk_forward_predictions` trains a model (``kernels.ml_train``, the models of docs/models.md)
on the instrument's earlier days of ``training_examples`` and predicts the day's up/flat/down class
at every grid instant, with the decision offsets chosen on the validation split (the protocol of
:mod:`tapeflow.ml.walkforward`: the last ``val_fraction`` of the earlier days validates, training
rows whose label window reaches it are purged). The day itself is never trained on.

:class:`ModelFollower` holds ``qty`` in the predicted direction: every ``timer_ns`` it reads the
latest prediction stamped at or before now (a prediction at grid instant ``t`` uses features up to
``t`` only) and sends the market order that brings its position to ``class x qty``.
:func:`walk_forward_backtest` runs it through the backtester over the day's rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from kernels.ml_models import ModelSpec, Params
from kernels.ml_train import TrainConfig, fit, predict_proba
from tapeflow.backtest.engine import Backtest, BacktestConfig
from tapeflow.backtest.feed import build_feed
from tapeflow.backtest.results import BacktestResult
from tapeflow.backtest.strategy import Context, Strategy
from tapeflow.errors import ConfigError, TapeflowError
from tapeflow.ml.artifact import ModelArtifact, check_examples, predict
from tapeflow.ml.dataset import Scaler, segment
from tapeflow.ml.examples import SECOND_NS, ExampleParams
from tapeflow.ml.walkforward import WalkForwardConfig, decide, decision_offsets

PREDICTION_SCHEMA = pa.schema([("ts_ns", pa.int64()), ("pred", pa.int8()), ("p_down", pa.float64()),
                               ("p_flat", pa.float64()), ("p_up", pa.float64())])


@dataclass(frozen=True)
class ModelConfig:
    """What the walk-forward backtest trains: a flat model (``logreg`` or ``mlp``) at one horizon."""

    kind: str = "logreg"
    horizon_s: int = 10
    hidden: int = 32
    val_fraction: float = 0.2
    seed: int = 0
    train: TrainConfig = field(default_factory=TrainConfig)


def walk_forward_predictions(history: Sequence[pa.Table], today: pa.Table, params: ExampleParams,
                             cfg: ModelConfig | None = None) -> pa.Table:
    """Out-of-sample class predictions for every grid instant of ``today``.

    Args:
        history: ``training_examples`` tables of the earlier days, oldest first.
        today: the day's ``training_examples`` (its labels are not read).
        params: the dataset parameters the tables were built with.
        cfg: the model.

    Returns:
        ``ts_ns, pred (-1 down, 0 flat, 1 up), p_down, p_flat, p_up``; rows without complete
        features (warm-up, one-sided book) predict flat with NaN probabilities.

    Raises:
        TapeflowError: no earlier day, or too few usable training rows.
    """
    cfg = cfg or ModelConfig()
    if cfg.kind not in ("logreg", "mlp"):
        raise ConfigError(f"the walk-forward backtest trains logreg or mlp, not {cfg.kind!r}")
    if not history:
        raise TapeflowError("a walk-forward backtest needs at least one earlier day of examples")
    h_ns = cfg.horizon_s * SECOND_NS
    segs = [segment(t, cfg.horizon_s, params, f"day-{i}") for i, t in enumerate(history)]
    ts = np.concatenate([s.ts_ns[s.usable] for s in segs])
    if len(ts) < 20:
        raise TapeflowError(f"only {len(ts)} usable training rows in {len(history)} earlier day(s)")
    val_start = int(np.sort(ts)[int((1 - cfg.val_fraction) * len(ts))])
    tr = [np.flatnonzero(s.usable & (s.ts_ns + h_ns < val_start)) for s in segs]
    va = [np.flatnonzero(s.usable & (s.ts_ns >= val_start)) for s in segs]
    x_tr = np.concatenate([s.x[r] for s, r in zip(segs, tr, strict=True)])
    scaler = Scaler.fit(x_tr)
    y_tr = np.concatenate([s.y[r] for s, r in zip(segs, tr, strict=True)])
    x_va = np.concatenate([scaler.transform(s.x[r]) for s, r in zip(segs, va, strict=True)])
    y_va = np.concatenate([s.y[r] for s, r in zip(segs, va, strict=True)])
    if not len(y_tr) or not len(y_va):
        raise TapeflowError(f"{len(y_tr)} training and {len(y_va)} validation rows: too few to train")
    spec = ModelSpec(cfg.kind, x_tr.shape[1], hidden=cfg.hidden, window=1)
    res = fit(spec, scaler.transform(x_tr), y_tr, x_va, y_va, cfg.train._replace(seed=cfg.seed))
    offsets = decision_offsets(predict_proba(spec, res.params, x_va), y_va)
    return _calls(spec, res.params, scaler, offsets, today, params, cfg.horizon_s)


def _calls(spec: ModelSpec, weights: Params, scaler: Scaler, offsets: np.ndarray, today: pa.Table,
           params: ExampleParams, horizon_s: int) -> pa.Table:
    day = segment(today, horizon_s, params, "today")
    col = {n: today.column(n).to_numpy(zero_copy_only=False) for n in ("warmed_up", "two_sided")}
    ready = col["warmed_up"].astype(bool) & col["two_sided"].astype(bool)
    proba = np.full((len(day.ts_ns), 3), np.nan)
    pred = np.zeros(len(day.ts_ns), np.int8)
    if ready.any():
        proba[ready] = predict_proba(spec, weights, scaler.transform(day.x[ready]))
        pred[ready] = decide(proba[ready], offsets) - 1
    return pa.table([day.ts_ns, pred, proba[:, 0], proba[:, 1], proba[:, 2]], schema=PREDICTION_SCHEMA)


def trains_like(cfg: ModelConfig, protocol: WalkForwardConfig) -> bool:
    """Whether :func:`walk_forward_predictions` with ``cfg`` trains what ``protocol`` trains for
    ``cfg.kind`` (``tapeflow.ml.candidates``) from the same days: the same kind, horizon, width,
    validation share, seed and training settings."""
    return (cfg.kind in protocol.models and cfg.horizon_s == protocol.horizon_s
            and cfg.hidden == protocol.hidden and cfg.val_fraction == protocol.val_fraction
            and cfg.seed == protocol.seed and cfg.train == protocol.train and protocol.flat_share is None)


def artifact_predictions(art: ModelArtifact, today: pa.Table) -> pa.Table:
    """:func:`walk_forward_predictions`' table from a model trained already, of any kind (a
    ``deeplob`` reads ``today``'s raw book inputs: examples built with the model's own ``params``).
    The calls go through :func:`tapeflow.ml.artifact.predict`, the path of batch and live scoring;
    they are :func:`walk_forward_predictions`' own when ``art`` is what that function would train
    (:func:`trains_like`, from the same earlier days).

    Raises:
        ArtifactError: ``today`` was built with another dataset definition than the model's.
    """
    check_examples(art, today)
    day = segment(today, art.horizon_s, art.params, "today")
    col = {n: today.column(n).to_numpy(zero_copy_only=False) for n in ("warmed_up", "two_sided")}
    ready = col["warmed_up"].astype(bool) & col["two_sided"].astype(bool)
    proba = np.full((len(day.ts_ns), 3), np.nan)
    pred = np.zeros(len(day.ts_ns), np.int8)
    rows = np.flatnonzero(ready)
    if len(rows):
        cls, proba[rows] = predict(art, day, rows)
        pred[rows] = cls - 1
    return pa.table([day.ts_ns, pred, proba[:, 0], proba[:, 1], proba[:, 2]], schema=PREDICTION_SCHEMA)


class ModelFollower(Strategy):
    """Holds ``pred x qty`` of the latest prediction (see the module docstring).

    Args:
        predictions: ``ts_ns`` and ``pred`` columns (:func:`walk_forward_predictions`), or None:
            follow the feed's ``prediction`` rows as they arrive (:meth:`on_prediction`; the live
            scorer's, ``TAPEFLOW_LIVE_PREDICT=1``), as a paper session does: no scoring here.
        qty: the position held on an up or down call.
        timer_ns: how often it reads the predictions (the grid step).
        stale_ns: a prediction older than this is treated as flat.
    """

    def __init__(self, predictions: pa.Table | None = None, *, qty: float = 1.0, timer_ns: int = SECOND_NS,
                 stale_ns: int = 5 * SECOND_NS) -> None:
        if timer_ns <= 0 or not qty > 0:
            raise ConfigError(f"timer_ns and qty must be > 0, got {timer_ns} and {qty}")
        self.rows = predictions is None
        self.ts = np.zeros(0, np.int64) if predictions is None else predictions.column("ts_ns").to_numpy()
        self.pred = (np.zeros(0, np.int64) if predictions is None
                     else predictions.column("pred").to_numpy().astype(np.int64))
        if np.any(np.diff(self.ts) < 0):
            raise ConfigError("predictions must be in time order")
        self.qty, self.timer_ns, self.stale_ns = qty, timer_ns, stale_ns
        self.latest: tuple[int, int] | None = None  # (ts_ns, class) of the last prediction row received

    def on_prediction(self, ctx: Context, prediction: dict) -> None:
        """A ``prediction`` row arrived: it is the latest (a row without complete inputs calls flat)."""
        if not self.rows:
            return
        usable = bool(prediction["warmed_up"]) and bool(prediction["two_sided"])
        ts = int(prediction["ts_event_ns"])
        if self.latest is None or ts >= self.latest[0]:
            self.latest = (ts, int(prediction["predicted"]) if usable else 0)

    def target(self, now_ns: int) -> float:
        """The position the latest prediction at or before ``now_ns`` asks for."""
        if self.rows:
            if self.latest is None or now_ns - self.latest[0] > self.stale_ns:
                return 0.0
            return float(self.latest[1]) * self.qty
        i = int(np.searchsorted(self.ts, now_ns, side="right")) - 1
        if i < 0 or now_ns - int(self.ts[i]) > self.stale_ns:
            return 0.0
        return float(self.pred[i]) * self.qty

    def on_timer(self, ctx: Context) -> None:
        if ctx.orders or not ctx.book_valid:
            return
        delta = self.target(ctx.now_ns) - ctx.position
        if abs(delta) > 1e-12:
            ctx.market(1 if delta > 0 else -1, abs(delta))


def walk_forward_backtest(history: Sequence[pa.Table], today: pa.Table, tables: dict[str, pa.Table],
                          params: ExampleParams, *, model: ModelConfig | None = None,
                          config: BacktestConfig | None = None, qty: float = 1.0,
                          start_synced: bool = False, trained: ModelArtifact | None = None
                          ) -> tuple[BacktestResult, pa.Table]:
    """Train on the earlier days, predict the day, and backtest :class:`ModelFollower` over its rows.

    Args:
        history, today, params, model: as in :func:`walk_forward_predictions`.
        trained: a model already trained (on ``history``, :func:`trains_like` ``model``, or the
            registry's champion, of any kind): its calls are followed (:func:`artifact_predictions`;
            ``today`` then built with its ``params``) and nothing is trained here.
        tables: the day's book rows (``book_delta`` or ``order_event``) and ``trade`` rows.
        config: the backtest's models (default: zero latency, risk-averse queue, no fees); its
            position limit must allow ``qty``.
        qty: the position held on a call.
        start_synced: an L3 day that starts from an empty book (the simulator's).

    Returns:
        The backtest's result and the predictions it followed.
    """
    if trained is not None:
        preds = artifact_predictions(trained, today)
    else:
        preds = walk_forward_predictions(history, today, params, model)
    feed = build_feed(tables, (config or BacktestConfig()).latency, start_synced=start_synced)
    result = Backtest(feed, ModelFollower(preds, qty=qty), config).run()
    return result, preds
