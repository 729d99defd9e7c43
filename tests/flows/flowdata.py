"""Small inputs shared by the flow tests: a real Binance capture prefix and a simulated L3 market.

Both are written once per test session under a temporary folder (never into the repo).
"""

from __future__ import annotations

import atexit
import functools
import gzip
import shutil
import tempfile
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from tapeflow.live.batching import Heartbeat, cut_batches
from tests.conftest import need, real_data_root

USDM = "binance/usdm_btcusdt_20240808.gz"
PREFIX_LINES = 20_000
SIM_SEED, SIM_INSTRUMENTS, SIM_DURATION_NS = 3, 2, 2 * 60 * 1_000_000_000


@functools.cache
def _tmp() -> Path:
    root = Path(tempfile.mkdtemp(prefix="tapeflow-flows-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return root


@functools.cache
def binance_prefix(lines: int = PREFIX_LINES) -> Path:
    """The first ``lines`` lines of the real Binance USD-M capture (REST snapshot included), as a file
    in its own folder (one CaptureSource partition)."""
    src = need(real_data_root() / USDM)
    out = _tmp() / f"binance{lines}" / "usdm_prefix.txt"
    out.parent.mkdir(parents=True)
    with gzip.open(src, "rb") as fh, open(out, "wb") as dst:
        for i, line in enumerate(fh):
            if i == lines:
                break
            dst.write(line)
    return out


@functools.cache
def sim_market(duration_ns: int = SIM_DURATION_NS) -> tuple[Path, ...]:
    """A 2-instrument simulated L3 market (crypto preset, seed 3), 2 minutes unless told."""
    from tapeflow.simulator import simulate

    summary = simulate(SIM_SEED, SIM_INSTRUMENTS, duration_ns, _tmp() / f"sim{duration_ns}", progress=False)
    return tuple(sorted(summary.files))


def raw_comparable_bookticker_u(path: Path) -> list[int]:
    """``u`` of every bookTicker whose ``u`` is the ``u`` of a depth diff at/after the REST snapshot,
    read from the raw lines (independent of the decoder and the book)."""
    depth_u, ticker_u, snap_id = set(), [], None
    with open(path, "rb") as fh:
        for line in fh:
            msg = orjson.loads(line.split(b" ", 1)[1])
            if "lastUpdateId" in msg:
                snap_id = msg["lastUpdateId"]
            stream = msg.get("stream", "")
            if stream.endswith("@depth@0ms"):
                depth_u.add(msg["data"]["u"])
            elif stream.endswith("@bookTicker"):
                ticker_u.append(msg["data"]["u"])
    assert snap_id is not None, f"no REST snapshot in {path}"
    return [u for u in ticker_u if u in depth_u and u >= snap_id]


def sorted_rows(table: pa.Table, keys: tuple[str, ...]) -> pa.Table:
    """``table`` sorted by ``keys`` (the flow's row order across workers is not defined)."""
    return table.sort_by([(k, "ascending") for k in keys])


def same_rows(a: pa.Table, b: pa.Table) -> bool:
    """Tables equal row for row, NaN equal to NaN (``pa.Table.equals`` says NaN != NaN)."""
    if not a.schema.equals(b.schema) or a.num_rows != b.num_rows:
        return False
    for name in a.column_names:
        x, y = a.column(name), b.column(name)
        if pa.types.is_floating(x.type):
            if not np.array_equal(x.to_numpy(), y.to_numpy(), equal_nan=True):
                return False
        elif not x.equals(y):
            return False
    return True


class TablesSource(FixedPartitionedSource):
    """Decoded tables as a one-partition Bytewax source, cut like ``CaptureSource`` cuts a capture
    (for inputs a test changed after decoding, e.g. an injected latency spike)."""

    def __init__(self, tables: dict[str, pa.Table], *, batch_events: int = 500,
                 batch_ns: int | None = 1_000_000_000, heartbeat_ns: int | None = None) -> None:
        self.tables, self.batch_events, self.batch_ns = tables, batch_events, batch_ns
        self.heartbeat_ns = heartbeat_ns

    def list_parts(self) -> list[str]:
        return ["tables"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> StatefulSourcePartition:
        batches = list(cut_batches(self.tables, self.batch_events, self.batch_ns))
        if self.heartbeat_ns:
            beat = Heartbeat(self.heartbeat_ns)
            batches = [beat.stamp(b) for b in batches]
        return _TablesPartition(batches)


class _TablesPartition(StatefulSourcePartition):
    def __init__(self, batches: list[dict[str, pa.Table]]) -> None:
        self._batches = iter(batches)

    def next_batch(self) -> list[dict[str, pa.Table]]:
        batch = next(self._batches, None)
        if batch is None:
            raise StopIteration
        return [batch]

    def snapshot(self) -> None:
        return None
