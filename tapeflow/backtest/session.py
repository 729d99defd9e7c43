"""A paper session as the live flow holds it: one :class:`PaperTrader` per instrument, items in and out.

The flow's stateful step (``flows/paper.py``) builds one :class:`PaperSession` per instrument on its
first batch, calls :meth:`PaperSession.apply` per micro-batch and :meth:`PaperSession.close` at the
end of the stream. The kill switch is a file: when ``kill_file`` exists, every session halts at its
next batch (cancel, flatten, a ``killed`` status row). Bad input (an L3 batch, a second instrument
under one key) halts the session with a status row saying why, never a traceback in the flow.

With a scorer (``new_scorer``: the market flow's per-instrument pipeline with the live predictor,
``TAPEFLOW_LIVE_PREDICT=1``), each batch first goes through it, and the ``prediction`` rows it
emits join the batch the strategy sees (``Strategy.on_prediction``; ``ModelFollower`` trades on
them). A prediction reaches the session when the batch that completed its grid instant does, so
its ``ts_recv_ns`` is restamped to when the session got it (never before the rows already fed) and
the restamped rows are emitted: a backtest of the same book rows plus these rows sends the same
orders (tests/backtest/test_paper_stream.py).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from tapeflow.backtest.engine import BacktestConfig
from tapeflow.backtest.paper import PaperTrader, RiskLimits
from tapeflow.backtest.strategy import Strategy
from tapeflow.errors import TapeflowError
from tapeflow.schemas.ml import PREDICTION
from tapeflow.schemas.records import BOOK_DELTA, ORDER_EVENT, REJECTED, SIGNAL, STATUS, TRADE

Item = tuple[str, pa.Table]
WANTED = (BOOK_DELTA.name, ORDER_EVENT.name, TRADE.name, SIGNAL.name, PREDICTION.name)


class PaperSession:
    """One instrument's paper trader in the flow.

    Args:
        name: the strategy's name in the rows.
        new_strategy: builds the strategy (one per instrument).
        tick_nanos, lot_nanos: the instrument's tick and lot.
        config: fill, latency and fee models (``ConstantLatency``).
        limits: the risk limits.
        kill_file: the kill switch (None: only :meth:`PaperTrader.kill`).
        new_scorer: builds the stage whose ``prediction`` rows join each batch (anything with
            ``apply(batch) -> items`` and ``close() -> items``, e.g. ``InstrumentPipeline`` with a
            predictor), or None.
        results_root: the session's fills, equity samples and final ``report.json`` go to
            ``<results_root>/<venue>/<symbol>/<name>/`` (None: a temporary directory, removed at
            the end).
    """

    def __init__(self, name: str, new_strategy: Callable[[], Strategy], *, tick_nanos: int, lot_nanos: int,
                 config: BacktestConfig | None = None, limits: RiskLimits | None = None,
                 kill_file: Path | None = None, new_scorer: Callable[[], Any] | None = None,
                 results_root: Path | None = None) -> None:
        self.trader = PaperTrader(name, new_strategy(), tick_nanos=tick_nanos, lot_nanos=lot_nanos,
                                  config=config, limits=limits)
        self.results_root = results_root
        self.kill_file = kill_file
        self.scorer = new_scorer() if new_scorer is not None else None
        self.failed = False

    def _predictions(self, items: list[Item]) -> tuple[pa.Table | None, list[Item]]:
        # the scorer's prediction rows, restamped to when this session got them; its dead letters
        preds = [t for n, t in items if n == PREDICTION.name and t.num_rows]
        rejected = [(n, t) for n, t in items if n == REJECTED.name and t.num_rows]
        if not preds:
            return None, rejected
        t = pa.concat_tables(preds)
        live = getattr(self.trader.broker, "live", None)
        floor = int(live.last_recv) if live is not None else np.iinfo(np.int64).min
        recv = np.maximum(t.column("ts_recv_ns").to_numpy(), floor)
        t = t.set_column(t.schema.get_field_index("ts_recv_ns"), "ts_recv_ns", pa.array(recv, pa.int64()))
        return t, [*rejected, (PREDICTION.name, t)]

    def apply(self, batch: Mapping[str, pa.Table]) -> list[Item]:
        """One micro-batch of the instrument (its tables by record name) -> paper and status rows."""
        if self.failed:
            return []
        if self.kill_file is not None and self.kill_file.exists() and not self.trader.halted:
            self.trader.kill(f"kill file {self.kill_file} exists")
        tables = {k: batch[k] for k in WANTED if k in batch and batch[k].num_rows}
        if self.results_root is not None and self.trader.results_dir is None and tables:
            self._results_dir(next(iter(tables.values())))
        extra: list[Item] = []
        try:
            if self.scorer is not None:
                preds, extra = self._predictions(self.scorer.apply(batch))
                if preds is not None:
                    tables[PREDICTION.name] = preds
            return extra + list(self.trader.on_batch(tables).items())
        except TapeflowError as exc:
            return extra + self._fail(tables, exc)

    def _results_dir(self, t: pa.Table) -> None:
        # the instrument is known at the first batch, before anything is written out
        assert self.results_root is not None
        venue, symbol = (str(t.column(c)[0].as_py()).replace("/", "_") for c in ("venue", "symbol"))
        d = self.results_root / venue / symbol / self.trader.name
        self.trader.results_dir = d
        spool = getattr(self.trader.broker, "spool", None)
        if spool is not None and spool.directory is None:
            spool.directory, spool.temporary = d, False

    def close(self) -> list[Item]:
        """The end of the stream: the last rows."""
        if self.failed:
            return []
        extra: list[Item] = []
        try:
            tables: dict[str, pa.Table] = {}
            if self.scorer is not None:
                preds, extra = self._predictions(self.scorer.close())
                if preds is not None:
                    tables[PREDICTION.name] = preds
            rows, _ = self.trader.close(tables)
        except TapeflowError as exc:
            return extra + self._fail({}, exc)
        return extra + list(rows.items())

    def _fail(self, tables: dict[str, pa.Table], exc: TapeflowError) -> list[Item]:
        self.failed = True
        venue, symbol = self.trader.instrument
        for t in tables.values():
            venue, symbol = t.column("venue")[0].as_py(), t.column("symbol")[0].as_py()
        ts = max((int(t.column("ts_recv_ns")[-1].as_py()) for t in tables.values()), default=-1)
        detail = f"paper {self.trader.name}: stopped on bad input: {exc}"
        row = STATUS.table({"ts_event_ns": [ts], "ts_recv_ns": [ts], "state": ["halted"], "sequence": [-1],
                            "until_ns": [-1], "detail": [detail]},
                           constants={"venue": venue, "symbol": symbol})
        return [(STATUS.name, row)]
