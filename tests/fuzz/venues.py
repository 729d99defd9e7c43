"""Every registered format as a fuzz target: valid samples, one unit mutated, the policy checked.

The valid samples are :mod:`tests.corpus.make_damaged`'s builders (each venue's documented message
shapes). One run writes a sample whose unit ``k`` is mutated (:mod:`tests.fuzz.mutate`), decodes
it through the registry (what ``tapeflow ingest`` does) and checks the policy of
docs/reliability.md:

* nothing but a :class:`~tapeflow.errors.TapeflowError` leaves the decode (and that only as
  file-level damage: the file is then refused whole);
* conservation, unit by unit: each line (record) of the file ends in exactly one of normalized
  (it has rows), dead-lettered or ignored by rule (exactly one ``rejected`` row at its location).

Rows are traced back to their unit by a column the sample makes distinct per unit (``key``): the
capture time of a JSON frame or a Tardis line, the sequence of a simulator line, the time of a
LOBSTER message, the capture time of a DBN record. A row whose key is no clean unit's belongs to
the mutated one, whose mutation may have changed its key.
"""

from __future__ import annotations

import re
import shutil
import struct
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tapeflow.errors import TapeflowError
from tapeflow.venues import get_format
from tapeflow.venues.base import merge
from tests.corpus import make_damaged as corpus
from tests.fuzz.mutate import Pick, mutate_bytes, mutate_csv, mutate_json

JSON_VENUES = tuple(sorted(corpus.JSON_TRADES))
DBN_RECORD_BYTES = 48  # a trades record
DBN_META_BYTES = 200  # the sample's metadata header
_LINE_OF = re.compile(r":(?:record )?(\d+)$")


@dataclass(frozen=True)
class Sample:
    """A valid sample of one format and how to write, mutate and trace it.

    Attributes:
        format: the registry name.
        head: framing lines before the units (a CSV header), never mutated.
        units: the unit texts (lines; records for DBN).
        key: the column that names a row's unit.
        tables: the tables whose rows are the units' (empty: every record table).
        keys: each unit's key value, in order.
        mutate: one structural mutation of a unit.
        keep: bytes of a unit the byte-level mutations leave alone (a capture line's ``recv_ns ``).
    """

    format: str
    head: tuple[bytes, ...]
    units: tuple[bytes, ...]
    key: str
    keys: tuple[int, ...]
    mutate: Callable[[bytes, Pick], bytes]
    keep: int = 0
    field: int = -1
    tables: tuple[str, ...] = ()

    def key_of(self, unit: bytes) -> int | None:
        """The key the mutated ``unit`` seems to carry (leniently read), None when none."""
        try:
            if self.format == "dbn":
                return struct.unpack_from("<Q", unit, 32)[0] if len(unit) >= 40 else None
            if self.field < 0:
                return None
            value = int(unit.split(b",")[self.field])
        except (ValueError, IndexError, struct.error):
            return None
        return value * 1000 if self.format == "tardis" else value


def _json(fmt: str) -> Sample:
    lines = tuple(corpus.json_lines(fmt, corpus.UNITS))
    keys = tuple(int(line.partition(b" ")[0]) for line in lines)

    def mutate(unit: bytes, pick: Pick) -> bytes:
        recv, _, frame = unit.partition(b" ")
        return recv + b" " + mutate_json(frame, pick)

    return Sample(fmt, (), lines, "ts_recv_ns", keys, mutate, keep=len(str(keys[0])) + 1)


def _tardis() -> Sample:
    lines = tuple(corpus._tardis_lines())
    keys = tuple(int(line.split(b",")[3]) * 1000 for line in lines)
    return Sample("tardis", (corpus.TARDIS_HEADER,), lines, "ts_recv_ns", keys, mutate_csv, field=3)


def _sim() -> Sample:
    header, *lines = corpus._sim_lines()
    keys = tuple(int(line.split(b",")[2]) for line in lines)
    return Sample("sim", (header,), tuple(lines), "sequence", keys, mutate_csv, field=2)


def _lobster() -> Sample:
    msgs, _ = corpus._lobster_lines()
    # a row's sequence is its message line's index; the orderbook file's lines are units of their own
    return Sample("lobster", (), tuple(msgs), "sequence", tuple(range(len(msgs))), mutate_csv,
                  tables=("order_event", "trade"))


def _iqfeed() -> Sample:
    # IQFeed lookup tick rows (6.x): the TickID (field 6) is each row's sequence
    lines = tuple(f"2021-03-01 09:30:{i % 60:02d}.{i:06d},1.5{i % 10},{100 + i},{1000 + i},1.51,1.59,{7 + i},"
                  "C,11,01,1,1,".encode() for i in range(corpus.UNITS))
    keys = tuple(7 + i for i in range(corpus.UNITS))
    return Sample("iqfeed", (), lines, "sequence", keys, mutate_csv, field=6, tables=("trade", "quote"))


def _dbn() -> Sample:
    data = corpus._dbn_bytes()
    records = tuple(data[i:i + DBN_RECORD_BYTES] for i in range(DBN_META_BYTES, len(data), DBN_RECORD_BYTES))
    keys = tuple(struct.unpack_from("<Q", r, 32)[0] for r in records)  # ts_recv
    return Sample("dbn", (data[:DBN_META_BYTES],), records, "ts_recv_ns", keys, mutate_dbn)


# the fields of a trades record a mutation sets to an extreme: (offset, struct format, values)
DBN_FIELDS = (
    (16, "<q", (-(1 << 63), (1 << 63) - 1, -1, 0)),  # price (i64::MIN is UNDEF_PRICE)
    (24, "<I", (0, 0xFFFFFFFF)),  # size
    (28, "<c", (b"Q", b"\x00", b"\xff")),  # action
    (29, "<c", (b"X", b"\x00", b"\xff")),  # side
    (32, "<Q", (0, (1 << 64) - 1)),  # ts_recv
    (8, "<Q", (0, (1 << 64) - 1)),  # ts_event
    (44, "<I", (0, 0xFFFFFFFF)),  # sequence
    (1, "<B", (0, 0xFF, 0x01)),  # rtype
)


def mutate_dbn(record: bytes, pick: Pick) -> bytes:
    """A field of a trades record set to an extreme (its length byte, offset 0, is left alone)."""
    offset, fmt, values = DBN_FIELDS[pick(len(DBN_FIELDS))]
    out = bytearray(record)
    struct.pack_into(fmt, out, offset, values[pick(len(values))])
    return bytes(out)


SAMPLES: dict[str, Callable[[], Sample]] = {
    **{fmt: (lambda fmt=fmt: _json(fmt)) for fmt in JSON_VENUES},
    "tardis": _tardis, "sim": _sim, "lobster": _lobster, "dbn": _dbn, "iqfeed": _iqfeed,
}
FORMATS = tuple(sorted(SAMPLES))


class SilentDrop(AssertionError):
    """The mutated unit, and only it, ended nowhere: no row and no dead letter."""


@dataclass
class Outcome:
    """What one fuzz run found: a file-level error, or the fate of each unit."""

    error: str = ""
    ambiguous: bool = False
    normalized: int = 0
    dead_lettered: int = 0
    ignored: int = 0
    units: int = 0


def mutated_units(sample: Sample, pick: Pick) -> tuple[list[bytes], int]:
    """The sample's units with one of them mutated (structurally, by bytes, or both); its index.

    The first unit stays valid: it is what a reader sniffs the file's flavour from. A newline or
    carriage return a mutation makes is replaced, so the mutated unit stays one line.
    """
    units = list(sample.units)
    k = 1 + pick(len(units) - 1)
    unit = units[k]
    how = pick(3)
    if how != 1:
        unit = sample.mutate(unit, pick)
    if how != 0 and sample.format != "dbn":
        unit = mutate_bytes(unit, pick, keep=sample.keep)
    elif how != 0:
        unit = _flip_dbn(unit, pick)
    if sample.format != "dbn":
        unit = unit.replace(b"\n", b"\\").replace(b"\r", b"\\")
    units[k] = unit
    return units, k


def _flip_dbn(record: bytes, pick: Pick) -> bytes:
    out = bytearray(record)
    for _ in range(1 + pick(4)):
        out[1 + pick(len(out) - 1)] ^= 1 << pick(8)  # never the length byte (a known gap)
    return bytes(out)


def write(sample: Sample, units: list[bytes], folder: Path) -> list[Path]:
    """The sample's files with ``units`` (the registry's file names for the format)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [*sample.head, *units]
    if sample.format == "dbn":
        path = folder / "fuzz.trades.dbn"
        path.write_bytes(b"".join(lines))
        return [path]
    if sample.format == "lobster":
        _, books = corpus._lobster_lines(len(units))
        names = (f"XYZ_2013-01-15_34200000_57600000_{k}_1.csv" for k in ("message", "orderbook"))
        return [corpus._write(folder / name, part) for name, part in zip(names, (lines, books), strict=True)]
    name = {"tardis": "binance-futures_trades_BTCUSDT.csv", "sim": "SIMA/2023-11-14.events.csv"}
    return [corpus._write(folder / name.get(sample.format, f"{sample.format}.capture"), lines)]


def run(sample: Sample, units: list[bytes], k: int, folder: Path) -> Outcome:
    """Decode ``units`` (unit ``k`` mutated) and check the policy; AssertionError when it is broken.

    Any exception other than a ``TapeflowError`` propagates: that is the crash the fuzzer looks for.
    """
    from tapeflow.wire.rejects import IGNORED_BY_RULE

    paths = write(sample, units, folder)
    try:
        tables = merge(list(get_format(sample.format).decode(paths)))
    except TapeflowError as exc:
        return Outcome(error=f"{type(exc).__name__}: {exc}", units=len(units))
    clean = {key: i for i, key in enumerate(sample.keys) if i != k}
    if sample.key_of(units[k]) in clean:
        return Outcome(ambiguous=True, units=len(units))  # decoded without a crash; not traceable
    normalized: set[int] = set()
    for name, table in tables.items():
        if name == "rejected" or not table.num_rows or (sample.tables and name not in sample.tables):
            continue
        for key in table.column(sample.key).to_pylist():
            normalized.add(clean.get(key, k))
    fates: Counter[int] = Counter(normalized)
    outcome = Outcome(normalized=len(normalized), units=len(units))
    rejected = tables.get("rejected")
    for row in (rejected.select(["reason", "location"]).to_pylist() if rejected is not None else []):
        unit = _unit_of(sample, row["location"], k)
        fates[unit] += 1
        if row["reason"] in IGNORED_BY_RULE:
            outcome.ignored += 1
        else:
            outcome.dead_lettered += 1
    wrong = {i: n for i in range(len(units)) if (n := fates.get(i, 0)) != 1}
    stray = sorted(set(fates) - set(range(len(units))))
    if wrong == {k: 0} and not stray:
        raise SilentDrop(f"{sample.format}: unit {k} (mutated) made no row and no dead letter: "
                         f"{units[k][:200]!r}")
    assert not wrong and not stray, (
        f"{sample.format}: conservation broken (unit {k} mutated): units with {{index: fates}} != 1: "
        f"{wrong}, fates outside the units: {stray}; tables {_summary(tables)}")
    assert outcome.normalized + outcome.dead_lettered + outcome.ignored == outcome.units
    return outcome


def _unit_of(sample: Sample, location: str, k: int) -> int:
    """The unit index a reject's ``file:line`` (or ``file:record``) names; ``k`` when it names none."""
    m = _LINE_OF.search(location or "")
    if m is None:
        return k
    line = int(m.group(1))
    if sample.format == "dbn":
        return line  # DBN names records from 0
    return line - 1 - len(sample.head)


def _summary(tables: dict) -> dict:
    out = {n: t.num_rows for n, t in tables.items() if t.num_rows}
    if "rejected" in tables:
        out["rejects"] = tables["rejected"].select(["reason", "location", "detail"]).to_pylist()[:5]
    return out


# ---- one fuzz run, and the findings recorded as strict xfails in test_fuzz_venues.py ---------------

def known_gap(fmt: str, exc: BaseException, unit: bytes) -> bool:
    """Whether ``exc`` (of a run whose mutated unit is ``unit``) is a finding already recorded."""
    if fmt in ("lobster", "sim") and isinstance(exc, ValueError) and "4300 digits" in str(exc):
        return True  # test_lobster_sim_int_of_more_than_4300_digits
    if fmt in JSON_VENUES and isinstance(exc, OverflowError) and b"922337203685477580" in unit:
        return True  # test_an_integer_beyond_int64_crashes_the_decode
    return False


def fuzz_once(fmt: str, pick: Pick, folder: Path | None = None) -> Outcome | None:
    """One mutated sample of ``fmt`` decoded and checked; None when it hit a recorded finding or
    the mutated unit took another unit's key (its rows cannot be traced).

    Raises:
        AssertionError: the policy is broken (conservation).
        Exception: whatever else escaped the decode (a crash).
    """
    sample = SAMPLES[fmt]()
    units, k = mutated_units(sample, pick)
    own = folder is None
    folder = Path(tempfile.mkdtemp(prefix=f"fuzz-{fmt}-")) if folder is None else folder
    try:
        outcome = run(sample, units, k, folder)
        return None if outcome.ambiguous else outcome
    except Exception as exc:  # a finding unless it is a recorded one
        if known_gap(fmt, exc, units[k]):
            return None
        raise
    finally:
        if own:
            shutil.rmtree(folder, ignore_errors=True)
