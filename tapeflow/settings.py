"""Configuration, read once at entry points from ``TAPEFLOW_*`` variables (never at import)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """Where tapeflow reads and writes.

    Attributes:
        lake_dir: root of the Parquet lake (``TAPEFLOW_LAKE``).
        clickhouse_dsn: ``chdb:<relative dir>``, ``chdb:///<absolute dir>`` (embedded engine) or
            ``http(s)://host:8123``
            (``TAPEFLOW_CLICKHOUSE``).
        real_data: the shared real-data folder (``TAPEFLOW_REAL_DATA``).
    """

    lake_dir: Path = Path("lake")
    clickhouse_dsn: str = "chdb:warehouse"
    real_data: Path = Path("../shared/data")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        default = cls()
        return cls(
            lake_dir=Path(env.get("TAPEFLOW_LAKE", str(default.lake_dir))),
            clickhouse_dsn=env.get("TAPEFLOW_CLICKHOUSE", default.clickhouse_dsn),
            real_data=Path(env.get("TAPEFLOW_REAL_DATA", str(default.real_data))),
        )
