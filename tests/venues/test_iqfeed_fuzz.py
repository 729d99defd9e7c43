"""Mutated IQConnect streaming lines (the registry fuzz sample covers lookup rows): one line in, its
rows, one dead letter or a declared quiet frame out, and the chunk's tables always build."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tapeflow.venues.iqfeed.parse import IQFeedDecoder
from tapeflow.wire.capture import RECV, CaptureLine
from tests.fuzz.mutate import mutate_bytes, mutate_csv

FIXTURES = Path(__file__).parent.parent / "fixtures" / "iqfeed"
LINES = (FIXTURES / "l1_session_6.2.txt").read_bytes().splitlines()
LEVEL2 = (b"3,@ESM19,12345678,MD01,A,2938.25,65,10,2,20:31:04.876740,2019-04-23,",
          b"4,@ESM19,12345678,MD01,A,2938.25,60,10,2,20:31:04.876741,2019-04-23,",
          b"5,@ESM19,12345678,,A,20:31:04.876742,2019-04-23,",
          b"7,@ESM19,B,2938.25,65,11,2,20:31:04.876740,2019-04-23,",
          b"8,@ESM19,A,2938.50,65,10,2,20:31:04.876740,2019-04-23,",
          b"9,@ESM19,A,2938.50,20:31:04.876740,2019-04-23,",
          b"Z,@ES#,MD01,2982.25,2982.5,99,238,12:49:52.696621,2019-10-18,52,12:49:52.541104,T,T,F,",
          b"F,MSFT,5,65.6,28624000,97.9500,67.1400,97.9500,83.8300,,,,,,1.49,,0.06,06,MICROSOFT,MSFT,"
          b"76.800,1.27,,159851.0,64527.0,03/31/2018,76073.0,7683198,0.50 02/18/2003,0.50 03/29/1999,14,4,"
          b"7372,24.82,1,21,05/10/2018,05/18/2017,05/10/2018,02/09/2018,85.5400,,,,,511210,,,,09:00:00,"
          b"17:00:00,USD,125000,HMUZ,0.1,01/01/2016,TEST,1,")
FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@FUZZ
@given(data=st.data())
def test_a_mutated_stream_line_is_rows_a_dead_letter_or_quiet(data: st.DataObject) -> None:
    session = [*LINES, *LEVEL2]
    k = data.draw(st.integers(0, len(session) - 1))
    pick = lambda n: data.draw(st.integers(0, n - 1))  # noqa: E731
    line = session[k]
    how = pick(3)
    if how != 1:
        line = mutate_csv(line, pick)
    if how != 0:
        line = mutate_bytes(line, pick)
    line = line.replace(b"\n", b"\\").replace(b"\r", b"\\")
    session[k] = line
    dec = IQFeedDecoder()
    for i, payload in enumerate(session):
        rows, rejects, quiet = dec.rows, len(dec.rejects), sum(dec.quiet_frames.values())
        dec.feed(CaptureLine(1_700_000_000_000_000_000 + i, RECV, "", payload, f"fuzz:{i + 1}"))
        made = dec.rows - rows - (len(dec.rejects) - rejects)
        dead = len(dec.rejects) - rejects
        assert dead <= 1 and (made > 0 or dead == 1 or sum(dec.quiet_frames.values()) > quiet), (i, payload)
        assert not (made > 0 and dead), (i, payload)
    buffered = dec.rows
    chunk = dec.flush(0, "fuzz")  # every value fits its column (an int64 overflow would raise here)
    assert sum(t.num_rows for t in chunk.tables.values()) == buffered
