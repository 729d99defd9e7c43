"""Prometheus metrics: counts from micro-batches, scraped over HTTP from the metrics server."""

from __future__ import annotations

import urllib.request

import pyarrow as pa
import pytest

from tapeflow.errors import ConfigError
from tapeflow.live.prom import FlowMetrics, start_metrics_server
from tapeflow.schemas.records import REJECTED, STATUS, TRADE

T0 = 1_723_161_255_000_000_000


def _trades(venue: str, n: int) -> pa.Table:
    return TRADE.table({"ts_event_ns": [T0] * n, "ts_recv_ns": [T0 + i for i in range(n)],
                        "sequence": [1] * n, "trade_id": ["1"] * n, "price_nanos": [1] * n,
                        "size_nanos": [1] * n, "aggressor_side": [66] * n, "flags": [0] * n},
                       constants={"venue": venue, "symbol": "X"})


def _scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def test_metrics_endpoint_serves_batch_counts() -> None:
    metrics = FlowMetrics()
    rejected = REJECTED.table({"ts_event_ns": [-1] * 3, "ts_recv_ns": [T0] * 3,
                               "reason": ["bad_json", "bad_json", "truncated"], "detail": ["d"] * 3,
                               "location": ["f:1", "f:2", "f:3"], "raw": [b"x"] * 3},
                              constants={"venue": "kraken", "symbol": ""})
    status = STATUS.table({"ts_event_ns": [T0] * 4, "ts_recv_ns": [T0] * 4,
                           "state": ["gap", "resyncing", "gap", "degraded"], "sequence": [1] * 4,
                           "until_ns": [-1] * 4, "detail": [""] * 4},
                          constants={"venue": "kraken", "symbol": "X"})
    batch = {"trade": pa.concat_tables([_trades("kraken", 7), _trades("binance", 2)]),
             "rejected": rejected, "status": status}
    metrics.observe_records(batch, now_ns=T0 + 6 + 2_500_000_000)   # kraken's newest row is T0 + 6
    metrics.observe_records({"trade": _trades("kraken", 3)}, now_ns=T0 + 2 + 500_000_000)
    metrics.events_out_table("trade", _trades("kraken", 4))
    for seconds in (0.0002, 0.003, 0.2):
        metrics.observe_batch_latency(seconds)
    server = start_metrics_server(0, metrics=metrics)
    try:
        got = _scrape(server.url)
    finally:
        server.close()
    assert got['tapeflow_events_in_total{venue="kraken"}'] == 10
    assert got['tapeflow_events_in_total{venue="binance"}'] == 2
    assert got['tapeflow_events_out_total{table="trade",venue="kraken"}'] == 4
    assert got['tapeflow_rejected_total{reason="bad_json",venue="kraken"}'] == 2
    assert got['tapeflow_rejected_total{reason="truncated",venue="kraken"}'] == 1
    assert got['tapeflow_gaps_total{venue="kraken"}'] == 2
    assert got['tapeflow_resyncs_total{venue="kraken"}'] == 1
    assert got['tapeflow_degraded_total{venue="kraken"}'] == 1
    assert got['tapeflow_lag_seconds{venue="kraken"}'] == pytest.approx(0.5)
    assert got['tapeflow_batch_latency_seconds_count'] == 3
    assert got['tapeflow_batch_latency_seconds_bucket{le="0.005"}'] == 2


def test_two_flows_in_one_process_do_not_collide_and_a_taken_port_is_a_clear_error() -> None:
    a, b = FlowMetrics(), FlowMetrics()
    a.events_out_table("trade", _trades("x", 2))
    assert b.events_out.labels("x", "trade")._value.get() == 0
    server = start_metrics_server(0, metrics=a)
    try:
        with pytest.raises(ConfigError, match=str(server.port)):
            start_metrics_server(server.port, metrics=b)
    finally:
        server.close()
