"""The options dataflow: Deribit tickers (captures or the websocket) -> per underlying, IVs and surfaces
on micro-batches.

Run it through ``tapeflow live --capture FILE... --format deribit-options`` or ``tapeflow live --venue
deribit --options --symbols BTC,...`` (``flows.market.flow_from_env`` builds it for that format) or
:func:`build_options_flow`. The graph, per micro-batch item:

* ``source``: :class:`OptionCaptureSource` decodes the captures with the batch's decoder
  (:class:`tapeflow.options.deribit.DeribitTickerDecoder`, unpriced) into micro-batches of at most
  ``batch_events`` tickers (``option_ticker_raw``) and their dead letters; :class:`OptionLiveSource`
  runs :class:`tapeflow.venues.deribit.tickers.DeribitTickerClient` (the same decoder, per websocket
  micro-batch) and adds its STATUS rows;
* ``underlyings``: each batch split per underlying, keyed ``venue/underlying``;
* ``options`` (keyed, one stateful step): :class:`tapeflow.options.live.OptionStage` prices the
  batch with the JAX kernels and emits ``option_ticker`` rows and the ``option_surface`` rows of
  the grid times that became final (the rest when the stream ends);
* sinks: ``rejected`` to the dead-letter sink, ``status`` to the status sink (each to the table sink
  when it has none; ``status`` also to the alerts sink), everything else to the table sink.

Wiring only: the logic is :mod:`tapeflow.options.live`; the output equals ``tapeflow options
--surface`` over the same files row for row (``tests/options/test_live_options.py``; over the
websocket through the replay server, ``tests/options/test_live_websocket.py``).
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import bytewax.operators as op
import pyarrow as pa
import pyarrow.compute as pc
from bytewax.dataflow import Dataflow
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.operators import StatefulBatchLogic

from flows.market import MarketSinks
from flows.sources import LiveSource
from tapeflow.errors import ConfigError
from tapeflow.live.shutdown import stop_requested
from tapeflow.options.chain import RAW_TABLE
from tapeflow.options.deribit import VENUE, DeribitTickerDecoder
from tapeflow.options.live import LIVE_FORMAT, Item, OptionStage
from tapeflow.schemas.records import REJECTED, STATUS
from tapeflow.settings import DEFAULT_BATCH_EVENTS

__all__ = ["FORMAT", "OptionCaptureSource", "OptionLiveSource", "build_options_flow"]

FORMAT = LIVE_FORMAT  # the --format of ``tapeflow live --capture`` that runs this flow
Batch = dict[str, pa.Table]


class _Partition(StatefulSourcePartition[Batch, int]):
    """The captures as one stream; the resume state is the tickers already emitted (re-decoded,
    then skipped: exact)."""

    def __init__(self, paths: list[Path], batch_events: int, emitted: int) -> None:
        decoder = DeribitTickerDecoder(chunk_rows=batch_events, priced=False)
        self._chunks = iter(decoder.run(paths))
        self._emitted, self._skip = emitted, emitted

    def next_batch(self) -> list[Batch]:
        if stop_requested():
            raise StopIteration
        chunk = next(self._chunks, None)
        if chunk is None:
            raise StopIteration
        tables = dict(chunk.tables)
        raw = tables.get(RAW_TABLE)
        if raw is not None and self._skip:
            skip = min(self._skip, raw.num_rows)
            self._skip -= skip
            tables[RAW_TABLE] = raw.slice(skip)
        self._emitted += tables[RAW_TABLE].num_rows if RAW_TABLE in tables else 0
        return [tables]

    def snapshot(self) -> int:
        return self._emitted


class OptionCaptureSource(FixedPartitionedSource[Batch, int]):
    """Deribit ticker captures (cryptofeed or ``<recv_ns> <json>`` lines) as micro-batches of decoded tickers.

    Args:
        paths: the captures, replayed in the order given as one stream.
        batch_events: at most this many tickers per micro-batch.

    Raises:
        ConfigError: no paths, a missing file or a non-positive batch size.
    """

    def __init__(self, paths: Sequence[Path | str], *, batch_events: int = DEFAULT_BATCH_EVENTS) -> None:
        if not paths:
            raise ConfigError("OptionCaptureSource needs at least one file")
        missing = [str(p) for p in paths if not Path(p).is_file()]
        if missing:
            raise ConfigError(f"capture files not found: {', '.join(missing)}")
        if batch_events < 1:
            raise ConfigError(f"batch_events must be > 0, got {batch_events}")
        self.paths = [Path(p) for p in paths]
        self.batch_events = batch_events

    def list_parts(self) -> list[str]:
        return ["options"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _Partition:
        return _Partition(self.paths, self.batch_events, resume_state or 0)


class OptionLiveSource(LiveSource):
    """Deribit option tickers over the websocket (:class:`flows.sources.LiveSource` with the ticker
    client): micro-batches of ``option_ticker_raw``, ``rejected`` and ``status`` rows.

    Args:
        symbols: option names and/or underlyings (``BTC``: every live BTC option).
        **kwargs: as :class:`flows.sources.LiveSource` (``endpoint``, ``journal``, ``duration_ns``,
            ``idle_stop_ns``, ``client_options``: the client's ``interval``, ``channels_per_request``...).
    """

    def __init__(self, symbols: Sequence[str], **kwargs: Any) -> None:
        super().__init__(VENUE, symbols, **kwargs)

    def client_class(self) -> type:
        """:class:`tapeflow.venues.deribit.tickers.DeribitTickerClient`."""
        from tapeflow.venues.deribit.tickers import DeribitTickerClient

        return DeribitTickerClient


class _StageLogic(StatefulBatchLogic[pa.Table, list[Item], bytes]):
    def __init__(self, stage: OptionStage) -> None:
        self.stage = stage

    def on_batch(self, values: list[pa.Table]) -> tuple[Iterable[list[Item]], bool]:
        outs = [items for raw in values if (items := self.stage.apply(raw))]
        return outs, False

    def on_eof(self) -> tuple[Iterable[list[Item]], bool]:
        items = self.stage.close()
        return ([items] if items else []), False

    def snapshot(self) -> bytes:
        return pickle.dumps(self.stage, protocol=pickle.HIGHEST_PROTOCOL)


def _per_underlying(batch: Batch) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    raw = batch.get(RAW_TABLE)
    if raw is not None and raw.num_rows:
        column = raw.column("underlying")
        for underlying in sorted(set(column.to_pylist())):
            out.append((f"{VENUE}/{underlying}", raw.filter(pc.equal(column, underlying))))
    passed = [(name, t) for name in (REJECTED.name, STATUS.name) if (t := batch.get(name)) is not None
              and t.num_rows]
    if passed:
        out.append(("", passed))
    return out


def build_options_flow(source: FixedPartitionedSource, sinks: MarketSinks, *,
                       flow_id: str = "options") -> Dataflow:
    """Build the options dataflow over ``source`` (e.g. :class:`OptionCaptureSource`).

    Args:
        source: micro-batches of ``option_ticker_raw`` (+ ``rejected``, ``status``) tables, e.g.
            :class:`OptionCaptureSource` or :class:`OptionLiveSource`.
        sinks: where the ``(table_name, table)`` items go (``tables``, ``dead_letters``, ``extra``).
        flow_id: the Dataflow id.
    """
    flow = Dataflow(flow_id)
    batches = op.input("source", flow, source)
    keyed = op.flat_map("underlyings", batches, _per_underlying)
    split = op.branch("dead", keyed, lambda kv: isinstance(kv[1], list))
    dead = op.flat_map("dead_items", split.trues, lambda kv: kv[1])

    def build(resume: bytes | None) -> _StageLogic:
        return _StageLogic(pickle.loads(resume) if resume is not None else OptionStage(VENUE))

    staged = op.stateful_batch("options", split.falses, build)
    items = op.merge("items", op.flat_map("priced", staged, lambda kv: kv[1]), dead)
    rest = items
    if sinks.alerts is not None:
        op.output("alerts_sink", op.filter("alert_rows", items, lambda item: item[0] == STATUS.name),
                  sinks.alerts)
    if sinks.dead_letters is not None:
        is_dead = op.branch("dead_letters", rest, lambda item: item[0] == REJECTED.name)
        op.output("dead_letter_sink", is_dead.trues, sinks.dead_letters)
        rest = is_dead.falses
    if sinks.status is not None:
        is_status = op.branch("status", rest, lambda item: item[0] == STATUS.name)
        op.output("status_sink", is_status.trues, sinks.status)
        rest = is_status.falses
    if sinks.tables is not None:
        op.output("table_sink", rest, sinks.tables)
    for i, sink in enumerate(sinks.extra):
        op.output(f"extra_sink_{i}", items, sink)
    return flow
