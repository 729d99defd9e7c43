"""Market sessions and the vendor pull cache, against hand-computed UTC times.

2026-12-04 is a Friday; New York is UTC-5 and Chicago UTC-6 in December; US daylight saving began on
Sunday 2026-03-08 (New York UTC-4 from then).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from tapeflow.errors import ConfigError
from tapeflow.pullcache import FOREVER, PullCache
from tapeflow.sessions import session

S = 1_000_000_000


def utc(text: str) -> int:
    return int(dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC).timestamp()) * S


def test_us_equities_regular_session_in_winter_and_after_daylight_saving():
    us = session("us_equities")
    assert us.is_open(utc("2026-12-04T15:00:00"))  # Friday 10:00 New York
    assert not us.is_open(utc("2026-12-04T21:30:00"))  # Friday 16:30
    assert not us.is_open(utc("2026-12-05T15:00:00"))  # Saturday
    assert us.next_open_ns(utc("2026-12-04T21:30:00")) == utc("2026-12-07T14:30:00")  # Monday 09:30
    assert us.last_close_ns(utc("2026-12-06T12:00:00")) == utc("2026-12-04T21:00:00")  # Friday 16:00
    assert us.next_open_ns(utc("2026-03-07T12:00:00")) == utc("2026-03-09T13:30:00")  # 09:30 EDT


def test_cme_globex_week_and_daily_halt():
    cme = session("cme_globex")
    assert not cme.is_open(utc("2026-12-06T22:59:00"))  # Sunday 16:59 Chicago
    assert cme.is_open(utc("2026-12-06T23:00:00"))  # Sunday 17:00: the week opens
    assert cme.is_open(utc("2026-12-08T21:59:00"))  # Tuesday 15:59
    assert not cme.is_open(utc("2026-12-08T22:30:00"))  # Tuesday 16:30: the daily halt
    assert cme.next_open_ns(utc("2026-12-08T22:30:00")) == utc("2026-12-08T23:00:00")
    assert not cme.is_open(utc("2026-12-04T22:00:00"))  # Friday 16:00: closed for the weekend
    assert cme.last_close_ns(utc("2026-12-05T12:00:00")) == utc("2026-12-04T22:00:00")


def test_crypto_never_closes_and_an_unknown_session_names_the_known_ones():
    crypto = session("crypto")
    assert crypto.is_open(utc("2026-12-05T03:00:00"))
    assert crypto.next_open_ns(utc("2026-12-05T03:00:00")) == utc("2026-12-05T03:00:00")
    with pytest.raises(ConfigError, match="cme_globex"):
        session("nyse_typo")


class Clock:
    def __init__(self, now_ns: int) -> None:
        self.now_ns = now_ns

    def __call__(self) -> int:
        return self.now_ns


def _cache(tmp_path: Path, name: str, now: str) -> tuple[PullCache, Clock]:
    clock = Clock(utc(now))
    return PullCache(tmp_path / "cache", session(name), clock_ns=clock), clock


def test_latest_values_pulled_in_session_live_one_ttl(tmp_path):
    cache, clock = _cache(tmp_path, "us_equities", "2026-12-04T15:00:00")
    assert cache.put("vendor", "/quote", {"symbol": "AAPL"}, b"q1") == utc("2026-12-04T15:01:00")
    clock.now_ns += 59 * S
    assert cache.get("vendor", "/quote", {"symbol": "AAPL"}) == b"q1"
    clock.now_ns += 2 * S
    assert cache.get("vendor", "/quote", {"symbol": "AAPL"}) is None
    assert (cache.hits, cache.misses) == (1, 1)


def test_pulled_while_closed_lives_until_the_next_open(tmp_path):
    cache, clock = _cache(tmp_path, "us_equities", "2026-12-04T22:00:00")  # Friday after the close
    assert cache.put("vendor", "/quote", {"symbol": "AAPL"}, b"close") == utc("2026-12-07T14:30:00")
    clock.now_ns = utc("2026-12-06T20:00:00")  # Sunday: still the Friday close
    assert cache.get("vendor", "/quote", {"symbol": "AAPL"}) == b"close"
    clock.now_ns = utc("2026-12-07T14:31:00")  # Monday after the open
    assert cache.get("vendor", "/quote", {"symbol": "AAPL"}) is None


def test_settled_ranges_are_kept_and_ranges_into_the_present_are_not(tmp_path):
    cache, clock = _cache(tmp_path, "cme_globex", "2026-12-08T15:00:00")
    params = {"dataset": "GLBX.MDP3", "start": "2026-12-01", "end": "2026-12-02"}
    assert cache.put("databento", "timeseries.get_range", params, b"dbn", end_ns=utc("2026-12-02T00:00:00")) \
        == FOREVER
    clock.now_ns += 365 * 86400 * S
    assert cache.get("databento", "timeseries.get_range", params) == b"dbn"
    today = {"dataset": "GLBX.MDP3", "start": "2026-12-08"}
    clock.now_ns = utc("2026-12-08T15:00:00")
    # ends 10 minutes ago, the market trades: not settled, a live TTL
    assert cache.put("databento", "timeseries.get_range", today, b"x", end_ns=clock.now_ns - 600 * S) \
        == clock.now_ns + 60 * S


def test_fetch_pulls_once_and_a_corrupt_entry_is_pulled_again(tmp_path):
    cache, _ = _cache(tmp_path, "crypto", "2026-12-05T03:00:00")
    calls = []

    def pull() -> bytes:
        calls.append(1)
        return b"answer"

    assert cache.fetch("binance", "/fapi/v1/openInterest", {"symbol": "BTCUSDT"}, pull) == b"answer"
    assert cache.fetch("binance", "/fapi/v1/openInterest", {"symbol": "BTCUSDT"}, pull) == b"answer"
    assert len(calls) == 1
    for meta in (tmp_path / "cache").rglob("*.json"):
        meta.write_text("{not json")
    assert cache.fetch("binance", "/fapi/v1/openInterest", {"symbol": "BTCUSDT"}, pull) == b"answer"
    assert len(calls) == 2


def test_a_credential_never_becomes_part_of_a_key(tmp_path):
    cache, _ = _cache(tmp_path, "crypto", "2026-12-05T03:00:00")
    with pytest.raises(ConfigError, match="apiKey"):
        cache.put("vendor", "/x", {"apiKey": "k-123", "symbol": "A"}, b"")
    assert not (tmp_path / "cache").exists()
