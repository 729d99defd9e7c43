"""The real-data report (``tapeflow signals report``): its tables against the rows it was given."""

from __future__ import annotations

import calendar
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from tapeflow.schemas.records import SIGNAL, UNDEF_PRICE
from tapeflow.signals.config import load
from tapeflow.signals.realruns import Case, run_case
from tapeflow.signals.report import FileRun, rate_table, render, top_alerts
from tests.conftest import need

HOUR_NS = 3_600 * 10**9
# the AAPL file's first message: 34200.004241176 s after midnight New York time (UTC-4 in June)
AAPL_FIRST_NS = calendar.timegm((2012, 6, 21, 13, 30, 0)) * 10**9 + 4_241_176
AAPL = "lobster/AAPL_2012-06-21_level10_first999/AAPL_2012-06-21_34200000_57600000_{}_10.csv"


def _signals(rows: list[tuple[str, float, float, int]]) -> pa.Table:
    """``signal`` rows from (kind, confidence, score, ts_event_ns)."""
    n = len(rows)
    return SIGNAL.table({
        "ts_event_ns": [r[3] for r in rows], "ts_recv_ns": [r[3] for r in rows], "kind": [r[0] for r in rows],
        "side": [1] * n, "price_nanos": [UNDEF_PRICE] * n, "size_nanos": [0] * n,
        "start_ns": [r[3] for r in rows], "end_ns": [r[3] for r in rows],
        "confidence": [r[1] for r in rows], "score": [r[2] for r in rows], "flags": [0] * n,
        "evidence": [f'{{"x": {i}}}' for i in range(n)],
    }, constants={"venue": "V", "symbol": "S", "detector": "d/1", "params_hash": "h"})


def _cells(table: str, label: str) -> dict[str, str]:
    head = table.splitlines()[0].strip("|").split("|")
    row = next(line for line in table.splitlines() if line.startswith(f"| {label} |"))
    return dict(zip([h.strip() for h in head], [c.strip() for c in row.strip("|").split("|")], strict=True))


def test_rates_count_the_given_rows_per_kind_and_hour() -> None:
    a = _signals([("whale", 0.5, 2.0, 1), ("whale", 0.9, 1.5, 2), ("whale", 0.9, 3.0, 3),
                  ("spike", 0.2, 1.0, 4)])
    b = _signals([("spike", 0.7, 1.0, 5)])
    runs = [FileRun("a", "sim", a, span_ns=2 * HOUR_NS, instruments=1),
            FileRun("b", "sim", b, span_ns=HOUR_NS // 2, instruments=1),
            FileRun("gone", "sim", None, note="skipped: missing x")]
    table = rate_table(runs)
    # 3 whale rows over 2 h, 1 spike over 2 h; 1 spike over half an hour
    assert _cells(table, "a") == {"file": "a", "format": "sim", "span h": "2", "instr.": "1",
                                  "spike": "1 (0.5)", "whale": "3 (1.5)"}
    assert _cells(table, "b")["spike"] == "1 (2)" and _cells(table, "b")["whale"] == "0"
    assert _cells(table, "gone")["whale"] == "-"
    # confidence first, then score: the 0.5-confidence whale comes last though it outscores the 1.5 one
    assert [row["ts_event_ns"] for _, row in top_alerts(runs, "whale", 5)] == [3, 2, 1]
    assert [(label, row["ts_event_ns"]) for label, row in top_alerts(runs, "spike", 1)] == [("b", 5)]
    text = render(runs)
    assert "skipped: missing x" in text and text.count("**whale**") == 1
    assert "No alert on any file: spoofing, iceberg, hidden, absorption, withdrawal, wall, institutional, " \
           "creep, contraction, stealth, cross_strike, basis_extreme, oi_surge, liquidation_cluster, " \
           "insurance_stress." in text


def test_real_lobster_head_counts_and_span(real_data: Path) -> None:
    for kind in ("message", "orderbook"):
        need(real_data / AAPL.format(kind))
    thresholds = load(Path("tapeflow/signals/thresholds.toml"))
    run = run_case(real_data, Case("aapl", "lobster", (AAPL.format("message"), AAPL.format("orderbook"))),
                   thresholds)
    assert run.signals is not None and run.signals.num_rows > 0
    # span: the message file's own first and last times (34200.004241176 .. 34249.086375027 s)
    assert run.span_ns == 34_249_086_375_027 - 34_200_004_241_176
    table = rate_table([run])
    cells = _cells(table, "aapl")
    kinds = run.signals.column("kind").to_pylist()
    for kind in set(kinds):
        count = kinds.count(kind)
        assert cells[kind] == f"{count} ({count / (run.span_ns / HOUR_NS):.3g})"
    shown = top_alerts([run], "hidden", 5)
    conf = sorted(run.signals.filter(pc.equal(run.signals.column("kind"), "hidden"))
                  .column("confidence").to_pylist(), reverse=True)
    assert [row["confidence"] for _, row in shown] == conf[:5]


def test_missing_file_is_skipped_with_its_name(tmp_path: Path) -> None:
    thresholds = load(Path("tapeflow/signals/thresholds.toml"))
    run = run_case(tmp_path, Case("none", "lobster", ("nope_message_1.csv",)), thresholds)
    assert run.signals is None and "missing nope_message_1.csv" in run.note
    assert re.search(r"\| none \| lobster \| - \|", rate_table([run]))


@pytest.mark.parametrize("hours", [0.005])
def test_a_long_file_is_cut_to_its_first_hours(real_data: Path, hours: float) -> None:
    for kind in ("message", "orderbook"):
        need(real_data / AAPL.format(kind))
    thresholds = load(Path("tapeflow/signals/thresholds.toml"))
    run = run_case(real_data, Case("aapl", "lobster", (AAPL.format("message"), AAPL.format("orderbook"))),
                   thresholds, max_hours=hours)
    assert run.span_ns == int(hours * HOUR_NS) and run.note.startswith("cut: first 0.005 h")
    assert run.signals is not None
    assert max(run.signals.column("ts_event_ns").to_pylist(), default=0) < AAPL_FIRST_NS + hours * HOUR_NS


def test_mbo_span_leaves_out_the_start_of_day_snapshot(real_data: Path) -> None:
    import databento_dbn
    import zstandard

    rel = "databento/glbx/esh4-glbx-mdp3-20231225.mbo.dbn.zst"
    path = need(real_data / rel)
    decoder = databento_dbn.DBNDecoder()
    decoder.write(zstandard.ZstdDecompressor().stream_reader(path.open("rb")).read())
    # independent: the records' own capture times, snapshot replay (F_SNAPSHOT, 32) left out
    recv = [r.ts_recv for r in decoder.decode() if isinstance(r, databento_dbn.MBOMsg) and not r.flags & 32]
    thresholds = load(Path("tapeflow/signals/thresholds.toml"))
    run = run_case(real_data, Case("es", "dbn", (rel,)), thresholds, max_hours=8)
    assert run.span_ns == max(recv) - min(recv) and run.note == ""
    assert 1.9 < run.hours < 2.1 and run.signals is not None
