"""Ingest: a fake format built here (not registered) and a real Binance file.

chdb opens one directory per process, so the module shares one warehouse directory and each test
empties its tables first.
"""

from __future__ import annotations

import gzip
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pyarrow as pa
import pytest

from tapeflow.errors import ConfigError
from tapeflow.schemas import ALL_RECORDS
from tapeflow.schemas.records import BOOK_DELTA, QUOTE, REJECTED, TRADE
from tapeflow.storage import Warehouse, lake
from tapeflow.storage.ingest import ingest
from tapeflow.venues.base import Decoded, Rejects, VenueFormat
from tests.conftest import need
from tests.storage.samples import DAY_NS, synthetic_deltas

CHUNKS = 3


def _source(symbol: str, n_messages: int, seed: int) -> pa.Table:
    """Deltas of one symbol spread over two UTC days (the stream starts 6 minutes before midnight)."""
    t = synthetic_deltas(n_messages, seed=seed).to_pydict()
    t["symbol"] = [symbol] * len(t["symbol"])
    t["ts_event_ns"] = [ts + (DAY_NS // 1440) * 3 * (i * 4 // len(t["symbol"])) for i, ts in
                        enumerate(t["ts_event_ns"])]
    return BOOK_DELTA.table(t)


def _rejects() -> pa.Table:
    r = Rejects("fake")
    r.add("bad_json", "line was not JSON: '{oops'", "f.txt:3", b"{oops", ts_recv_ns=5, symbol="BTCUSDT")
    r.add("bad_json", "line was not JSON: 'x'", "f.txt:9", b"x", ts_recv_ns=6)
    r.add("truncated", "line ended after 4 bytes", "f.txt:12", b"\x00\xff\x00\xff", ts_recv_ns=7)
    return r.table()


def fake_format(deltas: pa.Table, rejects: pa.Table | None = None, name: str = "fake") -> VenueFormat:
    """A format whose decoder yields ``deltas`` (and ``rejects``) in CHUNKS chunks of 100 bytes each."""

    def decode(paths: Sequence[Path]) -> Iterator[Decoded]:
        size = -(-deltas.num_rows // CHUNKS)
        for i in range(CHUNKS):
            tables = {"book_delta": deltas.slice(i * size, size)}
            if i == 1 and rejects is not None:
                tables["rejected"] = rejects
            yield Decoded(tables, bytes_read=100, source=f"chunk {i}")

    return VenueFormat(name=name, decode=decode, description="in-test fake")


@pytest.fixture(scope="module")
def dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"chdb://{tmp_path_factory.mktemp('warehouse')}"


@pytest.fixture
def empty_dsn(dsn: str) -> str:
    with Warehouse(dsn) as wh:
        for name in ALL_RECORDS:
            wh.client.command(f"TRUNCATE TABLE IF EXISTS {name}")
    return dsn


@pytest.fixture
def inputs(tmp_path: Path) -> list[Path]:
    path = tmp_path / "input.bin"
    path.write_bytes(b"\x00" * 300)
    return [path]


def _counts(dsn: str, record_name: str, group: str = "symbol") -> dict[str, int]:
    with Warehouse(dsn) as wh:
        t = wh.query(f"SELECT {group} AS k, count() AS n FROM {record_name} GROUP BY k ORDER BY k")
    return dict(zip(t.column("k").to_pylist(), t.column("n").to_pylist(), strict=True))


def test_fake_format_fills_lake_and_warehouse(tmp_path: Path, empty_dsn: str, inputs: list[Path],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    btc, eth = _source("BTCUSDT", 400, 1), _source("ETHUSDT", 300, 2)
    deltas = pa.concat_tables([btc, eth])
    summary = ingest(fake_format(deltas, _rejects()), inputs, lake=tmp_path / "lake", clickhouse=empty_dsn,
                     progress=True)

    assert summary.events == {"book_delta": deltas.num_rows, "rejected": 3}
    assert summary.rejected == {"bad_json": 2, "truncated": 1}
    assert summary.total_events == btc.num_rows + eth.num_rows
    assert summary.bytes_read == 300 and summary.files == 1
    # 2 symbols x 2 days of deltas + rejects (no venue time: -1 ns): (fake, BTCUSDT | "", 1969-12-31)
    paths = [w.path for w in summary.partitions]
    assert len(paths) == len(set(paths)) == 2 * 2 + 2  # each partition written once, not per chunk
    assert summary.bytes_written == sum(p.stat().st_size for p in paths)

    stored = lake.read(BOOK_DELTA, tmp_path / "lake")
    assert stored.num_rows == deltas.num_rows
    assert lake.read(BOOK_DELTA, tmp_path / "lake", symbol="ETHUSDT").num_rows == eth.num_rows
    assert lake.read(REJECTED, tmp_path / "lake").column("reason").to_pylist().count("bad_json") == 2
    assert _counts(empty_dsn, "book_delta") == {"BTCUSDT": btc.num_rows, "ETHUSDT": eth.num_rows}
    assert _counts(empty_dsn, "rejected", "reason") == {"bad_json": 2, "truncated": 1}
    assert summary.warehouse_rows == {"book_delta": deltas.num_rows, "rejected": 3}

    text = summary.render()
    assert f"book_delta {deltas.num_rows:>12,}" in text
    assert "bad_json 2, truncated 1" in text and "6 partitions" in text and "mode merge" in text
    assert "ingest fake" in capsys.readouterr().err  # the progress bar went to stderr


def test_rerun_is_idempotent_and_merge_keeps_another_source(tmp_path: Path, empty_dsn: str,
                                                            inputs: list[Path]) -> None:
    a = _source("BTCUSDT", 300, 3)
    b = _source("BTCUSDT", 200, 4)  # another capture of the same symbol and days
    root = tmp_path / "lake"
    for _ in range(2):
        ingest(fake_format(a), inputs, lake=root, clickhouse=empty_dsn, progress=False)
    assert lake.read(BOOK_DELTA, root).num_rows == a.num_rows
    assert _counts(empty_dsn, "book_delta") == {"BTCUSDT": a.num_rows}

    ingest(fake_format(b), inputs, lake=root, clickhouse=empty_dsn, progress=False)
    keys = {tuple(r[c] for c in BOOK_DELTA.order_by) for r in pa.concat_tables([a, b]).to_pylist()}
    assert lake.read(BOOK_DELTA, root).num_rows == len(keys) == a.num_rows + b.num_rows
    assert _counts(empty_dsn, "book_delta") == {"BTCUSDT": len(keys)}

    ingest(fake_format(b), inputs, lake=root, clickhouse=empty_dsn, progress=False, mode="replace")
    assert lake.read(BOOK_DELTA, root).num_rows == b.num_rows
    assert _counts(empty_dsn, "book_delta") == {"BTCUSDT": b.num_rows}


def test_small_flushes_never_lose_rows_of_the_same_run(tmp_path: Path, empty_dsn: str,
                                                       inputs: list[Path]) -> None:
    deltas = _source("BTCUSDT", 300, 5)
    summary = ingest(fake_format(deltas), inputs, lake=tmp_path / "lake", clickhouse=empty_dsn,
                     progress=False, mode="replace", flush_rows=1)
    # chunk 0 lies on day 1, chunk 1 straddles midnight, chunk 2 on day 2: every chunk spills sorted runs
    # (4 of 2 partitions), and each partition is committed once, holding all of its runs although the
    # run's mode is replace
    assert len(summary.partitions) == 2 and len({w.path for w in summary.partitions}) == 2
    assert summary.spilled_bytes > 0
    assert lake.read(BOOK_DELTA, tmp_path / "lake").num_rows == deltas.num_rows
    assert _counts(empty_dsn, "book_delta") == {"BTCUSDT": deltas.num_rows}


def test_lake_only_and_bad_arguments(tmp_path: Path, inputs: list[Path]) -> None:
    deltas = _source("BTCUSDT", 50, 6)
    summary = ingest(fake_format(deltas), inputs, lake=tmp_path / "lake", clickhouse=None, progress=False)
    assert summary.warehouse_rows == {} and "warehouse" not in summary.render()
    assert lake.read(BOOK_DELTA, tmp_path / "lake").num_rows == deltas.num_rows
    with pytest.raises(ConfigError, match="no-such-format"):
        ingest("no-such-format", inputs, lake=None, clickhouse=None, progress=False)
    with pytest.raises(ConfigError, match="'append'"):
        ingest(fake_format(deltas), inputs, lake=None, clickhouse=None, mode="append")  # type: ignore[arg-type]


@pytest.mark.realdata
def test_binance_capture_lands_whole_in_lake_and_warehouse(tmp_path: Path, empty_dsn: str,
                                                           real_data: Path) -> None:
    path = need(real_data / "binance" / "usdm_btcusdt_20240808.gz")
    with gzip.open(path, "rb") as fh:
        lines = fh.read().splitlines()
    trade_lines = sum(1 for line in lines if b'@trade"' in line)
    ticker_lines = sum(1 for line in lines if b'@bookTicker"' in line)
    assert (trade_lines, ticker_lines) == (21_313, 66_089)

    summary = ingest("binance", [path], lake=tmp_path / "lake", clickhouse=empty_dsn, progress=False)
    root = tmp_path / "lake"
    # one trade per trade message, one quote per bookTicker message
    assert lake.read(TRADE, root).num_rows == _counts(empty_dsn, "trade")["BTCUSDT"] == trade_lines
    assert lake.read(QUOTE, root).num_rows == _counts(empty_dsn, "quote")["BTCUSDT"] == ticker_lines
    deltas = summary.events["book_delta"]
    assert lake.read(BOOK_DELTA, root).num_rows == _counts(empty_dsn, "book_delta")["BTCUSDT"] == deltas
    assert summary.events.get("rejected", 0) == 0


def chunked_format(deltas: pa.Table, chunks: int) -> VenueFormat:
    """A format whose decoder yields ``deltas`` in ``chunks`` pieces."""

    def decode(paths: Sequence[Path]) -> Iterator[Decoded]:
        size = -(-deltas.num_rows // chunks)
        for i in range(chunks):
            yield Decoded({"book_delta": deltas.slice(i * size, size)}, bytes_read=1, source=f"chunk {i}")

    return VenueFormat(name="chunked", decode=decode, description="in-test fake")


def _write_syscall_bytes() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise AssertionError("no wchar in /proc/self/io")


def test_many_small_flushes_write_bytes_linear_in_rows(tmp_path: Path, inputs: list[Path]) -> None:
    if not Path("/proc/self/io").exists():
        pytest.skip("counts the bytes this process writes through /proc/self/io (Linux)")
    deltas = _source("BTCUSDT", 2_000, 8)

    def written(rows: pa.Table, chunks: int, flush_rows: int) -> int:
        root = tmp_path / f"lake-{rows.num_rows}-{chunks}"
        before = _write_syscall_bytes()  # every byte written, whoever writes it: no self-reporting
        summary = ingest(chunked_format(rows, chunks), inputs, lake=root, clickhouse=None, progress=False,
                         flush_rows=flush_rows)
        total = _write_syscall_bytes() - before
        assert lake.read(BOOK_DELTA, root).num_rows == rows.num_rows
        assert total >= summary.bytes_written + summary.spilled_bytes
        return total

    # a flush after every chunk of ~600 rows: each row is written twice (its spilled run, then its
    # partition), so twice the rows in twice the flushes write twice the bytes. The old ingest rewrote
    # every partition on every pass: twice the flushes of twice the rows wrote four times the bytes.
    half = written(deltas.slice(0, deltas.num_rows // 2), 50, 1)
    whole = written(deltas, 100, 1)
    assert 1.7 * half <= whole <= 2.3 * half
    assert whole <= 8 * written(deltas, 1, 10**9)  # vs one flush: small runs compress less, no more


def test_a_rerun_of_a_many_pass_merge_is_idempotent(tmp_path: Path, empty_dsn: str,
                                                     inputs: list[Path]) -> None:
    deltas = _source("BTCUSDT", 400, 9)
    root = tmp_path / "lake"
    for _ in range(2):  # each run flushes after every chunk; the second merges into the first's rows
        ingest(chunked_format(deltas, 20), inputs, lake=root, clickhouse=empty_dsn, progress=False,
               flush_rows=1)
    assert lake.read(BOOK_DELTA, root).num_rows == deltas.num_rows
    assert _counts(empty_dsn, "book_delta") == {"BTCUSDT": deltas.num_rows}


def test_a_decode_error_while_the_writer_opens_closes_it(tmp_path: Path, inputs: list[Path],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from tapeflow.errors import FormatError
    from tapeflow.storage import ingest as ingest_module

    opened: list[ingest_module.Writer] = []
    closed: list[ingest_module.Writer] = []

    class Spy(ingest_module.Writer):
        def __init__(self, *args: object, **kwargs: object) -> None:
            time.sleep(0.3)  # as slow to open as chdb's engine: the decode runs meanwhile and fails
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            opened.append(self)

        def close(self) -> None:
            closed.append(self)
            super().close()

    def decode(paths: Sequence[Path]) -> Iterator[Decoded]:
        raise FormatError("not this format")
        yield  # a generator, as decoders are

    monkeypatch.setattr(ingest_module, "Writer", Spy)
    with pytest.raises(FormatError, match="not this format"):
        ingest(VenueFormat(name="broken", decode=decode, description="in-test"), inputs,
               lake=tmp_path / "lake", clickhouse=None, progress=False)
    assert len(opened) == 1 and closed == opened
