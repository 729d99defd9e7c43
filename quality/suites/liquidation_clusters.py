"""Liquidation clusters (the ``liquidation_cluster`` record): schema, keys, side code, shape, order
within a side, members recounted in the day's liquidations, day."""

from __future__ import annotations

import numpy as np

from quality import checks, derive
from quality.checks import SuiteData
from tapeflow.schemas.derivatives import LIQUIDATION, LIQUIDATION_CLUSTER
from tapeflow.schemas.records import ASK, BID, SCALE, UNDEF_PRICE

RECORD = LIQUIDATION_CLUSTER
CHECKS = ("schema", "not_null_keys", "side_code", "cluster_shape", "cluster_order", "members",
          "ts_within_day")
_RTOL = 1e-9  # the notional is a float sum of float products; the recount is exact


def plan(d: SuiteData) -> None:
    """Plan the cluster checks on ``d`` (see ``CHECKS``)."""
    checks.schema(d, RECORD)
    checks.not_null_keys(d)
    checks.codes(d, "side_code", "side", (BID, ASK), "the liquidation orders buy or sell")
    ts, recv = d.col("ts_event_ns"), d.col("ts_recv_ns")
    start, end, count, notional = (d.col(c) for c in ("start_ns", "end_ns", "count", "notional"))
    shape = ((count < 1) | (start > end) | ((count == 1) & (start != end)) | (ts != end) | (recv != end)
             | ~np.isfinite(notional) | ~(notional > 0))
    checks.flag_false(d, "cluster_shape", "count >= 1; start_ns <= end_ns (equal for one liquidation); "
                      "both times are the end; notional finite and above zero", shape,
                      show=("start_ns", "end_ns", "count", "notional"))
    checks.flag_false(d, "cluster_order", "clusters of one side of an instrument never overlap: each "
                      "starts after the previous one ended", _overlaps(d, start, end),
                      show=("side", "start_ns", "end_ns"))
    liquidations = d.inputs.get(LIQUIDATION.name)
    if liquidations is None:
        d.add(checks.Check("members", "count and notional recounted in the liquidations", "derived", [],
                           skipped="no liquidation rows given"))
    else:
        bad = _members(d, liquidations, start, end, count, notional)
        # rows with no span to recount (another check's fault: a side that is neither, a start after
        # the end, a missing key) are not judged here
        keys = [d.table.column(c).is_null().to_numpy(zero_copy_only=False) for c in ("venue", "symbol")]
        odd = ~np.isin(d.col("side"), (BID, ASK)) | (start > end) | keys[0] | keys[1]
        checks.flag_false(d, "members", "count = the liquidations of the instrument and side in "
                          "[start_ns, end_ns]; notional = their summed |price| x size (exact integers, "
                          f"within {_RTOL:g} relative of the float sum)", bad,
                          details={"liquidation_rows": liquidations.num_rows}, skip=odd,
                          show=("side", "start_ns", "end_ns", "count", "notional"))
    checks.ts_within_day(d, derive.partition_ts(d.table))


def _overlaps(d: SuiteData, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    side = d.col("side").astype(np.int64)
    bad = np.zeros(len(start), dtype=bool)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, key in enumerate(zip(d.codes.tolist(), side.tolist(), strict=True)):
        groups.setdefault(key, []).append(i)
    for rows in groups.values():
        r = np.asarray(rows)
        r = r[np.argsort(start[r], kind="stable")]
        bad[r[1:]] = start[r[1:]] <= end[r[:-1]]
    return bad


def _members(d: SuiteData, liquidations: object, start: np.ndarray, end: np.ndarray, count: np.ndarray,
             notional: np.ndarray) -> np.ndarray:
    liq = liquidations.to_pydict()  # type: ignore[attr-defined]
    by_key: dict[tuple[str, str, int], list[tuple[int, int]]] = {}
    for venue, symbol, side, t, price, size in zip(liq["venue"], liq["symbol"], liq["side"],
                                                   liq["ts_event_ns"], liq["price_nanos"], liq["size_nanos"],
                                                   strict=True):
        if price != UNDEF_PRICE and size != UNDEF_PRICE:  # (no cluster can hold one: a dead letter)
            by_key.setdefault((venue, symbol, side), []).append((t, abs(price) * size))
    bad = np.zeros(len(start), dtype=bool)
    venue, symbol, side = (d.table.column(c).to_pylist() for c in ("venue", "symbol", "side"))
    for i in range(len(start)):
        members = [n for t, n in by_key.get((venue[i], symbol[i], side[i]), ()) if start[i] <= t <= end[i]]
        exact = sum(members) / (SCALE * SCALE)  # int / int: the correctly rounded quote units
        bad[i] = len(members) != count[i] or not abs(notional[i] - exact) <= _RTOL * abs(exact)
    return bad
