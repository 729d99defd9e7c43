"""``python -m tapeflow.venues.databento.demo``: Databento live MBO, an outage, its repair, the cost ledger.

Against the local servers (no Databento account: a made-up key, the real CME ES MBO file of
2023-12-25 from the shared data): a live session over the gateway protocol drops and resumes, the
gap window it recorded is fetched from the historical API through the cost guard, a whole-day
backfill is refused over the daily budget, and the spend ledger is printed from the lake and
counted in ClickHouse. Everything lands under ``.demo/databento/`` (``$TAPEFLOW_DEMO_DIR``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from tapeflow.demo import act_arguments, finish

DEMO_KEY = "db-tapeflowDemoKeyNotARealKey00"  # accepted by the local servers only
MBO = Path("databento") / "glbx" / "esh4-glbx-mdp3-20231225.mbo.dbn.zst"
DAILY_BUDGET_USD = 0.05


def run(root: Path, real_data: Path) -> bool:
    """Run the act under ``root``; False when the real-data file is absent (nothing to serve)."""
    from tapeflow.schemas.databento import DATABENTO_SPEND
    from tapeflow.secrets import Secret
    from tapeflow.settings import DatabentoSettings
    from tapeflow.storage.warehouse import Warehouse
    from tapeflow.venues.databento.client import DatabentoLive
    from tapeflow.venues.databento.historical import HistoricalClient, RangeRequest
    from tapeflow.venues.databento.mock_historical import MockHistorical
    from tapeflow.venues.databento.mock_live import MockGateway
    from tapeflow.venues.databento.parse import decode_all
    from tapeflow.venues.databento.repair import gap_request
    from tapeflow.venues.databento.spend import CostGuard, OverBudget, ledger_markdown

    path = real_data / MBO
    if not path.exists():
        print(f"\n== Databento: skipped, the real-data file {path} is absent")
        return False
    shutil.rmtree(root, ignore_errors=True)
    key = Secret(DEMO_KEY, "demo")
    recv = decode_all([path])["order_event"].column("ts_recv_ns").to_numpy()
    drop = int(next(i for i in range(30_000, len(recv)) if recv[i] != recv[i - 1]))
    resume = int(next(i for i in range(31_000, len(recv)) if recv[i] != recv[i - 1]))
    print("\n== Databento live: MBO over the gateway protocol (CRAM), one outage")
    with MockGateway(path, DEMO_KEY, sessions=[(0, drop), (resume, len(recv))]) as gw:
        client = DatabentoLive(["ESH4"], endpoint=f"tcp://{gw.host}:{gw.port}", journal=root / "journal",
                               api_key=key, max_connects=2, backoff_s=0.05)

        async def collect() -> list:
            return [b async for b in client.batches()]

        batches = asyncio.run(collect())
    rows = sum(t.num_rows for b in batches for t in b.records.values())
    status = [r for b in batches for r in b.status.to_pylist()]
    print(f"   {rows:,} MBO records in {len(client.sessions)} sessions (journal {root / 'journal'}); "
          f"STATUS: {', '.join(r['state'] for r in status)}")
    settings = DatabentoSettings(api_key=key, daily_budget_usd=DAILY_BUDGET_USD, monthly_budget_usd=1.0)
    dsn = f"chdb://{(root / 'warehouse').resolve()}"
    with MockHistorical([path], DEMO_KEY) as server:
        guard = CostGuard(HistoricalClient(key, server.url), settings, root / "lake", clickhouse_dsn=dsn)
        print(f"\n== Databento historical: cost guard (daily budget ${DAILY_BUDGET_USD}) at {server.url}")
        for gap in status:
            request = gap_request(gap)
            if request is not None:
                row = guard.fetch(request, root / "landing", why=f"gap repair {gap['venue']}/{gap['symbol']}")
                print(f"   gap [{request.start_ns}, {request.end_ns}) repaired: {row['billable_bytes']:,} "
                      f"billable bytes, ${row['estimate_usd']:.4f} -> {row['path']}")
        whole = RangeRequest("GLBX.MDP3", "mbo", ("ESH4",), int(recv[0]), int(recv[-1]) + 1)
        try:
            guard.fetch(whole, root / "landing", why="backfill ESH4 2023-12-25")
        except OverBudget as exc:
            print(f"   {exc}")
        print("\n== The spend ledger (lake: databento_spend)")
        print("\n".join(f"   {line}" for line in ledger_markdown(guard.ledger()).splitlines()))
    with Warehouse(dsn) as wh:
        print(f"   ClickHouse databento_spend: {wh.count(DATABENTO_SPEND)} rows")
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point (``--defer-hints`` under ``make demo``)."""
    from tapeflow.errors import TapeflowError
    from tapeflow.settings import Settings

    args = act_arguments("python -m tapeflow.venues.databento.demo", __doc__, argv)
    demo = Path(os.environ.get("TAPEFLOW_DEMO_DIR", ".demo"))
    root = demo / "databento"
    try:
        if not run(root, Settings.from_env().real_data):
            return 0
    except TapeflowError as exc:
        print(f"demo: error: {exc}", file=sys.stderr)
        return 2
    title = "python -m tapeflow.venues.databento.demo: live MBO, gap repair, cost ledger"
    finish(demo, "4-databento", title, [
        f"python -c \"import polars as pl; print(pl.read_parquet("
        f"'{root}/lake/databento_spend/**/*.parquet'))\"",
        f"python -m tapeflow.cli ingest --format dbn {root}/journal/dbn/*/*.dbn "
        f"{root}/landing/dbn/databento/*/*/*.dbn.zst --lake {root}/lake --no-clickhouse",
    ], defer=args.defer_hints)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
