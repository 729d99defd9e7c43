"""The ``options`` group: Deribit captures in landing -> the options sensor -> ``option_tickers`` and
``option_surfaces`` per underlying-day, equal row for row to ``tapeflow options ... --surface``, in
the lake and ClickHouse, with the non-blocking ``no_arbitrage`` check.

The real captures (../shared/data/README.md, "options/deribit") hold 10 options each, every expiry
too thin for a smile, so nothing can be checked there (the check is Skipped); a synthetic full chain
(Black-76 written out with SciPy, one call planted 0.01 coin too dear) makes the check judge and
warn.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy.stats import norm

from tapeflow.cli import main
from tests.conftest import need
from tests.dagster.conftest import Deployment, check_results, check_status, materializations

FIRST = "2021-04-01"
SORT_T = [(c, "ascending") for c in ("symbol", "ts_event_ns", "ts_recv_ns")]
SORT_S = [(c, "ascending") for c in ("symbol", "ts_event_ns", "expiry_ns")]


def _definitions() -> dg.Definitions:
    from dagster_project.definitions import build_definitions

    return build_definitions(FIRST)


def _option_assets(defs: dg.Definitions) -> list:
    from assets.options import GROUP

    return [a for a in defs.assets if GROUP in a.group_names_by_key.values()]


def _sense_and_run(dep: Deployment, instance: dg.DagsterInstance) -> tuple[list, list]:
    """One options-sensor tick, its underlyings registered, each request materialized as the daemon would."""
    from assets.options import UNDERLYINGS_NAME
    from dagster_project.sensors import options_sensor

    defs = _definitions()
    repo = defs.get_repository_def()
    ctx = dg.build_sensor_context(instance=instance, resources=dep.resources(), repository_def=repo)
    tick = options_sensor(ctx)
    for request in tick.dynamic_partitions_requests:
        instance.add_dynamic_partitions(UNDERLYINGS_NAME, list(request.partition_keys))
    results = [dg.materialize(_option_assets(defs), partition_key=r.partition_key, tags=dict(r.tags),
                              resources=dep.resources(), instance=instance, raise_on_error=False)
               for r in tick.run_requests]
    return tick.run_requests, results


def _cli(paths: list[Path], tmp: Path) -> tuple[pa.Table, pa.Table]:
    from tapeflow.options.surface import surface_records

    out, surf = tmp / "t.parquet", tmp / "s.parquet"
    assert main(["options", "--format", "deribit", *map(str, paths), "--out", str(out), "--surface",
                 str(surf), "--quiet", "--allow-rejects"]) == 0
    return pq.read_table(out), surface_records(pq.read_table(surf), "deribit")


def _stored(dep: Deployment) -> tuple[pa.Table, pa.Table]:
    from tapeflow.options.records import OPTION_SURFACE, OPTION_TICKER
    from tapeflow.storage import lake

    return (lake.read(OPTION_TICKER, dep.lake).select(OPTION_TICKER.column_names),
            lake.read(OPTION_SURFACE, dep.lake).select(OPTION_SURFACE.column_names))


def _warehouse(dep: Deployment) -> tuple[pa.Table, pa.Table]:
    from tapeflow.options.records import OPTION_SURFACE, OPTION_TICKER
    from tapeflow.storage.warehouse import Warehouse

    with Warehouse(dep.dsn) as wh:
        return (wh.fetch(OPTION_TICKER).select(OPTION_TICKER.column_names),
                wh.fetch(OPTION_SURFACE).select(OPTION_SURFACE.column_names))


def _rows(table: pa.Table, order: list) -> list[dict]:
    """Rows sorted, NaN made comparable (NaN != NaN)."""
    rows = table.sort_by(order).to_pylist()
    return [{k: ("nan" if isinstance(v, float) and v != v else v) for k, v in r.items()} for r in rows]


@pytest.fixture(scope="module")
def real(real_data: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    folder = need(real_data / "options" / "deribit")
    captures = sorted(folder.glob("cryptofeed_DERIBIT*"))
    if len(captures) != 2:
        pytest.skip(f"expected the two Deribit captures in {folder}, found {len(captures)}")
    root = tmp_path_factory.mktemp("options")
    (root / "landing" / "deribit").mkdir(parents=True)
    for f in captures:  # linked, never copied
        (root / "landing" / "deribit" / f.name).symlink_to(f)
    dep = Deployment(root)
    instance = dg.DagsterInstance.ephemeral()
    requests, results = _sense_and_run(dep, instance)
    return dep, instance, captures, requests, results, _cli(captures, root)


@pytest.mark.realdata
def test_sensor_registers_underlyings_and_requests_their_days(real) -> None:  # noqa: ANN001
    from assets.options import UNDERLYINGS_NAME

    dep, instance, _, requests, results, _ = real
    assert sorted(instance.get_dynamic_partitions(UNDERLYINGS_NAME)) == ["deribit.BTC", "deribit.ETH"]
    covered = set()
    for r in requests:
        tags = r.tags
        ends = {tags.get(f"dagster/asset_partition_range_{e}") for e in ("start", "end")}
        covered |= {r.partition_key} if r.partition_key else ends
        assert r.tags["dagster/sensor_name"] == "options_sensor"
    assert covered == {f"{d}|deribit.{u}" for d in ("2021-04-05", "2021-04-17") for u in ("BTC", "ETH")}
    assert all(res.success for res in results)


@pytest.mark.realdata
def test_asset_rows_equal_the_batch_cli_in_lake_and_clickhouse(real) -> None:  # noqa: ANN001
    dep, _, _, _, _, (cli_tickers, cli_surfaces) = real
    tickers, surfaces = _stored(dep)
    print(f"tickers {tickers.num_rows} (cli {cli_tickers.num_rows}), surfaces {surfaces.num_rows} "
          f"(cli {cli_surfaces.num_rows})")
    assert (tickers.num_rows, surfaces.num_rows) == (273 + 92, 27 + 9)  # docs/options.md, both days
    assert _rows(tickers, SORT_T) == _rows(cli_tickers.select(tickers.column_names), SORT_T)
    assert _rows(surfaces, SORT_S) == _rows(cli_surfaces.select(surfaces.column_names), SORT_S)
    wh_tickers, wh_surfaces = _warehouse(dep)
    assert _rows(wh_tickers, SORT_T) == _rows(tickers, SORT_T)
    assert _rows(wh_surfaces, SORT_S) == _rows(surfaces, SORT_S)


@pytest.mark.realdata
def test_each_partition_reports_its_own_surfaces_and_the_check_is_skipped(real) -> None:  # noqa: ANN001
    dep, instance, _, _, results, _ = real
    meta: dict[str, dict] = {}
    for res in results:
        for asset, parts in materializations(res).items():
            for key, values in parts.items():
                meta.setdefault(asset, {})[key] = values
        results = check_results(res)
        assert ("option_surfaces", "no_arbitrage") not in results
        # the quality suites (docs/options.md, "Stored data") judge each partition and pass
        suites = {k: ev for k, ev in results.items() if k[1] != "no_arbitrage"}
        assert {a for a, _ in suites} == {"option_tickers", "option_surfaces"}
        assert {("option_tickers", "iv_range"), ("option_surfaces", "violation_counts")} <= set(suites)
        assert all(ev.passed for ev in suites.values()), [k for k, ev in suites.items() if not ev.passed]
    surf = meta["option_surfaces"]
    # README: 10 options per capture; 3 grid minutes on 04-05 (17:48-17:50) and one on 04-17
    assert {k: (v["snapshots"], v["expiry_rows"]) for k, v in surf.items()} == {
        "2021-04-05|deribit.BTC": (3, 9), "2021-04-05|deribit.ETH": (3, 18),
        "2021-04-17|deribit.BTC": (1, 5), "2021-04-17|deribit.ETH": (1, 4)}
    assert all(v["atm_iv_share"] == 0.0 and v["butterfly_checked"] == 0 for v in surf.values())
    ticks = meta["option_tickers"]
    assert sum(v["dagster/row_count"] for v in ticks.values()) == 365
    assert ticks["2021-04-05|deribit.ETH"]["iv_reasons"] == {"below_intrinsic": 10, "ok": 187}
    assert check_status(instance, "option_surfaces", "no_arbitrage") == "SKIPPED"


@pytest.mark.realdata
def test_rematerializing_a_partition_leaves_one_copy(real) -> None:  # noqa: ANN001
    dep, instance, _, _, _, _ = real
    before = _stored(dep)
    again = dg.materialize(_option_assets(_definitions()), partition_key="2021-04-05|deribit.BTC",
                           resources=dep.resources(), instance=instance, raise_on_error=False)
    assert again.success
    after = _stored(dep)
    assert [t.num_rows for t in after] == [t.num_rows for t in before]
    assert [t.num_rows for t in _warehouse(dep)] == [t.num_rows for t in before]


# --- a synthetic full chain: the check judges ------------------------------------------------------

F = 56_000.0
T0 = dt.datetime(2021, 4, 5, 12, 0, 0, 500_000, tzinfo=dt.UTC)
EXPIRIES = {"9APR21": dt.datetime(2021, 4, 9, 8, tzinfo=dt.UTC),
            "30APR21": dt.datetime(2021, 4, 30, 8, tzinfo=dt.UTC)}
STRIKES = np.arange(40_000, 76_000, 4_000)


def _black76_coin(strike: float, t: float, vol: float, call: bool) -> float:
    d1 = (np.log(F / strike) + vol * vol * t / 2) / (vol * np.sqrt(t))
    d2 = d1 - vol * np.sqrt(t)
    c = F * norm.cdf(d1) - strike * norm.cdf(d2)
    return float((c if call else c - (F - strike)) / F)


def _chain_capture(path: Path, planted: str | None) -> Path:
    """Two one-minute snapshots of a 2-expiry BTC chain (9 strikes, calls and puts); ``planted`` is
    0.01 coin too dear."""
    lines = ["wss://www.deribit.com/ws/api/v2 <-> 1617624000.0"]
    for minute in range(2):
        now = T0 + dt.timedelta(minutes=minute)
        for code, expiry in EXPIRIES.items():
            t = (expiry - now).total_seconds() / (365 * 86_400)
            for strike in STRIKES:
                for kind in "CP":
                    name = f"BTC-{code}-{strike}-{kind}"
                    vol = 0.8 + 0.1 * np.log(strike / F) ** 2
                    price = _black76_coin(float(strike), t, vol, kind == "C")
                    price += 0.01 if name == planted else 0.0
                    data = {"instrument_name": name, "timestamp": int(now.timestamp() * 1000),
                            "underlying_price": F, "mark_price": round(price, 8),
                            "mark_iv": round(vol * 100, 2)}
                    frame = {"jsonrpc": "2.0", "method": "subscription",
                             "params": {"channel": f"ticker.{name}.raw", "data": data}}
                    lines.append(f"{now.timestamp():.6f}: {json.dumps(frame)}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize(("planted", "passed"), [(None, True), ("BTC-30APR21-60000-C", False)])
def test_no_arbitrage_check_warns_on_a_planted_violation_and_never_blocks(
        tmp_path: Path, planted: str | None, passed: bool) -> None:
    from tapeflow.options.surface import surfaces

    (tmp_path / "landing" / "deribit").mkdir(parents=True)
    capture = _chain_capture(tmp_path / "landing" / "deribit" / "cryptofeed_DERIBIT.ws.1.0_2021-04-05.txt",
                             planted)
    dep = Deployment(tmp_path)
    instance = dg.DagsterInstance.ephemeral()
    _, [result] = _sense_and_run(dep, instance)
    assert result.success  # non-blocking: the run succeeds either way
    ev = check_results(result)[("option_surfaces", "no_arbitrage")]
    meta = {k: v.value for k, v in ev.metadata.items()}
    print(f"planted {planted}: {ev.description}")
    assert ev.passed is passed and ev.severity == dg.AssetCheckSeverity.WARN
    cli_tickers, cli_surfaces = _cli([capture], tmp_path)
    expected = surfaces(cli_tickers)
    for check in ("calendar", "butterfly", "parity"):
        assert meta[f"{check}_checked"] == int(np.sum(expected.column(f"{check}_checked").to_numpy())) > 0
        assert meta[f"{check}_violations"] == int(np.sum(expected.column(f"{check}_violations").to_numpy()))
    assert (meta["butterfly_violations"] > 0) is (planted is not None)
    assert meta["calendar_violations"] == 0
    surf = materializations(result)["option_surfaces"]["2021-04-05|deribit.BTC"]
    assert surf["atm_iv_share"] == 1.0 and surf["snapshots"] == 2 and surf["expiries"] == 2
    _, stored = _stored(dep)
    assert _rows(stored, SORT_S) == _rows(cli_surfaces.select(stored.column_names), SORT_S)


@pytest.mark.realdata
def test_the_same_landing_folder_feeds_the_day_pipeline_with_deribit_books(real_data: Path,
                                                                           tmp_path: Path) -> None:
    """``<landing>/deribit/`` is also the ``deribit`` venue format's: an option's book instrument-day
    goes through ingest -> book -> derived -> warehouse with every check passing."""
    from assets.partitions import partition_key
    from dagster_project.definitions import build_definitions, day_assets
    from tapeflow.schemas.records import BOOK_DELTA
    from tapeflow.storage import lake
    from tapeflow.venues import get_format
    from tapeflow.venues.base import merge
    from tests.dagster.conftest import register

    src = need(real_data / "options" / "deribit" / "cryptofeed_DERIBIT.ws.30.0_2021-04-17.txt")
    (tmp_path / "landing" / "deribit").mkdir(parents=True)
    (tmp_path / "landing" / "deribit" / src.name).symlink_to(src)
    dep = Deployment(tmp_path)
    instance = dg.DagsterInstance.ephemeral()
    days = register(instance, dep)
    assert len(days) == 10 and {v for v, _, _ in days} == {"deribit"}  # one per option book
    venue, symbol, date = days[0]
    key = partition_key(date, venue, symbol)
    result = dg.materialize(day_assets(build_definitions(FIRST)), partition_key=key,
                            resources=dep.resources(), instance=instance, raise_on_error=False)
    assert result.success
    assert [k for k, ev in check_results(result).items() if not ev.passed] == []
    decoded = merge(list(get_format("deribit").decode([src])))["book_delta"]
    want = decoded.filter(pa.compute.equal(decoded.column("symbol"), symbol))
    stored = lake.read(BOOK_DELTA, dep.lake, venue=venue, symbol=symbol, date=date)
    assert stored.num_rows == want.num_rows > 0


def test_options_sensor_logs_an_unreadable_capture_and_keeps_early_days_waiting(tmp_path: Path) -> None:
    from assets.options import UNDERLYINGS_NAME
    from dagster_project.definitions import build_definitions
    from dagster_project.sensors import options_sensor

    folder = tmp_path / "landing" / "deribit"
    folder.mkdir(parents=True)
    _chain_capture(folder / "cryptofeed_DERIBIT.ws.1.0_2021-04-05.txt", None)
    (folder / "cryptofeed_DERIBIT.ws.2.0_broken.txt").write_text("this is no capture\n")
    (folder / "cryptofeed_DERIBIT.ws.3.0.txt.part").write_text("a download in progress\n")
    dep = Deployment(tmp_path)
    instance = dg.DagsterInstance.ephemeral()
    repo = build_definitions("2021-05-01").get_repository_def()  # the partitions start after the data
    tick = options_sensor(dg.build_sensor_context(instance=instance, resources=dep.resources(),
                                                  repository_def=repo))
    assert not tick.run_requests and "wait" in str(tick.skip_reason)
    assert json.loads(tick.cursor)["waiting"] == [["2021-04-05", "deribit", "BTC"]]
    index = json.loads((dep.lake / "_sources" / "options_index.json").read_text())
    assert sorted(Path(p).name for p in index) == ["cryptofeed_DERIBIT.ws.1.0_2021-04-05.txt",
                                                    "cryptofeed_DERIBIT.ws.2.0_broken.txt"]  # .part ignored
    assert "not a capture file" in index[str(folder / "cryptofeed_DERIBIT.ws.2.0_broken.txt")]["error"]
    # reloaded definitions that start earlier: the waiting day is requested, the underlying registered
    repo = build_definitions(FIRST).get_repository_def()
    again = options_sensor(dg.build_sensor_context(instance=instance, resources=dep.resources(),
                                                   repository_def=repo, cursor=tick.cursor))
    assert [r.partition_key for r in again.run_requests] == ["2021-04-05|deribit.BTC"]
    assert list(again.dynamic_partitions_requests[0].partition_keys) == ["deribit.BTC"]
    assert instance.get_dynamic_partitions(UNDERLYINGS_NAME) == []  # registering is the daemon's
