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
from flows.market import MarketSinks, _outputs
from tapeflow.backtest.session import Item, PaperSession


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
