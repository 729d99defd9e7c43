"""``python -m dagster_project.demo``: the simulated day of ``make demo`` as a Dagster materialization.

After ``python -m tapeflow.demo`` wrote ``.demo/`` (or ``$TAPEFLOW_DEMO_DIR``), its simulated feed
files are dropped in a landing folder under ``.demo/dagster/``; the landing sensor registers the
instruments and asks for their day; that request runs in this process as a ``tapeflow_days`` run
(every group, every blocking check) recorded in the project-local ``DAGSTER_HOME`` (``.dagster``),
so it shows in the UI that ``make ui`` starts. ``--defer-hints`` keeps its "Next, try" hints for the
end of ``make demo`` (see :mod:`tapeflow.demo`).
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from tapeflow.demo import act_arguments, finish
from tapeflow.errors import TapeflowError

QUIET_CONSOLE = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def run(demo_root: Path, home: Path) -> int:
    """Materialize the demo's simulated day; returns 0 when every asset and blocking check passed."""
    import warnings

    import dagster as dg

    # the demo prints its own summary: Dagster's per-event console log (hundreds of DEBUG lines) and
    # its beta notice for BackfillPolicy would bury it; the full event log is in the UI
    warnings.filterwarnings("ignore", category=dg.BetaWarning)

    from assets.checks import load
    from assets.partitions import INSTRUMENTS_NAME
    from dagster_project.definitions import defs
    from dagster_project.home import ensure_home
    from dagster_project.resources import resources
    from dagster_project.sensors import landing_sensor

    feed = demo_root / "sim" / "sim"
    if not feed.is_dir():
        raise TapeflowError(f"no simulated feed under {feed}: run `python -m tapeflow.demo` first")
    base = (demo_root / "dagster").resolve()
    if base.exists():
        shutil.rmtree(base)
    shutil.copytree(feed, base / "landing" / "sim")
    paths = {"TAPEFLOW_LAKE": str(base / "lake"), "TAPEFLOW_CLICKHOUSE": f"chdb://{base / 'warehouse'}",
             "TAPEFLOW_LANDING": str(base / "landing"), "TAPEFLOW_JOURNAL": str(base / "journal")}
    os.environ.update(paths)  # the Definitions' resource reads them when the run starts
    os.environ["DAGSTER_HOME"] = str(ensure_home(home))

    t0 = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        _step(f"landing sensor: {base / 'landing'}")
        tick = landing_sensor(dg.build_sensor_context(instance=instance, resources=resources()))
        if not isinstance(tick, dg.SensorResult) or not tick.run_requests:
            raise TapeflowError(f"the landing sensor found nothing to build under {base / 'landing'}")
        for request in tick.dynamic_partitions_requests:
            new = [k for k in request.partition_keys
                   if not instance.has_dynamic_partition(INSTRUMENTS_NAME, k)]
            instance.add_dynamic_partitions(INSTRUMENTS_NAME, new)
            print(f"   registered instruments: {', '.join(request.partition_keys)}")
        job = defs().resolve_job_def("tapeflow_days")  # loaded now: the partitions start at the data
        ok = True
        for request in tick.run_requests:
            span = request.partition_key or (f"{request.tags['dagster/asset_partition_range_start']} .. "
                                             f"{request.tags['dagster/asset_partition_range_end']}")
            _step(f"tapeflow_days: {span} (ingest -> book -> derived -> checks -> warehouse -> data docs)")
            result = job.execute_in_process(instance=instance, partition_key=request.partition_key,
                                            tags=dict(request.tags), raise_on_error=False,
                                            run_config=QUIET_CONSOLE)
            ok &= result.success
            _summary(result)
    lake = Path(paths["TAPEFLOW_LAKE"])
    kept = load(lake)
    failed = [f"{t} {asset}: {c.name}" for (t, asset), r in kept.items() for c in r.failed]
    _step(f"quality: {sum(len(r.checks) for r in kept.values())} checks over {len(kept)} suites, "
          f"{len(failed)} failed")
    for line in failed:
        print(f"   {line}")
    print(f"   Data Docs: {lake / '_data_docs' / 'index.html'}")
    print(f"\ndone in {time.perf_counter() - t0:.0f} s; run history in {home}")
    return 0 if ok else 1


def hints(demo_root: Path) -> list[str]:
    """What to try after this act: the Dagster UI on the run just made, and the Data Docs."""
    lake = (demo_root / "dagster" / "lake").resolve()
    return [
        "make ui   # Dagster at http://127.0.0.1:3000: Assets, Runs, the lineage in Global asset lineage",
        f".venv/bin/python -m webbrowser file://{lake / '_data_docs' / 'index.html'}   # the Data Docs",
    ]


def _summary(result: object) -> None:
    rows: dict[str, int] = {}
    for event in result.get_asset_materialization_events():  # type: ignore[attr-defined]
        m = event.materialization
        count = m.metadata.get("dagster/row_count")
        name = m.asset_key.to_user_string()
        if count is not None:
            rows[name] = rows.get(name, 0) + int(count.value)  # each partition reports its own rows
    for name, n in rows.items():
        print(f"   {name:<18} {n:>12,} rows")
    print(f"   run {result.run_id[:8]}: {'success' if result.success else 'FAILED'}")  # type: ignore[attr-defined]


def _step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m dagster_project.demo [--defer-hints]``."""
    args = act_arguments("python -m dagster_project.demo", __doc__, argv)
    demo_root = Path(os.environ.get("TAPEFLOW_DEMO_DIR", ".demo"))
    home = Path(os.environ.get("TAPEFLOW_DAGSTER_HOME", ".dagster"))
    try:
        code = run(demo_root, home)
    except TapeflowError as exc:
        print(f"dagster demo: error: {exc}", file=sys.stderr)
        return 2
    finish(demo_root, "3-dagster", "python -m dagster_project.demo: the Dagster run and its checks",
           hints(demo_root), defer=args.defer_hints)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
