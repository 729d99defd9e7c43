"""Live client of the simulator's feed, as the replay server serves it (``tapeflow replay-server
--format sim``), so the simulator runs through the real live path: server -> client -> journal -> flow.

The ``sim`` protocol (:mod:`tapeflow.venues.sim.replay`): one subscribe for every symbol, a JSON frame
per simulator message, an ``R`` + ``S`` snapshot on every subscription, ``{"op":"ping"}`` answered
with ``pong``. A sequence gap resyncs the symbol by unsubscribing and subscribing it again (the
server then sends a fresh snapshot), through the connector's rate limiter; see
:mod:`tapeflow.venues.sim.sync` for the decoding and the flags.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import orjson

from tapeflow.errors import ConfigError
from tapeflow.journal import Journal
from tapeflow.live.connector import ConnectorSettings
from tapeflow.venues.resubscribe import ResubscribingClient, symbols_list
from tapeflow.venues.sim.sync import SimSync


class SimClient(ResubscribingClient):
    """Live ``sim`` client.

    Args:
        symbols: simulator symbols (``SIM-BTCUSDT``...), ``["*"]`` for every symbol the server has,
            or a comma-separated string.
        endpoint: the replay server's ``ws_url`` (the simulator has no production host).
        rest_endpoint: unused (snapshots come over the websocket); accepted for a uniform signature.
        journal: a journal, a folder for one, or None.
        settings: session-loop settings.
        clock: ``feed`` (rows keep the simulator's capture time, so any replay speed gives the rows
            of the simulator files) or ``local`` (our receive time, as a real venue feed).

    Raises:
        ConfigError: no endpoint, or an unknown clock.
    """

    default_ping_interval_s = 20.0

    def __init__(self, symbols: Sequence[str] | str, *, endpoint: str | None = None,
                 rest_endpoint: str | None = None, journal: Journal | Path | str | None = None,
                 settings: ConnectorSettings | None = None, clock: str = "feed") -> None:
        if not endpoint:
            raise ConfigError("the sim feed has no public host: give endpoint= a replay server's ws_url "
                              "(tapeflow replay-server --format sim DIR)")
        self.clock = clock
        SimSync(clock)  # an unknown clock fails here, before anything connects
        super().__init__(symbols_list(symbols), venue="sim", endpoint=endpoint, rest_endpoint=rest_endpoint,
                         journal=journal, settings=settings)

    def ws_url(self) -> str:
        """The replay server's websocket URL."""
        assert self.endpoint is not None
        return self.endpoint

    def make_sync(self) -> SimSync:
        """The sim live sync (the sim file decoder behind the JSON frames)."""
        return SimSync(self.clock)

    def subscribe_messages(self) -> list[str]:
        """One subscription for every symbol."""
        return [orjson.dumps({"op": "subscribe", "symbols": self.symbols}).decode()]

    def resubscribe_messages(self, symbol: str) -> list[str]:
        """Unsubscribe and subscribe ``symbol``: the server answers with a fresh snapshot."""
        return [orjson.dumps({"op": op, "symbols": [symbol]}).decode() for op in ("unsubscribe", "subscribe")]

    def decoder_finish(self) -> None:
        """End of the stream: a snapshot still open ends here, so its rows come out."""
        self.live_sync.finish()

    def ping_message(self) -> str:
        """The sim protocol's application-level ping."""
        return '{"op":"ping"}'


__all__ = ["SimClient"]
