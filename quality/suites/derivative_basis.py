"""Basis of an instrument on its grid (the ``derivative_basis`` record): schema, keys, index range,
the basis recomputed exactly from the row's mark and index, grid order, day."""

from __future__ import annotations

import numpy as np

from quality import checks, derive
from quality.checks import SuiteData
from tapeflow.schemas.derivatives import DERIVATIVE_BASIS
from tapeflow.schemas.records import UNDEF_PRICE

RECORD = DERIVATIVE_BASIS
CHECKS = ("schema", "not_null_keys", "price_range", "basis_formula", "grid_order", "ts_within_day")


def plan(d: SuiteData) -> None:
    """Plan the basis checks on ``d`` (see ``CHECKS``)."""
    checks.schema(d, RECORD)
    checks.not_null_keys(d, ("interval",))
    mark, index = d.col("mark_price_nanos"), d.col("index_price_nanos")
    # a basis divides by the index: it is above zero (a mark may be zero or negative: spreads)
    checks.price_range(d, {"index_price_nanos": (index, index == index, False)})
    checks.flag_false(d, "basis_formula", "mark and index both present or both absent; basis_bps is "
                      "(mark - index) / index * 1e4 of the row's exact nanos (the derivation's float "
                      "operations, so equal bit for bit), NaN without the pair", _formula(mark, index,
                                                                                          d.col("basis_bps")),
                      show=("mark_price_nanos", "index_price_nanos", "basis_bps"))
    grid_order(d)
    checks.ts_within_day(d, derive.partition_ts(d.table))


def _formula(mark: np.ndarray, index: np.ndarray, bps: np.ndarray) -> np.ndarray:
    has_m, has_i = mark != UNDEF_PRICE, index != UNDEF_PRICE
    pair = has_m & has_i
    safe = np.where(pair & (index != 0), index, 1)
    want = np.where(pair, (np.where(pair, mark, 0) - np.where(pair, index, 0)) / safe * 1e4, np.nan)
    same = (bps == want) | (np.isnan(bps) & np.isnan(want))
    return (has_m != has_i) | ~same


def grid_order(d: SuiteData) -> None:
    """``grid_order``: a grid row's times are one instant (``ts_recv_ns == ts_event_ns``) and event
    time rises strictly within an instrument (a repeated or reordered grid time fails)."""
    ts, recv = d.col("ts_event_ns"), d.col("ts_recv_ns")
    has = d.prev >= 0
    back = np.zeros(len(ts), dtype=bool)
    back[has] = ts[has] <= ts[d.prev[has]]
    checks.flag_false(d, "grid_order", "ts_recv_ns == ts_event_ns (the grid time) and event time "
                      "strictly rising within an instrument", back | (recv != ts),
                      show=("ts_event_ns", "ts_recv_ns"))
