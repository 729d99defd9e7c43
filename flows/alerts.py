"""The live flow's alerts sink: ``signal`` and ``status`` items -> :class:`tapeflow.alerts.stage.AlertStage`.

One partition, so one worker of the cluster holds the engine (throttle windows and the outbox are
per flow, not per worker). Its resume state is nothing: queued deliveries live in the engine's
journal, and a replayed batch raises alerts with the same ids (the engine drops a source row it
raised already, receivers drop a repeated idempotency key).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from tapeflow.alerts.config import load
from tapeflow.alerts.stage import AlertStage
from tapeflow.storage.batches import record_of


class _AlertPartition(StatefulSinkPartition[pa.Table, None]):
    def __init__(self, stage: AlertStage) -> None:
        self.stage = stage

    def write_batch(self, values: list[pa.Table]) -> None:
        self.stage.apply((record_of(table).name, table) for table in values)

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        self.stage.close()


class AlertSink(FixedPartitionedSink[pa.Table, None]):
    """Alerts on the flow's signal and feed-status rows (rules in ``config``, docs/alerts.md).

    Args:
        config: the alerts file (validated now: a bad file fails the flow's build).
        journal: the outbox journal.
        lake: where the ``alert_delivery`` ledger goes (None: not stored).

    Raises:
        ConfigError: the alerts file is bad.
    """

    def __init__(self, config: Path, journal: Path, lake: Path | None = None) -> None:
        load(config)
        self.config, self.journal, self.lake = Path(config), Path(journal), lake

    def list_parts(self) -> list[str]:
        return ["0"]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _AlertPartition:
        return _AlertPartition(AlertStage(self.config, self.journal, self.lake))
