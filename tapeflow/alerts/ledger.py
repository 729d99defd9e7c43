"""The delivery ledger from the journals into the lake and ClickHouse, as a batch step.

Every engine with a journal (the live flow's stage, the Dagster sensors) appends its attempts'
ledger rows to ``<journal stem>.ledger.jsonl`` (:meth:`tapeflow.alerts.journal.Journal.ledger`).
The flow writes the lake's ``alert_delivery`` itself only when it writes the lake, and nothing
that delivers writes ClickHouse (an embedded chdb warehouse belongs to one process); this step,
``tapeflow alerts ledger``, loads every row of every
ledger journal of ``<lake>/_alerts/`` with a merge, which keeps a row already stored once (same
content), so a second run or rows the flow appended already add nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from tapeflow.alerts.delivery import ledger_table
from tapeflow.schemas.alerts import ALERT_DELIVERY


@dataclass(frozen=True)
class LedgerLoad:
    """What one load found and wrote."""

    journals: int
    rows: int
    torn_lines: int


def journal_rows(folder: Path) -> tuple[pa.Table, LedgerLoad]:
    """Every ledger row of the ``*.ledger.jsonl`` files in ``folder``, as an ``alert_delivery`` table.

    A line that does not parse (a crash mid-append; its delivery pass never finished, and the pass
    after the restart logs the attempt again) is counted in ``torn_lines`` and skipped.
    """
    rows, torn = [], 0
    files = sorted(folder.glob("*.ledger.jsonl")) if folder.is_dir() else []
    for path in files:
        for line in path.read_bytes().splitlines():
            try:
                row = json.loads(line)
                rows.append({name: row[name] for name in ALERT_DELIVERY.column_names})
            except (ValueError, KeyError, TypeError):
                torn += 1
    return ledger_table(rows), LedgerLoad(len(files), len(rows), torn)


def load_ledger(folder: Path, lake: Path | None, dsn: str | None) -> LedgerLoad:
    """Merge the ledger journals of ``folder`` into the lake and/or the warehouse at ``dsn``.

    Raises:
        StorageError: the lake or the warehouse cannot be written.
    """
    from tapeflow.storage.writer import Writer

    table, found = journal_rows(folder)
    if table.num_rows and (lake is not None or dsn is not None):
        with Writer(lake, dsn) as writer:
            writer.merge(ALERT_DELIVERY, table)
    return found
