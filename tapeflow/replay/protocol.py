"""What a venue's replay adapter provides, and the helpers adapters share.

A venue folder serves its protocol with a :class:`VenueReplay` subclass in
``tapeflow/venues/<venue>/replay.py``, named as ``replay=`` in its ``FORMAT`` declaration (the
server finds it through :mod:`tapeflow.wire.registry`). The adapter turns capture files into
tape frames, keeps the book state the tape has passed (for mid-stream snapshots and REST), and
makes one :class:`Session` per websocket connection that speaks the venue's handshake.
"""

from __future__ import annotations

import functools
import heapq
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import orjson

from tapeflow.errors import BadNumber
from tapeflow.wire.capture import CaptureLine, read_capture
from tapeflow.wire.numbers import to_nanos
from tapeflow.wire.registry import replay_adapter
from tapeflow.wire.rejects import Rejects

Key = tuple[str, str]
"""A subscription key ``(channel family, symbol)`` as the venue spells the symbol."""


@dataclass(slots=True)
class Frame:
    """One tape frame.

    Attributes:
        recv_ns: capture time (pacing).
        payload: the bytes as captured (sent as a text frame).
        key: who gets it: a subscription key, or None for every subscribed connection
            (captured heartbeats).
        location: ``file:line`` of the capture.
        send: False for state-only frames (e.g. a captured REST snapshot) that update the
            book but are never written to a websocket.
    """

    recv_ns: int
    payload: bytes
    key: Key | None
    location: str
    send: bool = True


@dataclass
class Reply:
    """What a session answers to one client message.

    Attributes:
        send: messages to write, in order, before any further tape frame.
        subscribe: keys to start streaming (a mid-stream snapshot follows the replies).
        unsubscribe: keys to stop streaming.
    """

    send: list[bytes | str] = field(default_factory=list)
    subscribe: list[Key] = field(default_factory=list)
    unsubscribe: list[Key] = field(default_factory=list)


RestHandler = Callable[[Mapping[str, str]], tuple[int, bytes]]


class Session:
    """One websocket connection's protocol state; the default speaks no handshake."""

    def __init__(self, adapter: VenueReplay, connection: int) -> None:
        self.adapter = adapter
        self.connection = connection

    def on_open(self, path: str, query: Mapping[str, str]) -> Reply:
        """Greeting and keys implied by the URL (Binance combined streams)."""
        return Reply()

    def on_message(self, text: str) -> Reply:
        """Answer one client text message."""
        return Reply()

    def render(self, frame: Frame) -> bytes:
        """The bytes this connection receives for ``frame`` (the captured ones by default)."""
        return frame.payload

    def heartbeats(self, keys: set[Key]) -> list[bytes | str]:
        """What the venue sends this connection every ``idle_heartbeat_s`` once the tape has ended
        (``keys``: its subscriptions); none by default."""
        return []


class VenueReplay:
    """Base of the per-venue replay adapters (one instance per server)."""

    name = ""
    ws_ping_interval_s: float | None = None  # websocket ping frames the venue sends (None: none)
    ws_pong_timeout_s: float | None = None  # no pong this long after a ping: the venue cuts (None: never)
    idle_heartbeat_s: float | None = None  # venue heartbeat period after the tape (Session.heartbeats)

    def __init__(self) -> None:
        self.keys: set[Key] = set()
        self.bad_reasons: Counter[str] = Counter()  # reason -> bad lines (and frames the book could not read)
        self.bad_examples: list[str] = []  # "file:line: reason: detail" of the first few

    @property
    def bad_lines(self) -> int:
        """Capture lines not served (not a capture line, not JSON, a shape no channel has), and tape
        frames served that the adapter's book could not read; each counted under a reason."""
        return sum(self.bad_reasons.values())

    def count_bad(self, location: str, reason: str, detail: str) -> None:
        """Count one bad line (or unreadable frame) under ``reason``; the first few are kept to show."""
        self.bad_reasons[reason] += 1
        if len(self.bad_examples) < _BAD_EXAMPLES:
            self.bad_examples.append(f"{location}: {reason}: {detail}")

    def load(self, paths: Sequence[Path]) -> list[Frame]:
        """Every file's frames merged by capture time (each file kept in its own order)."""
        per_file = []
        for path in map(Path, paths):
            rejects = Rejects(self.name)
            frames = list(self.frames_of(path, rejects))
            if len(rejects):
                dead = rejects.table()
                columns = (dead.column(c).to_pylist() for c in ("location", "reason", "detail"))
                for loc, reason, detail in zip(*columns, strict=True):
                    self.count_bad(loc, reason, detail)
            per_file.append(frames)
        tape = list(heapq.merge(*per_file, key=lambda f: f.recv_ns))
        self.keys = {f.key for f in tape if f.key is not None}
        return tape

    def frames_of(self, path: Path, rejects: Rejects) -> Iterator[Frame]:
        """Frames of one file; the default reads captures and asks :meth:`classify`."""
        for line in read_capture(path, rejects):
            frame = self.classify(line)
            if frame is not None:
                yield frame

    def classify(self, line: CaptureLine) -> Frame | None:
        """A tape frame for a captured line, or None for lines not replayed (control, sent)."""
        raise NotImplementedError

    def apply(self, frame: Frame) -> None:
        """Update the book state with a frame the tape has passed (default: none kept)."""

    def snapshot(self, key: Key) -> list[bytes]:
        """Wire messages describing ``key``'s state now, for a mid-stream subscriber ([] if none)."""
        return []

    def ws_keepalive(self, path: str) -> tuple[float | None, float | None]:
        """``(ping interval, pong timeout)`` in seconds for a websocket opened on ``path``, as the
        venue documents them (a venue with several markets may differ per market)."""
        return self.ws_ping_interval_s, self.ws_pong_timeout_s

    def session(self, connection: int) -> Session:
        """A new connection's protocol state."""
        return Session(self, connection)

    def rest_routes(self) -> dict[str, RestHandler]:
        """REST ``GET`` paths this venue serves (path -> handler(query) -> (status, body))."""
        return {}

    def bad_line(self, rejects: Rejects, line: CaptureLine, reason: str, detail: str) -> None:
        """Count a captured line the adapter cannot classify (never served)."""
        rejects.add(reason, detail, line.location, line.payload, ts_recv_ns=line.recv_ns)

    def unknown_shape(self, line: CaptureLine, msg: Any, what: str) -> None:
        """Count a captured line that is not JSON (``bad_json``) or is JSON of a shape no channel of
        the venue has (``unknown_shape``, ``what`` saying what it lacks); never served."""
        if msg is None:
            self.count_bad(line.location, "bad_json", "captured frame is not JSON")
        else:
            self.count_bad(line.location, "unknown_shape", f"JSON {type(msg).__name__} {what}")


def adapter_for(format_name: str) -> VenueReplay:
    """A fresh adapter of the format, as its venue folder declares it (``FORMAT.replay``).

    Raises:
        ConfigError: the format has no replay adapter (naming the formats that have one).
    """
    adapter: VenueReplay = replay_adapter(format_name)()
    return adapter


def loads(payload: bytes | str) -> Any:
    """Parse JSON, None when it is not JSON."""
    try:
        return orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None


def compact_json(payload: bytes) -> bytes:
    """``payload`` without the whitespace between JSON tokens (the spaces after ``:`` and ``,`` of
    Python's ``json.dumps``, indentation, a trailing space), strings and number text untouched: the
    compact form the venues send, which adapters that read a frame's bytes (Binance's stream
    envelope) expect. Call it on valid JSON only."""
    return _BETWEEN_TOKENS.sub(_keep_string, payload)


def _keep_string(m: re.Match[bytes]) -> bytes:
    return m.group(1) or b""


_BETWEEN_TOKENS = re.compile(rb'("(?:[^"\\]|\\.)*")|[ \t\r\n]+')
_BAD_EXAMPLES = 20


def dumps(value: Any) -> bytes:
    """Compact JSON as the venues send it (no spaces)."""
    return orjson.dumps(value)


@functools.lru_cache(maxsize=1 << 16)  # books revisit the same few thousand price strings
def price_key(text: str) -> int | Decimal:
    """Exact sort key of a decimal string: int nanos, or a Decimal beyond int64 (Kraken keeps
    placeholder orders at prices such as 9999999997)."""
    try:
        return to_nanos(text)
    except BadNumber:
        try:
            return Decimal(text)
        except InvalidOperation:
            return Decimal(0)


def is_zero(text: str | float | int) -> bool:
    """True for ``"0"``, ``"0.00000000"``, ``0`` (a delete in every venue's book diffs)."""
    if isinstance(text, (int, float)):
        return text == 0
    return not text.strip().replace(".", "").strip("0")


class StringBook:
    """One side pair of a price-level book that keeps each level's wire entry as received.

    ``bids`` / ``asks`` map an exact price key to the entry (e.g. ``["0.351", "6195.0"]``), so a
    snapshot written from it carries the original strings (checksums hash strings).
    """

    def __init__(self) -> None:
        self.bids: dict[int | Decimal, Any] = {}
        self.asks: dict[int | Decimal, Any] = {}

    def set(self, is_bid: bool, price: str, entry: Any, deleted: bool) -> None:
        """Set or delete (``deleted``) the level at ``price``."""
        side = self.bids if is_bid else self.asks
        key = price_key(price)
        if deleted:
            side.pop(key, None)
        else:
            side[key] = entry

    def top_bids(self, n: int | None = None) -> list[Any]:
        """Bid entries, best (highest) first."""
        return [self.bids[k] for k in sorted(self.bids, reverse=True)[:n]]

    def top_asks(self, n: int | None = None) -> list[Any]:
        """Ask entries, best (lowest) first."""
        return [self.asks[k] for k in sorted(self.asks)[:n]]

    def truncate(self, depth: int) -> None:
        """Keep the best ``depth`` levels a side (what a venue's depth-N channel keeps)."""
        for side, worst_first in ((self.bids, False), (self.asks, True)):
            if len(side) > depth:
                for k in sorted(side, reverse=worst_first)[: len(side) - depth]:
                    del side[k]


def subscribed_keys(wanted: Iterable[Key], known: set[Key]) -> tuple[list[Key], list[Key]]:
    """Split requested keys into those the tape has and those it does not."""
    ok, unknown = [], []
    for k in wanted:
        (ok if k in known else unknown).append(k)
    return ok, unknown
