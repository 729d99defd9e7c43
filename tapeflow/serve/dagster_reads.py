"""Quality results (asset-check evaluations) and runs, read from a Dagster instance folder.

Dagster keeps both in its instance storage (``DAGSTER_HOME``: SQLite files by default), which
several processes may read at once, so the server opens the instance read-side beside the Dagster
UI and daemon. Dagster is imported only when one of these routes is asked and a folder is set.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

NS = 1_000_000_000


def read(home: Path | None, kind: str, limit: int) -> dict[str, Any]:
    """The newest ``limit`` runs (``kind == "runs"``) or asset-check evaluations (``"quality"``).

    Returns:
        ``{"source": "dagster" | "none", "detail": str, "rows": [...]}``, newest first.
    """
    if home is None:
        return {"source": "none", "rows": [],
                "detail": "no Dagster instance: start serve with --dagster-home (or DAGSTER_HOME)"}
    if not (Path(home) / "dagster.yaml").exists() and not (Path(home) / "history").exists():
        return {"source": "none", "rows": [], "detail": f"{home} holds no Dagster instance yet"}
    from dagster import DagsterEventType, DagsterInstance, EventRecordsFilter

    with DagsterInstance.from_config(str(home)) as instance:
        if kind == "runs":
            out = [{"run_id": r.dagster_run.run_id, "job": r.dagster_run.job_name,
                    "status": r.dagster_run.status.value,
                    "start_ns": int(r.start_time * NS) if r.start_time else None,
                    "end_ns": int(r.end_time * NS) if r.end_time else None,
                    "partition": r.dagster_run.tags.get("dagster/partition")}
                   for r in instance.get_run_records(limit=limit)]
        else:
            records = instance.event_log_storage.get_event_records(
                EventRecordsFilter(event_type=DagsterEventType.ASSET_CHECK_EVALUATION), limit=limit,
                ascending=False)
            out = []
            for record in records:
                entry = record.event_log_entry
                evaluation = entry.dagster_event.event_specific_data
                out.append({"ts_ns": int(entry.timestamp * NS), "run_id": entry.run_id,
                            "asset": evaluation.asset_key.to_user_string(), "check": evaluation.check_name,
                            "passed": bool(evaluation.passed), "severity": evaluation.severity.value,
                            "partition": evaluation.partition,
                            "detail": (evaluation.description or "")[:300]})
    return {"source": "dagster", "detail": str(home), "rows": out}
