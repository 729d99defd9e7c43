"""The derivatives act of ``make demo``: the frames it serves and the view it prints (the act itself,
a live flow of ~20 s, runs in ``make demo``, not here)."""

from __future__ import annotations

from pathlib import Path

import msgspec

from tapeflow.derivatives.demo import PAIRS, capture, view
from tapeflow.schemas.derivatives import (
    FUNDING_RATE,
    INDEX_PRICE,
    LIQUIDATION,
    MARK_PRICE,
    OPEN_INTEREST,
)
from tapeflow.schemas.records import BID, SCALE, UNDEF_PRICE
from tests.conftest import need

S = SCALE


def test_the_capture_is_the_okx_derivatives_frames_of_the_tardis_pairs(real_data: Path,
                                                                       tmp_path: Path) -> None:
    need(real_data / PAIRS)
    symbols = capture(real_data, tmp_path / "okx.jsonl")
    lines = (tmp_path / "okx.jsonl").read_bytes().splitlines()
    channels = [msgspec.json.decode(line.split(b" ", 1)[1])["arg"]["channel"] for line in lines]
    # counted in the pairs file: 14 OKX v5 frames of the five channels, none of Tardis's own making
    assert len(lines) == 14
    assert set(channels) == {"funding-rate", "mark-price", "index-tickers", "open-interest",
                             "liquidation-orders"}
    assert "FIL-USDT-220325" in symbols and not any(s.count("-") == 1 for s in symbols)  # no index name


def test_the_view_shows_the_last_values_and_the_basis_against_the_instruments_index() -> None:
    on = {"venue": "okx"}
    swap, option = "BTC-USDT-SWAP", "BTC-USD-240927-60000-C"
    t = [S, 2 * S]
    tables = {
        "mark_price": MARK_PRICE.table({"ts_event_ns": [*t, S], "ts_recv_ns": [*t, S],
                                        "symbol": [swap, swap, option],
                                        "mark_price_nanos": [59_000 * S, 60_300 * S, S // 20]}, constants=on),
        # the swap's index is published under BTC-USDT (OKX's index-tickers name)
        "index_price": INDEX_PRICE.table({"ts_event_ns": [S], "ts_recv_ns": [S], "symbol": ["BTC-USDT"],
                                          "index_price_nanos": [60_000 * S]}, constants=on),
        "funding_rate": FUNDING_RATE.table({"ts_event_ns": t, "ts_recv_ns": t, "symbol": [swap] * 2,
                                            "funding_rate": [0.0001, float("nan")], "funding_time_ns": [0, 0],
                                            "predicted_rate": [float("nan")] * 2, "settled": [0, 0]},
                                           constants=on),
        "open_interest": OPEN_INTEREST.table({"ts_event_ns": t, "ts_recv_ns": t, "symbol": [swap] * 2,
                                              "open_interest_nanos": [10 * S, 12 * S],
                                              "open_interest_value_nanos": [UNDEF_PRICE] * 2}, constants=on),
        "liquidation": LIQUIDATION.table({"ts_event_ns": t, "ts_recv_ns": t, "symbol": [swap] * 2,
                                          "liquidation_id": ["a", "b"], "side": [BID] * 2,
                                          "price_nanos": [60_000 * S] * 2, "size_nanos": [S] * 2},
                                         constants=on),
    }
    lines = view(tables).splitlines()
    # (60,300 - 60,000) / 60,000 = +50 bps; the NaN rate of 2 s is no rate: the 1 bp of 1 s shows
    # an option's mark is its premium: no basis, whatever the index
    assert lines[2] == "| BTC-USD-240927-60000-C | 0.05 | - | n/a (option) | - | - | 0 |"
    assert lines[3] == "| BTC-USDT-SWAP | 60,300 | 60,000 | +50.00 | 0.010000% | 12 | 2 |"
    assert len(lines) == 4
