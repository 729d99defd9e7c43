"""Files -> instrument-day examples -> walk-forward folds: what ``tapeflow ml evaluate`` and the bench run.

Each input file is rebuilt on its own (one file is one instrument-day for the simulator, Databento
and the captures), so no trailing window or OFI difference ever spans the gap between two files.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.book.rebuild import snapshots_for_format
from tapeflow.derived.metrics import by_instrument
from tapeflow.ml.dataset import Segment, model_features, segment, split_by
from tapeflow.ml.examples import ExampleParams, training_examples
from tapeflow.ml.walkforward import WalkForwardConfig, WalkForwardResult, walk_forward
from tapeflow.schemas.records import TRADE
from tapeflow.wire.capture import merge

MIN_USABLE_ROWS = 120  # a fold with fewer labelled rows than two minutes of the 1 s grid is noise


@dataclass
class Loaded:
    """Per instrument: its segments in time order, and the inputs left out with the reason."""

    segments: dict[str, list[Segment]]
    skipped: list[str]


def examples_for_file(format_name: str, path: Path | Sequence[Path], params: ExampleParams
                      ) -> list[tuple[str, pa.Table]]:
    """``(instrument, training_examples table)`` for every instrument of one file (or of one
    instrument-day's files: a LOBSTER message/orderbook pair, :func:`day_files`); with
    ``params.signal_window_s`` the detectors run over the file too (:func:`file_signals`)."""
    files = [path] if isinstance(path, Path) else list(path)
    signals = file_signals(format_name, files) if params.signal_window_s else None
    chunks: list = []
    snaps, _ = snapshots_for_format(format_name, files, levels=params.levels, interval_ns=params.step_ns,
                                    on_chunk=chunks.append)
    trades = merge(chunks).get(TRADE.name, TRADE.empty_table())
    out = []
    for venue, symbol, rows in by_instrument(snaps):
        mine = _of(trades, venue, symbol)
        sig = None if signals is None else _of(signals, venue, symbol)
        source = ",".join(f"{format_name}:{f}" for f in files)
        table = training_examples(rows, mine, params, source=source, signals=sig)
        out.append((f"{venue}/{symbol}", table))
    return out


def day_files(format_name: str, paths: Sequence[Path]) -> list[list[Path]]:
    """The input files grouped by instrument-day: one file each, but a LOBSTER message file with its
    orderbook file (the vendor's book seeds and re-anchors the L3 rebuild; without it orders resting
    before the file's first message are never removed and the book crosses)."""
    if format_name != "lobster":
        return [[p] for p in paths]
    from tapeflow.venues.lobster.parse import with_orderbooks

    return [[f for f in (pair.message, pair.orderbook) if f is not None] for pair in with_orderbooks(paths)]


def file_signals(format_name: str, path: Path | Sequence[Path]) -> pa.Table:
    """``signal`` rows of every batch detector over one file, with the configured thresholds
    (``TAPEFLOW_SIGNALS_CONFIG``, else the shipped file): what the Dagster ``signals`` asset writes."""
    from tapeflow.settings import Settings
    from tapeflow.signals.config import config_path
    from tapeflow.signals.config import load as load_thresholds
    from tapeflow.signals.detect import detect_format

    files = [path] if isinstance(path, Path) else list(path)
    return detect_format(format_name, files, load_thresholds(config_path(Settings.from_env())))


def _of(table: pa.Table, venue: str, symbol: str) -> pa.Table:
    if not table.num_rows:
        return table
    return table.filter(pc.and_(pc.equal(table.column("venue"), venue),
                                pc.equal(table.column("symbol"), symbol)))


def load_examples(format_name: str, paths: Sequence[Path], params: ExampleParams
                  ) -> list[tuple[str, Path, pa.Table]]:
    """``(instrument, path, examples)`` for every instrument of every file (the expensive step: book
    rebuilds), to be cut into folds per horizon by :func:`folds`."""
    return [(inst, files[0], table) for files in day_files(format_name, paths)
            for inst, table in examples_for_file(format_name, files, params)]


def folds(examples: Sequence[tuple[str, Path, pa.Table]], params: ExampleParams, horizon_s: int,
          fold_ns: int | None = None, log: Callable[[str], object] = print) -> Loaded:
    """Segments per instrument, cut into ``fold_ns`` folds when given (else one per file).

    Folds with fewer than ``MIN_USABLE_ROWS`` usable rows are left out and named in ``skipped``.
    """
    segments: dict[str, list[Segment]] = {}
    skipped: list[str] = []
    for instrument, path, table in examples:
        ts = table.column("ts_event_ns").to_numpy()
        day = np.datetime_as_string(np.datetime64(int(ts[0]), "ns"), unit="D") if len(ts) else "empty"
        seg = segment(table, horizon_s, params, f"{instrument}/{day}")
        for piece in split_by(seg, fold_ns) if fold_ns else [seg]:
            usable = int(piece.usable.sum())
            if usable < MIN_USABLE_ROWS:
                skipped.append(f"{piece.name} ({path.name}): {usable} usable rows < {MIN_USABLE_ROWS}")
                continue
            segments.setdefault(instrument, []).append(piece)
    for segs in segments.values():
        segs.sort(key=lambda s: int(s.ts_ns[0]))
    for line in skipped:
        log(f"skipped {line}")
    return Loaded(segments, skipped)


def load(format_name: str, paths: Sequence[Path], params: ExampleParams, horizon_s: int,
         fold_ns: int | None = None, log: Callable[[str], object] = print) -> Loaded:
    """:func:`load_examples` then :func:`folds`."""
    return folds(load_examples(format_name, paths, params), params, horizon_s, fold_ns, log)


def evaluate(loaded: Loaded, params: ExampleParams, cfg: WalkForwardConfig) -> dict[str, WalkForwardResult]:
    """Walk-forward per instrument that has at least two folds."""
    names = model_features(params)
    return {inst: walk_forward(segs, names, cfg) for inst, segs in loaded.segments.items() if len(segs) >= 2}


def score_day(history: Sequence[pa.Table], today: pa.Table, params: ExampleParams,
              cfg: WalkForwardConfig, name: str = "", *,
              trained: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None) -> WalkForwardResult | None:
    """Train on the days before (``training_examples`` tables, oldest first), test on ``today``.

    ``trained``: the models' ``(classes, probabilities)`` on today's usable rows, when they were
    trained on these days already (``tapeflow.ml.candidates.Candidates.predictions``): only the
    baselines are fitted then.

    Returns None when no earlier day or ``today`` has ``MIN_USABLE_ROWS`` usable rows.
    """
    segs = [segment(t, cfg.horizon_s, params, f"{name}/-{len(history) - i}") for i, t in enumerate(history)]
    segs = [s for s in segs if int(s.usable.sum()) >= MIN_USABLE_ROWS][-cfg.train_folds:]
    test = segment(today, cfg.horizon_s, params, f"{name}/test")
    if not segs or int(test.usable.sum()) < MIN_USABLE_ROWS:
        return None
    return walk_forward([*segs, test], model_features(params), cfg, first_test=len(segs), trained=trained)
