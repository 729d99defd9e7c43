"""The live flow's publish sink: every output micro-batch to :class:`tapeflow.serve.publish.Publisher`.

One partition, so one worker of the cluster holds the publisher (one port per flow). Its resume
state is nothing: a subscriber sees what the flow emits from the moment it connects, and a
replayed batch after recovery is published again (the dashboard keeps the latest row per key, so
a repeat changes nothing it shows).
"""

from __future__ import annotations

import pyarrow as pa
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from tapeflow.serve.publish import Publisher
from tapeflow.storage.batches import record_of


class _PublishPartition(StatefulSinkPartition[pa.Table, None]):
    def __init__(self, address: str) -> None:
        self.publisher = Publisher(address)
        print(f"live: publishing to subscribers on {self.publisher.host}:{self.publisher.port}", flush=True)

    def write_batch(self, values: list[pa.Table]) -> None:
        for table in values:
            self.publisher.publish(record_of(table).name, table)

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        self.publisher.close()


class PublishSink(FixedPartitionedSink[pa.Table, None]):
    """Publishes the flow's outputs on ``address`` (loopback ``HOST:PORT``) for ``tapeflow serve --live``.

    Args:
        address: where the publisher listens.
    """

    def __init__(self, address: str) -> None:
        self.address = address

    def list_parts(self) -> list[str]:
        return ["0"]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _PublishPartition:
        return _PublishPartition(self.address)
