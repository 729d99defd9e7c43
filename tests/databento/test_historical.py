"""The historical client and the cost guard against a local server of the historical API.

The server answers the API test vectors' exact requests with the vectors' answers (get_cost,
get_billable_size, get_range bodies, the 400 error body) and everything else from the real CME ES
MBO files. Oracles: the vectors' numbers; get_range's body decoded equals the file's records in the
requested ``ts_recv`` range, counted from the file independently; the ledger sums; the key is found
in no exception, repr, ledger row or log line.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from tapeflow.errors import ConfigError
from tapeflow.schemas.databento import DATABENTO_SPEND
from tapeflow.secrets import Secret
from tapeflow.settings import DatabentoSettings
from tapeflow.storage import lake as lake_store
from tapeflow.venues.databento.framing import read_all, read_dbn_header
from tapeflow.venues.databento.historical import (
    DatabentoApiError,
    HistoricalClient,
    RangeRequest,
    parse_time_ns,
)
from tapeflow.venues.databento.mock_historical import MockHistorical
from tapeflow.venues.databento.parse import decode_all
from tapeflow.venues.databento.spend import CostGuard, OverBudget
from tests.databento.support import KEY, MBO_1224, MBO_1225, databento_file, vectors

DAY_NS = 86_400 * 1_000_000_000
NOW_NS = parse_time_ns("2026-12-06T12:00")


@pytest.fixture(scope="module")
def server(real_data: Path):  # type: ignore[no-untyped-def]
    files = [databento_file(real_data, MBO_1224), databento_file(real_data, MBO_1225)]
    with MockHistorical(files, KEY, vectors=vectors(real_data)["historical_http"],
                        vector_files=real_data / "databento" / "api") as srv:
        yield srv


def client(server: MockHistorical, key: str = KEY) -> HistoricalClient:
    return HistoricalClient(Secret(key, "env:DATABENTO_API_KEY"), server.url, timeout_s=30)


def ts_recv_of(path: Path) -> np.ndarray:
    """ts_recv of every MBO record, read straight from the bytes (56-byte records, ts_recv at 40)."""
    raw = read_all(path)
    body = np.frombuffer(raw[read_dbn_header(path).records_at:], dtype=np.uint8).reshape(-1, 56)
    assert (body[:, 0] == 14).all()  # every record is one 56-byte MBO record
    return body[:, 40:48].copy().view("<u8").reshape(-1)


def test_the_vectors_answers_come_back_through_the_client(server: MockHistorical, real_data: Path) -> None:
    api = client(server)
    endpoints = vectors(real_data)["historical_http"]["endpoints"]
    by = {(v["path"], v.get("form", {}).get("symbols")): v for v in endpoints}
    for endpoint, call in (("/v0/metadata.get_cost", api.get_cost), ("/v0/metadata.get_billable_size",
                                                                      api.get_billable_size)):
        for (path, _), v in by.items():
            if path != endpoint:
                continue
            form = v["form"]
            request = RangeRequest(form["dataset"], form["schema"], tuple(form["symbols"].split(",")),
                                   parse_time_ns(form["start"]), parse_time_ns(form["end"]),
                                   stype_in=form.get("stype_in", "raw_symbol"))
            assert call(request) == v["response"]


def test_get_range_vector_body_and_the_error_body(server: MockHistorical, real_data: Path,
                                                  tmp_path: Path) -> None:
    request = RangeRequest("GLBX.MDP3", "mbo", ("ESH1",), 1609160400000711344, 1609160800000711344, limit=2)
    out = tmp_path / "vector.dbn.zst"
    assert client(server).get_range(request, out) > 0
    assert read_dbn_header(out).metadata.limit == 2
    assert decode_all([out])["order_event"].num_rows == 2
    bad = next(v for v in vectors(real_data)["historical_http"]["endpoints"] if v.get("status") == 400)
    with pytest.raises(DatabentoApiError) as err:
        client(server, key="db-illegal key!").get_range(request, tmp_path / "x.dbn.zst")
    assert err.value.status == 400
    # the vector's client message quotes the same JSON body
    assert '{"detail":"Authorization failed: illegal chars in username."}' in bad["expect_client_error"]
    assert '{"detail":"Authorization failed: illegal chars in username."}' in str(err.value)
    assert not list(tmp_path.glob("x.dbn.zst*"))  # nothing landed, no .part left


def test_get_range_streams_exactly_the_records_in_range(server: MockHistorical, real_data: Path,
                                                        tmp_path: Path) -> None:
    path = databento_file(real_data, MBO_1225)
    ts = ts_recv_of(path)
    start, end = int(ts[1000]), int(ts[30_000])
    request = RangeRequest("GLBX.MDP3", "mbo", ("ESH4",), start, end)
    api = client(server)
    want = int(((ts >= start) & (ts < end)).sum())
    assert api.get_billable_size(request) == want * 56
    assert api.get_cost(request) == pytest.approx(want * 56 / 1e9 * 21.05)
    out = tmp_path / "range.mbo.dbn.zst"
    api.get_range(request, out)
    got = decode_all([out])["order_event"]
    assert got.num_rows == want
    full = decode_all([path])["order_event"]
    recv = full.column("ts_recv_ns").to_numpy()
    assert got.equals(full.filter((recv >= start) & (recv < end)))


def test_cost_guard_prices_first_lands_ledgers_and_refuses_over_budget(
        server: MockHistorical, real_data: Path, tmp_path: Path) -> None:
    ts = ts_recv_of(databento_file(real_data, MBO_1225))
    settings = DatabentoSettings(api_key=Secret(KEY, "env:DATABENTO_API_KEY"), historical_url=server.url,
                                 daily_budget_usd=0.05, monthly_budget_usd=0.052)
    lake, landing = tmp_path / "lake", tmp_path / "landing"
    clock = iter(range(NOW_NS, NOW_NS + 10_000))
    guard = CostGuard(client(server), settings, lake, clock=lambda: next(clock))
    first = RangeRequest("GLBX.MDP3", "mbo", ("ESH4",), int(ts[0]), int(ts[20_000]))
    seen = len(server.requests)
    row = guard.fetch(first, landing, why="backfill ESH4 2023-12-25")
    endpoints = [e for e, _ in server.requests[seen:]]
    assert endpoints == ["metadata.get_cost", "metadata.get_billable_size", "timeseries.get_range"]
    assert row["outcome"] == "spent" and row["billable_bytes"] == 20_000 * 56
    assert row["estimate_usd"] == pytest.approx(20_000 * 56 / 1e9 * 21.05)  # 0.0236
    landed = Path(row["path"])
    assert landed.is_relative_to(landing / "dbn") and decode_all([landed])["order_event"].num_rows == 20_000
    # a second request of the same size passes the daily budget: refused, nothing requested
    second = RangeRequest("GLBX.MDP3", "mbo", ("ESH4",), int(ts[20_000]), int(ts[45_000]))
    seen = len(server.requests)
    with pytest.raises(OverBudget) as err:
        guard.fetch(second, landing, why="backfill ESH4 2023-12-25 (2)")
    assert [e for e, _ in server.requests[seen:]] == ["metadata.get_cost", "metadata.get_billable_size"]
    message = str(err.value)
    assert "$0.0295" in message and "daily budget $0.05" in message and "$0.0236 spent today" in message
    # the next day the daily budget is fresh, but the month's is not
    later = iter(range(NOW_NS + DAY_NS, NOW_NS + DAY_NS + 100))
    guard.clock = lambda: next(later)
    with pytest.raises(OverBudget, match=r"monthly budget \$0.05 \(\$0.0236 spent this month\)"):
        guard.fetch(second, landing, why="next day")
    ledger = lake_store.read(DATABENTO_SPEND, lake).sort_by("ts_event_ns").to_pylist()
    assert [(r["outcome"], r["reason"]) for r in ledger] == [
        ("spent", ""), ("refused", "over_daily_budget"), ("refused", "over_monthly_budget")]
    assert ledger[1]["spent_day_usd"] == pytest.approx(ledger[0]["estimate_usd"])
    assert ledger[2]["spent_day_usd"] == 0 and ledger[2]["detail"] == str(err.value).replace(
        "daily budget $0.05 ($0.0236 spent today)", "monthly budget $0.05 ($0.0236 spent this month)")
    assert all(r["why"] for r in ledger) and ledger[0]["bytes_received"] == landed.stat().st_size


def test_the_key_never_shows(server: MockHistorical, tmp_path: Path, caplog: pytest.LogCaptureFixture,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    caplog.set_level(logging.DEBUG)
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    settings = DatabentoSettings.from_env({"DATABENTO_API_KEY_FILE": str(key_file),
                                           "TAPEFLOW_DATABENTO_HISTORICAL": server.url,
                                           "TAPEFLOW_DATABENTO_DAILY_BUDGET_USD": "1"})
    assert settings.api_key.reveal() == KEY
    wrong = HistoricalClient(Secret(KEY[:-1] + "Z", "env:X"), server.url)
    request = RangeRequest("GLBX.MDP3", "mbo", ("ESH4",), 1, 2)
    with pytest.raises(DatabentoApiError) as err:
        wrong.get_cost(request)
    assert err.value.status == 401
    texts = [repr(settings), str(settings), repr(settings.api_key), str(err.value), repr(wrong),
             repr(client(server)), caplog.text]
    assert not [t for t in texts if KEY in t or KEY[:-1] in t]
    with pytest.raises(ConfigError, match="not both"):
        DatabentoSettings.from_env({"DATABENTO_API_KEY": KEY, "DATABENTO_API_KEY_FILE": str(key_file)})
    with pytest.raises(ConfigError, match="TAPEFLOW_DATABENTO_DAILY_BUDGET_USD") as bad:
        DatabentoSettings.from_env({"DATABENTO_API_KEY": KEY, "TAPEFLOW_DATABENTO_DAILY_BUDGET_USD": "-1"})
    assert KEY not in str(bad.value)


def test_a_range_across_two_served_files_takes_records_from_both(server: MockHistorical, real_data: Path,
                                                                 tmp_path: Path) -> None:
    first, second = databento_file(real_data, MBO_1224), databento_file(real_data, MBO_1225)
    ts1, ts2 = ts_recv_of(first), ts_recv_of(second)
    start, end = int(ts1.min()), int(ts2[20_000])
    want_rows = int(((ts1 >= start) & (ts1 < end)).sum() + ((ts2 >= start) & (ts2 < end)).sum())
    assert want_rows == 8_725 + 20_000  # all of the first file, the start of the second
    request = RangeRequest("GLBX.MDP3", "mbo", ("ESH4",), start, end)
    assert client(server).get_billable_size(request) == want_rows * 56
    out = tmp_path / "two-days.mbo.dbn.zst"
    client(server).get_range(request, out)
    assert decode_all([out])["order_event"].num_rows == want_rows


def test_a_settled_range_is_pulled_once_then_served_from_the_pull_cache(
        server: MockHistorical, real_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from tapeflow.pullcache import PullCache
    from tapeflow.sessions import session
    from tapeflow.venues.databento.spend import spent_before

    caplog.set_level(logging.INFO, logger="tapeflow.venues.databento.spend")
    ts = ts_recv_of(databento_file(real_data, MBO_1225))
    settings = DatabentoSettings(api_key=Secret(KEY, "env:DATABENTO_API_KEY"), historical_url=server.url,
                                 daily_budget_usd=10.0, monthly_budget_usd=10.0)
    clock = iter(range(NOW_NS, NOW_NS + 10_000))
    now = [NOW_NS]
    cache = PullCache(tmp_path / "cache", session("cme_globex"), clock_ns=lambda: now[0])
    api = HistoricalClient(Secret(KEY, "env:DATABENTO_API_KEY"), server.url, timeout_s=30, cache=cache)
    guard = CostGuard(api, settings, tmp_path / "lake", clock=lambda: next(clock))
    settled = RangeRequest("GLBX.MDP3", "mbo", ("ESH4",), int(ts[0]), int(ts[20_000]))
    seen = len(server.requests)
    first = guard.fetch(settled, tmp_path / "a", why="backfill")
    second = guard.fetch(settled, tmp_path / "b", why="backfill again")
    # the server saw one priced request; the second was landed from the cache, byte for byte
    assert [e for e, _ in server.requests[seen:]] == [
        "metadata.get_cost", "metadata.get_billable_size", "timeseries.get_range"]
    assert Path(second["path"]).read_bytes() == Path(first["path"]).read_bytes()
    ledger = guard.ledger().sort_by("ts_event_ns").to_pylist()
    assert [(r["outcome"], r["estimate_usd"] > 0) for r in ledger] == [("spent", True), ("cached", False)]
    assert spent_before(guard.ledger(), NOW_NS + 10_000).day_usd == pytest.approx(first["estimate_usd"])
    assert "served from the pull cache" in caplog.text
    # the same range while it is still open (pulled 10 minutes after its end, the session trading):
    # nothing of it is cached, each ask is priced and pulled again and ledgered as spent
    now[0] = int(ts[20_000]) + 600 * 10**9
    seen = len(server.requests)
    guard.fetch(settled, tmp_path / "c", why="open window")
    guard.fetch(settled, tmp_path / "d", why="open window again")
    assert [e for e, _ in server.requests[seen:]] == [
        "metadata.get_cost", "metadata.get_billable_size", "timeseries.get_range"] * 2
    assert [r["outcome"] for r in guard.ledger().to_pylist()].count("spent") == 3
