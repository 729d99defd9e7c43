"""IQFeed samples of the damaged-input corpus (:mod:`tests.corpus.make_damaged`): every message type
the ``iqfeed`` format decodes, written from DTN's protocol 6.2 layouts and the shapes of the real
lines in ``../shared/data/iqfeed`` (nothing copied)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from tests.corpus.make_damaged import _HUGE, BIG_LINE_BYTES, UNITS, Case, _file_cases, _line_cases

# (the layouts of DTN's protocol 6.2 documentation and of the real lines in ../shared/data/iqfeed;
# written here, not copied). Per sample: the context lines that make no row (the L1 field set, the
# T time message), the unit line of index i (one row in ``table`` each), the file name (lookup rows
# take their symbol and bar interval from it) and the table.

_IQ_L1_FIELDS = ("S,CURRENT UPDATE FIELDNAMES,Symbol,Most Recent Trade,Most Recent Trade Size,"
                 "Most Recent Trade Time,Most Recent Trade Market Center,Total Volume,Bid,Bid Size,Ask,"
                 "Ask Size,Open,High,Low,Close,Message Contents,Most Recent Trade Conditions,"
                 "Most Recent Trade Aggressor,Most Recent Trade Day Code,")
_IQ_L1_HEAD = ("S,SERVER CONNECTED,", "S,CURRENT PROTOCOL,6.2,", _IQ_L1_FIELDS, "T,20210330 16:53:24,")
_IQ_L2_HEAD = ("S,SERVER CONNECTED,", "S,CURRENT PROTOCOL,6.2,")
# a price level summary (7): the symbol's first one clears its book, so it writes two book_delta rows
_IQ_LEVEL_HEAD = (*_IQ_L2_HEAD, "7,@ESM19,B,2938.00,65,11,2,20:31:04.876739,2019-04-23,")
_IQ_FUNDAMENTAL = ("5,65.6,28624000,97.9500,67.1400,97.9500,83.8300,,,,,,1.49,,0.06,06,MICROSOFT,MSFT,76.800,"
                   "1.27,,159851.0,64527.0,03/31/2018,76073.0,7683198,0.50 02/18/2003,0.50 03/29/1999,14,4,"
                   "7372,24.82,1,21,05/10/2018,05/18/2017,05/10/2018,02/09/2018,85.5400,,,,,511210,,,,"
                   "09:00:00,17:00:00,USD,125000,HMUZ,0.1,01/01/2016,TEST,1,")


def _iq_tick(i: int) -> str:
    return f"LH,2021-03-03 19:58:32.25401{i},1.54{i}0,238,{4813134 + i},1.5100,1.5400,{597 + i},C,11,17,0,3,"


def _iq_interval(i: int) -> str:
    return f"2021-03-03 19:58:3{i},1.54{i}0,1.5400,1.5400,1.5400,{4813134 + i},388,0,"


def _iq_daily(i: int) -> str:
    return f"2021-03-2{i},1.47{i}0,1.3100,1.4600,1.3600,{4713611 + i},0,"


def _iq_l1(kind: str, contents: str, i: int) -> str:
    # an update (Q) with a trade, or a summary (P) of the bid and ask: one row each
    return (f"{kind},AAPL{i},322.{75 + i}00,40,16:53:2{i}.256494,11,{37629453 + i},322.{60 + i}00,100,"
            f"322.8700,100,312.6000,318.4000,312.1900,308.9500,{contents},873D17,2,17,")


def _iq_mbp_quote(i: int) -> str:
    return (f"{'Z2'[i % 2]},@ES#,MD01,2982.{25 + i},2982.5,99,238,12:49:52.69662{i},2019-10-18,52,"
            "12:49:52.541104,T,T,F,")


def _iq_mbo(i: int) -> str:
    # an order added (3), changed (4), summarized (6) and deleted (5) in turn: one order_event row each
    order = 1000 + i // 4
    kind = "3465"[i % 4]
    if kind == "5":
        return f"5,@ESM19,{order},,A,20:31:04.{876740 + i},2019-04-23,"
    return f"{kind},@ESM19,{order},MD01,A,2938.{25 + i},{65 + i},{10 + i},2,20:31:04.{876740 + i},2019-04-23,"


def _iq_level(i: int) -> str:
    # price level updates (8) and deletes (9): one book_delta row each
    if i % 3:
        return f"8,@ESM19,{'AB'[i % 2]},2938.{25 + i},65,{10 + i},2,20:31:04.87674{i},2019-04-23,"
    return f"9,@ESM19,A,2938.{25 + i},20:31:04.87674{i},2019-04-23,"


IQFEED_SAMPLES: dict[str, tuple[tuple[str, ...], Callable[[int], str], str, str]] = {
    "iqfeed-ticks": ((), _iq_tick, "NEPT_ticks.txt", "trade"),
    "iqfeed-intervals": ((), _iq_interval, "NEPT_intervals_1s.txt", "bar"),
    "iqfeed-dailies": ((), _iq_daily, "NEPT_dailies.txt", "bar"),
    "iqfeed-l1-update": (_IQ_L1_HEAD, partial(_iq_l1, "Q", "C"), "l1_update.txt", "trade"),
    "iqfeed-l1-summary": (_IQ_L1_HEAD, partial(_iq_l1, "P", "ba"), "l1_summary.txt", "quote"),
    "iqfeed-fundamental": ((), lambda i: f"F,MSF{i},{_IQ_FUNDAMENTAL}", "fundamentals.txt", "instrument"),
    "iqfeed-l2-mbp-quote": (_IQ_L2_HEAD, _iq_mbp_quote, "l2_mbp.txt", "quote"),
    "iqfeed-l2-mbo": (_IQ_L2_HEAD, _iq_mbo, "l2_mbo.txt", "order_event"),
    "iqfeed-l2-price-level": (_IQ_LEVEL_HEAD, _iq_level, "l2_levels.txt", "book_delta"),
}


def _iqfeed_damages(good: bytes) -> dict[str, bytes]:
    # every decimal field beyond what any number holds: whichever the message type reads, it fails
    huge = b",".join(_HUGE.encode() + p[p.index(b"."):] if p[:1].isdigit() and b"." in p and b" " not in p
                     else p for p in good.split(b","))
    return {
        "non-utf8-byte": good.replace(b",", b",\xff", 1),
        "huge-number": huge,
        "big-line": good + b"," + b"x" * BIG_LINE_BYTES,
        "nul-bytes": b"\x00" * 64,
        "cut-line": good[: len(good) // 3],
        "empty-fields": b",".join(b"" for _ in good.split(b",")),
    }


def iqfeed_cases(fmt: str, root: Path) -> list[Case]:
    """The clean sample of ``fmt`` (a key of :data:`IQFEED_SAMPLES`), each line damage, and (for the
    ticks) each file damage, all run as ``--format iqfeed``."""
    head, unit, name, table = IQFEED_SAMPLES[fmt]
    good = [h.encode() for h in head] + [unit(i).encode() for i in range(UNITS)]
    cases = _line_cases(fmt, root, good, _iqfeed_damages(unit(UNITS).encode()), name, head=len(head),
                        table=table)
    extra = 2 if fmt == "iqfeed-l2-price-level" else 0  # the rows of the 7 summary among the head lines
    cases = [Case(c.name, "iqfeed", c.paths, c.units + extra, c.damaged, c.error, c.table) for c in cases]
    if fmt == "iqfeed-ticks":  # the file-level damage once: the reader is the same for every sample
        cases += [Case(c.name, "iqfeed", c.paths, c.units, c.damaged, c.error, c.table)
                  for c in _file_cases(fmt, root, good, name)]
    return cases
