"""Market sessions: when a market trades, so a cache knows how long a pulled answer stays true.

A session is a set of weekly windows in the market's own time zone (daylight saving handled by
``zoneinfo``). Exchange holidays are not modelled: a holiday counts as a trading day, so a cache
built on it refreshes more often than needed, never less.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from tapeflow.errors import ConfigError

_MIN = 60 * 1_000_000_000
_DAY_MIN = 24 * 60


@dataclass(frozen=True)
class Session:
    """Weekly trading windows of one market.

    Attributes:
        name: how config files name it.
        tz: the IANA time zone the windows are written in.
        windows: ``(weekday, start_min, end_min)`` in local minutes after midnight of ``weekday``
            (Monday 0); ``end_min`` may pass 1440 for a window that runs into the next day.
            Empty: always open.
    """

    name: str
    tz: str
    windows: tuple[tuple[int, int, int], ...]

    @property
    def always_open(self) -> bool:
        return not self.windows

    def intervals(self, around_ns: int, days: int = 8) -> list[tuple[int, int]]:
        """The open intervals ``[start_ns, end_ns)`` from ``days`` before ``around_ns`` to ``days`` after."""
        zone = ZoneInfo(self.tz)
        today = dt.datetime.fromtimestamp(around_ns / 1e9, zone).date()
        out = []
        for offset in range(-days, days + 1):
            day = today + dt.timedelta(days=offset)
            midnight = dt.datetime(day.year, day.month, day.day, tzinfo=zone)
            for weekday, start_min, end_min in self.windows:
                if day.weekday() == weekday:
                    out.append((_ns(midnight + dt.timedelta(minutes=start_min)),
                                _ns(midnight + dt.timedelta(minutes=end_min))))
        return sorted(out)

    def is_open(self, t_ns: int) -> bool:
        """Whether the market trades at ``t_ns``."""
        return self.always_open or any(a <= t_ns < b for a, b in self.intervals(t_ns))

    def next_open_ns(self, t_ns: int) -> int:
        """``t_ns`` while open, else the start of the next window."""
        if self.is_open(t_ns):
            return t_ns
        return min(a for a, _ in self.intervals(t_ns) if a > t_ns)

    def last_close_ns(self, t_ns: int) -> int:
        """The end of the latest window that closed at or before ``t_ns`` (always open: ``t_ns``)."""
        if self.always_open:
            return t_ns
        return max(b for _, b in self.intervals(t_ns) if b <= t_ns)


def _ns(moment: dt.datetime) -> int:
    # wall-clock arithmetic above, then the zone's offset for that wall time: 16:00 stays 16:00 local
    # across a daylight-saving change
    return int(moment.timestamp()) * 1_000_000_000


def _weekdays(days: range | tuple[int, ...], start_min: int, end_min: int) -> tuple[tuple[int, ...], ...]:
    return tuple((d, start_min, end_min) for d in days)


SESSIONS = {
    "crypto": Session("crypto", "UTC", ()),
    # US equities' regular session, 09:30-16:00 New York, Monday to Friday
    "us_equities": Session("us_equities", "America/New_York", _weekdays(range(5), 9 * 60 + 30, 16 * 60)),
    # CME Globex equity index and rates: Sunday 17:00 to Friday 16:00 Chicago, a daily halt 16:00-17:00
    "cme_globex": Session("cme_globex", "America/Chicago",
                          _weekdays((6, 0, 1, 2, 3), 17 * 60, _DAY_MIN + 16 * 60)),
}


def session(name: str) -> Session:
    """The session called ``name`` (one of :data:`SESSIONS`).

    Raises:
        ConfigError: an unknown name (the message lists the known ones).
    """
    try:
        return SESSIONS[name]
    except KeyError:
        raise ConfigError(f"unknown market session {name!r}; known: {', '.join(sorted(SESSIONS))}") from None
