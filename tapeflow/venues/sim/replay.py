"""The simulator's feed on loopback, in tapeflow's own small JSON protocol.

Client -> server: ``{"op":"subscribe","symbols":["SIM-BTCUSDT"]}`` (``["*"]`` = every symbol),
``{"op":"unsubscribe",...}``, ``{"op":"ping"}``. Server -> client: ``{"event":"subscribed",
"symbols":[..]}``, ``{"event":"pong"}``, ``{"event":"error","message":..}`` and one data frame per
sim message: ``{"symbol","ts_event","ts_recv","seq","type","order_id","side","price","size"}``,
the CSV columns of :mod:`tapeflow.venues.sim.messages` with integers as JSON numbers and
price/size as the file's decimal strings. A connection that joins mid-stream first gets what a
sim file starts with: an ``R`` frame then one ``S`` frame per resting order (in arrival order),
all with the ``seq``/``ts`` of the last message the tape passed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tapeflow.errors import BadNumber
from tapeflow.replay.protocol import Frame, Key, Reply, Session, VenueReplay, dumps, loads
from tapeflow.venues.sim.messages import COLUMNS, FILE_SUFFIX, HEADER, TYPES
from tapeflow.wire.capture import open_maybe_gzip
from tapeflow.wire.numbers import to_nanos
from tapeflow.wire.rejects import Rejects

CHANNEL = "events"


def _places(text: str) -> int:
    return len(text.partition(".")[2])


def _decimal(nanos: int, places: int) -> str:
    whole, frac = divmod(nanos, 10**9)
    return f"{whole}.{str(frac).zfill(9)[:places]}" if places else str(whole)


class SimReplay(VenueReplay):
    """Simulator files (``sim/<symbol>/<date>.events.csv.gz`` or a folder holding them)."""

    name = "sim"

    def __init__(self) -> None:
        super().__init__()
        self.orders: dict[str, dict[int, list[Any]]] = {}
        self.last: dict[str, dict[str, Any]] = {}

    def load(self, paths: Sequence[Path]) -> list[Frame]:
        """Folders expand to the sim files under them."""
        files: list[Path] = []
        for p in map(Path, paths):
            files += sorted(p.rglob(f"*{FILE_SUFFIX}")) if p.is_dir() else [p]
        return super().load(files)

    def frames_of(self, path: Path, rejects: Rejects) -> Iterator[Frame]:
        """One frame per CSV line; the symbol is the file's folder name."""
        symbol = path.parent.name
        with open_maybe_gzip(path) as fh:
            header = fh.readline().rstrip(b"\r\n")
            if header.decode("ascii", "replace") != HEADER:
                why = f"header {header[:80]!r}, expected {HEADER!r}"
                rejects.add("bad_header", why, f"{path.name}:1", header)
                return
            for lineno, raw in enumerate(fh, 2):
                frame = self._frame(raw.rstrip(b"\r\n"), symbol, f"{path.name}:{lineno}", rejects)
                if frame is not None:
                    yield frame

    def _frame(self, raw: bytes, symbol: str, location: str, rejects: Rejects) -> Frame | None:
        parts = raw.decode("ascii", "replace").split(",")
        if len(parts) != len(COLUMNS) or parts[3] not in TYPES or len(parts[3]) != 1:
            rejects.add("bad_line", f"{len(parts)} fields or unknown type in {raw[:120]!r}", location, raw)
            return None
        try:
            ts_event, ts_recv, seq, oid = (int(parts[i]) for i in (0, 1, 2, 4))
            to_nanos(parts[6]), to_nanos(parts[7])
        except (ValueError, BadNumber):
            rejects.add("bad_number", f"a number in {raw[:120]!r}", location, raw)
            return None
        msg = {"symbol": symbol, "ts_event": ts_event, "ts_recv": ts_recv, "seq": seq, "type": parts[3],
               "order_id": oid, "side": parts[5], "price": parts[6], "size": parts[7]}
        return Frame(ts_recv, dumps(msg), (CHANNEL, symbol), location)

    def apply(self, frame: Frame) -> None:
        """Track resting orders: R clears, S/A add, D deletes, E reduces (H changes nothing)."""
        msg = loads(frame.payload)
        symbol, kind, oid = msg["symbol"], msg["type"], msg["order_id"]
        orders = self.orders.setdefault(symbol, {})
        self.last[symbol] = {"ts_event": msg["ts_event"], "ts_recv": msg["ts_recv"], "seq": msg["seq"]}
        if kind == "R":
            orders.clear()
        elif kind in "SA":
            orders[oid] = [msg["side"], msg["price"], to_nanos(msg["size"]), _places(msg["size"])]
        elif kind == "D":
            orders.pop(oid, None)
        elif kind == "E" and oid in orders:
            order = orders[oid]
            order[2] -= to_nanos(msg["size"])
            if order[2] <= 0:
                del orders[oid]

    def snapshot(self, key: Key) -> list[bytes]:
        """``R`` then one ``S`` per resting order, as a sim file starts."""
        symbol = key[1]
        if symbol not in self.last:
            return []
        head = {"symbol": symbol, **self.last[symbol]}
        out = [dumps({**head, "type": "R", "order_id": 0, "side": "B", "price": "0", "size": "0"})]
        for oid, (side, price, size_nanos, places) in self.orders.get(symbol, {}).items():
            out.append(dumps({**head, "type": "S", "order_id": oid, "side": side, "price": price,
                              "size": _decimal(size_nanos, places)}))
        return out

    def session(self, connection: int) -> Session:
        """The sim protocol for one connection."""
        return _SimSession(self, connection)


class _SimSession(Session):
    adapter: SimReplay

    def on_message(self, text: str) -> Reply:
        msg = loads(text)
        op = msg.get("op") if isinstance(msg, dict) else None
        if op == "ping":
            return Reply(send=[dumps({"event": "pong"})])
        symbols = msg.get("symbols") if isinstance(msg, dict) else None
        if op not in ("subscribe", "unsubscribe") or not isinstance(symbols, list):
            return Reply(send=[dumps({"event": "error", "message": f"expected op subscribe/unsubscribe/ping "
                                                                   f"with symbols, got {text[:200]!r}"})])
        known = sorted(s for _, s in self.adapter.keys)
        wanted = known if "*" in symbols else [str(s) for s in symbols]
        unknown = [s for s in wanted if s not in known]
        if unknown:
            why = f"unknown symbols {unknown}; known {known}"
            return Reply(send=[dumps({"event": "error", "message": why})])
        keys = [(CHANNEL, s) for s in wanted]
        if op == "subscribe":
            return Reply(send=[dumps({"event": "subscribed", "symbols": wanted})], subscribe=keys)
        return Reply(send=[dumps({"event": "unsubscribed", "symbols": wanted})], unsubscribe=keys)
