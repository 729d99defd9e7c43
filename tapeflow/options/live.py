"""The live flow's option stage: per underlying, price each micro-batch of tickers and emit the surfaces
whose grid time is final (docs/options.md, "The live stage").

:class:`OptionStage` holds one underlying's state. Each micro-batch of decoded tickers
(``option_ticker_raw``) goes through the JAX kernels at once (:func:`tapeflow.options.chain.price_raw`:
the IV solver runs a fixed number of steps, so an option's IV never depends on which others share
its call) and comes out as ``option_ticker`` rows. :class:`LiveSurfaces` keeps the tickers a future
snapshot can still use and emits the ``option_surface`` rows of every grid time the watermark (the
newest ticker time of the underlying, less ``lateness_ns``) has passed, computed by the batch's own
:func:`tapeflow.options.surface.surfaces` over those tickers, so live equals batch row for row as
long as no ticker arrives more than ``lateness_ns`` behind the newest one. A ticker older than a
grid time already emitted is still priced and stored, and used by later snapshots, but cannot
change the emitted one: it is counted in ``late``. :meth:`OptionStage.close` (end of a replay)
emits the remaining grid times up to the last ticker's, rounded up, as the batch does.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.options import LIVE_FORMAT
from tapeflow.options.chain import price_raw
from tapeflow.options.records import OPTION_SURFACE, OPTION_TICKER
from tapeflow.options.surface import STALENESS_NS, STEP_NS, BadSurfaceInput, surface_records, surfaces

__all__ = ["LATENESS_NS", "LIVE_FORMAT", "LiveSurfaces", "OptionStage"]
Item = tuple[str, pa.Table]
# how far behind the newest ticker a ticker may arrive and still be in its snapshot (Deribit's
# tickers of one connection arrive within milliseconds of their timestamps' order)
LATENESS_NS = 5_000_000_000


class LiveSurfaces:
    """One underlying's surfaces on the grid, emitted as each grid time becomes final.

    Args:
        venue: the venue of the rows (``deribit``).
        step_ns: the grid step (the batch's default, 1 minute).
        staleness_ns: the oldest ticker a snapshot uses (the batch's default, 1 minute).
        lateness_ns: how long after a grid time (in ticker time) its snapshot is emitted.

    Attributes:
        late: tickers that arrived at or before a grid time already emitted.

    Raises:
        BadSurfaceInput: a non-positive step or staleness, or a negative lateness.
    """

    def __init__(self, venue: str, *, step_ns: int = STEP_NS, staleness_ns: int = STALENESS_NS,
                 lateness_ns: int = LATENESS_NS) -> None:
        if step_ns <= 0 or staleness_ns <= 0 or lateness_ns < 0:
            raise BadSurfaceInput(f"step ({step_ns}) and staleness ({staleness_ns}) must be positive, "
                                  f"lateness ({lateness_ns}) not negative")
        self.venue = venue
        self.step_ns, self.staleness_ns, self.lateness_ns = step_ns, staleness_ns, lateness_ns
        self._kept: list[pa.Table] = []
        self._until: int | None = None  # the last grid time emitted
        self._watermark: int | None = None
        self.late = 0

    def add(self, tickers: pa.Table) -> pa.Table:
        """Take priced ``option_ticker`` rows; return the ``option_surface`` rows now final."""
        if tickers.num_rows == 0:
            return OPTION_SURFACE.empty_table()
        ts = tickers.column("ts_event_ns")
        if self._until is not None:
            self.late += int(pc.sum(pc.less_equal(ts, self._until)).as_py() or 0)
        newest = pc.max(ts).as_py()
        self._watermark = newest if self._watermark is None else max(self._watermark, newest)
        self._kept.append(tickers)
        return self._emit(self._watermark - self.lateness_ns)

    def flush(self) -> pa.Table:
        """Every grid time left, up to the newest ticker's rounded up (the end of a replay)."""
        if self._watermark is None:
            return OPTION_SURFACE.empty_table()
        return self._emit(-(-self._watermark // self.step_ns) * self.step_ns)

    def _emit(self, limit_ns: int) -> pa.Table:
        until = limit_ns // self.step_ns * self.step_ns
        if self._until is not None and until <= self._until:
            return OPTION_SURFACE.empty_table()
        kept = pa.concat_tables(self._kept)
        out = surface_records(surfaces(kept, self.step_ns, self.staleness_ns, after_ns=self._until,
                                       until_ns=until), self.venue)
        self._until = until
        # a ticker older than this is stale at every grid time still to come
        keep = pc.greater_equal(kept.column("ts_event_ns"), until + self.step_ns - self.staleness_ns)
        self._kept = [kept.filter(keep)]
        return out


class OptionStage:
    """One underlying of the live flow: micro-batches of decoded tickers -> ticker and surface rows.

    Args:
        venue: the venue of the rows.
        lateness_ns: see :class:`LiveSurfaces`.
    """

    def __init__(self, venue: str, *, lateness_ns: int = LATENESS_NS) -> None:
        self.venue = venue
        self.surfaces = LiveSurfaces(venue, lateness_ns=lateness_ns)

    def apply(self, raw: pa.Table) -> list[Item]:
        """Price one micro-batch (``option_ticker_raw`` rows of this underlying) and advance the grid.

        Returns:
            ``("option_ticker", rows)`` and, when a grid time became final, ``("option_surface", rows)``.
        """
        if raw.num_rows == 0:
            return []
        tickers = price_raw(raw, self.venue)
        out: list[Item] = [(OPTION_TICKER.name, tickers)]
        surface = self.surfaces.add(tickers)
        if surface.num_rows:
            out.append((OPTION_SURFACE.name, surface))
        return out

    def close(self) -> list[Item]:
        """The surfaces of the grid times left (end of stream)."""
        surface = self.surfaces.flush()
        return [(OPTION_SURFACE.name, surface)] if surface.num_rows else []
