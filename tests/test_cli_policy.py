"""The exit-code policy of ``ingest`` and ``verify`` (docs/reliability.md), and the last net of ``main``."""

from __future__ import annotations

import gzip
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import zstandard

from tapeflow import cli
from tapeflow.cli import EXIT_ERROR, EXIT_INTERNAL, EXIT_OK, EXIT_REJECTED, EXIT_VERIFY_FAILED, main
from tapeflow.wire.registry import VenueFormat, VerifyReport, formats
from tapeflow.wire.rejects import Reason, Rejects, tally
from tests.corpus.make_damaged import json_lines

HEADER = "exchange,symbol,timestamp,local_timestamp,id,side,price,amount\n"


def _trades(tmp_path: Path, *bad: str) -> Path:
    lines = [f"ex,S,{1000 + i},{2000 + i},{1 + i},buy,100.5,1" for i in range(4)]
    path = tmp_path / "trades.csv"
    path.write_text(HEADER + "\n".join(lines[:2] + list(bad) + lines[2:]) + "\n")
    return path


def _ingest(path: Path, *extra: str) -> int:
    return main(["ingest", "--format", "tardis", "--no-lake", "--no-clickhouse", "--quiet", *extra,
                 str(path)])


def test_ingest_exits_3_when_a_unit_was_rejected_and_0_when_allowed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _trades(tmp_path, "ex,S,1002,2002,3,buy,NaN,1")
    assert _ingest(path) == EXIT_REJECTED
    out = capsys.readouterr()
    assert "tapeflow: 1 input unit rejected (bad_number 1)" in out.err and "--allow-rejects" in out.err
    assert "rejected" in out.out  # the summary still says what was stored
    assert _ingest(path, "--allow-rejects") == EXIT_OK
    assert capsys.readouterr().err == ""
    assert _ingest(_trades(tmp_path)) == EXIT_OK


def test_verify_exits_3_on_rejects_and_1_when_the_oracle_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["verify", "tardis", str(_trades(tmp_path))]) == EXIT_OK
    rejected = _trades(tmp_path, "ex,S,1002,2002,3,buy,100.5")  # a truncated line, ids still contiguous
    assert main(["verify", "tardis", str(rejected)]) == EXIT_REJECTED
    assert "1 input unit rejected (truncated 1)" in capsys.readouterr().err
    assert main(["verify", "tardis", "--allow-rejects", str(rejected)]) == EXIT_OK
    gap = _trades(tmp_path, "ex,S,1002,2002,9,buy,100.5,1")  # an id out of order: the oracle fails
    assert main(["verify", "tardis", "--allow-rejects", str(gap)]) == EXIT_VERIFY_FAILED


def test_units_ignored_by_rule_are_counted_and_do_not_fail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "kucoin.capture"
    candle = ('{"type":"message","topic":"/market/candles:BTC-USDT_1min","subject":"trade.candles.add",'
              '"data":{"symbol":"BTC-USDT","candles":["1","2","3","4","5","6","7"],"time":1}}')
    trade = ('{"type":"message","topic":"/market/match:BTC-USDT","subject":"trade.l3match","data":'
             '{"symbol":"BTC-USDT","side":"buy","tradeId":"1","price":"1","size":"1","sequence":"1","time":"1"}}')
    path.write_text(f"1700000000000000000 {trade}\n1700000000000000001 {candle}\n")
    rc = main(["ingest", "--format", "kucoin", "--no-lake", "--no-clickhouse", "--quiet", str(path)])
    out = capsys.readouterr()
    assert rc == EXIT_OK, out.err
    assert "ignored by rule: 1 input units (unsupported_channel 1)" in out.out


def test_a_wrong_format_is_an_error_naming_the_right_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "capture.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in json_lines("okx", 20)))
    lake = tmp_path / "lake"
    rc = main(["ingest", "--format", "binance", "--lake", str(lake), "--no-clickhouse", "--quiet", str(path)])
    err = capsys.readouterr().err
    assert rc == EXIT_ERROR
    assert "capture.jsonl does not look like binance" in err and "did you mean --format okx?" in err
    assert not lake.exists()  # refused before anything was written
    out = tmp_path / "book.parquet"
    assert main(["book", "--format", "kraken", "--quiet", "--out", str(out), str(path)]) == EXIT_ERROR
    assert "did you mean --format okx?" in capsys.readouterr().err and not out.exists()


def test_a_damaged_file_a_decoder_lets_through_is_diagnosed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "feed.csv.zst"
    data = b"".join(b"%d,%d\n" % (i, i * i) for i in range(20_000))
    path.write_bytes(zstandard.ZstdCompressor().compress(data)[:-20])

    def crash(paths: list[Path]) -> list:
        raise zstandard.ZstdError("frame ended early")

    monkeypatch.setitem(formats(), "tardis", VenueFormat("tardis", crash, verify=crash))
    assert main(["verify", "tardis", str(path)]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert f"tapeflow: error: {path}: its compressed stream is cut short" in err and "Traceback" not in err


def test_a_bug_is_an_internal_error_with_exit_70(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "fine.csv.gz"
    path.write_bytes(gzip.compress(HEADER.encode()))

    def bug(paths: list[Path]) -> list[VerifyReport]:
        raise KeyError("a bug")

    monkeypatch.setitem(formats(), "tardis", VenueFormat("tardis", bug, verify=bug))
    monkeypatch.delenv("TAPEFLOW_TRACEBACK", raising=False)
    assert main(["verify", "tardis", str(path)]) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert "tapeflow: internal error: KeyError: 'a bug'" in err and "Traceback" not in err


@pytest.mark.parametrize(("make", "what"), [(lambda p: p.mkdir(), "is a directory"),
                                            (lambda p: p.write_bytes(b""), "is empty (0 bytes)")])
def test_unusable_paths_are_refused_before_decoding(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                    make: object, what: str) -> None:
    path = tmp_path / "input"
    make(path)  # type: ignore[operator]
    assert _ingest(path) == EXIT_ERROR
    assert f"tapeflow: error: {path} {what}" in capsys.readouterr().err


def test_the_tally_counts_every_dead_letter_built_inside_it() -> None:
    rejects = Rejects("x")
    rejects.add(Reason.BAD_JSON, "d", "here", b"raw")  # outside: not counted
    with tally() as counts:
        rejects.add(Reason.BAD_JSON, "d", "here", b"raw")
        Rejects("y").add(Reason.TRUNCATED, "d", "there", b"raw")
    rejects.add(Reason.BAD_JSON, "d", "here", b"raw")
    assert counts == {"bad_json": 1, "truncated": 1}


def test_exit_codes_are_documented() -> None:
    docs = (Path(cli.__file__).parents[1] / "docs" / "cli.md").read_text()
    for code in (EXIT_OK, EXIT_VERIFY_FAILED, EXIT_ERROR, EXIT_REJECTED, EXIT_INTERNAL):
        assert f"| {code} |" in docs


def test_a_lobster_message_file_alone_is_rebuilt_with_the_orderbook_beside_it_or_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # LOBSTER's documented sample rows (1-level): a limit buy at 09:30 then its full cancel; the
    # orderbook file says what the book was after each message
    msg = tmp_path / "AMZN_2012-06-21_34200000_57600000_message_1.csv"
    msg.write_text("34200.017459617,1,11885113,21,2238100,1\n34200.190226476,3,11885113,21,2238100,1\n")
    book = msg.with_name("AMZN_2012-06-21_34200000_57600000_orderbook_1.csv")
    out = tmp_path / "book.parquet"
    assert main(["book", "--format", "lobster", "--quiet", "--out", str(out), str(msg)]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "without its orderbook file" in err and book.name in err and not out.exists()
    book.write_text("2239500,100,2238100,21\n2239500,100,2231800,100\n")
    assert main(["book", "--format", "lobster", "--quiet", "--levels", "1", "--out", str(out), str(msg)]) == 0
    snaps = pq.read_table(out).to_pylist()
    # anchored by the orderbook file: after the cancel the best bid is the vendor's 223.18, not empty
    assert snaps[-1]["bid_price_nanos"] == [2231800 * 10**5]
    assert snaps[-1]["ask_price_nanos"] == [2239500 * 10**5]
