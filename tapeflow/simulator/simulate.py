"""``simulate``: run the engine per instrument and write the ``sim`` venue files plus planted truth."""

from __future__ import annotations

import gzip
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from kernels.sim_book import book_dump, new_book
from kernels.sim_engine import PARAM_NAMES, new_state, run, stationary_excitation
from kernels.sim_rng import rng_state
from tapeflow.errors import ConfigError
from tapeflow.schemas.records import SCALE, UNDEF_PRICE
from tapeflow.simulator.episodes import SIDE_SIGN, plan_episodes
from tapeflow.simulator.presets import Instrument, Preset, get_preset
from tapeflow.venues.sim.messages import FILE_SUFFIX, HEADER

DAY_NS = 86_400 * SCALE
_BUFFER_ROWS = 1 << 18
_RESERVE_ROWS = 1 << 15
# the book starts empty: two simulated minutes, not written, let it fill before the first file opens
_WARMUP_NS = 120 * SCALE
_TYPE_LETTERS = np.array(list("ADEH"))
_SIDE_LETTERS = np.array(list("BA"))


@dataclass
class SimSummary:
    """What a simulation wrote.

    Attributes:
        out_dir: the output folder.
        preset: preset name.
        seed: the seed.
        files: the venue files, in instrument then date order.
        episodes_path: the planted-truth table (``episodes.parquet``).
        events: messages written per symbol (snapshot lines included).
        episodes: planted episodes (real and look-alike) over all instruments.
        tick_nanos: price tick per symbol, 1e-9 units.
        overlap: episodes were planted overlapping each other and busy periods.
        busy_ns: per symbol, the start of each planted busy period (overlap mode).
        not_planted: episode ids planned but never run, so left out of the table (a withdrawal
            whose side of the book stayed empty until the end of the run).
    """

    out_dir: Path
    preset: str
    seed: int
    files: list[Path] = field(default_factory=list)
    episodes_path: Path | None = None
    events: dict[str, int] = field(default_factory=dict)
    episodes: int = 0
    tick_nanos: dict[str, int] = field(default_factory=dict)
    overlap: bool = False
    busy_ns: dict[str, list[int]] = field(default_factory=dict)
    not_planted: list[str] = field(default_factory=list)


# kinds whose episode has no single price (flow, drift, range, jump): their price_nanos is undefined
_NO_PRICE = frozenset({"institutional", "creep", "contraction", "spike"})


def simulate(
    seed: int,
    instruments: int,
    duration_ns: int,
    out_dir: Path,
    preset: str = "crypto",
    *,
    start_ns: int | None = None,
    episodes_per_hour: float = 2.0,
    overlap: bool = False,
    progress: bool = True,
) -> SimSummary:
    """Simulate ``instruments`` L3 markets for ``duration_ns`` and write them under ``out_dir``.

    The same arguments always give byte-identical files (the engine's generator is seeded from
    ``seed`` and the instrument index; gzip headers carry no time).

    Args:
        seed: the seed.
        instruments: how many instruments (named ``SIM-BTCUSDT``, ... or ``SIMA``, ...).
        duration_ns: simulated span, ns.
        out_dir: output folder; gets ``sim/<symbol>/<date>.events.csv.gz`` and ``episodes.parquet``.
        preset: ``crypto`` (large tick, like Binance BTCUSDT) or ``equity`` (small tick, like AMZN).
        start_ns: first instant (UTC ns); the preset's default when None.
        episodes_per_hour: real episodes of each kind per simulated hour (look-alikes alike).
        overlap: plant episodes coinciding with each other and with busy periods (default:
            disjoint time slots).
        progress: report progress on stderr.

    Raises:
        ConfigError: an unknown preset, no instruments or a non-positive duration.
    """
    cfg = get_preset(preset)
    if instruments < 1 or duration_ns <= 0:
        raise ConfigError(f"need instruments >= 1 and duration_ns > 0, got {instruments} and {duration_ns}")
    start = cfg.start_ns if start_ns is None else int(start_ns)
    out_dir = Path(out_dir)
    summary = SimSummary(out_dir=out_dir, preset=preset, seed=seed, overlap=overlap)
    episode_rows: list[dict] = []
    for index in range(instruments):
        inst = cfg.instrument(index)
        _simulate_one(
            seed,
            index,
            inst,
            cfg,
            start,
            duration_ns,
            out_dir,
            summary,
            episode_rows,
            episodes_per_hour,
            overlap,
            progress,
        )
    summary.episodes_path = _write_episodes(out_dir / "episodes.parquet", episode_rows)
    summary.episodes = len(episode_rows)
    return summary


def _simulate_one(
    seed: int,
    index: int,
    inst: Instrument,
    cfg: Preset,
    start: int,
    duration_ns: int,
    out_dir: Path,
    summary: SimSummary,
    episode_rows: list[dict],
    per_hour: float,
    overlap: bool,
    progress: bool,
) -> None:
    par = np.array([cfg.params[name] for name in PARAM_NAMES], np.float64)
    par[PARAM_NAMES.index("rate_hz")] *= inst.rate_scale
    base = max(0, inst.start_price_ticks - cfg.grid_levels // 2)
    bk = new_book(cfg.grid_levels, cfg.order_capacity)
    st, fs = new_state(start - _WARMUP_NS, float(inst.start_price_ticks - base) + 0.5)
    stationary_excitation(fs, par)
    rng = rng_state(seed * 1_000_003 + index)
    plan = plan_episodes(
        np.random.default_rng([seed, index, 7]),
        cfg,
        start,
        duration_ns,
        per_kind_per_hour=per_hour,
        overlap=overlap,
    )
    ops = plan.op_array()
    n_ep = max(1, len(plan.rows))
    ep_px = np.full(n_ep, -1, np.int64)
    ep_end = np.full(n_ep, -1, np.int64)
    ep_count = np.zeros(n_ep, np.int64)
    ep_mark = np.full(n_ep, -1, np.int64)
    slots = np.full(max(1, plan.slots), -1, np.int32)
    meta_k = int(cfg.params["meta_k"])
    meta_sign, meta_left = np.zeros(meta_k, np.int64), np.zeros(meta_k, np.int64)
    out = (
        np.zeros(_BUFFER_ROWS, np.int64),
        np.zeros(_BUFFER_ROWS, np.int64),
        np.zeros(_BUFFER_ROWS, np.int8),
        np.zeros(_BUFFER_ROWS, np.int64),
        np.zeros(_BUFFER_ROWS, np.int8),
        np.zeros(_BUFFER_ROWS, np.int32),
        np.zeros(_BUFFER_ROWS, np.int64),
    )
    writer = _DayWriter(out_dir / "sim" / inst.symbol, inst, base)
    end = start + duration_ns
    day_end = (start // DAY_NS + 1) * DAY_NS
    while (
        run(
            bk,
            slots,
            out,
            ops,
            fs,
            st,
            meta_sign,
            meta_left,
            ep_px,
            ep_end,
            ep_count,
            ep_mark,
            rng,
            par,
            start,
            _RESERVE_ROWS,
        )
        > _BUFFER_ROWS - _RESERVE_ROWS
    ):
        pass
    writer.open(start, bk)
    began = time.perf_counter()
    while True:
        stop = min(end, day_end)
        n = run(
            bk,
            slots,
            out,
            ops,
            fs,
            st,
            meta_sign,
            meta_left,
            ep_px,
            ep_end,
            ep_count,
            ep_mark,
            rng,
            par,
            stop,
            _RESERVE_ROWS,
        )
        writer.write(out, n)
        if progress:
            done = (min(int(st[0]), end) - start) / duration_ns
            print(
                f"sim {inst.symbol}: {done:6.1%} simulated, {writer.seq:,} messages, "
                f"{time.perf_counter() - began:.1f}s",
                file=sys.stderr,
            )
        if n > _BUFFER_ROWS - _RESERVE_ROWS:
            continue
        if stop == end:
            break
        writer.open(day_end, bk)
        day_end += DAY_NS
    summary.files.extend(writer.close())
    summary.events[inst.symbol] = writer.seq
    summary.tick_nanos[inst.symbol] = inst.tick_nanos
    summary.busy_ns[inst.symbol] = list(plan.busy_ns)
    for ep, row in enumerate(plan.rows):
        px = -1 if row["kind"] in _NO_PRICE else int(ep_px[ep])
        if row["kind"] == "withdrawal" and not row["lookalike"]:
            if ep_mark[ep] < 0:
                # its side stayed empty until the run ended: no pull, no episode
                summary.not_planted.append(f"{inst.symbol}-{ep}")
                continue
            # the pull ran when its side had a touch, maybe later than planned
            row = dict(row, start_ns=int(ep_mark[ep]))
        if row["kind"] == "whale" and not row["lookalike"] and ep_mark[ep] >= 0:
            # a block sweep ran when its opposite side had a touch, maybe later than planned
            row = dict(row, start_ns=int(ep_mark[ep]), decisive_ns=int(ep_mark[ep]))
        decisive = row["decisive_ns"] if row["decisive_ns"] >= 0 else int(ep_mark[ep])
        episode_rows.append(
            dict(
                episode_id=f"{inst.symbol}-{ep}",
                instrument=inst.symbol,
                **row,
                price_nanos=UNDEF_PRICE if px < 0 else (px + base) * inst.tick_nanos,
                end_ns=max(int(ep_end[ep]), row["start_ns"]),
                refills=int(ep_count[ep]),
            )
        )
        # an engine-timed moment that never came (an iceberg never refilled) falls back to the start
        episode_rows[-1]["decisive_ns"] = decisive if decisive >= 0 else row["start_ns"]


class _DayWriter:
    """Writes one gzip CSV per UTC day; each file opens with the book's snapshot."""

    def __init__(self, folder: Path, inst: Instrument, base: int) -> None:
        self.folder, self.inst, self.base = folder, inst, base
        self.seq = 0
        self.paths: list[Path] = []
        self._fh: IO[bytes] | None = None
        self._gz: gzip.GzipFile | None = None
        self._price_dec = _decimals(inst.tick_nanos)
        self._size_dec = _decimals(inst.lot_nanos)

    def open(self, t_ns: int, bk: tuple) -> None:
        self.close()
        self.folder.mkdir(parents=True, exist_ok=True)
        day = np.datetime64(t_ns, "ns").astype("datetime64[D]")
        path = self.folder / f"{day}{FILE_SUFFIX}"
        self.paths.append(path)
        self._fh = open(path, "wb")
        # mtime=0 and no name in the header: identical inputs give identical bytes
        self._gz = gzip.GzipFile(filename="", mode="wb", fileobj=self._fh, mtime=0, compresslevel=6)
        self._gz.write((HEADER + "\n").encode())
        self.seq += 1
        self._gz.write(f"{t_ns},{t_ns},{self.seq},R,0,B,0,0\n".encode())
        ids, sides, pxs, szs = book_dump(bk)
        n = len(ids)
        ts = np.full(n, t_ns, np.int64)
        self._rows(ts, ts, np.full(n, "S"), ids, sides, pxs, szs)

    def write(self, out: tuple, n: int) -> None:
        if n:
            t, recv, typ, oid, side, px, sz = (a[:n] for a in out)
            self._rows(t, recv, _TYPE_LETTERS[typ], oid, side, px, sz)

    def _rows(
        self,
        t: np.ndarray,
        recv: np.ndarray,
        letters: np.ndarray,
        oid: np.ndarray,
        side: np.ndarray,
        px: np.ndarray,
        sz: np.ndarray,
    ) -> None:
        n = len(t)
        if not n:
            return
        price_units = (px.astype(np.int64) + self.base) * (
            self.inst.tick_nanos // 10 ** (9 - self._price_dec)
        )
        size_units = sz.astype(np.int64) * (self.inst.lot_nanos // 10 ** (9 - self._size_dec))
        df = pl.DataFrame(
            {
                "ts_event": t,
                "ts_recv": recv,
                "seq": np.arange(self.seq + 1, self.seq + 1 + n, dtype=np.int64),
                "type": letters.astype(str),
                "order_id": oid,
                "side": _SIDE_LETTERS[side],
                "price": _decimal_strings(price_units, self._price_dec),
                "size": _decimal_strings(size_units, self._size_dec),
            }
        )
        self.seq += n
        assert self._gz is not None
        self._gz.write(df.write_csv(include_header=False).encode())

    def close(self) -> list[Path]:
        if self._gz is not None and self._fh is not None:
            self._gz.close()
            self._fh.close()
            self._gz = self._fh = None
        return self.paths


def _decimals(step_nanos: int) -> int:
    """Decimals needed to write multiples of ``step_nanos`` exactly (0.1 -> 1, 0.001 -> 3, 1 -> 0)."""
    dec = 9
    while dec > 0 and step_nanos % 10 ** (10 - dec) == 0:
        dec -= 1
    return dec


def _decimal_strings(units: np.ndarray, dec: int) -> pl.Series:
    whole = pl.Series(units // 10**dec).cast(pl.Utf8)
    if dec == 0:
        return whole
    frac = pl.Series(units % 10**dec).cast(pl.Utf8).str.zfill(dec)
    return whole + "." + frac


def _write_episodes(path: Path, rows: list[dict]) -> Path:
    schema = pa.schema(
        [
            ("episode_id", pa.string()),
            ("instrument", pa.string()),
            ("kind", pa.string()),
            ("lookalike", pa.bool_()),
            ("side", pa.string()),
            ("price_nanos", pa.int64()),
            ("start_ns", pa.int64()),
            ("end_ns", pa.int64()),
            ("refills", pa.int64()),
            ("params", pa.string()),
            ("side_sign", pa.int8()),
            ("decisive_ns", pa.int64()),
            ("outcome", pa.string()),
        ]
    )
    for row in rows:
        params = json.loads(row["params"])
        row["side"] = params["side"]
        row["side_sign"] = SIDE_SIGN[params["side"]]
        row["outcome"] = params.get("outcome")
    table = pa.Table.from_pylist([{k: r[k] for k in schema.names} for r in rows], schema=schema)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd")
    return path
