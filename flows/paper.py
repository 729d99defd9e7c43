"""The paper-trading flow: source (routed per instrument) -> a paper session per instrument -> sinks.

Wiring only: :class:`tapeflow.backtest.session.PaperSession` runs the strategy through the
backtester's engine (docs/backtest.md, "Paper trading"); its ``paper_order``, ``paper_fill``,
``paper_position`` and ``status`` rows go to the market flow's sinks (tables: lake/warehouse).
"""

from __future__ import annotations

import pickle
from collections.abc import Callable

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream, operator
from bytewax.inputs import Source
from bytewax.operators import KeyedStream

from flows import operators as ops
from flows.market import MarketSinks, _outputs, source_from
from tapeflow.backtest.paper_cli import PaperSettings
from tapeflow.backtest.session import Item, PaperSession
from tapeflow.errors import ConfigError
from tapeflow.settings import LiveSettings, Settings


@operator
def paper(step_id: str, up: KeyedStream, new_session: Callable[[], PaperSession]) -> Stream[Item]:
    """One :class:`PaperSession` per instrument over :func:`flows.operators.routed` items; dead
    letters and STATUS rows of the source pass through."""

    def build(resume: bytes | None) -> ops._Logic:
        state = None if resume is None else pickle.loads(resume)
        return ops._Logic(state, new_session, PaperSession.apply, PaperSession.close)

    return op.flat_map("items", op.stateful_batch("sessions", up, build), ops._unkey)


def build_paper_flow(source: Source, sinks: MarketSinks, new_session: Callable[[], PaperSession], *,
                     flow_id: str = "paper") -> Dataflow:
    """The paper flow over ``source`` (a capture replay or the live connector).

    Args:
        source: micro-batches, e.g. :class:`flows.sources.CaptureSource`.
        sinks: where the rows go (``tables`` gets the paper rows, ``status`` the halts).
        new_session: builds one instrument's session (:class:`PaperSession`).
        flow_id: the Dataflow id.
    """
    flow = Dataflow(flow_id)
    routed = op.input("source", flow, ops.routed(source))
    _outputs(paper("paper", routed, new_session), sinks)
    return flow


def flow_from_env() -> Dataflow:
    """The paper flow configured by ``TAPEFLOW_PAPER`` (:class:`PaperSettings`), the source's
    ``TAPEFLOW_LIVE_*`` variables and the outputs' settings, read once here (``tapeflow paper``
    starts it)."""
    from flows.sinks import TableSink

    settings, live, paper_settings = Settings.from_env(), LiveSettings.from_env(), PaperSettings.from_env()
    source = source_from(live)
    if source is None:
        raise ConfigError("the paper flow needs a capture or a live venue with symbols")
    tables = TableSink(dsn=settings.clickhouse_dsn if "clickhouse" in live.outputs else None,
                       lake_root=settings.lake_dir if "lake" in live.outputs else None)
    scorer = None
    if live.predict or paper_settings.strategy == "model_follower":
        # the market flow's live scorer in the session: book -> 1 s snapshots -> the champion's
        # prediction rows, which join the batch the strategy sees (docs/backtest.md)
        from flows.market import prediction_stage
        from tapeflow.live.pipeline import pipeline_factory
        from tapeflow.ml.registry import default_root

        predictor = prediction_stage(default_root(settings.lake_dir))
        scorer = pipeline_factory("l2", live.levels, 1_000_000_000, new_bars=None, new_metrics=None,
                                  raw=False, bbo_as_quote=False, new_predictor=predictor)
    return build_paper_flow(source, MarketSinks(tables=tables), paper_settings.new_session(scorer))
