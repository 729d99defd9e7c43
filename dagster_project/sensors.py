"""Sensors: new files in the landing folder or the journal, and gap repair from the live flow's STATUS.

Both register instruments as dynamic partitions when first seen and request runs of the whole
day pipeline (``tapeflow_days``) for exactly the instrument-days concerned, tagged
``dagster/sensor_name`` so the run list shows which sensor launched them. A day before the
partitions' first day (a source older than the data the definitions were loaded with) cannot be
requested: it waits in the sensor's cursor, with a warning, until a reload of the definitions
starts the partitions earlier.
"""

import hashlib
import json

from dagster import DefaultSensorStatus, SensorEvaluationContext, SensorResult, SkipReason, sensor

from assets.options import UNDERLYINGS, UNDERLYINGS_NAME, underlying_key
from assets.partitions import INSTRUMENTS, INSTRUMENTS_NAME, first_day, instrument_key, parse_instrument_key
from assets.resources import TapeflowResource
from dagster_project.jobs import option_days, tapeflow_days
from dagster_project.runs import SENSOR_NAME_TAG, before, partition_runs
from tapeflow.batch.repairs import closed_windows, repair_days
from tapeflow.batch.sources import SourceIndex, discover
from tapeflow.options.landing import OptionIndex, capture_files
from tapeflow.schemas.records import STATUS
from tapeflow.storage import lake as lake_store

LANDING = "landing_sensor"
GAP_REPAIR = "gap_repair_sensor"
OPTIONS = "options_sensor"
# Sources decoded per tick: a big drop is indexed over several ticks instead of timing one out.
SOURCES_PER_TICK = 20

Day = tuple[str, str, str]  # (date, venue, symbol)


@sensor(name=LANDING, job=tapeflow_days, minimum_interval_seconds=30,
        default_status=DefaultSensorStatus.RUNNING,
        description="New or changed files under the landing folder or the journal -> their instrument-days.")
def landing_sensor(context: SensorEvaluationContext, tapeflow: TapeflowResource) -> SensorResult | SkipReason:
    """Index new sources, register their instruments and request runs for the days they hold."""
    state = json.loads(context.cursor) if context.cursor else {}
    index = SourceIndex(tapeflow.lake)
    sources = discover(tapeflow.landing, tapeflow.journal)
    fresh = index.refresh(sources, limit=SOURCES_PER_TICK)
    for entry in fresh:
        if entry.error:
            context.log.warning(f"source {entry.key} ({entry.format}) could not be decoded: {entry.error}")
    days = {(d, v, s) for e in fresh if not e.error for v, s, d in e.holds()}
    days |= {tuple(w) for w in state.get("waiting", [])}  # type: ignore[misc]
    if not days:
        return SkipReason(f"no new or changed source among {len(sources)} under {tapeflow.landing} "
                          f"and {tapeflow.journal}")
    changed = json.dumps(sorted((e.key, e.signature) for e in fresh))
    signature = hashlib.sha1(changed.encode()).hexdigest()[:12]
    return _result(context, LANDING, days, f"landing:{signature}", {"tapeflow/trigger": "landing"}, state)


@sensor(name=GAP_REPAIR, job=tapeflow_days, minimum_interval_seconds=60,
        default_status=DefaultSensorStatus.RUNNING,
        description="Gap, degraded and resync windows the live flow recorded -> rebuild exactly those days.")
def gap_repair_sensor(context: SensorEvaluationContext,
                      tapeflow: TapeflowResource) -> SensorResult | SkipReason:
    """Read new STATUS rows from the lake and re-materialize the instrument-days their windows touch.

    The cursor remembers, per status partition directory, its mtime and the windows already repaired,
    so a window is repaired once even when its file is rewritten with more rows. A window still
    open (``until_ns`` = -1) waits until it closes.
    """
    state = json.loads(context.cursor) if context.cursor else {}
    if "files" not in state and state:  # the cursor before days could wait: {path: [mtime, windows]}
        state = {"files": state}
    seen: dict[str, list] = state.setdefault("files", {})
    known = context.instance.get_dynamic_partitions(INSTRUMENTS_NAME)
    days: set[Day] = {tuple(w) for w in state.get("waiting", [])}  # type: ignore[misc]
    windows: list[str] = []
    for venue, symbol, date, path in lake_store.partitions(STATUS, tapeflow.lake):
        mtime = path.stat().st_mtime_ns
        done = seen.get(str(path), [0, []])
        if done[0] == mtime:
            continue
        rows = lake_store.read(STATUS, tapeflow.lake, venue=venue, symbol=symbol, date=date)
        repaired = set(done[1])
        for row in closed_windows(rows):
            wid = f"{row['state']}:{row['ts_recv_ns']}:{row['until_ns']}"
            if wid in repaired:
                continue
            repaired.add(wid)
            windows.append(f"{venue}/{symbol or '*'} {wid}")
            days |= repair_days(row, venue, symbol, map(parse_instrument_key, known))
        seen[str(path)] = [mtime, sorted(repaired)]
    if not days:
        return SensorResult(skip_reason="no new closed gap/degraded window in the status dataset",
                            cursor=json.dumps(state, sort_keys=True))
    if windows:
        context.log.info(f"repairing {len(days)} instrument-days for {len(windows)} windows: "
                         f"{'; '.join(windows)}")
    tag = hashlib.sha1("\n".join(sorted(windows) or sorted(map(str, days))).encode()).hexdigest()[:12]
    return _result(context, GAP_REPAIR, days, f"repair:{tag}", {"tapeflow/trigger": "gap_repair"}, state)


@sensor(name=OPTIONS, job=option_days, minimum_interval_seconds=60,
        default_status=DefaultSensorStatus.RUNNING,
        description="New or changed Deribit captures under <landing>/deribit/ -> their underlying-days "
                    "(option tickers and IV surfaces).")
def options_sensor(context: SensorEvaluationContext, tapeflow: TapeflowResource) -> SensorResult | SkipReason:
    """Index new option captures, register their underlyings (``deribit.BTC``) and request their days.

    Like the landing sensor: sources decoded at most :data:`SOURCES_PER_TICK` per tick, a capture
    that fails to decode is logged, days before the partitions' first day wait in the cursor.
    """
    state = json.loads(context.cursor) if context.cursor else {}
    index = OptionIndex(tapeflow.lake)
    files = capture_files(tapeflow.landing)
    fresh = index.refresh(files, limit=SOURCES_PER_TICK)
    for path in fresh:
        if index.entries[path]["error"]:
            context.log.warning(f"option capture {path} could not be decoded: {index.entries[path]['error']}")
    days: set[Day] = {(d.date, d.venue, d.underlying) for d in index.days(fresh)}
    days |= {tuple(w) for w in state.get("waiting", [])}  # type: ignore[misc]
    if not days:
        return SkipReason(f"no new or changed capture among {len(files)} under {tapeflow.landing}/deribit")
    repo = context.repository_def
    first = (first_day(repo.get_job(option_days.name).partitions_def)
             if repo is not None and repo.has_job(option_days.name) else None)
    ready, early = before(days, first)
    state["waiting"] = sorted(early)
    if early:
        context.log.warning(f"{len(early)} underlying-days are before the partitions' first day {first} "
                            f"(from {min(early)[0]}): they wait until the definitions are reloaded or "
                            "TAPEFLOW_PARTITIONS_START is set earlier")
    known = list(context.instance.get_dynamic_partitions(UNDERLYINGS_NAME))
    new = sorted({underlying_key(v, u) for _, v, u in ready} - set(known))
    signature = hashlib.sha1(json.dumps(sorted(fresh)).encode()).hexdigest()[:12]
    runs = partition_runs(ready, known + new, run_key_prefix=f"options:{signature}",
                          tags={"tapeflow/trigger": "options_landing", SENSOR_NAME_TAG: OPTIONS})
    cursor = json.dumps(state, sort_keys=True)
    if not runs:
        return SensorResult(skip_reason=f"{len(early)} underlying-days wait for earlier partitions",
                            cursor=cursor)
    return SensorResult(run_requests=runs, cursor=cursor,
                        dynamic_partitions_requests=[UNDERLYINGS.build_add_request(new)] if new else [])


def _first_day(context: SensorEvaluationContext) -> str | None:
    """The partitions' first day, from the definitions the sensor runs in (None when unknown)."""
    repo = context.repository_def
    if repo is None or not repo.has_job(tapeflow_days.name):
        return None
    return first_day(repo.get_job(tapeflow_days.name).partitions_def)


def _result(context: SensorEvaluationContext, name: str, days: set[Day], prefix: str,
            tags: dict[str, str], state: dict) -> SensorResult:
    first = _first_day(context)
    ready, early = before(days, first)
    state["waiting"] = sorted(early)
    cursor = json.dumps(state, sort_keys=True)
    if early:
        context.log.warning(
            f"{len(early)} instrument-days are before the partitions' first day {first} "
            f"(from {min(early)[0]}): they wait until the definitions are reloaded (they then start "
            f"at the data's first day) or TAPEFLOW_PARTITIONS_START is set earlier")
    known = list(context.instance.get_dynamic_partitions(INSTRUMENTS_NAME))
    new = sorted({instrument_key(v, s) for _, v, s in ready} - set(known))
    runs = partition_runs(ready, known + new, run_key_prefix=prefix, tags={**tags, SENSOR_NAME_TAG: name})
    if not runs:
        return SensorResult(skip_reason=f"{len(early)} instrument-days wait for partitions that start "
                                        f"before {first}", cursor=cursor)
    return SensorResult(
        run_requests=runs,
        dynamic_partitions_requests=[INSTRUMENTS.build_add_request(new)] if new else [],
        cursor=cursor,
    )
