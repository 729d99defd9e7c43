"""The idle stop of a live partition (``flows.sources.IdleStop``, used by ``LiveSource`` and
``FailoverSource``): a slow start is no idle feed. A clean-clone CI run stopped a failover replay
2 s after its first empty poll, before the first connect had produced a row: the output had
STATUS rows only, and no ``source_switch`` table."""

from __future__ import annotations

from flows.sources import FIRST_ROW_TIMEOUT_NS, IdleStop

S = 1_000_000_000


def test_the_idle_clock_starts_at_the_first_data_row_not_at_the_first_poll() -> None:
    stop = IdleStop(2 * S)
    assert not stop.stop(0.0, batch=False, data=False)
    # connected / syncing STATUS rows, then nothing for 30 s (a first kernel compile on a busy box)
    assert not stop.stop(0.5, batch=True, data=False)
    assert not stop.stop(30.0, batch=False, data=False)
    assert not stop.stop(31.0, batch=True, data=True)  # the first data row
    assert not stop.stop(32.0, batch=False, data=False)  # idle from here
    assert not stop.stop(33.9, batch=False, data=False)
    assert stop.stop(34.0, batch=False, data=False)


def test_any_batch_after_the_first_data_row_restarts_the_idle_clock() -> None:
    stop = IdleStop(2 * S)
    assert not stop.stop(0.0, batch=True, data=True)
    assert not stop.stop(1.0, batch=False, data=False)
    assert not stop.stop(2.5, batch=True, data=False)  # a STATUS row (a reconnect) is no idle feed
    assert not stop.stop(4.0, batch=False, data=False)
    assert stop.stop(6.0, batch=False, data=False)


def test_a_feed_that_never_delivers_a_data_row_stops_at_its_own_longer_bound() -> None:
    stop = IdleStop(2 * S)
    assert stop.first_row_ns == FIRST_ROW_TIMEOUT_NS > 2 * S
    bound = FIRST_ROW_TIMEOUT_NS / S
    assert not stop.stop(10.0, batch=False, data=False)
    # STATUS rows alone (a connector failing to connect, in a loop) do not hold it off
    assert not stop.stop(10.0 + bound / 2, batch=True, data=False)
    assert not stop.stop(10.0 + bound - 0.1, batch=True, data=False)
    assert stop.stop(10.0 + bound, batch=True, data=False)
    # an explicit bound; the default never lies below the idle stop itself
    assert IdleStop(2 * S, 5 * S).first_row_ns == 5 * S
    assert IdleStop(90 * S).first_row_ns == 90 * S
