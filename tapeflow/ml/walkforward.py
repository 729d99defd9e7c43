"""Walk-forward evaluation: train on the previous N folds, validate on their tail, test on the next fold.

Folds are days (or hours when the data hold one day only) in time order. For test fold ``i`` the
training pool is folds ``i - N .. i - 1``; its chronologically last ``val_fraction`` is the validation
split (early stopping), the rest trains. Rows whose label window ``(t, t + h]`` reaches into the next
split are purged (train before validation, validation before test), so no label leaks across a
boundary. Predictions of all test folds are pooled and scored once (``tapeflow.ml.metrics.score``),
beside the per-fold macro-F1.

A model's class is the argmax of its log-probabilities plus two offsets (down, up; flat is 0) chosen
on the validation split to maximize macro-F1 ("threshold moving"): class weights make training
balanced, the offsets undo what the weights overdo when a class is as rare as up/down moves are on a
1-tick instrument. Log loss is scored on the probabilities themselves.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from kernels.ml_models import TEMPORAL, ModelSpec
from kernels.ml_train import TrainConfig, fit, predict_proba
from tapeflow.errors import TapeflowError
from tapeflow.ml import baselines
from tapeflow.ml.dataset import Scaler, Segment, book_block, fit_alpha, windows
from tapeflow.ml.examples import SECOND_NS
from tapeflow.ml.kinds import KINDS as KINDS  # the names live there (Settings reads them)
from tapeflow.ml.kinds import MODELS
from tapeflow.ml.metrics import HOUR_NS, Scores, confusion, macro_f1, score

OFFSET_GRID = np.linspace(-4.0, 4.0, 33)
BASELINES = ("majority", "last_move", "ofi_linear")


@dataclass(frozen=True)
class WalkForwardConfig:
    """The evaluation protocol; every field is printed with the table."""

    horizon_s: int = 10
    train_folds: int = 3
    val_fraction: float = 0.2
    window: int = 20             # tcn input steps
    hidden: int = 32
    book_window: int = 32        # deeplob input steps (the last grid rows of raw book levels)
    book_layers: int = 5         # deeplob temporal layers (stride 2 each: book_window == 2**book_layers)
    models: tuple[str, ...] = MODELS
    seed: int = 0
    block_ns: int = HOUR_NS      # bootstrap block
    flat_share: float | None = None  # relabel each fold at the alpha that makes this share of its
    #                                  training rows flat (None: the examples' own alpha)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class FoldResult:
    """One test fold: its name, rows, and macro-F1 per model/baseline."""

    name: str
    n_train: int
    n_val: int
    n_test: int
    macro_f1: dict[str, float]
    alpha: float | None = None   # the fold's label threshold, chosen on its training rows (flat_share)


@dataclass
class WalkForwardResult:
    """Pooled out-of-sample scores per model and baseline, and the per-fold results."""

    config: WalkForwardConfig
    scores: dict[str, Scores]
    folds: list[FoldResult]


def decision_offsets(proba_val: np.ndarray, y_val: np.ndarray) -> np.ndarray:
    """float64[3]: log-probability offsets (down, 0, up) maximizing macro-F1 on the validation rows;
    zeros when the validation rows lack a class (nothing to balance against)."""
    if len(np.unique(y_val)) < 3:
        return np.zeros(3)
    logp = np.log(np.maximum(proba_val, 1e-12))
    best, best_f1 = np.zeros(3), macro_f1(confusion(y_val, logp.argmax(1)))
    for down in OFFSET_GRID:
        for up in OFFSET_GRID:
            off = np.array([down, 0.0, up])
            f1 = macro_f1(confusion(y_val, (logp + off).argmax(1)))
            if f1 > best_f1 + 1e-9:
                best, best_f1 = off, f1
    return best


def decide(proba: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The class of each row: argmax of log-probabilities plus ``offsets``."""
    return (np.log(np.maximum(proba, 1e-12)) + offsets).argmax(1)


def _rows(seg: Segment, before_ns: int | None, horizon_ns: int) -> np.ndarray:
    ok = seg.usable.copy()
    if before_ns is not None:
        ok &= seg.ts_ns + horizon_ns < before_ns
    return np.flatnonzero(ok)


def _gather(segs: Sequence[Segment], picks: Sequence[np.ndarray], scaler: Scaler, steps: int,
            temporal: bool) -> np.ndarray:
    parts = []
    for seg, rows in zip(segs, picks, strict=True):
        z = scaler.transform(seg.x)
        parts.append(windows(z, rows, steps) if temporal else z[rows])
    return np.concatenate(parts) if parts else np.zeros((0, segs[0].x.shape[1]), np.float32)


def model_spec(kind: str, n_features: int, cfg: WalkForwardConfig) -> ModelSpec:
    """The network of ``kind`` under the protocol's sizes (``n_features``: columns per step)."""
    if kind == "deeplob":
        return ModelSpec(kind, n_features, hidden=cfg.hidden, window=cfg.book_window, layers=cfg.book_layers)
    return ModelSpec(kind, n_features, hidden=cfg.hidden, window=cfg.window if kind == "tcn" else 1)


def book_scaler(segs: Sequence[Segment], rows: Sequence[np.ndarray]) -> Scaler:
    """The raw book inputs' standardization, fitted on the training ``rows`` only."""
    return Scaler.fit(np.concatenate([b[r] for b, r in zip(book_block(segs), rows, strict=True)]))


def model_inputs(spec: ModelSpec, segs: Sequence[Segment], picks: Sequence[np.ndarray], scaler: Scaler,
                 book: Scaler | None) -> np.ndarray:
    """What ``spec`` reads for rows ``picks`` of ``segs``: float32[n, F] for flat kinds, float32[n, T, F]
    for ``tcn`` (the standardized features of the last T rows) and ``deeplob`` (the standardized raw
    book levels of the last T rows, ``book`` the training rows' scaler)."""
    if spec.kind == "deeplob":
        if book is None:
            raise TapeflowError("the deeplob model needs the raw book inputs' scaler")
        parts = [windows(book.transform(b), rows, spec.window)
                 for b, rows in zip(book_block(segs), picks, strict=True)]
        return np.concatenate(parts) if parts else np.zeros((0, spec.window, spec.n_features), np.float32)
    temporal = spec.kind in TEMPORAL
    return _gather(segs, picks, scaler, spec.window if temporal else 1, temporal)


def _split_pool(pool: Sequence[Segment], val_fraction: float, horizon_ns: int,
                test_start_ns: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per segment: training rows and validation rows, with the purges at both boundaries."""
    usable_ts = np.concatenate([s.ts_ns[s.usable] for s in pool])
    if len(usable_ts) < 10:
        raise TapeflowError(f"only {len(usable_ts)} usable training rows before the test fold")
    val_start = int(np.sort(usable_ts)[int((1 - val_fraction) * len(usable_ts))])
    train, val = [], []
    for s in pool:
        rows = _rows(s, test_start_ns, horizon_ns)
        train.append(rows[s.ts_ns[rows] + horizon_ns < val_start])
        val.append(rows[s.ts_ns[rows] >= val_start])
    return train, val


def train_alpha(pool: Sequence[Segment], train_rows: Sequence[np.ndarray], flat_share: float) -> float:
    """The label threshold of one fold (or one retraining): :func:`tapeflow.ml.dataset.fit_alpha` over
    the smoothed returns of the training rows only (never the validation or test rows).

    Raises:
        TapeflowError: no finite training return, or ``flat_share`` outside ``(0, 1)``.
    """
    returns = [s.smoothed_return[r] for s, r in zip(pool, train_rows, strict=True)]
    return fit_alpha(np.concatenate(returns) if returns else np.zeros(0), flat_share)


def _fold(pool: Sequence[Segment], test: Segment, cfg: WalkForwardConfig, ofi_cols: list[int],
          trained: Mapping[str, baselines.Prediction] | None = None
          ) -> tuple[dict[str, baselines.Prediction], np.ndarray, np.ndarray, tuple[int, int], float | None]:
    h_ns = cfg.horizon_s * SECOND_NS
    train_rows, val_rows = _split_pool(pool, cfg.val_fraction, h_ns, int(test.ts_ns[0]))
    alpha = None
    if cfg.flat_share is not None:  # from the training rows only; the split does not depend on labels
        alpha = train_alpha(pool, train_rows, cfg.flat_share)
        pool, test = [s.relabel(alpha, cfg.horizon_s) for s in pool], test.relabel(alpha, cfg.horizon_s)
    test_rows = _rows(test, None, h_ns)
    y_tr = np.concatenate([s.y[r] for s, r in zip(pool, train_rows, strict=True)])
    y_va = np.concatenate([s.y[r] for s, r in zip(pool, val_rows, strict=True)])
    if len(y_tr) == 0 or len(y_va) == 0:
        raise TapeflowError(f"fold {test.name}: {len(y_tr)} training and {len(y_va)} validation rows")
    scaler = Scaler.fit(np.concatenate([s.x[r] for s, r in zip(pool, train_rows, strict=True)]))
    y_te = test.y[test_rows]
    book = None
    if trained is None and "deeplob" in cfg.models:
        book = book_scaler(pool, train_rows)
    out: dict[str, baselines.Prediction] = {}
    for kind in cfg.models:
        if trained is not None:  # trained once elsewhere on this pool (tapeflow.ml.candidates)
            if len(trained[kind][0]) != len(y_te):
                raise TapeflowError(f"fold {test.name}: {kind} predicts {len(trained[kind][0])} rows, "
                                    f"the fold tests {len(y_te)}")
            out[kind] = trained[kind]
            continue
        deep = kind == "deeplob" and pool[0].book is not None
        width = pool[0].book.shape[1] if deep else pool[0].x.shape[1]  # type: ignore[union-attr]
        spec = model_spec(kind, width, cfg)
        xs = [model_inputs(spec, pool, rows, scaler, book) for rows in (train_rows, val_rows)]
        x_te = model_inputs(spec, [test], [test_rows], scaler, book)
        res = fit(spec, xs[0], y_tr, xs[1], y_va, cfg.train._replace(seed=cfg.seed))
        offsets = decision_offsets(predict_proba(spec, res.params, xs[1]), y_va)
        proba = predict_proba(spec, res.params, x_te)
        out[kind] = decide(proba, offsets), proba
    out["majority"] = baselines.majority(y_tr, len(y_te))
    past_tr = np.concatenate([s.past_label[r] for s, r in zip(pool, train_rows, strict=True)])
    out["last_move"] = baselines.last_move(past_tr, y_tr, test.past_label[test_rows])
    ofi_tr = _gather(pool, train_rows, scaler, 1, False)[:, ofi_cols]
    ret_tr = np.concatenate([s.smoothed_return[r] for s, r in zip(pool, train_rows, strict=True)])
    out["ofi_linear"] = baselines.ofi_linear(ofi_tr, ret_tr, y_tr,
                                             _gather([test], [test_rows], scaler, 1, False)[:, ofi_cols])
    return out, y_te, test.ts_ns[test_rows], (len(y_tr), len(y_va)), alpha


def walk_forward(segments: Sequence[Segment], feature_names: Sequence[str],
                 cfg: WalkForwardConfig | None = None, *, first_test: int = 1,
                 trained: Mapping[str, baselines.Prediction] | None = None) -> WalkForwardResult:
    """Evaluate every model and baseline out of sample over ``segments`` (folds, in time order).

    Args:
        segments: one per fold (``tapeflow.ml.dataset.segment`` / ``split_by``), in time order.
        feature_names: the columns of ``Segment.x`` (the OFI baseline reads the ``ofi_*`` ones).
        cfg: the protocol.
        first_test: the first fold tested (the earlier ones only train); ``len(segments) - 1``
            scores the last fold alone, as the daily ``model`` asset does.
        trained: the models' ``(classes, probabilities)`` on the last fold's usable rows when they
            were trained on its pool already (``tapeflow.ml.candidates``); only with one test fold.

    Raises:
        TapeflowError: fewer than two folds, or a fold without usable rows.
    """
    cfg = cfg or WalkForwardConfig()
    if len(segments) < 2:
        raise TapeflowError(f"walk-forward needs at least 2 folds (one to train, one to test), "
                            f"got {len(segments)}")
    if trained is not None and max(1, first_test) != len(segments) - 1:
        raise TapeflowError("trained predictions are for one test fold: first_test must be the last fold")
    ofi_cols = [i for i, n in enumerate(feature_names) if n.startswith("ofi_")]
    names = [*cfg.models, *BASELINES]
    pooled: dict[str, list[baselines.Prediction]] = {n: [] for n in names}
    ys, tss, folds = [], [], []
    for i in range(max(1, first_test), len(segments)):
        test = segments[i]
        if not test.usable.any():
            continue
        pool = list(segments[max(0, i - cfg.train_folds): i])
        probas, y_te, ts_te, (n_tr, n_va), alpha = _fold(pool, test, cfg, ofi_cols, trained)
        for n in names:
            pooled[n].append(probas[n])
        ys.append(y_te)
        tss.append(ts_te)
        folds.append(FoldResult(test.name, n_tr, n_va, len(y_te),
                                {n: macro_f1(confusion(y_te, probas[n][0])) for n in names}, alpha))
    if not folds:
        raise TapeflowError("no test fold has usable rows")
    y_all, ts_all = np.concatenate(ys), np.concatenate(tss)
    scores = {n: score(y_all, np.concatenate([p for _, p in pooled[n]]), ts_all, block_ns=cfg.block_ns,
                       seed=cfg.seed, pred=np.concatenate([c for c, _ in pooled[n]])) for n in names}
    return WalkForwardResult(cfg, scores, folds)
