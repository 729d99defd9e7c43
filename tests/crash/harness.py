"""Shared pieces of the crash tests: inputs, a killed child run, and what the stores hold."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow as pa

from tapeflow.schemas import ALL_RECORDS
from tapeflow.storage import lake
from tapeflow.storage.parts import STAGING
from tapeflow.storage.warehouse import Warehouse

REPO = Path(__file__).resolve().parents[2]
HEADER = "exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n"
DAY_US = 86_400_000_000
START_US = 1_700_006_400_000_000  # 2023-11-15 00:00 UTC


def trades_file(path: Path, rows: int, *, first_id: int, symbols: tuple[str, ...] = ("BTCUSDT", "ETHUSDT"),
                days: int = 2, seed: int = 0, bad: int = 0) -> Path:
    """A Tardis trades CSV: ``rows`` trades over ``symbols`` and ``days`` UTC days, ``bad`` NaN lines."""
    rng = random.Random(seed)
    lines = []
    for i in range(rows):
        ts = START_US + (i * days * DAY_US) // rows + rng.randrange(1000)
        symbol = symbols[i % len(symbols)]
        side = "buy" if rng.random() < 0.5 else "sell"
        lines.append(f"binance,{symbol},{ts},{ts + 150},{first_id + i},{side},"
                     f"{30000 + rng.randrange(10000) / 100},{rng.randrange(1, 500) / 1000}")
    for j in range(bad):
        ts = START_US + j
        lines.insert(rows // 2 + j, f"binance,{symbols[0]},{ts},{ts},{10**9 + j},buy,NaN,1")
    path.write_text(HEADER + "\n".join(lines) + "\n")
    return path


def run_child(lake_root: Path, dsn: str, kill: str, inputs: list[Path],
              timeout_s: float = 300) -> tuple[int, str]:
    """Run :mod:`tests.crash.child`; return its exit code (-9: killed) and stdout."""
    env = os.environ | {"PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "tests.crash.child", str(lake_root), dsn, kill,
                           *map(str, inputs)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout_s)
    if proc.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(f"child failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.returncode, proc.stdout


@dataclass
class Contents:
    """What the lake and the warehouse hold, per record type."""

    lake: dict[str, pa.Table]
    warehouse: dict[str, Counter[int]]

    def lake_rows(self, name: str) -> Counter[int]:
        return multiset(self.lake[name])


RECORDS = ("trade", "rejected")


def contents(lake_root: Path, dsn: str | None) -> Contents:
    """Both stores' rows (lake tables in read order; warehouse rows as a multiset of row hashes)."""
    tables = {name: lake.read(ALL_RECORDS[name], lake_root) for name in RECORDS}
    stored: dict[str, Counter[int]] = {}
    if dsn:
        with Warehouse(dsn) as wh:
            stored = {name: multiset(wh.fetch(ALL_RECORDS[name])) for name in RECORDS}
    return Contents(tables, stored)


def stage_tables(dsn: str) -> list[str]:
    with Warehouse(dsn) as wh:
        return wh.query("SELECT name FROM system.tables WHERE database = currentDatabase() "
                        "AND startsWith(name, '_stage_')").column("name").to_pylist()


def staging_entries(lake_root: Path) -> list[str]:
    area = lake_root / STAGING
    return sorted(os.listdir(area)) if area.exists() else []


def multiset(table: pa.Table) -> Counter[int]:
    return Counter(pl.from_arrow(table).hash_rows(seed=0).to_list()) if table.num_rows else Counter()
