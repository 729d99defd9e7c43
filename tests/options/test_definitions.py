"""Option definitions and chains from the real Databento definition files (OPRA.PILLAR, CME Globex
options) and Deribit names. The oracle is the data README's: each symbol spells its strike, expiry
and class (OSI ``AAPL  250221C00250000``; CME ``ESM4 P5250``), and the record's own fields must
say the same."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import orjson
import pyarrow as pa
import pytest

from tapeflow.options.definitions import chains, from_databento, from_deribit_names
from tapeflow.venues import get_format
from tapeflow.venues.base import merge
from tests.conftest import need

NANOS = 1_000_000_000
OPRA = "options/databento_opra/OPRA.PILLAR_test_data.definition.dbn.zst"
CME = ("options/databento_cme_options/options_catalog_options_definition.dbn.zst",
       "options/databento_cme_options/options_exercise_options_definition.dbn.zst")


def _instrument(path: Path) -> pa.Table:
    return merge(list(get_format("dbn").decode([need(path)])))["instrument"]


@pytest.mark.realdata
def test_opra_definitions_agree_with_their_osi_symbols(real_data: Path) -> None:
    defs, rejected = from_databento(_instrument(real_data / OPRA))
    assert rejected.num_rows == 0 and defs.num_rows >= 1
    for row in defs.to_pylist():
        osi = row["symbol"]  # root padded to 6, YYMMDD, C/P, strike x 1000 in 8 digits
        assert row["underlying"] == osi[:6].strip()
        expiry = dt.datetime.fromtimestamp(row["expiry_ns"] / NANOS, dt.UTC).date()
        assert expiry.strftime("%y%m%d") == osi[6:12]
        assert row["right"] == osi[12]
        assert row["strike_nanos"] == int(osi[13:21]) * NANOS // 1000


@pytest.mark.realdata
def test_cme_option_definitions_agree_with_their_symbols_and_chain_up(real_data: Path) -> None:
    instrument = pa.concat_tables([_instrument(real_data / p) for p in CME])
    defs, rejected = from_databento(instrument)
    assert rejected.num_rows == 0 and defs.num_rows == 3
    for row in defs.to_pylist():
        right, strike = row["symbol"].split(" ")[1][0], int(row["symbol"].split(" ")[1][1:])
        assert (row["right"], row["strike_nanos"]) == (right, strike * NANOS)
        assert row["multiplier_nanos"] == 50 * NANOS  # ES options: $50 per index point
    chain = chains(defs).to_pylist()
    esm4 = [(r["strike_nanos"] // NANOS, r["put"], r["call"]) for r in chain if r["underlying"] == "ESM4"]
    assert esm4 == [(5230, "ESM4 P5230", ""), (5250, "ESM4 P5250", "")]


def test_a_definition_without_its_strike_is_a_dead_letter_not_a_gap() -> None:
    raw = {"strike_price": (1 << 63) - 1, "underlying": "ESM4"}
    table = pa.table({"ts_event_ns": [1], "ts_recv_ns": [2], "venue": ["GLBX.MDP3"], "symbol": ["ESM4 P0"],
                      "instrument_id": [7], "instrument_class": ["P"], "multiplier_nanos": [0],
                      "currency": ["USD"], "expiration_ns": [3], "raw": [orjson.dumps(raw).decode()]})
    defs, rejected = from_databento(table)
    assert defs.num_rows == 0
    (row,) = rejected.to_pylist()
    assert row["reason"] == "missing_field" and "strike_price" in row["detail"] and row["symbol"] == "ESM4 P0"


def test_deribit_names_make_a_chain_and_damaged_names_dead_letters() -> None:
    names = ["BTC-30APR21-60000-C", "BTC-30APR21-60000-P", "BTC-30APR21-50000-C", "BTC-PERPETUAL",
             "BTC-31FEB21-1-C", "BTC-30APR21-60000-C"]
    defs, rejected = from_deribit_names(names)
    assert defs.num_rows == 3  # the perpetual is no option, the repeat counted once
    assert rejected.column("reason").to_pylist() == ["bad_field"]
    chain = chains(defs).to_pylist()
    assert [(r["strike_nanos"] // NANOS, r["call"], r["put"]) for r in chain] == [
        (50000, "BTC-30APR21-50000-C", ""), (60000, "BTC-30APR21-60000-C", "BTC-30APR21-60000-P")]
    assert chain[0]["expiry_ns"] == int(dt.datetime(2021, 4, 30, 8, tzinfo=dt.UTC).timestamp()) * NANOS


FIXTURE = Path(__file__).resolve().parents[1] / "fixtures/deribit/get_instruments_option.json"


def test_deribit_get_instruments_answer_makes_definitions_that_agree_with_the_names() -> None:
    from tapeflow.options.definitions import from_deribit_instruments

    defs, rejected = from_deribit_instruments(FIXTURE.read_bytes())
    assert rejected.num_rows == 0
    rows = {r["symbol"]: r for r in defs.to_pylist()}
    # the perpetual is no option
    assert set(rows) == {"BTC-30APR21-60000-C", "BTC-30APR21-60000-P", "XRP_USDC-30MAY25-2d2-C"}
    call = rows["BTC-30APR21-60000-C"]
    assert (call["strike_nanos"], call["right"], call["multiplier_nanos"], call["instrument_id"]) == (
        60_000 * NANOS, "C", NANOS, 210838)
    assert call["expiry_ns"] == int(dt.datetime(2021, 4, 30, 8, tzinfo=dt.UTC).timestamp()) * NANOS
    assert (rows["XRP_USDC-30MAY25-2d2-C"]["strike_nanos"], rows["XRP_USDC-30MAY25-2d2-C"]["currency"]) == (
        2_200_000_000, "USDC")


def test_a_deribit_definition_that_contradicts_its_name_or_an_error_answer_is_a_dead_letter() -> None:
    from tapeflow.options.definitions import from_deribit_instruments

    doc = orjson.loads(FIXTURE.read_bytes())
    doc["result"][0]["strike"] = 61000.0
    del doc["result"][1]["option_type"]
    defs, rejected = from_deribit_instruments(orjson.dumps(doc))
    assert defs.column("symbol").to_pylist() == ["XRP_USDC-30MAY25-2d2-C"]
    assert [(r["reason"], r["symbol"]) for r in rejected.to_pylist()] == [
        ("bad_field", "BTC-30APR21-60000-C"), ("missing_field", "BTC-30APR21-60000-P")]
    assert "strike" in rejected.column("detail")[0].as_py()
    error = b'{"jsonrpc":"2.0","id":1,"error":{"code":10001,"message":"invalid currency"}}'
    _, rejected = from_deribit_instruments(error)
    assert rejected.column("reason").to_pylist() == ["venue_error"]
    _, rejected = from_deribit_instruments(b"{not json")
    assert rejected.column("reason").to_pylist() == ["bad_json"]
