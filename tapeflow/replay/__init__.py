"""Replay server: a recorded capture served over loopback in the venue's own protocol.

One aiohttp app serves the websocket, the REST snapshot endpoints (where the venue has them) and
the control endpoints on ONE port, so the real connector code runs unchanged with
``endpoint=srv.ws_url, rest_endpoint=srv.rest_url``::

    with ReplayServer("kraken", [path], speed=None, faults=["drop@120"]).run_in_thread() as srv:
        client = KrakenClient(["XBT/USD"], endpoint=srv.ws_url)
        ...
        srv.injected        # [Injected(kind="drop", index=120, ...)] : exactly what was done
        srv.frames_served   # data frames written to websockets so far

    async with ReplayServer("binance", paths) as srv:   # same thing inside a running loop
        ...

``srv.ws_url`` is ``ws://HOST:PORT`` and ``srv.rest_url`` is ``http://HOST:PORT`` (no trailing
slash); clients append the venue's own paths.

The tape
--------
Every format is loaded into one tape: the captured data frames of all input files merged by
capture time (``ts_recv``). A single producer walks the tape, updates the per-symbol book state
and hands each frame to the connections subscribed to its channel/symbol, byte-for-byte as
captured. The tape advances only while at least one connection is subscribed and none is in a
stall (so a reconnect after a ``disconnect`` or a stall gets a snapshot there and the rest of the
tape, also in as-fast-as-possible mode), paced by the recorded ``ts_recv`` divided by ``speed``
(``speed=None``: as fast as the clients read). When it starts or resumes it first waits until no
subscribe came for ``settle_s`` (0.2 s; each subscribe restarts the wait), so a handshake of
several subscribe messages lands before any frame; at most ``queue_frames`` frames wait for one
connection. ``compress=True`` negotiates permessage-deflate with clients that offer it. The capture's
own control messages (subscription acks, system status) are not replayed: the server answers
the handshake itself. Captured heartbeats are sent to every subscribed connection. After the tape
ends, the venue's heartbeat goes on (Kraken ``heartbeat``, Coinbase ``heartbeat`` channel) to a
connection that got nothing for a second, until it leaves (``heartbeat_after_end``).

A connection that subscribes while the tape is at the start receives the captured frames,
snapshot included. A connection that subscribes in the middle first receives a snapshot of the
book at the current position in the venue's exact wire format, then the live frames from there.

Venues, websocket paths and REST paths
--------------------------------------
Any websocket path is accepted unless listed otherwise; the per-venue protocol adapter lives in
``tapeflow/venues/<venue>/replay.py``.

* ``binance`` (spot, USD-M; cryptofeed ``BINANCE*.ws``/``.http`` captures, hftbacktest ``.gz``):
    - ``/stream?streams=btcusdt@depth@100ms/btcusdt@trade`` combined streams (envelopes
      ``{"stream":..,"data":..}`` as captured);
    - ``/ws`` (or ``/ws/<stream>``) raw streams: ``{"method":"SUBSCRIBE","params":[..],"id":n}``
      -> ``{"result":null,"id":n}``; ``UNSUBSCRIBE``, ``LIST_SUBSCRIPTIONS`` too; frames are the
      captured ``data`` objects without the envelope;
    - stream names match on ``symbol@kind`` (``@depth`` ignores the ``@100ms``/``@0ms`` speed);
    - REST ``GET /api/v3/depth?symbol=&limit=`` (spot) and ``GET /fapi/v1/depth`` (futures): the
      book rebuilt from the captured REST snapshot plus every depth diff the tape has passed,
      ``lastUpdateId`` = last passed ``u`` (before the first captured snapshot is reached the
      captured snapshot itself is served, as Binance does when its book is ahead). Unknown symbol:
      HTTP 400 ``{"code":-1121,"msg":"Invalid symbol."}``. Optional rate limit (``rest_limit``):
      HTTP 429 with ``Retry-After`` seconds.
    - websocket ping frames as Binance documents them: spot every 20 s, the connection is cut
      when no pong came within 60 s; USD-M (a tape with ``pu`` in its diffs) every 180 s / 600 s
      (``ping_interval_s``/``pong_timeout_s`` override both).
* ``kraken`` (v1; ``KRAKEN.ws.*``): ``{"event":"subscribe","pair":[..],"subscription":{"name":
  "book","depth":N}}`` -> ``systemStatus`` on connect, one ``subscriptionStatus`` per pair;
  ``{"event":"ping","reqid":n}`` -> ``pong``; captured ``heartbeat`` frames. Mid-stream snapshot
  ``[chan, {"as":..,"bs":..}, "book-N", PAIR]`` keeps the original price/volume/time strings, so
  every later ``c`` checksum still verifies.
* ``coinbase`` (``COINBASE.ws.*``): ``{"type":"subscribe","product_ids":[..],"channels":[..]}``
  (names or ``{"name","product_ids"}``) -> ``{"type":"subscriptions",...}``; channels
  ``level2`` (snapshot/l2update), ``ticker``, ``matches``, ``heartbeat``. Mid-stream: a
  ``snapshot`` message of the current book, and for ``matches`` a ``last_match`` (the product's
  latest match the tape passed), as Coinbase sends on every matches subscription.
* ``bybit`` (v5 history ``*.data.zip`` and legacy v2 ``BYBIT.ws.*``): ``{"op":"subscribe","args":
  ["orderbook.50.XRPUSDT","publicTrade.XRPUSDT"]}`` -> ``{"success":true,"op":"subscribe",...}``;
  ``{"op":"ping"}`` -> pong. ``orderbook.<depth>.<sym>`` matches the captured depth of that
  symbol. Mid-stream: a ``"type":"snapshot"`` message (v5 ``b``/``a`` with ``u``/``seq`` of the
  last passed delta; v2 the rows by id).
* ``okx`` (v5; ``/ws/v5/public``): ``{"op":"subscribe","args":[{"channel":"books","instId":
  "BTC-USDT"}]}`` -> ``{"event":"subscribe","arg":{..},"connId":..}``; text ``ping`` -> ``pong``.
  Mid-stream: an ``"action":"snapshot"`` message with ``seqId`` of the last passed update,
  ``prevSeqId`` -1 and a correct ``checksum``.
* ``sim`` (simulator output, ``sim/<symbol>/<date>.events.csv.gz``; tapeflow's own protocol):
  ``{"op":"subscribe","symbols":["SIM0"]}`` (``["*"]`` = all) -> ``{"event":"subscribed",
  "symbols":[..]}``; each frame is one JSON object ``{"symbol":..,"ts_event":..,"ts_recv":..,
  "seq":..,"type":..,"order_id":..,"side":..,"price":"..","size":".."}`` (the CSV columns of
  ``tapeflow.venues.sim.messages``); ``{"op":"ping"}`` -> ``{"event":"pong"}``. Mid-stream: an
  ``R`` frame then one ``S`` frame per resting order (as a sim file starts).

Control endpoints (every format)
--------------------------------
* ``GET /_replay/status`` -> JSON ``{"format","position","tape_frames","frames_served","next_index",
  "connections","injected":[..],"pending_faults":[..],"bad_lines","state_errors","finished"}``;
* ``POST /_replay/fault`` with body ``{"faults":["drop@+0","stall@+5:2s"]}`` (or one ``"fault"``)
  adds faults at run time; ``+N`` means N frames after the current ``frames_served``.

Faults
------
``KIND@N[:ARG]``; N counts tape frames in tape order as they are queued to connections (one count
per subscribed connection, in accept order), whether or not they are then written; handshake
replies and synthesized snapshots are not counted. With one client of every channel N is the N-th
sendable tape frame in every run, and each fault fires exactly once (a reconnect does not
re-trigger it).

* ``drop@N``: frame N is not sent;
* ``dup@N``: frame N is sent twice;
* ``reorder@N``: frame N is held back and sent right after the connection's next frame;
* ``disconnect@N``: the connection that would get frame N is cut (TCP abort, no close frame)
  before it; frame N is not sent to it and the tape stops there until a client subscribes again;
* ``stall@N:2s``: that connection gets nothing for 2 s before frame N (durations as ``1500ms``,
  ``2s``) and the tape waits; a client that reconnects meanwhile ends it (N is then not sent);
* random: ``random_faults="drop=0.001,dup=0.001,reorder=0.0005,disconnect=0.0001"`` with ``seed``:
  each frame index draws independently, reproducible for a given seed.

CLI: ``tapeflow replay-server --format kraken CAPTURE... --port 9001 [--speed 10 |
--as-fast-as-possible] [--fault drop@120 dup@300 ...] [--random-faults drop=0.001 --seed 7]
[--rest-limit 10/1s]``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Fault", "FaultPlan", "Injected", "ReplayServer", "parse_fault", "parse_random_faults"]


def __getattr__(name: str) -> Any:
    # lazy, so ``tapeflow --help`` does not import aiohttp just to list this subcommand
    if name == "ReplayServer":
        from tapeflow.replay.server import ReplayServer

        return ReplayServer
    if name in __all__:
        from tapeflow.replay import faults

        return getattr(faults, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
