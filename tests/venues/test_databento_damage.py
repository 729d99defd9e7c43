"""Damaged DBN: values no MBO record carries, doubled and reordered records, a flipped length byte,
a zstd stream cut short or garbled (issue 9). Each bad record costs that record only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import zstandard

from tapeflow.errors import FormatError
from tapeflow.venues.databento import framing
from tapeflow.venues.databento import messages as m
from tapeflow.venues.databento.parse import decode_all
from tests.conftest import need, real_data_root
from tests.corpus.dbn_mbo import CLEAN, I64_MAX, I64_MIN, PX, U32_MAX, mbo_bytes

ES_DAY = real_data_root() / "databento" / "glbx" / "esh4-glbx-mdp3-20231225.mbo.dbn.zst"
ES_RECORDS = 68_792
MBO_BYTES = 56


def _decode(tmp_path: Path, data: bytes, name: str = "sample.mbo.dbn") -> dict[str, pa.Table]:
    path = tmp_path / name
    path.write_bytes(data)
    return decode_all([path])


def _rejected(tables: dict[str, pa.Table]) -> list[tuple[str, str]]:
    t = tables.get("rejected")
    return [] if t is None else list(zip(t.column("reason").to_pylist(), t.column("detail").to_pylist(),
                                         strict=True))


def _es(real_data: Path) -> tuple[bytes, np.ndarray]:
    """The ES day's metadata bytes and its records."""
    raw = framing.read_all(need(ES_DAY))
    start = 8 + int.from_bytes(raw[4:8], "little")
    return raw[:start], np.frombuffer(raw[start:], m.record_dtype(m.MBO, MBO_BYTES)).copy()


# ---- values per action ------------------------------------------------------------------------

def test_legal_sentinels_per_action_are_kept(tmp_path: Path) -> None:
    # a clear has no price and side N; trades and fills may have side N; N is a flags-only record
    legal = [*CLEAN, ("T", "N", 0, PX, 1, 6, 0), ("F", "N", 3, PX, 1, 6, 128),
             ("N", "N", 0, I64_MAX, 0, 7, 128)]
    tables = _decode(tmp_path, mbo_bytes(legal))
    assert _rejected(tables) == []
    assert tables["order_event"].num_rows == len(legal)


@pytest.mark.parametrize(("bad", "reason", "says"), [
    (("Q", "B", 7, PX, 1, 3, 128), "bad_value", "action 'Q' is none of A, C, M, R, T, F, N"),
    (("A", "X", 7, PX, 1, 3, 128), "bad_side", "side 'X' is none of"),
    (("C", "N", 1, PX, 1, 3, 128), "bad_side", "a cancel (C) needs side A or B"),
    (("A", "B", 7, I64_MIN, 1, 3, 128), "out_of_range", "i64::MIN"),
    (("T", "A", 7, I64_MIN, 1, 3, 128), "out_of_range", "i64::MIN"),
    (("A", "B", 7, I64_MAX, 1, 3, 128), "missing_field", "an add (A) has no price (UNDEF_PRICE"),
    (("M", "A", 2, I64_MAX, 4, 3, 128), "missing_field", "a modify (M) has no price"),
    (("C", "A", 2, I64_MAX, 1, 3, 128), "missing_field", "a cancel (C) has no price"),
    (("A", "B", 7, PX, U32_MAX, 3, 128), "missing_field", "'A' size is UNDEF_ORDER_SIZE (4294967295)"),
    (("F", "B", 1, PX, U32_MAX, 3, 128), "missing_field", "'F' size is UNDEF_ORDER_SIZE"),
])
def test_a_record_no_mbo_event_carries_is_one_dead_letter(tmp_path: Path, bad: tuple, reason: str,
                                                          says: str) -> None:
    records = [*CLEAN[:4], bad, *CLEAN[4:]]
    tables = _decode(tmp_path, mbo_bytes(records))
    [(got, detail)] = _rejected(tables)
    assert got == reason and says in detail
    events = tables["order_event"]
    assert events.num_rows == len(CLEAN)  # the neighbours are all kept
    assert events.column("order_id").to_pylist() == [r[2] for r in CLEAN]
    assert tables["rejected"].column("raw")[0].as_py()[38:40] == f"{bad[0]}{bad[1]}".encode()


# ---- doubled and reordered records --------------------------------------------------------------

def test_the_es_day_keeps_its_repeated_fills(real_data: Path, tmp_path: Path) -> None:
    # 10 fills repeat their record exactly (a resting order filled by two aggressors of one packet),
    # never back to back: none is a doubled record; and its sequence never goes back after the snapshot
    _, recs = _es(real_data)
    whole = recs.view(np.dtype((np.void, MBO_BYTES)))
    assert np.unique(whole).size < ES_RECORDS and not (whole[1:] == whole[:-1]).any()
    tables = decode_all([ES_DAY])
    assert "rejected" not in tables and tables["order_event"].num_rows == ES_RECORDS


def test_a_doubled_and_a_reordered_record_are_dead_letters(real_data: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    meta, recs = _es(real_data)
    seq = recs["sequence"]
    late = 30_000 + int(np.flatnonzero(seq[30_001:] > seq[30_000])[0]) + 1  # a later packet
    swapped = recs.copy()
    swapped[[30_000, late]] = recs[[late, 30_000]]
    # 1,000 records per block: the doubled record is the first of the next block
    monkeypatch.setattr(framing, "READ_BYTES", 1000 * MBO_BYTES)
    doubled = np.insert(swapped, 1000, swapped[999])
    tables = _decode(tmp_path, meta + doubled.tobytes())
    rejected = _rejected(tables)
    assert [r for r, _ in rejected] == ["stale_sequence"] * len(rejected)
    assert "a doubled record" in rejected[0][1] and "a reordered record" in rejected[-1][1]
    # the record moved up stays; the ones it overtook are late (here: the packets in between)
    between = int(np.count_nonzero(seq[30_000:late] < seq[late]))
    assert len(rejected) == 1 + between
    assert tables["order_event"].num_rows + len(rejected) == ES_RECORDS + 1


def test_sequence_restarts_after_a_snapshot_and_is_kept_per_instrument(real_data: Path,
                                                                      tmp_path: Path) -> None:
    meta, recs = _es(real_data)
    next_day = recs.copy()
    for field in ("ts_event", "ts_recv"):
        next_day[field] += np.uint64(86_400 * 10**9)
    other = recs[8_725:20_000].copy()  # a second instrument on the channel, interleaved
    other["instrument_id"] += 1
    mixed = np.empty(len(other) * 2, recs.dtype)
    mixed[0::2], mixed[1::2] = recs[8_725:20_000], other
    days = _decode(tmp_path, meta + recs.tobytes() + next_day.tobytes(), "days.mbo.dbn")
    assert "rejected" not in days and days["order_event"].num_rows == 2 * ES_RECORDS
    interleaved = _decode(tmp_path, meta + recs[:8_725].tobytes() + mixed.tobytes(), "two.mbo.dbn")
    assert "rejected" not in interleaved


# ---- a flipped length byte ---------------------------------------------------------------------

@pytest.mark.parametrize("flips", [(34_396,), (0,), (ES_RECORDS - 1,), (5, 6, 40_000)])
def test_a_flipped_length_byte_costs_its_record_only(real_data: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch, flips: tuple) -> None:
    meta, recs = _es(real_data)
    data = bytearray(meta + recs.tobytes())
    for k in flips:
        data[len(meta) + k * MBO_BYTES] ^= 0x40  # 14 words -> 78: it would swallow the next records
    monkeypatch.setattr(framing, "READ_BYTES", 1 << 16)  # damage across chunk boundaries too
    for name, body in (("flip.mbo.dbn", bytes(data)),
                       ("flip.mbo.dbn.zst", zstandard.ZstdCompressor().compress(bytes(data)))):
        tables = _decode(tmp_path, body, name)
        rejected = tables["rejected"]
        assert rejected.column("reason").to_pylist() == ["bad_length"] * len(flips)
        assert [len(r) for r in rejected.column("raw").to_pylist()] == [MBO_BYTES] * len(flips)
        at = [len(meta) + k * MBO_BYTES for k in flips]
        assert rejected.column("location").to_pylist() == [f"{tmp_path / name}:byte {a}" for a in at]
        events = tables["order_event"]
        assert events.num_rows == ES_RECORDS - len(flips)
        kept = np.delete(recs, list(flips))
        assert np.array_equal(events.column("order_id").to_numpy(), kept["order_id"])


def test_a_record_of_another_rtype_in_a_fixed_schema_file_is_still_framed(tmp_path: Path) -> None:
    clean = mbo_bytes(CLEAN)
    unknown = bytes([4, 0x99, 1, 0]) + bytes(12)  # 16 bytes, landing on the next MBO header
    cut = len(clean) - 2 * MBO_BYTES
    tables = _decode(tmp_path, clean[:cut] + unknown + clean[cut:])
    assert [r for r, _ in _rejected(tables)] == ["unknown_message"]
    assert tables["order_event"].num_rows == len(CLEAN)


# ---- zstd streams ------------------------------------------------------------------------------

def test_a_zst_cut_short_is_an_error_naming_the_file(tmp_path: Path) -> None:
    compressed = zstandard.ZstdCompressor(write_checksum=True).compress(mbo_bytes(CLEAN * 50))
    path = tmp_path / "cut.mbo.dbn.zst"
    path.write_bytes(compressed[: len(compressed) * 2 // 3])
    with pytest.raises(FormatError, match=f"{path}: its compressed stream is cut short"):
        decode_all([path])


def test_a_damaged_zst_is_an_error_naming_the_file(tmp_path: Path) -> None:
    compressed = bytearray(zstandard.ZstdCompressor(write_checksum=True).compress(mbo_bytes(CLEAN * 50)))
    compressed[len(compressed) // 2 : len(compressed) // 2 + 8] = bytes(8)
    path = tmp_path / "damaged.mbo.dbn.zst"
    path.write_bytes(bytes(compressed))
    with pytest.raises(FormatError, match=f"{path}: its zst stream is damaged"):
        decode_all([path])


def test_several_zst_frames_still_read_as_one_stream(tmp_path: Path) -> None:
    data = mbo_bytes(CLEAN)
    cut = len(data) - 3 * MBO_BYTES
    zc = zstandard.ZstdCompressor()
    tables = _decode(tmp_path, zc.compress(data[:cut]) + zc.compress(data[cut:]), "frames.mbo.dbn.zst")
    assert tables["order_event"].num_rows == len(CLEAN) and "rejected" not in tables


@pytest.mark.parametrize(("field", "value", "reason"), [
    ("side", b"X", "bad_side"), ("action", b"A", "bad_value"), ("price", I64_MIN, "out_of_range"),
    ("price", I64_MAX, "missing_field"), ("size", U32_MAX, "missing_field"),
])
def test_a_trades_record_no_trade_carries_is_one_dead_letter(tmp_path: Path, field: str, value: object,
                                                             reason: str) -> None:
    from tests.corpus.make_damaged import _dbn_bytes

    data = _dbn_bytes(6)
    meta, body = data[: -6 * 48], data[-6 * 48 :]
    recs = np.frombuffer(body, m.record_dtype(m.MBP_0, 48)).copy()
    recs[field][3] = value
    tables = _decode(tmp_path, meta + recs.tobytes(), "sample.trades.dbn")
    assert [r for r, _ in _rejected(tables)] == [reason]
    assert tables["trade"].column("sequence").to_pylist() == [1, 2, 3, 5, 6]
