"""Kraken: a book message's event time (not its levels' own times) and the placeholder ask.

The real capture's snapshots hold levels last updated in 2018-2021; as event times they spread a
30-second capture over 892 lake days and ClickHouse refused it (``TOO_MANY_PARTS``, issue 9).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tapeflow.schemas.records import BOOK_DELTA
from tapeflow.storage import lake
from tapeflow.venues import get_format
from tapeflow.venues.base import merge
from tests.conftest import need

KRAKEN = get_format("kraken")
T0 = 1_700_000_000_000_000_000


def _decode(tmp_path: Path, frames: list[object]) -> dict:
    path = tmp_path / "kraken.jsonl"
    path.write_text("".join(f"{T0 + i} {json.dumps(f)}\n" for i, f in enumerate(frames)))
    return merge(list(KRAKEN.decode([path])))


def test_every_row_of_a_message_carries_its_newest_level_time(tmp_path: Path) -> None:
    old, new = "1514764800.000001", "1699999999.500000"  # 2018-01-01 and the last change
    frames = [
        [7, {"as": [["5.0", "1.0", old], ["5.5", "1.0", new]], "bs": [["4.0", "1.0", old]]},
         "book-10", "X/Y"],
        # an update whose republished level ("r") keeps its old time
        [7, {"a": [["5.2", "2.0", "1700000000.250000"], ["5.6", "1.0", old, "r"]]}, "book-10", "X/Y"],
        [7, {"b": []}, "book-10", "X/Y"],  # no level: the capture time
    ]
    rows = _decode(tmp_path, frames)["book_delta"].to_pylist()
    assert [r["ts_event_ns"] for r in rows[:4]] == [1_699_999_999_500_000_000] * 4  # clear + 3 levels
    assert [r["ts_event_ns"] for r in rows[4:]] == [1_700_000_000_250_000_000] * 2


def test_placeholder_ask_beyond_int64_nanos_is_ignored_by_rule(tmp_path: Path) -> None:
    frames = [
        [7, {"as": [["5.0", "1.0", "1.0"], ["9999999997.00000", "0.001", "1.0"]],
             "bs": [["4.0", "1.0", "1.0"]]}, "book-10", "X/Y"],
        [7, {"a": [["9999999997.00000", "0.000", "2.0"]]}, "book-10", "X/Y"],  # its deletion
        [7, {"b": [["9999999997.00000", "1.0", "3.0"]]}, "book-10", "X/Y"],  # a bid that large: damage
    ]
    tables = _decode(tmp_path, frames)
    rej = tables["rejected"].to_pylist()
    assert [r["reason"] for r in rej] == ["price_beyond_range", "price_beyond_range", "out_of_range"]
    assert "9223372036.854775807" in rej[0]["detail"] and rej[0]["symbol"] == "X/Y"
    assert rej[0]["raw"] == b'["9999999997.00000","0.001","1.0"]'
    assert tables["book_delta"].num_rows == 1 + 2  # the snapshot clear and its other levels


def test_real_capture_ingests_into_one_day_per_pair(real_data: Path, tmp_path: Path) -> None:
    """The whole capture through ``tapeflow ingest`` into the lake and a chdb warehouse (its own
    process: chdb opens one directory per process)."""
    path = need(real_data / "cryptofeed" / "KRAKEN.ws.50.0")
    root, warehouse = tmp_path / "lake", tmp_path / "wh"
    done = subprocess.run(
        [sys.executable, "-m", "tapeflow.cli", "ingest", "--format", "kraken", "--quiet", "--lake", str(root),
         "--clickhouse", f"chdb://{warehouse}", str(path)],
        capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    parts = list(lake.partitions(BOOK_DELTA, root))
    assert len(parts) == 10  # 10 pairs, each on the capture's day (was 892 days)
    assert {d for _, _, d, _ in parts} == {"2021-04-17"}
    assert "book_delta       11,754" in done.stdout
    assert "warehouse: 11,755 rows" in done.stdout  # the deltas and the placeholder's row


@pytest.mark.parametrize("name", ["KRAKEN.ws.50.0"])
def test_real_event_times_lie_within_the_capture(real_data: Path, name: str) -> None:
    deltas = merge(list(KRAKEN.decode([need(real_data / "cryptofeed" / name)])))["book_delta"]
    ev = deltas.column("ts_event_ns").to_numpy()
    recv = deltas.column("ts_recv_ns").to_numpy()
    assert (ev <= recv).all()
    assert ((recv - ev) < 60 * 10**9).all()  # every message's newest level is under a minute old
