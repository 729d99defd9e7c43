"""``TAPEFLOW_LIVE_METRICS_PORT`` / ``tapeflow live --metrics-port``: the flow serves Prometheus metrics
whose counters equal what the flow consumed and emitted, counted here from a batch decode."""

from __future__ import annotations

import re
import urllib.request

from bytewax.testing import run_main

from flows.market import flow_from_env
from tapeflow.venues import get_format
from tapeflow.venues.base import merge
from tests.flows.flowdata import sim_market

SECOND = 1_000_000_000


def _sample(text: str, name: str, **labels: str) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if m and ",".join(sorted(m.group(1).split(","))) == want:
            return float(m.group(2))
    raise AssertionError(f"{name}{{{want}}} not served")


def test_flow_serves_prometheus_counts_of_what_it_consumed(tmp_path, monkeypatch, capsys) -> None:
    market = sim_market(20 * SECOND)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TAPEFLOW_LIVE_CAPTURE", ":".join(str(p) for p in market))
    monkeypatch.setenv("TAPEFLOW_LIVE_FORMAT", "sim")
    monkeypatch.setenv("TAPEFLOW_LIVE_OUTPUTS", "none")
    monkeypatch.setenv("TAPEFLOW_LIVE_BARS", "1m")
    monkeypatch.setenv("TAPEFLOW_LIVE_METRICS_PORT", "0")
    run_main(flow_from_env())
    url = re.search(r"Prometheus metrics at (\S+)", capsys.readouterr().out).group(1)
    text = urllib.request.urlopen(url, timeout=10).read().decode()

    decoded = merge(list(get_format("sim").decode(list(market))))
    venue = decoded["order_event"].column("venue")[0].as_py()
    # every normalized row the feed gave counts as an event in (the sim feed has L3 and L2 views)
    raw = ("book_delta", "order_event", "trade", "quote")
    events_in = sum(decoded[n].num_rows for n in raw if n in decoded)
    assert _sample(text, "tapeflow_events_in_total", venue=venue) == events_in
    assert _sample(text, "tapeflow_events_out_total", venue=venue, table="trade") == decoded["trade"].num_rows


def test_derived_rows_observe_event_to_output_latency_only_on_a_live_clock() -> None:
    import time

    from flows.sinks import MetricsSink
    from tapeflow.live.prom import FlowMetrics
    from tapeflow.schemas.records import BAR

    row = {f.name: 0 for f in BAR.fields} | {"venue": "v", "symbol": "s", "interval": "1s"}
    bar = BAR.table({k: [v] for k, v in (row | {"ts_recv_ns": time.time_ns() - 2 * SECOND}).items()})
    for latency, want in ((True, 1.0), (False, 0.0)):
        metrics = FlowMetrics()
        MetricsSink(metrics, latency=latency).build("m", 0, 1).write_batch([("bar", bar), ("trade_x", bar)])
        count = metrics.registry.get_sample_value("tapeflow_batch_latency_seconds_count")
        total = metrics.registry.get_sample_value("tapeflow_batch_latency_seconds_sum")
        assert count == want
        if latency:
            assert 2.0 <= total < 10.0
