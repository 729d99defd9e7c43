"""The derivative_basis, open_interest_change and liquidation_clusters suites pass the batch
definition's rows and fail exactly the check of each injected fault."""

from __future__ import annotations

import pyarrow as pa
import pytest

from quality import check_names, plan_suite, validate_plans
from tapeflow.derivatives.live_clusters import ClusterConfig, batch_clusters
from tapeflow.derivatives.live_derived import DerivedConfig, batch_derived
from tapeflow.schemas.derivatives import (
    DERIVATIVE_BASIS,
    INDEX_PRICE,
    LIQUIDATION,
    LIQUIDATION_CLUSTER,
    MARK_PRICE,
    OPEN_INTEREST,
    OPEN_INTEREST_CHANGE,
)
from tapeflow.schemas.records import ASK, BID, SCALE, UNDEF_PRICE

DAY = "2024-01-01"
T0 = 1_704_067_200 * SCALE + 3_600 * SCALE  # 01:00 UTC
S = SCALE
ON = {"venue": "binance-usdm", "symbol": "BTCUSDT"}
CONFIG = DerivedConfig(window_ns=3 * S, max_staleness_ns=4 * S)
CLUSTERS = ClusterConfig(window_ns=5 * S, min_notional=100_000.0)


def _times(offsets: list[float]) -> list[int]:
    return [T0 + int(o * S) for o in offsets]


def _inputs() -> dict[str, pa.Table]:
    # marks around an index of 60,000 (one mark missing for 6 s: stale rows, NaN basis); OI of
    # 1,000 rising, one gap; liquidations: a 3-order buy burst (1.8M), a lone small sell, 2 sells (0.24M)
    mt = _times([0, 1.5, 2, 9, 10, 11])
    it = _times([0, 3, 9])
    ot = _times([0, 1, 2, 3, 4, 10, 11, 12])
    lt = _times([1, 2, 3.5, 4, 20, 21])
    return {
        "mark_price": MARK_PRICE.table({"ts_event_ns": mt, "ts_recv_ns": mt, "mark_price_nanos":
                                        [60_000 * S, 60_360 * S, 60_390 * S + 7, 59_640 * S, 60_001 * S,
                                         59_999 * S - 3]}, constants=ON),
        "index_price": INDEX_PRICE.table({"ts_event_ns": it, "ts_recv_ns": it, "index_price_nanos":
                                          [60_000 * S, 60_000 * S + 1, 59_990 * S]}, constants=ON),
        "open_interest": OPEN_INTEREST.table({"ts_event_ns": ot, "ts_recv_ns": ot, "open_interest_nanos":
                                              [1_000 * S, 1_010 * S, 1_100 * S + 5, 990 * S, 1_000 * S,
                                               1_200 * S, 0, 1_300 * S],
                                              "open_interest_value_nanos": [UNDEF_PRICE] * 8}, constants=ON),
        "liquidation": LIQUIDATION.table({"ts_event_ns": lt, "ts_recv_ns": lt,
                                          "liquidation_id": list("abcdef"),
                                          "side": [BID, BID, ASK, BID, ASK, ASK],
                                          "price_nanos": [60_000 * S, 60_000 * S + 1, 60_000 * S, 60_000 * S,
                                                          60_000 * S, 60_000 * S],
                                          "size_nanos": [10 * S, 10 * S, S // 10, 10 * S, 2 * S, 2 * S]},
                                         constants=ON),
    }


def _clean() -> dict[str, pa.Table]:
    inputs = _inputs()
    out = batch_derived(inputs, CONFIG)
    return {"derivative_basis": out[DERIVATIVE_BASIS.name],
            "open_interest_change": out[OPEN_INTEREST_CHANGE.name],
            "liquidation_clusters": batch_clusters(inputs["liquidation"], CLUSTERS)}


def _with(table: pa.Table, name: str, row: int, value: object) -> pa.Table:
    values = table.column(name).to_pylist()
    values[row] = value
    i = table.column_names.index(name)
    return table.set_column(i, table.schema.field(i), pa.array(values, table.schema.field(i).type))


def test_the_batch_definitions_rows_pass_every_check(verdicts: list[dict[str, set[str]]]) -> None:
    clean = _clean()
    basis, change, clusters = clean.values()
    assert basis.schema == DERIVATIVE_BASIS.arrow_schema()
    assert change.schema == OPEN_INTEREST_CHANGE.arrow_schema()
    assert clusters.schema == LIQUIDATION_CLUSTER.arrow_schema()
    # what the faults below stand on, worked out from _inputs: grid rows 0..12 s; the mark of 2 s
    # against the index of 0 s is (60,390e9 + 7 - 60,000e9) / 60,000e9 * 1e4 bps; 7 and 8 s have no
    # fresh mark (the 2 s mark is 5 s old, over the 4 s staleness)
    assert basis.column("ts_event_ns").to_pylist() == _times(list(range(13)))
    assert basis["basis_bps"][2].as_py() == (390 * S + 7) / (60_000 * S) * 1e4
    assert basis.column("mark_price_nanos").to_pylist()[7:9] == [UNDEF_PRICE] * 2
    # OI change over 3 s: at 3 s 990 - 1,000 (-1 %); at 4 s 1,000 - 1,010; at 11 s 0 - 1,000; at 12 s
    # the OI of 9 s is stale (none since 4 s): no change
    assert change.column("change_nanos").to_pylist()[3:5] == [-10 * S, -10 * S]
    assert change["change_pct"][3].as_py() == -1.0
    assert change["change_pct"][11].as_py() == -100.0
    assert change["change_nanos"][12].as_py() == UNDEF_PRICE
    # clusters: the 2 sells of 20-21 s (240,000) and the 3 buys of 1-4 s (1,800,000 and a nano);
    # the lone 6,000 sell of 3.5 s is under the 100,000 threshold
    assert [(r["side"], r["count"], r["start_ns"] - T0, r["end_ns"] - T0) for r in clusters.to_pylist()] == [
        (ASK, 2, 20 * S, 21 * S), (BID, 3, S, 4 * S)]
    assert verdicts[-1] == {name: set() for name in clean}
    for name in clean:
        assert len(check_names(name)) >= 6


def _set(column: str, row: int, value: object):
    return lambda t: _with(t, column, row, value)


def _bump(column: str, row: int, by: float):
    return lambda t: _with(t, column, row, t[column][row].as_py() + by)


def _both(*edits):
    def edit(t: pa.Table) -> pa.Table:
        for e in edits:
            t = e(t)
        return t
    return edit


_B2 = (390 * S + 7) / (60_000 * S) * 1e4  # the basis of row 2
NEXT_DAY = T0 + 24 * 3_600 * S
# (dataset, the fault, the one check that must fail)
FAULTS = [
    ("derivative_basis", _set("basis_bps", 2, 65.0), "basis_formula"),  # not (mark - index) / index
    ("derivative_basis", _set("basis_bps", 2, _B2 + 1.5e-14), "basis_formula"),  # one ulp or so off
    ("derivative_basis", _set("mark_price_nanos", 2, 60_390 * S + 8), "basis_formula"),  # a nano off
    ("derivative_basis", _set("index_price_nanos", 8, 60_000 * S), "basis_formula"),  # index, no mark
    # an index below zero, the basis recomputed from it: only the range sees it
    ("derivative_basis", _both(_set("index_price_nanos", 0, -1),
                               _set("basis_bps", 0, (60_000 * S + 1) / -1 * 1e4)), "price_range"),
    ("derivative_basis", _set("ts_event_ns", 5, T0 + 4 * S), "grid_order"),  # a repeated grid time
    ("derivative_basis", _set("ts_recv_ns", 6, T0 + 6 * S + 1), "grid_order"),  # not the grid time
    ("derivative_basis", _set("interval", 1, None), "not_null_keys"),
    ("derivative_basis", _both(_set("ts_event_ns", 12, NEXT_DAY), _set("ts_recv_ns", 12, NEXT_DAY)),
     "ts_within_day"),
    # a change one nano off with its percentage recomputed from it: only the row 3 s earlier sees it
    ("open_interest_change", _both(_set("change_nanos", 4, -10 * S + 1),
                                   _set("change_pct", 4, (-10 * S + 1) / (1_010 * S - 1) * 100.0)),
     "change_vs_rows"),
    # a change (and its percentage) where the OI of 9 s, its start, is absent
    ("open_interest_change", _both(_set("change_nanos", 12, 0), _set("change_pct", 12, 0.0)),
     "change_vs_rows"),
    ("open_interest_change", _set("change_pct", 3, -1.0000000001), "change_formula"),
    ("open_interest_change", _set("open_interest_nanos", 12, -5), "size_range"),
    ("open_interest_change", _set("window_ns", 0, 0), "change_formula"),
    ("open_interest_change", _set("ts_recv_ns", 6, T0 + 7 * S), "grid_order"),
    ("open_interest_change", _both(_set("ts_event_ns", 12, NEXT_DAY), _set("ts_recv_ns", 12, NEXT_DAY)),
     "ts_within_day"),
    ("liquidation_clusters", _set("count", 1, 4), "members"),
    ("liquidation_clusters", _bump("notional", 0, 1.0), "members"),  # 240,001: 4e-6 off
    ("liquidation_clusters", _set("side", 0, 7), "side_code"),
    ("liquidation_clusters", _bump("ts_event_ns", 1, -1), "cluster_shape"),  # not its end
    ("liquidation_clusters", _set("start_ns", 0, T0 + 22 * S), "cluster_shape"),  # starts after its end
    ("liquidation_clusters", lambda t: pa.concat_tables([t, t.slice(1, 1)]), "cluster_order"),  # twice
    ("liquidation_clusters", _set("venue", 0, None), "not_null_keys"),
]


@pytest.fixture(scope="module")
def verdicts() -> list[dict[str, set[str]]]:
    # every fault's three suites planned, then validated in one Great Expectations run per dataset
    # and frame (one run per fault would take ~2 s each)
    clean, inputs = _clean(), _inputs()
    plans, names = [], []
    for dataset, fault, _ in [*FAULTS, ("derivative_basis", lambda t: t, "")]:  # last: the clean rows
        tables = {**clean, dataset: fault(clean[dataset])}
        for name, table in tables.items():
            plans.append(plan_suite(name, table, partition_day=DAY,
                                    inputs=inputs if name == "liquidation_clusters" else None))
            names.append(name)
    results = validate_plans(plans)
    out = []
    for i in range(len(FAULTS) + 1):
        chunk = zip(names[3 * i:3 * i + 3], results[3 * i:3 * i + 3], strict=True)
        out.append({name: {c.name for c in r.failed} for name, r in chunk})
    return out


@pytest.mark.parametrize("i", range(len(FAULTS)), ids=[f"{f[0]}-{f[2]}-{i}" for i, f in enumerate(FAULTS)])
def test_one_fault_fails_its_check(verdicts: list[dict[str, set[str]]], i: int) -> None:
    dataset, _, check = FAULTS[i]
    assert verdicts[i] == {name: ({check} if name == dataset else set()) for name in verdicts[i]}


def test_a_cluster_against_changed_liquidations_fails_members_only() -> None:
    clusters = _clean()["liquidation_clusters"]
    inputs = _inputs()
    # one more buy inside the burst's span: the stored cluster no longer counts its members
    extra = LIQUIDATION.table({"ts_event_ns": [T0 + 2 * S], "ts_recv_ns": [T0 + 2 * S],
                               "liquidation_id": ["g"], "side": [BID],
                               "price_nanos": [60_000 * S], "size_nanos": [S]}, constants=ON)
    more = {"liquidation": pa.concat_tables([inputs["liquidation"], extra])}
    changed, alone = validate_plans([
        plan_suite("liquidation_clusters", clusters, partition_day=DAY, inputs=more),
        plan_suite("liquidation_clusters", clusters, partition_day=DAY)])
    assert {c.name for c in changed.failed} == {"members"}
    assert changed.check("members").unexpected_count == 1
    # without the liquidation rows the members check is skipped, saying why, not judged
    assert alone.passed
    assert alone.check("members").details["skipped"] == "no liquidation rows given"
