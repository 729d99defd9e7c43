"""Turn a set of instrument-days into as few runs as possible, tagged with what asked for them.

Dagster orders ``date x instrument`` keys date first, then instruments in the order they were
registered, and a single-run backfill takes one contiguous range of that order. Requested keys
that are contiguous (every instrument of consecutive days, say) become one run with a partition
range; the others become one run each.

A run carries the tag Dagster marks a sensor's or a schedule's runs with (``dagster/sensor_name``,
``dagster/schedule_name``): the daemon adds it when it launches a request, and so does anything
else that executes these requests (the demo, the benchmarks), so the run list shows who asked.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence

from dagster import RunRequest
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    SCHEDULE_NAME_TAG,
    SENSOR_NAME_TAG,
)

from assets.partitions import instrument_key

__all__ = ["SCHEDULE_NAME_TAG", "SENSOR_NAME_TAG", "before", "partition_runs"]

_EPOCH = dt.date(1970, 1, 1)


def partition_runs(wanted: Iterable[tuple[str, str, str]], instruments: Sequence[str], *,
                   run_key_prefix: str | None = None,
                   tags: Mapping[str, str] | None = None,
                   run_config: Mapping[str, object] | None = None) -> list[RunRequest]:
    """Run requests covering exactly the ``(date, venue, symbol)`` instrument-days in ``wanted``.

    Args:
        wanted: instrument-days to build.
        instruments: the registered instrument keys in registration order (after any additions).
        run_key_prefix: makes the requests idempotent per sensor (a key already launched is skipped).
        tags: extra run tags (who asked: ``dagster/sensor_name``, and why a repair was requested).
        run_config: the runs' config (the retraining's model kinds), none when None.
    """
    position = {key: i for i, key in enumerate(instruments)}
    n = max(len(instruments), 1)
    index: dict[int, tuple[str, str]] = {}
    for date, venue, symbol in wanted:
        key = instrument_key(venue, symbol)
        if key not in position:
            continue
        days = (dt.date.fromisoformat(date) - _EPOCH).days
        index[days * n + position[key]] = (date, key)
    out: list[RunRequest] = []
    run: list[int] = []
    for i in sorted(index):
        if run and i != run[-1] + 1:
            out.append(_request(index, run, run_key_prefix, tags, run_config))
            run = []
        run.append(i)
    if run:
        out.append(_request(index, run, run_key_prefix, tags, run_config))
    return out


def before(wanted: Iterable[tuple[str, str, str]], first_day: str | None
           ) -> tuple[set[tuple[str, str, str]], set[tuple[str, str, str]]]:
    """``wanted`` split into (days the partitions hold, days before ``first_day``)."""
    wanted = set(wanted)
    if first_day is None:
        return wanted, set()
    early = {w for w in wanted if w[0] < first_day}
    return wanted - early, early


def _request(index: Mapping[int, tuple[str, str]], run: list[int], prefix: str | None,
             tags: Mapping[str, str] | None, run_config: Mapping[str, object] | None = None) -> RunRequest:
    first, last = index[run[0]], index[run[-1]]
    start, end = f"{first[0]}|{first[1]}", f"{last[0]}|{last[1]}"
    extra = dict(tags or {})
    run_key = f"{prefix}:{start}..{end}" if prefix else None
    config = dict(run_config) if run_config is not None else None
    if len(run) == 1:
        return RunRequest(partition_key=start, run_key=run_key, tags=extra, run_config=config)
    extra |= {ASSET_PARTITION_RANGE_START_TAG: start, ASSET_PARTITION_RANGE_END_TAG: end}
    return RunRequest(run_key=run_key, tags=extra, run_config=config)
