"""IQConnect on loopback: recorded Level 1 / Level 2 sessions and lookup responses, as IQConnect serves them.

Three ports, as IQConnect's (:data:`ROLES`): Level 1 and Level 2 stream the recorded lines of the
symbols a client watches (``w<symbol>``; ``WOR,``/``WPL,`` on Level 2; ``r<symbol>`` stops) and
answer ``S,SET PROTOCOL,6.x`` with ``S,CURRENT PROTOCOL,6.x`` and ``S,SELECT UPDATE FIELDS`` with
the recorded session's ``S,CURRENT UPDATE FIELDNAMES`` (a replay can only serve the fields it
recorded; the client decodes by the server's answer, as with IQConnect); an unknown symbol gets
``n,<symbol>``. A quiet Level 1 connection gets a ``T`` timestamp each second, at the tape's time.
The lookup port answers ``HTX``/``HTD``/``HTT`` (ticks), ``HIX``/``HID``/``HIT`` (intervals),
``HDX``/``HDT``, ``HWX``, ``HMX`` with the rows of the lookup files given, newest first as
IQFeed sends them, each prefixed ``[RequestID,]LH,`` and ended by ``!ENDMSG!``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

from tapeflow.replay.lines import LineReplay
from tapeflow.replay.protocol import Frame, Key, Reply, Session
from tapeflow.venues.iqfeed import history
from tapeflow.venues.iqfeed import messages as m
from tapeflow.venues.iqfeed.parse import read_lines
from tapeflow.venues.iqfeed.values import ZONE
from tapeflow.wire.rejects import Reason, Rejects

ROLES = {"level1": 5009, "level2": 9200, "lookup": 9100}
_L1 = frozenset(m.L1_UPDATE + m.L1_SUMMARY + m.L1_FUNDAMENTAL + m.L1_REGIONAL)
_L2 = frozenset("0234567 89Z".replace(" ", ""))
_LOOKUPS = {"HTX": history.TICKS, "HTD": history.TICKS, "HTT": history.TICKS,
            "HIX": history.INTERVALS, "HID": history.INTERVALS, "HIT": history.INTERVALS,
            "HDX": "1d", "HDT": "1d", "HWX": "1w", "HMX": "1mo"}
# command -> (index of MaxDatapoints, index of RequestID) in its fields, as DTN's lookup docs lay
# them out (HTX,Symbol,MaxDatapoints,DataDirection,RequestID,...); the other forms carry no id here
_LOOKUP_FIELDS = {"HTX": (2, 4), "HIX": (3, 5), "HDX": (2, 4), "HWX": (2, 3), "HMX": (2, 3)}


class IQFeedReplay(LineReplay):
    """Recorded IQConnect sessions (``<recv_ns> <line>`` captures) and lookup response files."""

    name = "iqfeed"
    roles = ROLES
    heartbeat_s = 1.0  # IQConnect's Level 1 timestamp message period

    def __init__(self) -> None:
        super().__init__()
        self.fields: tuple[str, ...] = m.DEFAULT_L1_FIELDS
        self.lookups: dict[tuple[str, str], list[str]] = {}  # (symbol, kind) -> rows, newest first
        self.tape_ns = 0

    def frames_of(self, path: Path, rejects: Rejects) -> Iterator[Frame]:
        """A capture's lines as tape frames; a lookup file's rows kept for the lookup port."""
        for member, line in read_lines(path):
            text = line.payload.decode("ascii", "replace")
            fields = text.split(",")
            if fields and fields[-1] == "":
                fields.pop()
            kind = history.row_kind(fields)
            if kind is not None:
                symbol = history.file_symbol(member, str(path))
                label = kind if kind != history.DAILIES else history.bar_interval(kind, member, str(path))
                self.lookups.setdefault((symbol, label), []).append(text.rstrip(","))
                continue
            frame = self._classify(fields, line.recv_ns, line.payload, line.location)
            answered = (m.SYSTEM, m.ERROR, m.NOT_FOUND, m.END_OF_RESPONSE)  # the server answers these itself
            if frame is None and fields and fields[0] not in answered:
                self.bad_line(rejects, line, Reason.BAD_LINE, "neither a lookup row nor a streaming message")
            elif frame is not None:
                yield frame

    def _classify(self, f: list[str], recv_ns: int, payload: bytes, location: str) -> Frame | None:
        if not f or recv_ns < 0:
            return None
        kind = f[0]
        if kind == m.SYSTEM and len(f) > 1 and f[1] in m.FIELDSET_MESSAGES:
            names = tuple(f[2:])
            self.fields = names if names and names[0] == "Symbol" else ("Symbol", *names)
            return None
        if kind == m.TIMESTAMP:
            return Frame(recv_ns, payload, ("level1", ""), location)
        if len(f) < 2:
            return None
        if kind in _L1:
            return Frame(recv_ns, payload, ("level1", f[1]), location)
        if kind in _L2:
            return Frame(recv_ns, payload, ("level2", f[1]), location)
        return None

    def apply(self, frame: Frame) -> None:
        """The tape's clock, for the timestamp heartbeats."""
        self.tape_ns = frame.recv_ns

    def greeting(self, role: str) -> list[bytes]:
        """IQConnect greets a streaming client with ``S,SERVER CONNECTED``."""
        return [b"S,SERVER CONNECTED,"] if role != "lookup" else []

    def line_session(self, role: str, connection: int) -> Session:
        """The protocol state of one connection."""
        return IQConnectSession(self, connection, role)

    def timestamp(self) -> bytes:
        """``T,YYYYMMDD HH:MM:SS`` at the tape's time, Eastern."""
        at = dt.datetime.fromtimestamp(self.tape_ns / 1e9, ZONE) if self.tape_ns else dt.datetime.now(ZONE)
        return f"T,{at:%Y%m%d %H:%M:%S},".encode()


class IQConnectSession(Session):
    """Commands of one IQConnect connection (Level 1, Level 2 or lookup)."""

    def __init__(self, adapter: IQFeedReplay, connection: int, role: str) -> None:
        super().__init__(adapter, connection)
        self.replay = adapter
        self.role = role

    def on_message(self, text: str) -> Reply:
        """Answer one command line."""
        f = text.rstrip(",").split(",")
        if f[0] == "S" and len(f) > 1:
            return self._system(f)
        if self.role == "lookup":
            return self._lookup(f)
        if f[0] in ("WOR", "WPL") and len(f) == 2 and self.role == "level2":
            return self._watch(f[1])
        if text[:1] == "w" and len(f) == 1:
            return self._watch(text[1:])
        if text[:1] == "r" and len(f) == 1:
            return Reply(unsubscribe=[(self.role, text[1:])])
        return Reply(send=[f"E,!SYNTAX_ERROR!,{text},"])

    def _system(self, f: list[str]) -> Reply:
        if f[1] == "SET PROTOCOL" and len(f) == 3:
            return Reply(send=[f"S,CURRENT PROTOCOL,{f[2]},"])
        if f[1] == "SELECT UPDATE FIELDS":
            return Reply(send=["S,CURRENT UPDATE FIELDNAMES," + ",".join(self.replay.fields) + ","])
        if f[1] == "REQUEST WATCHES":
            watched = sorted(s for r, s in self.replay.keys if r == self.role)
            return Reply(send=["S,WATCHES," + ",".join(watched) + ","])
        return Reply()

    def _watch(self, symbol: str) -> Reply:
        key: Key = (self.role, symbol)
        if key not in self.replay.keys:
            return Reply(send=[f"n,{symbol},"])
        return Reply(subscribe=[key])

    def _lookup(self, f: list[str]) -> Reply:
        kind = _LOOKUPS.get(f[0])
        if kind is None or len(f) < 2:
            return Reply(send=[f"E,!SYNTAX_ERROR!,{','.join(f)},"])
        at_limit, at_id = _LOOKUP_FIELDS.get(f[0], (-1, -1))
        request_id = f[at_id] if 0 <= at_id < len(f) else ""
        prefix = f"{request_id},LH," if request_id else "LH,"
        rows = self.replay.lookups.get((f[1], kind))
        if rows is None:
            return Reply(send=[f"{prefix}E,!NO_DATA!,", f"{prefix}!ENDMSG!,"])
        text = f[at_limit] if 0 <= at_limit < len(f) else ""
        limit = int(text) if text.isdigit() and int(text) > 0 else len(rows)
        return Reply(send=[f"{prefix}{row}," for row in rows[:limit]] + [f"{prefix}!ENDMSG!,"])

    def heartbeats(self, keys: set[Key]) -> list[bytes | str]:
        """A quiet Level 1 connection gets IQConnect's timestamp message."""
        return [self.replay.timestamp()] if self.role == "level1" else []
