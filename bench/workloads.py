"""Backfill workloads larger than the real captures, generated once into a cache outside the repo.

- **DBN days**: a simulated L3 market (``tapeflow.simulator``, crypto preset) written as Databento
  DBN MBO files (``.dbn.zst``, DBN v3, one file per instrument and day), so a backfill reads them
  through the real DBN decoder. A base segment is simulated once per instrument; a day is that
  segment tiled to the wanted size with times shifted (and squeezed to fit the day), order ids and
  sequence numbers offset per tile, each tile opening with the segment's clear and snapshot.
  Sizes are whole DBN units of the simulator's 0.001 lot, and prices a thousandth of the
  simulator's, so notionals stay those of the simulated market.
- **JSON days**: the Binance USD-M capture (``<recv_ns> <json>`` lines, two UTC days) copied to
  later dates, every capture and venue time moved by whole days (three days per copy, so copies
  never share a day and no copy's book is warmed up by another's last day).

Files go under ``$TAPEFLOW_BENCH_CACHE`` (default ``~/.cache/tapeflow-bench``) and are reused.
"""

from __future__ import annotations

import datetime as dt
import gzip
import os
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

NS = 1_000_000_000
DAY_NS = 86_400 * NS
DAY0_NS = 1_704_067_200 * NS  # 2024-01-01
SEGMENT_SPAN_NS = 1_800 * NS
DATASET = "XSIM.MBO"
SYMBOLS = ("SIM-BTCUSDT", "SIM-ETHUSDT")
_SIZE_UNIT_NANOS = 1_000_000  # the crypto preset's lot: one DBN size unit
_SIZE_UNIT_SCALE = 1_000_000_000 // _SIZE_UNIT_NANOS
_MBO_RTYPE = 0xA0
_MBO_DTYPE = np.dtype([
    ("length", "u1"), ("rtype", "u1"), ("publisher_id", "<u2"), ("instrument_id", "<u4"), ("ts_event", "<u8"),
    ("order_id", "<u8"), ("price", "<i8"), ("size", "<u4"), ("flags", "u1"), ("channel_id", "u1"),
    ("action", "S1"), ("side", "S1"), ("ts_recv", "<u8"), ("ts_in_delta", "<i4"), ("sequence", "<u4")])
_JSON_MS = re.compile(rb'"([ET])":(\d{13})')


def cache_dir() -> Path:
    """Where generated workloads are kept (created)."""
    path = Path(os.environ.get("TAPEFLOW_BENCH_CACHE", Path.home() / ".cache" / "tapeflow-bench"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def segment(i: int) -> pa.Table:
    """The simulated order events of instrument ``i`` over ``SEGMENT_SPAN_NS`` (cached)."""
    path = cache_dir() / f"segment-{i}.arrow"
    if not path.exists():
        import tempfile

        from tapeflow.simulator import simulate
        from tapeflow.venues import get_format
        from tapeflow.venues.base import merge

        with tempfile.TemporaryDirectory() as tmp:
            summary = simulate(21, i + 1, SEGMENT_SPAN_NS, Path(tmp), preset="crypto", start_ns=DAY0_NS,
                               progress=False)
            files = [f for f in summary.files if f.parent.name == SYMBOLS[i]]
            events = merge(list(get_format("sim").decode(files)))["order_event"]
        with ipc.new_file(path.with_suffix(".tmp"), events.schema) as writer:
            writer.write_table(events)
        path.with_suffix(".tmp").rename(path)
    with ipc.open_file(pa.memory_map(str(path))) as reader:
        return reader.read_all()


def dbn_day(i: int, day: int, events: int, folder: Path) -> tuple[Path, int]:
    """A DBN MBO file of instrument ``i`` on ``2024-01-01 + day`` with at least ``events`` order events.

    Returns:
        (the file, its order events).
    """
    import zstandard

    seg = segment(i)
    tiles = max(1, -(-events // seg.num_rows))
    path = folder / f"{SYMBOLS[i].lower()}-{DATASET.lower()}-d{day:02d}-x{tiles}.mbo.dbn.zst"
    if path.exists():
        return path, tiles * seg.num_rows
    folder.mkdir(parents=True, exist_ok=True)
    start = DAY0_NS + day * DAY_NS
    recs = _records(seg, i + 1)
    span = recs["ts_recv"].max() - recs["ts_recv"].min() + NS
    # tiles share the day, 10 s of quiet apart; a segment longer than its slot is squeezed into it
    slot = min(SEGMENT_SPAN_NS + 10 * NS, (DAY_NS - 60 * NS) // tiles)
    squeeze = min(1.0, (slot - 10 * NS) / span)
    ids, seqs = int(recs["order_id"].max()) + 1, int(recs["sequence"].max()) + 1
    first = int(recs["ts_recv"].min())
    tmp = path.with_suffix(".tmp")
    with tmp.open("wb") as raw, zstandard.ZstdCompressor(level=1).stream_writer(raw) as out:
        out.write(_metadata(i, start).encode())
        for t in range(tiles):
            tile = recs.copy()
            base = start + 30 * NS + t * slot
            for col in ("ts_recv", "ts_event"):
                tile[col] = base + ((recs[col].astype(np.int64) - first) * squeeze).astype(np.int64)
            tile["order_id"] += np.uint64(t * ids)
            tile["sequence"] += np.uint32(t * seqs)
            out.write(tile.tobytes())
    tmp.rename(path)
    return path, tiles * seg.num_rows


def _records(seg: pa.Table, instrument_id: int) -> np.ndarray:
    recs = np.zeros(seg.num_rows, _MBO_DTYPE)
    recs["length"] = _MBO_DTYPE.itemsize // 4
    recs["rtype"] = _MBO_RTYPE
    recs["publisher_id"] = 1
    recs["instrument_id"] = instrument_id
    recs["ts_event"] = seg.column("ts_event_ns").to_numpy()
    recs["ts_recv"] = seg.column("ts_recv_ns").to_numpy()
    recs["order_id"] = seg.column("order_id").to_numpy()
    # sizes become whole units of the 0.001 lot (1000x): prices / 1000 keep notionals realistic
    recs["price"] = seg.column("price_nanos").to_numpy() // _SIZE_UNIT_SCALE
    recs["size"] = seg.column("size_nanos").to_numpy() // _SIZE_UNIT_NANOS
    recs["flags"] = seg.column("flags").to_numpy()
    recs["action"] = seg.column("action").to_numpy().astype(np.uint8).view("S1")
    recs["side"] = seg.column("side").to_numpy().astype(np.uint8).view("S1")
    recs["sequence"] = seg.column("sequence").to_numpy()
    return recs


def _metadata(i: int, start_ns: int) -> object:
    import databento_dbn as dbn

    day = dt.date(1970, 1, 1) + dt.timedelta(days=start_ns // DAY_NS)
    mapping = SimpleNamespace(raw_symbol=SYMBOLS[i], intervals=[SimpleNamespace(
        start_date=day, end_date=day + dt.timedelta(days=1), symbol=str(i + 1))])
    return dbn.Metadata(dataset=DATASET, schema=dbn.Schema.MBO, start=start_ns, end=start_ns + DAY_NS,
                        stype_in=dbn.SType.RAW_SYMBOL, stype_out=dbn.SType.INSTRUMENT_ID,
                        symbols=[SYMBOLS[i]],
                        partial=[], not_found=[], mappings=[mapping])


def dbn_days(days: int, instruments: int, events_per_day: int) -> tuple[list[Path], int]:
    """DBN MBO files: ``days`` days x ``instruments`` instruments (cached). Returns (files, events)."""
    out, total = [], 0
    for day in range(days):
        for i in range(instruments):
            path, n = dbn_day(i, day, events_per_day, cache_dir() / "dbn")
            out.append(path)
            total += n
    return out, total


def _shifted(shift_ms: int):  # noqa: ANN202
    return lambda m: b'"%s":%d' % (m.group(1), int(m.group(2)) + shift_ms)


def binance_days(capture: Path, copies: int) -> list[Path]:
    """The Binance capture and ``copies - 1`` copies of it, each three days later than the one before."""
    out = [capture]
    for k in range(1, copies):
        path = cache_dir() / "binance" / f"usdm_btcusdt_plus{3 * k}d.gz"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            shift_ns, shift_ms = 3 * k * DAY_NS, 3 * k * 86_400_000
            tmp = path.with_suffix(".tmp")
            with gzip.open(capture, "rb") as src, gzip.open(tmp, "wb", compresslevel=1) as dst:
                for line in src:
                    recv, _, payload = line.partition(b" ")
                    payload = _JSON_MS.sub(_shifted(shift_ms), payload)
                    dst.write(b"%d %s" % (int(recv) + shift_ns, payload))
            tmp.rename(path)
        out.append(path)
    return out
