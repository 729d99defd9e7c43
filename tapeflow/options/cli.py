"""``tapeflow options --format deribit PATH... --out FILE.parquet [--surface FILE.parquet]``: option tickers.

Writes one ``option_ticker`` row per venue ticker (:mod:`tapeflow.options.records`): the instrument,
its times, underlying, strike, expiry, the mark price, our Black-76 implied vol of it beside the
venue's ``mark_iv``, and our delta beside the venue's. Dead letters are counted by reason; with
``--rejected FILE`` they are written too; with ``--surface FILE`` the implied-vol surfaces of the tickers
(:mod:`tapeflow.options.surface`) are. Exit codes as ``tapeflow ingest`` (docs/cli.md).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tapeflow.settings import Settings

if TYPE_CHECKING:
    import pyarrow as pa

FORMATS = ("deribit",)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``options`` on the ``tapeflow`` parser's subparsers."""
    p = sub.add_parser("options", help="option tickers: our implied vols beside the venue's",
                       description="Decode a venue's option tickers and recompute each one's implied vol "
                                   "(Black-76 of the mark price) and delta with the JAX kernels "
                                   "(docs/options.md).")
    p.add_argument("--format", required=True, choices=FORMATS)
    p.add_argument("paths", nargs="+", type=Path, help="websocket captures (cryptofeed or <recv_ns> <json>)")
    p.add_argument("--out", type=Path, required=True, help="output .parquet file (option_ticker rows)")
    p.add_argument("--rejected", type=Path, default=None, help="also write the dead letters to this .parquet")
    p.add_argument("--surface", type=Path, default=None,
                   help="also write implied-vol surfaces (one row per underlying, grid time and expiry) "
                        "to this .parquet")
    p.add_argument("--snapshot-s", type=float, default=60.0, help="surface grid step, seconds (default 60)")
    p.add_argument("--staleness-s", type=float, default=60.0,
                   help="oldest ticker a surface snapshot uses, seconds (default 60)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--allow-rejects", action="store_true",
                   help="exit 0 even when input units were dead-lettered (default: exit 3)")
    p.set_defaults(func=_cmd_options)
    return p


def _cmd_options(args: argparse.Namespace, settings: Settings) -> int:
    from tapeflow.options.deribit import DeribitTickerDecoder
    from tapeflow.options.records import OPTION_TICKER
    from tapeflow.progress import progress_bar
    from tapeflow.schemas import concat
    from tapeflow.schemas.records import REJECTED
    from tapeflow.storage.lake import write_parquet_atomic
    from tapeflow.wire.inputs import check_inputs

    paths = check_inputs(args.paths)
    started = time.perf_counter()
    decoder = DeribitTickerDecoder(chunk_rows=20_000)
    tickers: list[pa.Table] = []
    rejected: list[pa.Table] = []
    with progress_bar(sum(p.stat().st_size for p in paths), f"options {args.format}",
                      enabled=not args.quiet and sys.stderr.isatty()) as bar:
        for chunk in decoder.run(paths):
            tickers.append(chunk.get(OPTION_TICKER))
            rejected.append(chunk.get(REJECTED))
            bar.update(max(0, min(chunk.bytes_read, bar.total - bar.n)))
            bar.set_postfix(tickers=f"{decoder.tickers:,}", refresh=False)
    table = concat(OPTION_TICKER, tickers)
    dead = concat(REJECTED, rejected)
    nbytes = write_parquet_atomic(table, args.out)
    print(_summary(table, time.perf_counter() - started))
    print(f"wrote {args.out} ({nbytes:,} bytes)")
    if args.surface is not None:
        from tapeflow.options.surface import summary, surfaces

        surface = surfaces(table, round(args.snapshot_s * 1e9), round(args.staleness_s * 1e9))
        nbytes = write_parquet_atomic(surface, args.surface)
        print(summary(surface))
        print(f"wrote {args.surface} ({nbytes:,} bytes)")
    if args.rejected is not None:
        write_parquet_atomic(dead, args.rejected)
        print(f"wrote {args.rejected} ({dead.num_rows:,} dead letters)")
    where = "--rejected FILE writes them" if args.rejected is None else f"written to {args.rejected}"
    return _exit_code(Counter(dead.column("reason").to_pylist()), args.allow_rejects, where)


def _summary(table: pa.Table, seconds: float) -> str:
    import numpy as np

    n = table.num_rows
    symbols = len(set(table.column("symbol").to_pylist())) if n else 0
    reasons = Counter(table.column("iv_reason").to_pylist())
    line = f"options: {n:,} tickers of {symbols} instruments in {seconds:.1f} s; iv from the mark price: " \
           f"{reasons.pop('ok', 0):,}"
    if reasons:
        line += " (none: " + ", ".join(f"{r} {c:,}" for r, c in reasons.most_common()) + ")"
    iv = table.column("iv").to_numpy()
    mark = table.column("mark_iv").to_numpy()
    both = np.isfinite(iv) & np.isfinite(mark)
    if both.any():
        line += f"; median |iv - mark_iv| {np.median(np.abs(iv[both] - mark[both])) * 100:.4f} vol points"
    return line


def _exit_code(rejected: Counter[str], allowed: bool, where: str) -> int:
    from tapeflow.cli import EXIT_OK, EXIT_REJECTED
    from tapeflow.wire.rejects import IGNORED_BY_RULE

    def listed(counts: dict[str, int]) -> str:
        return ", ".join(f"{r} {c:,}" for r, c in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    ignored = {r: c for r, c in rejected.items() if r in IGNORED_BY_RULE}
    if ignored:
        print(f"ignored by rule: {sum(ignored.values()):,} input units ({listed(ignored)})")
    damage = {r: c for r, c in rejected.items() if r not in IGNORED_BY_RULE}
    if not damage or allowed:
        return EXIT_OK
    total = sum(damage.values())
    print(f"tapeflow: {total:,} input unit{'s' if total != 1 else ''} rejected ({listed(damage)}); {where}. "
          "Exit code 3; pass --allow-rejects to accept them", file=sys.stderr)
    return EXIT_REJECTED
