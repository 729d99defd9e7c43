"""``tapeflow bars``: bars of any kind from the trades of any format's files, into one Parquet file.

The files decode through the registry (the same decoder as ``ingest``); their ``trade`` rows go
through the format's own bar rule when it declares one (``VenueFormat(bars=...)``: IQFeed leaves
out its basis ``O`` trades and orders its newest-first lookups by time) and then through
:func:`tapeflow.derived.bars.bars_for`, the bar code of the batch assets and of the Databento
OHLCV-1m oracle. Rejected input units are counted and decide the exit code as ``ingest``'s do.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tapeflow.wire.registry import format_names, get_format

if TYPE_CHECKING:  # not at import: `tapeflow --help` loads no Arrow, pandas or bar kernels
    import pyarrow as pa


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register the ``bars`` subcommand on the ``tapeflow`` parser's subparsers."""
    p = sub.add_parser("bars", help="build bars from the trades of any format's files into a Parquet file",
                       description="Decode files of any format and build bars of their trades: time bars "
                                   "(1s, 1m, 1h, 1d, ...), tick:<n>, volume:<nanos> or dollar:<nanos>.")
    p.add_argument("--format", required=True, choices=format_names())
    p.add_argument("paths", nargs="+", type=Path)
    p.add_argument("--interval", default="1s", help="bar interval (default 1s)")
    p.add_argument("--out", required=True, type=Path, help="the Parquet file to write")
    p.add_argument("--allow-rejects", action="store_true",
                   help="exit 0 even when input units were dead-lettered (default: exit 3)")
    p.set_defaults(func=run)
    return p


def trades_of(fmt_name: str, paths: list[Path]) -> tuple[pa.Table, Counter[str]]:
    """The ``trade`` rows of ``paths`` that make the format's bars, and the rejects by reason."""
    from tapeflow.schemas import concat
    from tapeflow.schemas.records import TRADE

    fmt = get_format(fmt_name)
    parts: list[pa.Table] = []
    rejected: Counter[str] = Counter()
    for chunk in fmt.decode(paths):
        if "trade" in chunk.tables:
            parts.append(chunk.tables["trade"])
        if "rejected" in chunk.tables:
            rejected.update(chunk.tables["rejected"].column("reason").to_pylist())
    trades = concat(TRADE, parts)
    rule = fmt.bar_trades
    return (rule(trades) if rule is not None else trades), rejected


def run(args: argparse.Namespace, settings: Any) -> int:
    """Decode, build the bars, write ``--out``; the exit code says whether units were rejected."""
    from tapeflow.cli import _rejects_exit
    from tapeflow.derived.bars import bars_for
    from tapeflow.storage.lake import write_parquet_atomic
    from tapeflow.wire.inputs import check_inputs
    from tapeflow.wire.sniff import check_format

    paths = check_inputs(args.paths)
    check_format(get_format(args.format), paths)
    started = time.perf_counter()
    trades, rejected = trades_of(args.format, paths)
    bars = bars_for(trades, args.interval)
    nbytes = write_parquet_atomic(bars, args.out)
    print(f"bars: {trades.num_rows:,} trades -> {bars.num_rows:,} {args.interval} bars "
          f"in {time.perf_counter() - started:.1f} s", file=sys.stdout)
    print(f"wrote {args.out} ({nbytes:,} bytes)")
    return _rejects_exit(dict(rejected), args.allow_rejects, "ingest stores them in the `rejected` table")
