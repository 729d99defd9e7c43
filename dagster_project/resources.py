"""The resources of the Definitions: one :class:`~assets.resources.TapeflowResource`.

The resource class lives in ``assets/`` (assets are typed against it and may not import this
package); here it is configured. Every field left unset resolves from the ``TAPEFLOW_*``
environment when a run or a sensor uses it (``TAPEFLOW_LAKE``, ``TAPEFLOW_CLICKHOUSE``,
``TAPEFLOW_LANDING``, ``TAPEFLOW_JOURNAL``, ``TAPEFLOW_REAL_DATA``), never at import.
"""

from __future__ import annotations

from pathlib import Path

from assets.resources import TapeflowResource


def resources(*, lake: Path | None = None, clickhouse: str | None = None, landing: Path | None = None,
              journal: Path | None = None) -> dict[str, object]:
    """Resources for ``Definitions`` or ``dagster.materialize`` (unset values follow the environment)."""
    return {
        "tapeflow": TapeflowResource(
            lake_dir=str(lake) if lake is not None else None,
            clickhouse_dsn=clickhouse,
            landing_dir=str(landing) if landing is not None else None,
            journal_dir=str(journal) if journal is not None else None,
        )
    }
