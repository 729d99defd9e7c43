"""The landing index keeps the rows of its decode; a run reads them instead of decoding again, and
hands each instrument-day over as soon as the sources holding it are read.

Expected rows come from the format's own decoder run here (``merge(decode(paths))``), never from
the kept copy; a changed file must be decoded again, and the copy goes once its days are written.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from tapeflow.batch import normalize
from tapeflow.batch.normalize import STORED_AS, DayRows, Normalizer
from tapeflow.batch.sources import SourceIndex, discover
from tapeflow.batch.targets import Target
from tapeflow.venues import get_format
from tapeflow.venues.base import merge
from tests.dagster.conftest import copy_landing, sim_lines, write_sim


def _fresh(src: object) -> dict[str, pa.Table]:
    tables = merge(list(get_format(src.format).decode(list(src.paths))))  # type: ignore[attr-defined]
    return {name: t for name, t in tables.items() if t.num_rows}


def _targets(index: SourceIndex, src: object) -> list[Target]:
    entry = index.entries[src.key]  # type: ignore[attr-defined]
    return [Target(d, v, s) for v, s, d in entry.holds()]


def _same(kept: dict[str, pa.Table], fresh: dict[str, pa.Table]) -> None:
    assert sorted(kept) == sorted(fresh)
    for name in fresh:
        assert kept[name].schema == fresh[name].schema, name
        assert kept[name].num_rows == fresh[name].num_rows, name
        assert kept[name].equals(fresh[name]), name


@pytest.fixture
def indexed(sim_files: Path, tmp_path: Path) -> tuple[SourceIndex, list]:
    dep = copy_landing(sim_files, tmp_path)
    index = SourceIndex(dep.lake)
    sources = discover(dep.landing, None)
    index.refresh(sources)
    return index, sources


def test_the_index_keeps_exactly_the_rows_a_fresh_decode_gives(indexed) -> None:
    index, sources = indexed
    assert len(sources) == 2  # one file per simulated instrument
    for src in sources:
        kept = index.decoded(src)
        assert kept is not None
        fresh = _fresh(src)
        _same(kept, fresh)
        # every data line of the file is one row of some record (or a rejected row)
        assert sum(t.num_rows for t in fresh.values()) >= len(sim_lines(src.paths[0]))


def test_normalized_reads_the_kept_rows_without_decoding_and_drops_them_after(indexed, monkeypatch) -> None:
    index, sources = indexed
    src = sources[0]
    fresh = _fresh(src)

    def no_decode(name: str) -> object:
        raise AssertionError(f"{name} decoded again although its rows were kept")

    monkeypatch.setattr(normalize, "get_format", no_decode)
    # a run that covers none of the source's days reads the rows and keeps them for a later run
    assert list(Normalizer([src], [], index).days()) == []
    assert index.decoded(src) is not None
    wanted = _targets(index, src)
    days = list(Normalizer([src], wanted, index).days())
    assert index.decoded(src) is None and not index.decoded_dir(src).exists()
    assert sorted(d.target for d in days) == sorted(wanted)
    _rows_equal(days, fresh)


def _rows_equal(days: list[DayRows], fresh: dict[str, pa.Table]) -> None:
    for name, table in fresh.items():
        rows = sum(d.tables[STORED_AS[name].name].num_rows for d in days)
        assert rows == table.num_rows, name


def test_each_day_is_handed_over_once_the_sources_holding_it_are_read(indexed, monkeypatch) -> None:
    index, sources = indexed
    read: list[str] = []
    real = index.decoded_chunks

    def reading(src):
        read.append(src.key)
        return real(src)

    monkeypatch.setattr(index, "decoded_chunks", reading)
    wanted = sorted(t for src in sources for t in _targets(index, src))
    seen = []
    for day in Normalizer(sources, wanted, index).days():
        seen.append((day.target, list(read)))
    # one simulated instrument per file: its day is complete before the next file is opened
    assert [(t, len(r)) for t, r in seen] == [(wanted[0], 1), (wanted[1], 2)]


def test_a_changed_file_is_decoded_again(indexed) -> None:
    index, sources = indexed
    src = sources[0]
    rows = sim_lines(src.paths[0])
    write_sim(src.paths[0], rows[: len(rows) // 2])
    assert index.decoded(src) is None  # the kept rows are of the old file
    days = list(Normalizer([src], _targets(index, src), index).days())
    fresh = _fresh(src)
    _rows_equal(days, fresh)
    index.refresh([src])
    kept = index.decoded(src)
    assert kept is not None
    _same(kept, fresh)


def test_streamed_pieces_written_by_day_loads_equal_the_days_handed_over(indexed, tmp_path: Path) -> None:
    from tapeflow.batch.loads import DayLoads
    from tapeflow.storage import lake as lake_store
    from tapeflow.storage.writer import Writer

    index, sources = indexed
    wanted = sorted(t for src in sources for t in _targets(index, src))
    records = [STORED_AS[name] for name in ("order_event", "trade", "book_delta", "rejected")]
    out = tmp_path / "streamed"
    # an earlier run left other rows in the days' partitions: a replace leaves exactly the day's
    old = pa.concat_tables([_fresh(src)[records[0].name] for src in sources])
    with Writer(out) as writer, writer.load(records[0], "replace") as load:
        load.add(pa.concat_tables([old, old]))
        load.commit()
    pieces: list[tuple[Target, str]] = []
    with Writer(out) as writer:
        loads = DayLoads(writer, records)

        def sink(t: Target, name: str, rows: pa.Table) -> None:
            pieces.append((t, name))
            loads.add(t, name, rows)

        days = []
        for day in Normalizer(sources, wanted, index, sink=sink).days():
            loads.commit(day.target)
            days.append(day)
    assert {t for t, _ in pieces} == set(wanted)
    for day in days:
        t = day.target
        for record in records:
            written = lake_store.read(record, out, venue=t.venue, symbol=t.symbol, date=t.date)
            assert written.num_rows == day[record].num_rows, (t, record.name)
            if written.num_rows:
                expected = lake_store.sort_stable(record, day[record])
                assert written.select(expected.column_names).equals(expected), (t, record.name)


def test_held_datasets_only_the_rest_streams_past(indexed) -> None:
    """With ``hold``, a day holds only those datasets; the sink still sees every piece, in order."""
    index, sources = indexed
    wanted = sorted(t for src in sources for t in _targets(index, src))
    held = frozenset({"trade", "rejected"})
    streamed: dict[tuple[Target, str], list[pa.Table]] = {}

    def sink(t: Target, name: str, rows: pa.Table) -> None:
        streamed.setdefault((t, name), []).append(rows)

    whole = {day.target: day for day in Normalizer(sources, wanted, index).days()}
    for day in Normalizer(sources, wanted, index, sink=sink, hold=held).days():
        want = whole[day.target]
        for name, table in day.tables.items():
            if name in held:
                assert table.equals(want.tables[name]), name
            else:
                assert table.num_rows == 0, name
                pieces = streamed.get((day.target, name), [])
                got = pa.concat_tables(pieces) if pieces else table
                assert got.equals(want.tables[name]), name
        assert day.trades_from_order_events == want.trades_from_order_events
