"""Sensors: new files in the landing folder or the journal, and gap repair from the live flow's STATUS.

Both register instruments as dynamic partitions when first seen and request runs of the whole
day pipeline (``tapeflow_days``) for exactly the instrument-days concerned.
"""

import hashlib
import json
from collections.abc import Iterable

import numpy as np
import pyarrow as pa
from dagster import DefaultSensorStatus, SensorEvaluationContext, SensorResult, SkipReason, sensor

from assets.partitions import INSTRUMENTS, INSTRUMENTS_NAME, instrument_key, parse_instrument_key
from assets.resources import TapeflowResource
from assets.sources import SourceIndex, discover
from dagster_project.jobs import tapeflow_days
from dagster_project.runs import partition_runs
from tapeflow.schemas.records import STATUS
from tapeflow.storage import lake as lake_store
from tapeflow.storage.lake import NS_PER_DAY, day_of

# Sources decoded per tick: a big drop is indexed over several ticks instead of timing one out.
SOURCES_PER_TICK = 20
# STATUS states whose window needs the affected days rebuilt from the journal or vendor files.
REPAIR_STATES = frozenset({"gap", "degraded", "resyncing", "checksum_mismatch", "stale", "disconnected"})


@sensor(job=tapeflow_days, minimum_interval_seconds=30, default_status=DefaultSensorStatus.RUNNING,
        description="New or changed files under the landing folder or the journal -> their instrument-days.")
def landing_sensor(context: SensorEvaluationContext, tapeflow: TapeflowResource) -> SensorResult | SkipReason:
    """Index new sources, register their instruments and request runs for the days they hold."""
    index = SourceIndex(tapeflow.lake)
    sources = discover(tapeflow.landing, tapeflow.journal)
    fresh = index.refresh(sources, limit=SOURCES_PER_TICK)
    for entry in fresh:
        if entry.error:
            context.log.warning(f"source {entry.key} ({entry.format}) could not be decoded: {entry.error}")
    days = {(d, v, s) for e in fresh if not e.error for v, s, d in e.holds()}
    if not days:
        return SkipReason(f"no new or changed source among {len(sources)} under {tapeflow.landing} "
                          f"and {tapeflow.journal}")
    changed = json.dumps(sorted((e.key, e.signature) for e in fresh))
    signature = hashlib.sha1(changed.encode()).hexdigest()[:12]
    return _result(context, days, f"landing:{signature}", {"tapeflow/trigger": "landing"})


@sensor(job=tapeflow_days, minimum_interval_seconds=60, default_status=DefaultSensorStatus.RUNNING,
        description="Gap, degraded and resync windows the live flow recorded -> rebuild exactly those days.")
def gap_repair_sensor(context: SensorEvaluationContext,
                      tapeflow: TapeflowResource) -> SensorResult | SkipReason:
    """Read new STATUS rows from the lake and re-materialize the instrument-days their windows touch.

    The cursor remembers, per status partition directory, its mtime and the windows already repaired,
    so a window is repaired once even when its file is rewritten with more rows. A window still
    open (``until_ns`` = -1) waits until it closes.
    """
    seen: dict[str, list] = json.loads(context.cursor) if context.cursor else {}
    known = context.instance.get_dynamic_partitions(INSTRUMENTS_NAME)
    days: set[tuple[str, str, str]] = set()
    windows: list[str] = []
    for venue, symbol, date, path in lake_store.partitions(STATUS, tapeflow.lake):
        mtime = path.stat().st_mtime_ns
        done = seen.get(str(path), [0, []])
        if done[0] == mtime:
            continue
        rows = lake_store.read(STATUS, tapeflow.lake, venue=venue, symbol=symbol, date=date)
        repaired = set(done[1])
        for row in _closed_windows(rows):
            wid = f"{row['state']}:{row['ts_recv_ns']}:{row['until_ns']}"
            if wid in repaired:
                continue
            repaired.add(wid)
            windows.append(f"{venue}/{symbol or '*'} {wid}")
            symbols = [symbol] if symbol else _venue_symbols(known, venue)
            days |= {(d, venue, s) for s in symbols for d in _days(row["ts_recv_ns"], row["until_ns"])}
        seen[str(path)] = [mtime, sorted(repaired)]
    cursor = json.dumps(seen, sort_keys=True)
    if not days:
        return SensorResult(skip_reason="no new closed gap/degraded window in the status dataset",
                            cursor=cursor)
    context.log.info(f"repairing {len(days)} instrument-days for {len(windows)} windows: "
                     f"{'; '.join(windows)}")
    tag = hashlib.sha1("\n".join(sorted(windows)).encode()).hexdigest()[:12]
    return _result(context, days, f"repair:{tag}", {"tapeflow/trigger": "gap_repair"}, cursor=cursor)


def _closed_windows(status: pa.Table) -> Iterable[dict]:
    states = np.asarray(status.column("state").to_pylist(), dtype=object)
    for i in np.flatnonzero(np.isin(states, list(REPAIR_STATES))):
        row = status.slice(int(i), 1).to_pylist()[0]
        if row["until_ns"] >= 0:
            yield row


def _days(start_ns: int, end_ns: int) -> list[str]:
    lo, hi = min(start_ns, end_ns) // NS_PER_DAY, max(start_ns, end_ns) // NS_PER_DAY
    return [day_of(d * NS_PER_DAY) for d in range(lo, hi + 1)]


def _venue_symbols(known: Iterable[str], venue: str) -> list[str]:
    return [s for v, s in map(parse_instrument_key, known) if v == venue]


def _result(context: SensorEvaluationContext, days: set[tuple[str, str, str]], prefix: str,
            tags: dict[str, str], cursor: str | None = None) -> SensorResult:
    known = list(context.instance.get_dynamic_partitions(INSTRUMENTS_NAME))
    new = sorted({instrument_key(v, s) for _, v, s in days} - set(known))
    runs = partition_runs(days, known + new, run_key_prefix=prefix, tags=tags)
    return SensorResult(
        run_requests=runs,
        dynamic_partitions_requests=[INSTRUMENTS.build_add_request(new)] if new else [],
        cursor=cursor,
    )
