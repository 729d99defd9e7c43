"""DBN decoding: conformance on Databento's fixtures and GLBX files, against databento_dbn's decoder."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import databento_dbn as dbn
import numpy as np
import pytest

from tapeflow.errors import FormatError
from tapeflow.schemas.records import SCALE, UNDEF_PRICE
from tapeflow.venues import get_format
from tapeflow.venues.base import merge
from tapeflow.venues.databento import framing
from tapeflow.venues.databento.parse import decode, decode_all
from tests.conftest import need, real_data_root

FIXTURES = real_data_root() / "databento" / "fixtures"
GLBX = real_data_root() / "databento" / "glbx"


def _fixture_files() -> list[Path]:
    files = sorted((FIXTURES / "dbn").glob("*.dbn*")) + sorted(
        (FIXTURES / "databento-python").glob("*/*.dbn*")
    )
    return [f for f in files if ".dbz" not in f.name]


def _reference(path: Path) -> list:
    """Records as databento_dbn's own decoder reads them (metadata dropped)."""
    raw = framing.read_all(path)
    decoder = dbn.DBNDecoder(has_metadata=raw[:3] == b"DBN")
    decoder.write(raw)
    return [r for r in decoder.decode() if not isinstance(r, dbn.Metadata)]


def _ch(value: object) -> int:
    text = getattr(value, "value", value)
    return ord(text) if text else 0


def _ts(value: int) -> int:
    return -1 if value == dbn.UNDEF_TIMESTAMP else value  # tapeflow's UNDEF_TS


def _expected_counts(records: list) -> Counter:
    """Which tapeflow rows each DBN record must give (the mapping the venue folder documents)."""
    want: Counter = Counter()
    for r in records:
        kind = type(r).__name__.replace("V1", "").replace("V2", "")
        action = _ch(r.action) if kind in ("MBP1Msg", "CMBP1Msg", "MBP10Msg") else 0
        if kind == "MBOMsg":
            want["order_event"] += 1
        elif kind == "TradeMsg":
            want["trade"] += 1
        elif kind in ("MBP1Msg", "CMBP1Msg", "BBOMsg", "CBBOMsg"):
            want["quote"] += 1
            want["trade"] += action == ord("T") or r.rtype == dbn.RType.TCBBO
        elif kind == "MBP10Msg":
            want["book_snapshot"] += 1
            want["trade"] += action == ord("T")
        elif kind == "OHLCVMsg":
            want["bar"] += 1
        elif kind == "InstrumentDefMsg":
            want["instrument"] += 1
        elif kind == "StatMsg":
            want["statistic"] += 1
        elif kind in ("StatusMsg", "ImbalanceMsg"):
            want["rejected"] += 1
        elif kind != "SymbolMappingMsg":
            raise AssertionError(f"unexpected record {kind} in {records}")
    return +want


@pytest.mark.parametrize("path", _fixture_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_fixture_decodes_to_the_right_records(real_data: Path, path: Path) -> None:
    reference = _reference(need(path))
    tables = decode_all([path])
    got = Counter({name: t.num_rows for name, t in tables.items() if t.num_rows})
    assert got == _expected_counts(reference)
    if "rejected" in tables:
        assert set(tables["rejected"].column("reason").to_pylist()) == {"unsupported_schema"}
    _assert_fields_match(tables, reference)


def _assert_fields_match(tables: dict, reference: list) -> None:
    by_kind: dict[str, list] = {}
    for r in reference:
        by_kind.setdefault(type(r).__name__.replace("V1", "").replace("V2", ""), []).append(r)
    if "MBOMsg" in by_kind:
        t = tables["order_event"].to_pydict()
        refs = by_kind["MBOMsg"]
        assert t["price_nanos"] == [r.price for r in refs]
        assert t["size_nanos"] == [r.size * SCALE for r in refs]
        assert t["order_id"] == [r.order_id for r in refs]
        assert t["action"] == [_ch(r.action) for r in refs]
        assert t["side"] == [_ch(r.side) for r in refs]
        assert t["sequence"] == [r.sequence for r in refs]
        assert t["ts_recv_ns"] == [_ts(r.ts_recv) for r in refs]
        assert t["flags"] == [int(r.flags) & 0xFC for r in refs]
    for kind in ("MBP1Msg", "BBOMsg", "CBBOMsg", "CMBP1Msg"):
        if kind in by_kind:
            t = tables["quote"].to_pydict()
            refs = by_kind[kind]
            assert t["bid_price_nanos"] == [r.levels[0].bid_px for r in refs]
            assert t["ask_price_nanos"] == [r.levels[0].ask_px for r in refs]
            assert t["bid_size_nanos"] == [r.levels[0].bid_sz * SCALE for r in refs]
            assert t["ask_size_nanos"] == [r.levels[0].ask_sz * SCALE for r in refs]
            assert t["ts_event_ns"] == [_ts(r.ts_event) for r in refs]
    if "MBP10Msg" in by_kind:
        t = tables["book_snapshot"].to_pydict()
        refs = by_kind["MBP10Msg"]
        assert t["bid_price_nanos"] == [[lv.bid_px for lv in r.levels] for r in refs]
        assert t["ask_size_nanos"] == [[lv.ask_sz * SCALE for lv in r.levels] for r in refs]
    if "TradeMsg" in by_kind and tables["trade"].num_rows == len(by_kind["TradeMsg"]):
        t = tables["trade"].to_pydict()
        refs = by_kind["TradeMsg"]
        assert t["price_nanos"] == [r.price for r in refs]
        assert t["aggressor_side"] == [_ch(r.side) for r in refs]
    if "OHLCVMsg" in by_kind:
        t = tables["bar"].to_pydict()
        refs = by_kind["OHLCVMsg"]
        assert t["open_price_nanos"] == [r.open for r in refs]
        assert t["close_price_nanos"] == [r.close for r in refs]
        assert t["volume_nanos"] == [r.volume * SCALE for r in refs]
        assert t["ts_event_ns"] == [_ts(r.ts_event) for r in refs]
        assert set(t["vwap_price_nanos"]) == {UNDEF_PRICE}  # DBN bars carry no VWAP
    if "InstrumentDefMsg" in by_kind:
        t = tables["instrument"].to_pydict()
        refs = by_kind["InstrumentDefMsg"]
        assert t["symbol"] == [r.raw_symbol for r in refs]
        assert t["tick_size_nanos"] == [r.min_price_increment for r in refs]
        assert t["instrument_id"] == [r.instrument_id for r in refs]
    if "StatMsg" in by_kind:
        t = tables["statistic"].to_pydict()
        refs = by_kind["StatMsg"]
        assert t["stat_type"] == [int(r.stat_type) for r in refs]
        assert t["price_nanos"] == [r.price for r in refs]


def test_ohlcv_interval_comes_from_the_rtype(real_data: Path) -> None:
    for schema, interval in (("1s", "1s"), ("1m", "1m"), ("1h", "1h"), ("1d", "1d")):
        path = need(FIXTURES / "databento-python" / "GLBX.MDP3" / f"test_data.ohlcv-{schema}.dbn.zst")
        assert set(decode_all([path])["bar"].column("interval").to_pylist()) == {interval}


@pytest.mark.parametrize("name", ["test_data.mbo.dbz", "test_data.definition.dbz", "test_data.ohlcv-1d.dbz"])
def test_legacy_dbz_is_refused_with_advice(real_data: Path, name: str) -> None:
    with pytest.raises(FormatError, match=r"legacy DBZ.*re-encode it to DBN"):
        list(decode([need(FIXTURES / "dbn" / name)]))


def test_a_file_that_is_not_dbn_is_refused(real_data: Path) -> None:
    with pytest.raises(FormatError, match="is not DBN"):
        list(decode([need(FIXTURES / "dbn" / "LICENSE")]))


def test_unknown_instrument_keeps_its_id_as_symbol(real_data: Path) -> None:
    path = need(FIXTURES / "dbn" / "test_data.statistics.dbn")
    ids = {r.instrument_id for r in _reference(path)}
    meta = dbn.DBNDecoder()
    meta.write(framing.read_all(path))
    mapped = {int(i["symbol"]) for ivs in meta.decode()[0].mappings.values() for i in ivs}
    assert ids - mapped, "this fixture's statistics use instrument ids outside its symbology"
    symbols = set(decode_all([path])["statistic"].column("symbol").to_pylist())
    assert symbols == {str(i) for i in ids}


def test_es_mbo_matches_the_readme_oracle_counts(real_data: Path) -> None:
    path = need(GLBX / "esh4-glbx-mdp3-20231225.mbo.dbn.zst")
    events = decode_all([path])["order_event"]
    reference = _reference(path)
    assert events.num_rows == len(reference) == 68_792
    flags = events.column("flags").to_numpy()
    assert int(((flags & 32) != 0).sum()) == sum(1 for r in reference if int(r.flags) & 32) == 8_725
    assert set(events.column("symbol").to_pylist()) == {"ESH4"}
    assert set(events.column("venue").to_pylist()) == {"GLBX.MDP3"}
    assert np.array_equal(events.column("price_nanos").to_numpy(), np.array([r.price for r in reference]))


def test_decoding_streams_in_chunks_with_progress(real_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = need(GLBX / "esh4-glbx-mdp3-20231225.mbo.dbn.zst")
    whole = decode_all([path])["order_event"]
    monkeypatch.setattr(framing, "READ_BYTES", 256 * 1024)
    chunks = list(decode([path]))
    assert len(chunks) >= 68_792 * 56 // (256 * 1024)
    progress = [c.bytes_read for c in chunks]  # increments
    assert min(progress) >= 0 and sum(progress) == path.stat().st_size
    assert merge(chunks)["order_event"].equals(whole)


def test_truncated_tail_and_unknown_records_become_rejects(real_data: Path, tmp_path: Path) -> None:
    raw = framing.read_all(need(FIXTURES / "dbn" / "test_data.mbo.v3.dbn"))
    records = raw[-112:]  # two 56-byte MBO records
    unknown = bytes([4, 0x99, 1, 0]) + bytes(12)
    path = tmp_path / "damaged.mbo.dbn"
    path.write_bytes(raw[:-112] + records[:56] + unknown + records[56:-10])
    tables = decode_all([path])
    assert tables["order_event"].num_rows == 1
    rejected = tables["rejected"].to_pydict()
    assert rejected["reason"] == ["unknown_message", "truncated"]
    assert rejected["raw"] == [unknown, records[56:-10]]
    assert rejected["location"] == [f"{path}:record 1", f"{path}:record 2"]


def test_corrupt_length_byte_stops_framing_with_a_reject(real_data: Path, tmp_path: Path) -> None:
    raw = framing.read_all(need(FIXTURES / "dbn" / "test_data.mbo.v3.dbn"))
    path = tmp_path / "corrupt.mbo.dbn"
    path.write_bytes(raw[:-56] + b"\x00" + raw[-55:])
    tables = decode_all([path])
    assert tables["order_event"].num_rows == 1
    assert tables["rejected"].column("reason").to_pylist() == ["bad_length"]


def test_format_is_registered(real_data: Path) -> None:
    fmt = get_format("dbn")
    path = need(FIXTURES / "dbn" / "test_data.trades.v3.dbn.zst")
    assert merge(list(fmt.decode([path])))["trade"].num_rows == len(_reference(path))
