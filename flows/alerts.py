"""The live flow's alerts sink: ``signal`` and ``status`` items -> :class:`tapeflow.alerts.stage.AlertStage`.

One partition, so one worker of the cluster holds the engine (throttle windows and the outbox are
per flow, not per worker). Its resume state is nothing: queued deliveries live in the engine's
journal, and a replayed batch raises alerts with the same ids (the engine drops a source row it
raised already, receivers drop a repeated idempotency key).

With ``publish`` (the flow's ``--publish`` address) the alerts each batch raises go out on the same
live stream as the flow's other outputs, through the publisher :class:`flows.publish.PublishSink`
opened in this process on that address; the acknowledgements ``tapeflow serve`` records are read
from ``acks`` (by default ``acks.jsonl`` beside the journal: ``<lake>/_alerts/``, where the
server keeps them by default too).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from tapeflow.alerts.alert import Alert
from tapeflow.alerts.config import load
from tapeflow.alerts.stage import AlertStage
from tapeflow.storage.batches import record_of

log = logging.getLogger(__name__)


def stream_publisher(address: str) -> Callable[[list[Alert]], None]:
    """Publishes alerts through the flow's publisher on ``address`` (looked up per call: the
    publish sink's partition may be built after this one, and closes before it at the end)."""
    from tapeflow.serve.publish import running

    warned = []

    def publish(alerts: list[Alert]) -> None:
        publisher = running(address)
        if publisher is None:
            if not warned:  # e.g. the publisher's partition lives in another process of the cluster
                warned.append(True)
                log.warning("alerts: no publisher on %s in this process; alerts are not on the live "
                            "stream (they are delivered and in the ledger)", address)
            return
        publisher.publish_alerts([a.payload() for a in alerts])

    return publish


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
        publish: the flow's ``--publish`` address: alerts go on the live stream too (None: not).
        acks: the acknowledgements file (default ``acks.jsonl`` beside the journal).

    Raises:
        ConfigError: the alerts file is bad.
    """

    def __init__(self, config: Path, journal: Path, lake: Path | None = None, *,
                 publish: str | None = None, acks: Path | None = None) -> None:
        load(config)
        self.config, self.journal, self.lake = Path(config), Path(journal), lake
        self.publish = publish
        self.acks = Path(acks) if acks is not None else Path(journal).parent / "acks.jsonl"

    def list_parts(self) -> list[str]:
        return ["0"]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _AlertPartition:
        publish = stream_publisher(self.publish) if self.publish is not None else None
        return _AlertPartition(AlertStage(self.config, self.journal, self.lake, acks=self.acks,
                                          publish=publish))
