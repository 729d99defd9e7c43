"""Databento historical pulls in Dagster: the cost-guarded fetch job and the live gaps it repairs.

``databento_fetch`` (one op) prices a ``timeseries.get_range`` request, refuses it over the daily
or monthly budget, else lands the DBN in ``<landing>/dbn/databento/...``, where ``landing_sensor``
picks it up and requests its instrument-days (the backfill). Every decision is a row of the spend
ledger (``databento_spend``, lake + ClickHouse), and the run's metadata shows the estimate, the
budgets, what was spent before, and the ledger's last rows; a refusal fails the run with the
message and the same metadata.

``databento_gap_repair_sensor`` is the Databento half of gap repair: the closed ``gap`` windows the
live Databento client recorded (``tapeflow.venues.databento.repair``) become ``databento_fetch``
runs for exactly those capture-time ranges (``gap_repair_sensor`` meanwhile rebuilds the days from
the journal, and again once the repair file lands).
"""

import datetime as dt
import json

import dagster as dg

from assets.resources import TapeflowResource
from dagster_project.runs import SENSOR_NAME_TAG
from tapeflow.batch.repairs import closed_windows
from tapeflow.schemas.records import STATUS
from tapeflow.settings import DatabentoSettings
from tapeflow.storage import lake as lake_store
from tapeflow.venues.databento.historical import DatabentoApiError, RangeRequest
from tapeflow.venues.databento.repair import gap_request
from tapeflow.venues.databento.spend import OverBudget, guard_from_settings, ledger_markdown

DATABENTO_GAP_REPAIR = "databento_gap_repair_sensor"
OP = "databento_get_range"


class DatabentoFetchConfig(dg.Config):
    """One historical request: ``[start_ns, end_ns)`` of ``symbols`` in ``schema`` of ``dataset``."""

    dataset: str
    schema_name: str = "mbo"
    symbols: list[str]
    start_ns: int
    end_ns: int
    why: str = "backfill"


@dg.op(name=OP, description="Price a Databento get_range request, refuse it over budget, else land its DBN.")
def databento_get_range(context: dg.OpExecutionContext, config: DatabentoFetchConfig,
                        tapeflow: TapeflowResource) -> dg.Output[str]:
    """Run the cost guard on one request (see the module docstring)."""
    request = RangeRequest(config.dataset, config.schema_name, tuple(config.symbols), config.start_ns,
                           config.end_ns)
    guard = guard_from_settings(DatabentoSettings.from_env(), tapeflow.lake, clickhouse_dsn=tapeflow.dsn)
    try:
        row = guard.fetch(request, tapeflow.landing, config.why)
    except OverBudget as exc:
        raise dg.Failure(description=str(exc), metadata=_metadata(exc.row, guard.ledger()),
                         allow_retries=False) from None
    except DatabentoApiError as exc:
        raise dg.Failure(description=str(exc), allow_retries=True) from None
    context.log.info(f"landed {row['bytes_received']:,} bytes for ${row['estimate_usd']:,.4f}: {row['path']}")
    return dg.Output(row["path"], metadata=_metadata(row, guard.ledger()))


def _metadata(row: dict, ledger: object) -> dict[str, object]:
    return {
        "request_id": row["request_id"], "outcome": row["outcome"], "reason": row["reason"] or "-",
        "why": row["why"], "estimate_usd": dg.MetadataValue.float(row["estimate_usd"]),
        "billable_bytes": dg.MetadataValue.int(row["billable_bytes"]),
        "daily_budget_usd": dg.MetadataValue.float(row["daily_budget_usd"]),
        "monthly_budget_usd": dg.MetadataValue.float(row["monthly_budget_usd"]),
        "spent_day_before_usd": dg.MetadataValue.float(row["spent_day_usd"]),
        "spent_month_before_usd": dg.MetadataValue.float(row["spent_month_usd"]),
        "bytes_received": dg.MetadataValue.int(row["bytes_received"]),
        "landed": row["path"] or "-",
        "ledger": dg.MetadataValue.md(ledger_markdown(ledger)),  # type: ignore[arg-type]
    }


@dg.job(name="databento_fetch",
        description="A cost-guarded Databento historical pull into the landing folder.",
        tags={"tapeflow/source": "databento"})
def databento_fetch() -> None:
    databento_get_range()


def fetch_run_config(request: RangeRequest, why: str) -> dict:
    """The ``databento_fetch`` run config of one request."""
    return {"ops": {OP: {"config": {"dataset": request.dataset, "schema_name": request.schema,
                                    "symbols": list(request.symbols), "start_ns": request.start_ns,
                                    "end_ns": request.end_ns, "why": why}}}}


@dg.sensor(name=DATABENTO_GAP_REPAIR, job=databento_fetch, minimum_interval_seconds=60,
           default_status=dg.DefaultSensorStatus.RUNNING,
           description="Closed gap windows of the live Databento client -> cost-guarded historical pulls.")
def databento_gap_repair_sensor(context: dg.SensorEvaluationContext,
                                tapeflow: TapeflowResource) -> dg.SensorResult:
    """Request one ``databento_fetch`` run per new closed Databento ``gap`` window (once each)."""
    state = json.loads(context.cursor) if context.cursor else {}
    done: set[str] = set(state.get("windows", []))
    runs = []
    for venue, symbol, date, _ in lake_store.partitions(STATUS, tapeflow.lake):
        rows = lake_store.read(STATUS, tapeflow.lake, venue=venue, symbol=symbol, date=date)
        for row in closed_windows(rows):
            request = gap_request(row)
            if request is None:
                continue
            wid = f"{venue}/{symbol}:{row['ts_recv_ns']}:{row['until_ns']}"
            if wid in done:
                continue
            done.add(wid)
            start = dt.datetime.fromtimestamp(row["ts_recv_ns"] / 1e9, dt.UTC).isoformat()
            seconds = (row["until_ns"] - row["ts_recv_ns"]) / 1e9
            why = f"gap repair {venue}/{symbol} from {start} ({seconds:.3f} s)"
            runs.append(dg.RunRequest(run_key=f"databento:{request.request_id}",
                                      run_config=fetch_run_config(request, why),
                                      tags={SENSOR_NAME_TAG: DATABENTO_GAP_REPAIR,
                                            "tapeflow/trigger": "gap_repair"}))
    cursor = json.dumps({"windows": sorted(done)})
    if not runs:
        return dg.SensorResult(skip_reason="no new closed Databento gap window in the status dataset",
                               cursor=cursor)
    context.log.info(f"repairing {len(runs)} Databento gap windows from the historical API")
    return dg.SensorResult(run_requests=runs, cursor=cursor)
