"""The damaged-input corpus: small samples of every format, each damaged the ways real files break.

``python -m tests.corpus.make_damaged OUT`` writes the corpus under ``OUT`` and prints its manifest.
Nothing is copied from real files: the samples are written from the message shapes each venue
documents (the JSON venues' trade messages, Tardis' ``trades`` CSV, LOBSTER's message/orderbook
pair, the simulator's L3 CSV, Databento's DBN trades and MBO records, every IQFeed message type the
``iqfeed`` format decodes: lookup ticks and bars, L1 update/summary/fundamental, L2 by price and by
order). Each sample has one input unit
(frame, line, record) per normalized row, so conservation can be checked from the counts alone.

Line-level damage (one unit broken) must become dead letters; file-level damage (a file cut short,
a directory, a damaged compressed stream, the wrong format) must become one clear error.
"""

from __future__ import annotations

import gzip
import sys
from dataclasses import dataclass
from pathlib import Path
from string import Template

HUGE_DIGITS = 5000  # beyond CPython's 4,300-digit limit on int(str)
BIG_LINE_BYTES = 3 << 20  # beyond pyarrow's 1 MiB CSV block and any line buffer of one block
UNITS = 6  # good units per sample
T0_NS = 1_700_000_000_000_000_000


@dataclass(frozen=True)
class Case:
    """One input of the corpus and what the policy says must come of it.

    Attributes:
        name: ``format/damage``.
        format: the ``--format`` to run it with.
        paths: the files (or directory) to pass.
        units: input units the sample holds (frames, lines or records).
        damaged: units that must become dead letters (0 for clean and file-level cases).
        error: '' when the case decodes; else a text the error message must contain.
        table: the record table holding one row per normalized unit.
    """

    name: str
    format: str
    paths: tuple[Path, ...]
    units: int = 0
    damaged: int = 0
    error: str = ""
    table: str = "trade"

    @property
    def file_level(self) -> bool:
        return bool(self.error)


# ---- samples: one function per format family, each a list of unit texts ----------------------------

# each venue's trade message ($i: the unit's index, $id: a trade id, $ms/$ns: its time)
JSON_TRADES = {
    "binance": '{"stream":"btcusdt@trade","data":{"e":"trade","E":$ms,"T":$ms,"s":"BTCUSDT","t":$id,'
               '"p":"100.$i","q":"0.1","m":true}}',
    "kraken": '[0,[["100.$i","0.1","1700000000.00000$i","s","l",""]],"trade","XBT/USD"]',
    "okx": '{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"$id",'
           '"px":"100.$i","sz":"0.1","side":"buy","ts":"$ms"}]}',
    "coinbase": '{"type":"match","trade_id":$id,"product_id":"BTC-USD","side":"buy","price":"100.$i",'
                '"size":"0.1","time":"2023-11-14T22:13:20.00000${i}Z"}',
    "bybit": '{"topic":"publicTrade.BTCUSDT","data":[{"T":$ms,"s":"BTCUSDT","S":"Buy","v":"0.1",'
             '"p":"100.$i","i":"t$id"}]}',
    "kucoin": '{"type":"message","topic":"/market/match:BTC-USDT","subject":"trade.l3match","data":'
              '{"symbol":"BTC-USDT","side":"buy","tradeId":"$id","price":"100.$i","size":"0.1",'
              '"sequence":"$id","time":"$ns"}}',
    "bitmex": '{"table":"trade","action":"insert","data":[{"timestamp":"2023-11-14T22:13:20.00${i}Z",'
              '"symbol":"XBTUSD","side":"Buy","size":1,"price":100.$i,"trdMatchID":"m$id"}]}',
    # Deribit's documented trades notification (docs.deribit.com, trades.{instrument_name}.{interval})
    "deribit": '{"jsonrpc":"2.0","method":"subscription","params":{"channel":"trades.BTC-PERPETUAL.raw",'
               '"data":[{"trade_seq":$id,"trade_id":"$id","timestamp":$ms,"tick_direction":0,"price":100.$i,'
               '"mark_price":100.0,"instrument_name":"BTC-PERPETUAL","index_price":100.0,"direction":"buy",'
               '"amount":10}]}}',
}


def _trade(fmt: str, i: int) -> str:
    values = {"i": i, "id": 100 + i, "ms": 1_700_000_000_000 + i, "ns": T0_NS + i}
    return Template(JSON_TRADES[fmt]).substitute(values)


# a number the venue sends as a JSON number or string, with more digits than int() accepts
_HUGE = "1" * HUGE_DIGITS


def json_lines(fmt: str, n: int = UNITS) -> list[bytes]:
    """``n`` trade frames of venue ``fmt`` as `<recv_ns> <json>` capture lines."""
    return [f"{T0_NS + i * 1000} {_trade(fmt, i)}".encode() for i in range(n)]


def _json_damages(fmt: str) -> dict[str, bytes]:
    good = json_lines(fmt, UNITS + 1)[-1]
    recv, _, frame = good.partition(b" ")
    huge = frame.replace(b"100.", _HUGE.encode() + b".", 1)
    return {
        "non-utf8-byte": recv + b" " + frame.replace(b"BTC", b"B\xffC", 1).replace(b"XBT", b"X\xffT", 1),
        "huge-number": recv + b" " + huge,
        "huge-json-number": recv + b" " + (frame.replace(b'"100.', _HUGE.encode() + b'.0,"x":"', 1)
                                            if b'"100.' in frame else huge),
        "big-line": recv + b" " + frame[:-1] + b',"pad":"' + b"x" * BIG_LINE_BYTES,
        "nul-bytes": recv + b" " + b"\x00" * 64,
    }


def _tardis_lines(n: int = UNITS) -> list[bytes]:
    return [(f"binance-futures,BTCUSDT,{1700000000000000 + i},{1700000000000100 + i},{100 + i},buy,"
             f"100.{i},0.1").encode() for i in range(n)]


TARDIS_HEADER = b"exchange,symbol,timestamp,local_timestamp,id,side,price,amount"


def _tardis_damages() -> dict[str, bytes]:
    good = _tardis_lines(UNITS + 1)[-1]
    return {
        "non-utf8-byte": good.replace(b"BTCUSDT", b"BTC\xffUSDT"),
        "huge-number": good.replace(b"100.", _HUGE.encode() + b".", 1),
        "big-line": good + b"," + b"x" * BIG_LINE_BYTES,
        "big-field": good.replace(b"0.1", b"0." + b"1" * BIG_LINE_BYTES),
        "nul-bytes": b"\x00" * 64,
    }


def _sim_lines(n: int = UNITS) -> list[bytes]:
    header = [b"ts_event,ts_recv,seq,type,order_id,side,price,size",
              f"{T0_NS},{T0_NS + 10},1,R,0,B,0,0".encode()]
    return header + [_sim_add(i) for i in range(n)]


def _sim_add(i: int) -> bytes:
    return f"{T0_NS + i * 1000},{T0_NS + i * 1000 + 10},{2 + i},A,{1 + i},B,100.{i},1".encode()


def _sim_damages() -> dict[str, bytes]:
    i = UNITS
    good = _sim_add(i)
    return {
        "non-utf8-byte": good.replace(b",A,", b",\xff,"),
        "huge-number": good.replace(b"100.", _HUGE.encode() + b".", 1),
        "huge-seq": good.replace(f",{2 + i},".encode(), b"," + _HUGE.encode() + b","),
        "big-line": good + b"," + b"x" * BIG_LINE_BYTES,
        "nul-bytes": b"\x00" * 64,
    }


def _lobster_lines(n: int = UNITS) -> tuple[list[bytes], list[bytes]]:
    msgs = [f"{34200 + i}.000000001,1,{1 + i},100,{1000000 + i * 100},1".encode() for i in range(n)]
    books = [f"9999999999,0,{1000000 + i * 100},100".encode() for i in range(n)]
    return msgs, books


def _lobster_damages() -> dict[str, bytes]:
    i = UNITS
    good = f"{34200 + i}.000000001,1,{1 + i},100,{1000000 + i * 100},1".encode()
    return {
        "non-utf8-byte": good.replace(b",1,", b",\xff,", 1),
        "huge-number": good.replace(b",100,", b"," + _HUGE.encode() + b",", 1),
        "big-line": good + b"," + b"x" * BIG_LINE_BYTES,
        "nul-bytes": b"\x00" * 64,
    }


# ---- writing the corpus -----------------------------------------------------------------------------

def _write(path: Path, lines: list[bytes], *, gz: bool = False, cut: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b"".join(line + b"\n" for line in lines)
    if gz:
        data = gzip.compress(data, mtime=0)
    if cut:
        data = data[: len(data) * 2 // 3]
    path.write_bytes(data)
    return path


def _line_cases(fmt: str, root: Path, good: list[bytes], damages: dict[str, bytes], name: str, *,
                gz: bool = False, head: int = 0, table: str = "trade") -> list[Case]:
    """Each damage inserted as one line among the good ones (after ``head`` header lines)."""
    units = len(good) - head
    cases = [Case(f"{fmt}/clean", fmt, (_write(root / "clean" / name, good, gz=gz),), units, 0, table=table)]
    for damage, line in damages.items():
        assert line not in good, f"{fmt}/{damage} damages nothing"
        lines = good[: head + 2] + [line] + good[head + 2:]
        path = _write(root / damage / name, lines, gz=gz)
        cases.append(Case(f"{fmt}/{damage}", fmt, (path,), units + 1, 1, table=table))
    cut = _write(root / "truncated-last-line" / name, good[:-1] + [good[-1][: len(good[-1]) // 2]], gz=gz)
    cases.append(Case(f"{fmt}/truncated-last-line", fmt, (cut,), units, 1, table=table))
    return cases


def _file_cases(fmt: str, root: Path, good: list[bytes], name: str, *, compressed_name: str | None = None
                ) -> list[Case]:
    gz_name = compressed_name or name + ".gz"
    cases = [
        Case(f"{fmt}/directory", fmt, (root / "a-directory",), error="directory"),
        Case(f"{fmt}/gzip-cut-short", fmt,
             (_write(root / "gzip-cut-short" / gz_name, good, gz=True, cut=True),), error="cut short"),
        Case(f"{fmt}/gzip-garbage", fmt, (_garbage(root / "gzip-garbage" / gz_name, b"\x1f\x8b"),),
             error="gzip"),
        Case(f"{fmt}/empty", fmt, (_write(root / "empty" / name, []),), error="empty"),
    ]
    (root / "a-directory").mkdir(parents=True, exist_ok=True)
    return cases


def _garbage(path: Path, magic: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(magic + bytes((i * 37 + 11) % 256 for i in range(4096)))
    return path


def _json_cases(fmt: str, root: Path) -> list[Case]:
    good = json_lines(fmt)
    name = f"{fmt}.capture"
    cases = _line_cases(fmt, root, good, _json_damages(fmt), name)
    cases += _line_cases(fmt, root / "gz", good, {}, name + ".gz", gz=True)[:1]
    cases[-1] = Case(f"{fmt}/clean-gzip", fmt, cases[-1].paths, cases[-1].units)
    cases += _file_cases(fmt, root, good, name)
    # the wrong --format: a sample of another venue, most of its frames unknown to this one
    other = "okx" if fmt != "okx" else "binance"
    path = _write(root / "wrong-format" / f"{other}.capture", json_lines(other))
    cases.append(Case(f"{fmt}/wrong-format", fmt, (path,), error=other))
    return cases


def _tardis_cases(root: Path) -> list[Case]:
    good = [TARDIS_HEADER] + _tardis_lines()
    name = "binance-futures_trades_BTCUSDT.csv"
    cases = _line_cases("tardis", root, good, _tardis_damages(), name, head=1)
    cases += _file_cases("tardis", root, good, name)
    path = _write(root / "wrong-format" / "okx.capture", json_lines("okx"))
    cases.append(Case("tardis/wrong-format", "tardis", (path,), error="okx"))
    return cases


def _sim_cases(root: Path) -> list[Case]:
    good = _sim_lines()
    name = "SIMA/2023-11-14.events.csv.gz"
    cases = _line_cases("sim", root, good, _sim_damages(), name, gz=True, head=1, table="order_event")
    cases += _file_cases("sim", root, good, name, compressed_name=name)
    return cases


def _lobster_cases(root: Path) -> list[Case]:
    msgs, books = _lobster_lines()
    msg_name, book_name = (f"XYZ_2013-01-15_34200000_57600000_{k}_1.csv" for k in ("message", "orderbook"))
    cases = []
    clean = root / "clean"
    pair = (_write(clean / msg_name, msgs), _write(clean / book_name, books))
    cases.append(Case("lobster/clean", "lobster", pair, UNITS, 0, table="order_event"))
    for damage, line in _lobster_damages().items():
        folder = root / damage
        m = _write(folder / msg_name, msgs[:2] + [line] + msgs[2:])
        b = _write(folder / book_name, books[:2] + [books[1]] + books[2:])
        cases.append(Case(f"lobster/{damage}", "lobster", (m, b), UNITS + 1, 1, table="order_event"))
    (root / "a-directory").mkdir(parents=True, exist_ok=True)
    cases.append(Case("lobster/directory", "lobster", (root / "a-directory",), error="directory"))
    empty = root / "empty"
    pair = (_write(empty / msg_name, []), _write(empty / book_name, []))
    cases.append(Case("lobster/empty", "lobster", pair, error="empty"))
    return cases


def _dbn_bytes(n: int = UNITS) -> bytes:
    import databento_dbn as dbn

    meta = dbn.Metadata(dataset="GLBX.MDP3", start=T0_NS, stype_in=dbn.SType.RAW_SYMBOL,
                        stype_out=dbn.SType.INSTRUMENT_ID, schema=dbn.Schema.TRADES, symbols=["ESH4"],
                        end=T0_NS + 10**12)
    records = [bytes(dbn.TradeMsg(1, 42, T0_NS + i * 1000, 4_500_000_000_000 + i * 250_000_000, 1 + i,
                                  dbn.Action.TRADE, dbn.Side.ASK, 0, T0_NS + i * 1000 + 100, sequence=1 + i))
               for i in range(n)]
    return meta.encode() + b"".join(records)


def _dbn_cases(root: Path) -> list[Case]:
    import zstandard

    data = _dbn_bytes()
    root.mkdir(parents=True, exist_ok=True)
    cases = []
    clean = root / "clean.trades.dbn"
    clean.write_bytes(data)
    cases.append(Case("dbn/clean", "dbn", (clean,), UNITS, 0))
    # one record's length byte flipped (record 3 of 6: 200-byte metadata, 48-byte records)
    flipped = bytearray(data)
    flipped[200 + 2 * 48] ^= 0x40
    bad_length = root / "bad-length.trades.dbn"
    bad_length.write_bytes(bytes(flipped))
    cases.append(Case("dbn/bad-length", "dbn", (bad_length,), UNITS, 1))
    # one more record, with a value no trade carries (a side, a price, a size: field offsets 29,
    # 16, 24 of the 48-byte trade record)
    extra = _dbn_bytes(UNITS + 1)[-48:]
    i64_min = (1 << 63).to_bytes(8, "little")
    for name, at, value in (("trade-side-x", 29, b"X"), ("trade-price-i64-min", 16, i64_min),
                            ("trade-size-u32-max", 24, b"\xff" * 4)):
        damaged_record = extra[:at] + value + extra[at + len(value):]
        path = root / f"{name}.trades.dbn"
        path.write_bytes(data + damaged_record)
        cases.append(Case(f"dbn/{name}", "dbn", (path,), UNITS + 1, 1))
    compressed = zstandard.ZstdCompressor(write_checksum=True).compress(data)
    clean_zst = root / "clean.trades.dbn.zst"
    clean_zst.write_bytes(compressed)
    cases.append(Case("dbn/clean-zst", "dbn", (clean_zst,), UNITS, 0))
    damaged = bytearray(compressed)
    for i in range(len(damaged) // 2, len(damaged) // 2 + 8):
        damaged[i] ^= 0xA5
    bad_zst = root / "damaged.trades.dbn.zst"
    bad_zst.write_bytes(bytes(damaged))
    cases.append(Case("dbn/damaged-zst", "dbn", (bad_zst,), error="zst"))
    cut_zst = root / "cut.trades.dbn.zst"
    cut_zst.write_bytes(compressed[: len(compressed) * 2 // 3])
    cases.append(Case("dbn/zst-cut-short", "dbn", (cut_zst,), error="cut short"))
    (root / "a-directory").mkdir(exist_ok=True)
    cases.append(Case("dbn/directory", "dbn", (root / "a-directory",), error="directory"))
    empty = root / "empty.trades.dbn"
    empty.write_bytes(b"")
    cases.append(Case("dbn/empty", "dbn", (empty,), error="empty"))
    json = _write(root / "wrong-format" / "binance.capture", json_lines("binance"))
    cases.append(Case("dbn/wrong-format", "dbn", (json,), error="DBN"))
    return cases


# IQFeed: every message type the iqfeed format decodes, one sample each (tests/corpus/iqfeed.py)
IQFEED_FORMATS = ("iqfeed-ticks", "iqfeed-intervals", "iqfeed-dailies", "iqfeed-l1-update",
                  "iqfeed-l1-summary", "iqfeed-fundamental", "iqfeed-l2-mbp-quote", "iqfeed-l2-mbo",
                  "iqfeed-l2-price-level")


def _iqfeed_cases(fmt: str, root: Path) -> list[Case]:
    from tests.corpus.iqfeed import iqfeed_cases  # it builds on this module's Case

    return iqfeed_cases(fmt, root)


FORMATS = (*sorted(JSON_TRADES), "tardis", "sim", "lobster", "dbn", "dbn-mbo", *IQFEED_FORMATS)


def _dbn_mbo_cases(root: Path) -> list[Case]:
    from tests.corpus.dbn_mbo import mbo_cases  # it builds on this module's Case

    return mbo_cases(root)


def build(root: Path, formats: tuple[str, ...] = FORMATS) -> list[Case]:
    """Write the corpus of ``formats`` under ``root``; return its cases."""
    cases: list[Case] = []
    for fmt in formats:
        if fmt in JSON_TRADES:
            cases += _json_cases(fmt, root / fmt)
        elif fmt in IQFEED_FORMATS:
            cases += _iqfeed_cases(fmt, root / fmt)
        else:
            cases += {"tardis": _tardis_cases, "sim": _sim_cases, "lobster": _lobster_cases,
                      "dbn": _dbn_cases, "dbn-mbo": _dbn_mbo_cases}[fmt](root / fmt)
    return cases


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m tests.corpus.make_damaged OUT_DIR", file=sys.stderr)
        return 2
    for case in build(Path(argv[0])):
        expect = f"error naming {case.error!r}" if case.error else f"{case.damaged} of {case.units} rejected"
        print(f"{case.name:32s} {expect}  {' '.join(map(str, case.paths))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
