"""A scoped replace: two producers share one ``signal`` partition (the ``signals`` asset's detectors
and ``derivatives_derived``'s ``derivatives/1``); re-running either replaces its own rows only, in
the lake and in ClickHouse (chdb) alike, with nothing lost and nothing duplicated."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pytest

from tapeflow.derivatives.derived_signals import SCOPE as DERIVED
from tapeflow.errors import StorageError
from tapeflow.schemas.records import BOOK_DELTA, SIGNAL, UNDEF_PRICE
from tapeflow.signals.detect import SCOPE as DETECTORS
from tapeflow.storage import lake
from tapeflow.storage.scope import Scope
from tapeflow.storage.warehouse import Warehouse
from tapeflow.storage.writer import Writer

S = 1_000_000_000
T0 = 1_704_067_200 * S + 3_600 * S  # 2024-01-01 01:00 UTC
DAY = "2024-01-01"


def signals(detectors: list[str], *, symbol: str = "SIM-A", shift: int = 0) -> pa.Table:
    n = len(detectors)
    return SIGNAL.table({
        "ts_event_ns": [T0 + (i + shift) * S for i in range(n)],
        "ts_recv_ns": [T0 + (i + shift) * S + 5 for i in range(n)],
        "kind": [d.split("/")[0].replace("derivatives", "basis_extreme") for d in detectors],
        "side": [1] * n, "price_nanos": [UNDEF_PRICE] * n, "size_nanos": [S] * n,
        "start_ns": [T0 + (i + shift) * S for i in range(n)],
        "end_ns": [T0 + (i + shift) * S for i in range(n)], "confidence": [0.5] * n,
        "score": [1.5 + shift] * n, "detector": detectors, "params_hash": ["abc"] * n,
        "flags": [0] * n, "evidence": [json.dumps({"i": i, "shift": shift}) for i in range(n)],
    }, constants={"venue": "sim", "symbol": symbol})


def rows(table: pa.Table) -> Counter[str]:
    cols = [c for c in SIGNAL.column_names if c not in ("venue",)]
    return Counter(json.dumps({c: r[c] for c in cols}, sort_keys=True, default=str)
                   for r in table.to_pylist())


def both(root: Path, wh: Warehouse) -> tuple[Counter[str], Counter[str]]:
    return rows(lake.read(SIGNAL, root)), rows(wh.fetch(SIGNAL))


def test_each_producer_replaces_its_own_rows_and_keeps_the_others(tmp_path: Path, wh: Warehouse) -> None:
    first = signals(["whale/1", "withdrawal/1", "institutional/1"])
    other_symbol = signals(["whale/1"], symbol="SIM-B")
    derived = signals(["derivatives/1", "derivatives/1"], shift=10)
    rerun = signals(["whale/1", "spoofing/1"], shift=20)  # the detectors found other rows this time
    with Writer(tmp_path, wh, spill_rows=2) as writer:  # spill_rows: partitions written in runs early
        writer.replace(SIGNAL, pa.concat_tables([first, other_symbol]), scope=DETECTORS)
        writer.replace(SIGNAL, derived, scope=DERIVED)  # derivatives_derived after signals
        want = rows(first) + rows(other_symbol) + rows(derived)
        assert both(tmp_path, wh) == (want, want)
        for _ in range(2):  # signals re-run (twice: idempotent): the derivatives rows survive, once
            writer.replace(SIGNAL, rerun, scope=DETECTORS)
            want = rows(rerun) + rows(other_symbol) + rows(derived)
            assert both(tmp_path, wh) == (want, want)
        writer.replace(SIGNAL, derived, scope=DERIVED)  # and derivatives again: the detectors' rows survive
        assert both(tmp_path, wh) == (want, want)
        # a listed partition the new rows do not touch loses this producer's rows only
        writer.replace(SIGNAL, derived.slice(0, 0), scope=DETECTORS,
                       partitions=[("sim", "SIM-A", DAY), ("sim", "SIM-B", DAY)])
        assert both(tmp_path, wh) == (rows(derived), rows(derived))
        writer.replace(SIGNAL, derived.slice(0, 0), scope=DERIVED, partitions=[("sim", "SIM-A", DAY)])
        assert both(tmp_path, wh) == (Counter(), Counter())
    assert not lake.partition_dir(tmp_path, SIGNAL, "sim", "SIM-A", DAY).exists()


def test_a_plain_replace_still_takes_the_whole_partition(tmp_path: Path, wh: Warehouse) -> None:
    derived = signals(["derivatives/1"], shift=10)
    detectors = signals(["whale/1"])
    with Writer(tmp_path, wh) as writer:
        writer.replace(SIGNAL, derived, scope=DERIVED)
        writer.replace(SIGNAL, detectors)  # no scope: the partition is exactly these rows
        assert both(tmp_path, wh) == (rows(detectors), rows(detectors))


def test_rows_outside_the_scope_and_bad_scopes_are_clear_errors(tmp_path: Path, wh: Warehouse) -> None:
    before = signals(["derivatives/1"])
    with Writer(tmp_path, wh) as writer:
        writer.replace(SIGNAL, before, scope=DERIVED)
        with pytest.raises(StorageError, match=r"1 rows outside the load's scope \(detector \['whale/1'\]"):
            mixed = pa.concat_tables([signals(["derivatives/1"], shift=3), signals(["whale/1"])])
            writer.replace(SIGNAL, mixed, scope=DERIVED)
        assert both(tmp_path, wh) == (rows(before), rows(before))  # nothing of the refused load landed
        with pytest.raises(StorageError, match="not a string column of book_delta"):
            writer.load(BOOK_DELTA, "replace", scope=Scope("detector", ("x/",)))
        with pytest.raises(StorageError, match="applies to a replace, not a merge"):
            writer.load(SIGNAL, "merge", scope=DERIVED)
    with pytest.raises(StorageError, match="non-empty string prefixes"):
        Scope("detector", ("",))
