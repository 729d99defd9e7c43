"""Start-up cleanup: what a writer killed mid-commit left behind, removed when the next one opens.

A crash (kill -9, power loss) at any step of the commit protocol leaves the lake's partitions
consistent (docs/storage.md) but may leave:

- files and directories in the lake's staging area ``<root>/.tapeflow/tmp`` (sorted runs of a
  load, parts never published, versions never swapped in, old versions never deleted);
- a journal of a two-rename swap (filesystems without directory exchange) between its renames;
- a commit **intent**: a load that had begun swapping its lake partitions but had not finished its
  warehouse swap, so the two stores may disagree on its slices;
- ``_stage_*`` tables in the warehouse (one per load, some holding a full copy of a partition).

:func:`clean_lake` runs under the lake's commit lock and touches only what a dead process left
(every staging name starts with its writer's pid, and a live writer holds its owner mark:
:mod:`tapeflow.storage.locks`). :func:`repair_intents` makes the warehouse's slices of a dead
writer's intent equal to the lake's, which is authoritative because each lake partition swapped
whole. :func:`drop_orphan_stages` drops the staging tables of loads no longer running.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tapeflow.schemas import ALL_RECORDS
from tapeflow.storage import lake
from tapeflow.storage.locks import owner_alive
from tapeflow.storage.parts import STAGING, recover, staging
from tapeflow.storage.warehouse import Warehouse

INTENT = ".commit.json"
_OWNED = re.compile(r"^(\d+)-")

log = logging.getLogger(__name__)


@dataclass
class Cleaned:
    """What a start-up cleanup did.

    Attributes:
        recovered: two-rename swaps finished.
        removed: staging entries of dead writers deleted.
        repaired: (record, venue, symbol, date) slices the warehouse was made equal to the lake in.
        intents: intents of dead writers left for a writer with their warehouse (none was given).
        stages: orphan ``_stage_*`` tables dropped.
    """

    recovered: int = 0
    removed: list[str] = field(default_factory=list)
    repaired: list[tuple[str, str, str, str]] = field(default_factory=list)
    intents: list[Path] = field(default_factory=list)
    stages: list[str] = field(default_factory=list)


def clean_lake(root: Path, warehouse: Warehouse | None, cleaned: Cleaned) -> None:
    """Finish interrupted swaps, repair dead writers' intents, delete their staging (hold the lock)."""
    area = Path(root) / STAGING
    if not area.exists():
        return
    cleaned.recovered += recover(root)
    dead: dict[int, bool] = {}
    for entry in sorted(os.listdir(area)):
        m = _OWNED.match(entry)
        if m is None:
            continue
        pid = int(m.group(1))
        if pid not in dead:
            dead[pid] = not owner_alive(root, pid)
        if not dead[pid]:
            continue
        path = area / entry
        if entry.endswith(INTENT):
            if not _repair(root, path, warehouse, cleaned):
                cleaned.intents.append(path)
                continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        cleaned.removed.append(entry)
    if cleaned.removed:
        log.info("removed %d leftovers of dead writers from %s", len(cleaned.removed), area)


def write_intent(root: Path, record: str, slices: list[tuple[str, str, str]], warehouse: Warehouse) -> Path:
    """Record, before a load's lake swaps, which slices its warehouse swap must follow (fsynced)."""
    path = staging(root) / f"{os.getpid()}-{uuid.uuid4().hex}{INTENT}"
    with open(path, "w") as out:
        json.dump({"record": record, "warehouse": _identity(warehouse),
                   "slices": [list(s) for s in slices]}, out)
        out.flush()
        os.fsync(out.fileno())
    return path


def _repair(root: Path, path: Path, warehouse: Warehouse | None, cleaned: Cleaned) -> bool:
    """Make the warehouse hold the lake's rows in an intent's slices; False: not this warehouse."""
    try:
        intent = json.loads(path.read_text())
        record = ALL_RECORDS[intent["record"]]
        slices = [tuple(s) for s in intent["slices"]]
        target = intent["warehouse"]
    except (OSError, ValueError, KeyError, TypeError):
        log.warning("ignoring an unreadable commit intent %s", path)
        return True
    if warehouse is None or target != _identity(warehouse):
        log.warning("a writer died between the lake's and the warehouse's commit of %s (%d slices, "
                    "intent %s): the warehouse may disagree with the lake there until a writer with "
                    "that warehouse opens this lake, or the load is rerun", record.name, len(slices), path)
        return False
    stage = warehouse.stage(record)
    try:
        for venue, symbol, date in slices:
            stage.insert(lake.read(record, root, venue, symbol, date))
        stage.commit("replace", clear=slices)
    finally:
        stage.drop()
    cleaned.repaired.extend((record.name, *s) for s in slices)
    log.warning("repaired %d slices of %s in the warehouse from the lake (a writer died between the two "
                "commits)", len(slices), record.name)
    return True


def _identity(warehouse: Warehouse) -> str:
    """Which warehouse an intent is for, without its credentials (the lake is no place for them)."""
    if warehouse.chdb_path is not None:
        return f"chdb:{warehouse.chdb_path}"
    return "sha256:" + hashlib.sha256(warehouse.dsn.encode()).hexdigest()


def drop_orphan_stages(warehouse: Warehouse, live: set[str], max_age_s: float, cleaned: Cleaned) -> None:
    """Drop ``_stage_*`` tables of loads no longer running.

    An embedded (chdb) warehouse belongs to one process at a time, so every stage this process is
    not using is an orphan. A server is shared with writers elsewhere: only stages older than
    ``max_age_s`` are dropped there (a load's stage lives as long as the load).
    """
    where = "database = currentDatabase() AND startsWith(name, '_stage_')"
    if warehouse.chdb_path is None:
        where += f" AND metadata_modification_time < now() - {int(max_age_s)}"
    names = warehouse.query(f"SELECT name FROM system.tables WHERE {where}").column("name").to_pylist()
    for name in names:
        if name not in live:
            warehouse._command(f"DROP TABLE IF EXISTS {name}")
            cleaned.stages.append(name)
    if cleaned.stages:
        log.info("dropped %d orphan staging tables: %s", len(cleaned.stages), ", ".join(cleaned.stages))
