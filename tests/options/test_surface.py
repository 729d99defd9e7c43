"""``tapeflow.options.surface``: snapshots on a grid from ticker rows, the table, ``--surface``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tapeflow.cli import main
from tapeflow.options.chain import NS_PER_YEAR
from tapeflow.options.surface import (
    SURFACE_SCHEMA,
    BadSurfaceInput,
    grid_times,
    snapshot_rows,
    summary,
    surfaces,
)
from tests.options.test_deribit_decode import _frame
from tests.options.test_options_cli import _capture
from tests.options.test_surface_kernel import _chain

MIN = 60_000_000_000
T0 = 1_617_000_000 * 1_000_000_000 // MIN * MIN  # a whole minute
EXPIRY = T0 + NS_PER_YEAR // 4


def _tickers(vol: float, ts_ns: int, strikes: np.ndarray, underlying: str = "BTC") -> dict[str, list]:
    strike, fwd, iv, delta, is_call, price = _chain(lambda k: np.full_like(k, vol), 0.25, strikes)
    kinds = np.where(is_call, "C", "P")
    return {
        "ts_event_ns": [ts_ns] * strike.size,
        "symbol": [f"{underlying}-X-{s:g}-{c}" for s, c in zip(strike, kinds, strict=True)],
        "underlying": [underlying] * strike.size, "expiry_ns": [EXPIRY] * strike.size,
        "strike_price_nanos": (strike * 1e9).round().astype(np.int64).tolist(), "option_type": kinds.tolist(),
        "underlying_price_nanos": (fwd * 1e9).round().astype(np.int64).tolist(),
        "mark_price_nanos": (price * 1e9).round().astype(np.int64).tolist(), "iv": iv.tolist(),
        "delta": delta.tolist(),
    }


def _table(*parts: dict[str, list]) -> pa.Table:
    return pa.table({k: sum((p[k] for p in parts), []) for k in parts[0]})


def test_grid_is_whole_steps_rounded_up() -> None:
    assert grid_times(np.array([T0 + 1, T0 + 2 * MIN + 5])).tolist() == [T0 + MIN, T0 + 2 * MIN, T0 + 3 * MIN]
    assert grid_times(np.array([T0])).tolist() == [T0]
    assert grid_times(np.zeros(0, np.int64)).size == 0
    with pytest.raises(BadSurfaceInput, match="step must be positive"):
        grid_times(np.array([T0]), 0)


def test_snapshot_takes_the_last_fresh_ticker_per_instrument() -> None:
    symbol = np.array(["a", "a", "b", "a"], object)
    ts = np.array([T0 - 50, T0 - 10, T0 - MIN - 1, T0 + 5])
    grid = np.array([T0, T0 + MIN])
    g, r = snapshot_rows(symbol, ts, grid, MIN)
    # "a": row 1 at T0 (not row 0, older; not row 3, later), row 3 at T0 + MIN; "b" is stale at T0
    assert sorted(zip(g.tolist(), r.tolist(), strict=True)) == [(0, 1), (1, 3)]
    g, r = snapshot_rows(symbol, ts, grid, 2 * MIN)
    assert sorted(zip(g.tolist(), r.tolist(), strict=True)) == [(0, 1), (0, 2), (1, 3)]


def test_surfaces_of_a_flat_chain_and_its_update() -> None:
    strikes = np.linspace(60.0, 160.0, 21)
    first = _tickers(0.5, T0 - 30 * 10**9, strikes)
    later = _tickers(0.7, T0 + 20 * 10**9, strikes)  # every instrument re-marked at a new vol
    eth = _tickers(0.9, T0 - 5 * 10**9, strikes[:1], "ETH")  # one strike: thin
    out = surfaces(_table(first, later, eth))
    assert out.schema == SURFACE_SCHEMA
    rows = out.to_pylist()
    assert [(r["underlying"], r["ts_ns"]) for r in rows] == [("BTC", T0), ("BTC", T0 + MIN), ("ETH", T0)]
    assert [r["atm_iv"] for r in rows[:2]] == pytest.approx([0.5, 0.7])
    assert [r["rr25"] for r in rows[:2]] == pytest.approx([0.0, 0.0], abs=1e-12)
    assert rows[0]["reasons"] == "ok" and rows[0]["n_strikes"] == 21 and rows[0]["n_options"] == 42
    assert rows[0]["t_years"] == pytest.approx(0.25)
    assert rows[1]["atm_total_var"] == pytest.approx(0.49 * (EXPIRY - T0 - MIN) / NS_PER_YEAR)
    assert rows[0]["parity_checked"] == 21 and rows[0]["parity_violations"] == 0
    assert rows[0]["butterfly_checked"] == 19 and rows[0]["butterfly_violations"] == 0
    assert np.isnan(rows[2]["atm_iv"]) and rows[2]["reasons"] == "too_few_strikes"
    line = summary(out)
    assert "3 expiry rows; ATM IV 2, RR25 2, BF25 2 (ok 2, too_few_strikes 1)" in line
    assert "butterfly 0/38, parity 0/43" in line  # the thin ETH expiry's one strike has both sides


def test_a_planted_parity_violation_is_counted_in_the_table() -> None:
    chain = _tickers(0.5, T0, np.array([90.0, 100.0, 110.0]))
    chain["mark_price_nanos"][4] += 1_000_000  # the 100 put 1e-3 coin too dear
    out = surfaces(_table(chain)).to_pylist()
    assert (out[0]["parity_violations"], out[0]["parity_checked"]) == (1, 3)


def test_bad_inputs_are_clear_errors() -> None:
    table = _table(_tickers(0.5, T0, np.array([100.0])))
    with pytest.raises(BadSurfaceInput, match="lack the column"):
        surfaces(table.drop(["delta"]))
    with pytest.raises(BadSurfaceInput, match="staleness must be positive"):
        surfaces(table, staleness_ns=0)
    assert summary(surfaces(table.slice(0, 0))).startswith("surfaces: no snapshot")


def test_cli_writes_the_surface(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cap = _capture(tmp_path / "a.txt", _frame())
    out, surf = tmp_path / "o.parquet", tmp_path / "s.parquet"
    assert main(["options", "--format", "deribit", str(cap), "--out", str(out), "--surface", str(surf),
                 "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "surfaces: 1 snapshots, 1 expiry rows; ATM IV 0" in text and f"wrote {surf}" in text
    table = pq.read_table(surf)
    assert table.schema == SURFACE_SCHEMA and table.column("reasons").to_pylist() == ["too_few_strikes"]
    assert main(["options", "--format", "deribit", str(cap), "--out", str(out), "--surface", str(surf),
                 "--snapshot-s", "0", "--quiet"]) == 2
    assert "snapshot step must be positive" in capsys.readouterr().err
