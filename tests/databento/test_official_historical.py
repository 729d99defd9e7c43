"""The official client's path: ``HistoricalClient`` against an ``https://`` gateway sends every
request through ``databento.Historical`` (0.88.0). The local server of the historical API
(``MockHistorical``) serves TLS here with a certificate made in the test for 127.0.0.1, trusted
through ``REQUESTS_CA_BUNDLE`` (the official client rewrites any gateway to https, so the plain-http
server the other tests use is out of its reach).

Oracles as in test_historical.py: the API test vectors' answers, the records of the real ES MBO file
in the requested ``ts_recv`` range counted from the file's bytes, the vectors' 400 error body; the
server sees the official client's User-Agent, and the key shows in no error.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from tapeflow.secrets import Secret
from tapeflow.venues.databento.historical import (
    DatabentoApiError,
    HistoricalClient,
    RangeRequest,
    parse_time_ns,
)
from tapeflow.venues.databento.mock_historical import MockHistorical
from tapeflow.venues.databento.parse import decode_all
from tests.alerts.tls import self_signed
from tests.databento.support import KEY, MBO_1224, MBO_1225, databento_file, vectors
from tests.databento.test_historical import ts_recv_of


@pytest.fixture(scope="module")
def tls_server(real_data: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    cert, key = self_signed(tmp_path_factory.mktemp("tls"))  # for 127.0.0.1
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    files = [databento_file(real_data, MBO_1224), databento_file(real_data, MBO_1225)]
    with MockHistorical(files, KEY, vectors=vectors(real_data)["historical_http"],
                        vector_files=real_data / "databento" / "api", ssl_context=context) as srv:
        srv.cert = cert  # type: ignore[attr-defined]
        yield srv


@pytest.fixture
def api(tls_server: MockHistorical, monkeypatch: pytest.MonkeyPatch) -> HistoricalClient:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_server.cert))  # type: ignore[attr-defined]
    client = HistoricalClient(Secret(KEY, "env:DATABENTO_API_KEY"), tls_server.url, timeout_s=30)
    assert client.official and tls_server.url.startswith("https://127.0.0.1:")
    return client


def test_the_vectors_cost_and_size_come_back_through_the_official_client(
        api: HistoricalClient, tls_server: MockHistorical, real_data: Path) -> None:
    asked = 0
    for v in vectors(real_data)["historical_http"]["endpoints"]:
        call = {"/v0/metadata.get_cost": api.get_cost,
                "/v0/metadata.get_billable_size": api.get_billable_size}.get(v["path"])
        if call is None or "status" in v:
            continue
        form = v["form"]
        request = RangeRequest(form["dataset"], form["schema"], tuple(form["symbols"].split(",")),
                               parse_time_ns(form["start"]), parse_time_ns(form["end"]),
                               stype_in=form.get("stype_in", "raw_symbol"))
        before = len(tls_server.agents)
        assert call(request) == v["response"]
        assert tls_server.agents[before].startswith("Databento/0.88.0")  # the official client asked
        asked += 1
    assert asked >= 2


def test_get_range_through_the_official_client_lands_exactly_the_records_in_range(
        api: HistoricalClient, tls_server: MockHistorical, real_data: Path, tmp_path: Path) -> None:
    path = databento_file(real_data, MBO_1225)
    ts = ts_recv_of(path)
    start, end = int(ts[2000]), int(ts[12_000])
    request = RangeRequest("GLBX.MDP3", "mbo", ("ESH4",), start, end)
    want = int(((ts >= start) & (ts < end)).sum())
    assert api.get_billable_size(request) == want * 56
    out = tmp_path / "range.mbo.dbn.zst"
    assert api.get_range(request, out) == out.stat().st_size > 0
    assert not list(tmp_path.glob("*.part"))
    got = decode_all([out])["order_event"]
    full = decode_all([path])["order_event"]
    recv = full.column("ts_recv_ns").to_numpy()
    assert got.num_rows == want and got.equals(full.filter((recv >= start) & (recv < end)))
    assert tls_server.agents[-1].startswith("Databento/0.88.0")


def test_an_error_body_becomes_a_databento_api_error_without_the_key(
        tls_server: MockHistorical, monkeypatch: pytest.MonkeyPatch, real_data: Path, tmp_path: Path) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tls_server.cert))  # type: ignore[attr-defined]
    request = RangeRequest("GLBX.MDP3", "mbo", ("ESH1",), 1609160400000711344, 1609160800000711344, limit=2)
    bad_key = "db-illegal key!"
    with pytest.raises(DatabentoApiError) as err:
        HistoricalClient(Secret(bad_key, "test"), tls_server.url).get_range(request, tmp_path / "x.dbn.zst")
    assert err.value.status == 400
    assert "Authorization failed: illegal chars in username." in str(err.value)
    assert bad_key not in str(err.value)
    assert not list(tmp_path.glob("x.dbn.zst*"))  # nothing landed, no .part left
    wrong = HistoricalClient(Secret("db-" + "W" * 29, "test"), tls_server.url)
    with pytest.raises(DatabentoApiError) as err:
        wrong.get_cost(request)
    assert err.value.status == 401 and "W" * 29 not in str(err.value)
