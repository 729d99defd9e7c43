"""``python -m tapeflow.derivatives.demo``: the perpetual-futures side of a venue, live, as one view.

The real OKX derivatives websocket frames of the shared data (the inputs of tardis-node's mapper
tests: ``funding-rate``, ``mark-price``, ``index-tickers``, ``open-interest``, ``liquidation-orders``)
are served by the replay server; ``tapeflow live --venue okx --derivatives-only`` reads them through
the OKX connector into the lake and ClickHouse. The act prints the rows stored per record and one
view per instrument from the lake: its last mark, the index it is priced against, the basis between
them, its funding rate, open interest and liquidations. Everything lands under
``.demo/derivatives/`` (``$TAPEFLOW_DEMO_DIR``).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from tapeflow.demo import act_arguments, finish

PAIRS = Path("derivatives/tardis_normalization/tardis_node_mapper_pairs_derivatives_options.jsonl")
TESTS = {"map okex-swap messages", "map okex-futures messages", "map okex-options messages"}
CHANNELS = {"funding-rate", "mark-price", "index-tickers", "open-interest", "liquidation-orders"}
RECORDS = ("mark_price", "index_price", "funding_rate", "open_interest", "liquidation")
T0 = 1_700_000_000_000_000_000


def capture(real_data: Path, out: Path) -> list[str]:
    """Write the real OKX derivatives frames as a ``<recv_ns> <json>`` capture; their instruments."""
    import msgspec

    lines, symbols = [], {}
    for raw in (real_data / PAIRS).read_bytes().splitlines():
        pair = msgspec.json.decode(raw)
        msg = pair["input"]
        arg = msg.get("arg", {}) if isinstance(msg, dict) else {}
        if pair["test"] not in TESTS or arg.get("channel") not in CHANNELS or arg.get("generated"):
            continue
        lines.append(b"%d %s\n" % (T0 + len(lines) * 1_000_000, msgspec.json.encode(msg)))
        if "instId" in arg and arg["channel"] != "index-tickers":
            symbols[arg["instId"]] = None
    out.write_bytes(b"".join(lines))
    return list(symbols)


def run(root: Path, real_data: Path) -> bool:
    """Run the act under ``root``; False when the real-data file is absent (nothing to serve)."""
    from tapeflow.cli import main as cli
    from tapeflow.replay import ReplayServer
    from tapeflow.schemas import ALL_RECORDS
    from tapeflow.storage import lake
    from tapeflow.storage.warehouse import Warehouse

    if not (real_data / PAIRS).exists():
        print(f"\n== Derivatives: skipped, the real-data file {real_data / PAIRS} is absent")
        return False
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    tape = root / "okx-derivatives.jsonl"
    symbols = capture(real_data, tape)
    dsn = f"chdb://{(root / 'warehouse').resolve()}"
    print(f"\n== Derivatives live: {sum(1 for _ in tape.open())} real OKX frames through the replay server")
    with ReplayServer("okx", [tape]).run_in_thread() as srv:
        code = cli(["live", "--venue", "okx", "--symbols", ",".join(symbols), "--derivatives-only",
                    "--endpoint", srv.ws_url, "--idle-exit", "2s", "--lake", str(root / "lake"),
                    "--clickhouse", dsn, "--journal", str(root / "journal")])
    if code != 0:
        print(f"   tapeflow live exited {code}")
        return True
    tables = {name: lake.read(ALL_RECORDS[name], root / "lake") for name in RECORDS}
    with Warehouse(dsn) as wh:
        counts = ", ".join(f"{n} {tables[n].num_rows} (ClickHouse {wh.count(ALL_RECORDS[n])})"
                           for n in RECORDS)
    print(f"   rows (lake, warehouse): {counts}")
    print("\n== One view per instrument (lake: the last value of each record)")
    print("\n".join(f"   {line}" for line in view(tables).splitlines()))
    return True


def view(tables: dict) -> str:
    """A markdown table: per instrument with a mark, its last mark, the index it is priced against
    (its own or its index's name: ``derived.instrument_index``), the basis between the two at the
    mark's time (however old the index: the frames are single messages days apart), its last
    funding rate and open interest, and its liquidations."""
    import numpy as np

    from tapeflow.derivatives.derived import basis, instrument_index, is_option
    from tapeflow.schemas.records import UNDEF_PRICE

    def last(name: str, symbol: str, column: str) -> object:
        rows = [r for r in tables[name].to_pylist() if r["symbol"] == symbol]
        rows = [r for r in rows if r[column] not in (None, UNDEF_PRICE) and r[column] == r[column]]  # NaN
        return max(rows, key=lambda r: r["ts_event_ns"])[column] if rows else None

    def price(nanos: object) -> str:
        return "-" if nanos is None else f"{int(nanos) / 1e9:,.4f}".rstrip("0").rstrip(".")

    out = ["| instrument | mark | index | basis bps | funding rate | open interest | liquidations |",
           "|---|---|---|---|---|---|---|"]
    marks = tables["mark_price"]
    names = {s for n in RECORDS if n != "index_price" for s in tables[n].column("symbol").to_pylist()}
    for symbol in sorted(names):
        mark = marks.filter(np.asarray(marks.column("symbol").to_pylist(), dtype=object) == symbol)
        bps: list = []
        b = None
        if mark.num_rows:
            at = max(mark.column("ts_event_ns").to_pylist())
            index = instrument_index(tables["index_price"], "okx", symbol)
            b = basis(mark, index, np.asarray([at]), max_staleness_ns=2**62)
            bps = b.column("basis_bps").to_pylist()
        # an option's mark is its premium, not a price of the underlying: no basis (derived.is_option)
        shown = ("n/a (option)" if is_option(symbol) else
                 "-" if not bps or bps[0] != bps[0] else f"{bps[0]:+.2f}")
        rate = last("funding_rate", symbol, "funding_rate")
        liq = [r for r in tables["liquidation"].to_pylist() if r["symbol"] == symbol]
        at_index = b.column("index_price_nanos").to_pylist()[0] if b is not None and b.num_rows else None
        out.append(f"| {symbol} | {price(last('mark_price', symbol, 'mark_price_nanos'))} | "
                   f"{price(at_index)} | "
                   f"{shown} | "
                   f"{'-' if rate is None else f'{rate:.6%}'} | "
                   f"{price(last('open_interest', symbol, 'open_interest_nanos'))} | {len(liq)} |")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point (``--defer-hints`` under ``make demo``)."""
    from tapeflow.errors import TapeflowError
    from tapeflow.settings import Settings

    args = act_arguments("python -m tapeflow.derivatives.demo", __doc__, argv)
    demo = Path(os.environ.get("TAPEFLOW_DEMO_DIR", ".demo"))
    root = demo / "derivatives"
    try:
        if not run(root, Settings.from_env().real_data):
            return 0
    except TapeflowError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 2
    finish(demo, "5-derivatives", "python -m tapeflow.derivatives.demo: OKX derivatives live, one view", [
        f"tapeflow replay-server --format okx {root}/okx-derivatives.jsonl --port 8765",
        f"python -c \"import polars as pl; print(pl.read_parquet('{root}/lake/mark_price/**/*.parquet'))\"",
    ], defer=args.defer_hints)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
