"""Canary credentials through the CLI, the live flow and a Dagster materialization, all made to fail.

Every output is captured (stdout, stderr, log records, the Dagster event log and instance files,
lake, dead-letter, journal and warehouse files) and searched for the canary user and password in
every form they could travel in (as given, percent-encoded, inside a Basic auth header). Each run
also asserts that its forced error did reach the output, so the search is never over nothing.
"""

from __future__ import annotations

import base64
import gzip
import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import quote

import pyarrow.parquet as pq
import pytest

from tapeflow.storage.dsn import PASSWORD_ENV, PASSWORD_FILE_ENV, USER_ENV

ROOT = Path(__file__).resolve().parents[2]
TOKEN = uuid.uuid4().hex[:12]
USER = f"canaryuser{TOKEN}"
PASSWORD = f"canary/pw:{TOKEN}@x"  # characters that must be percent-encoded in a DSN
FORMS = {PASSWORD, quote(PASSWORD, safe=""), USER, TOKEN,
         base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}
CLOSED = "127.0.0.1:9"  # nothing listens on the discard port: every connect fails
USERINFO = f"{USER}:{quote(PASSWORD, safe='')}"
NO_CONNECT = "cannot connect to ClickHouse"


def leaks(blob: bytes | str) -> set[str]:
    """The canary forms found in ``blob``."""
    text = blob if isinstance(blob, str) else blob.decode("utf-8", "replace")
    return {form for form in FORMS if form in text}


def tree_leaks(root: Path) -> dict[str, set[str]]:
    """Canary forms in every file under ``root`` (gzip and Parquet read decoded, not as compressed bytes)."""
    found = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        blobs = [path.read_bytes()]
        if path.suffix == ".gz":
            blobs.append(gzip.decompress(blobs[0]))
        elif path.suffix == ".parquet":
            table = pq.read_table(path)
            blobs += [str(table.schema.metadata), str(table.to_pylist())]
        if hits := set().union(*(leaks(b) for b in blobs)):
            found[str(path.relative_to(root))] = hits
    return found


def tapeflow(args: list[str], cwd: Path, extra_env: dict[str, str] | None = None,
             timeout_s: int = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAPEFLOW_CLICKHOUSE")}
    env.update(PYTHONPATH=str(ROOT), DAGSTER_DISABLE_TELEMETRY="1", JAX_PLATFORMS="cpu", **(extra_env or {}))
    return subprocess.run([sys.executable, "-m", "tapeflow.cli", *args], cwd=cwd, env=env, text=True,
                          capture_output=True, timeout=timeout_s)


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 20-second simulated capture with one damaged line (a dead letter)."""
    from tapeflow.simulator import simulate

    root = tmp_path_factory.mktemp("canary_sim")
    [path] = simulate(3, 1, 20 * 10**9, root, "crypto", progress=False).files
    lines = gzip.decompress(path.read_bytes()).decode().splitlines(keepends=True)
    lines.insert(5, "1704067200000000000,1704067200000000000,5,S,16040,B,not-a-price,0.1\n")
    path.write_bytes(gzip.compress("".join(lines).encode()))
    return path


ROUTES = {  # how the canary credentials reach the CLI: (DSN, environment)
    "userinfo": (f"https://{USERINFO}@{CLOSED}/db?connect_timeout=2", {}),
    "environment": (f"https://{CLOSED}/db?connect_timeout=2", {USER_ENV: USER, PASSWORD_ENV: PASSWORD}),
    "password file": (f"https://{CLOSED}/db?connect_timeout=2", {USER_ENV: USER}),
    "query string": (f"https://{CLOSED}/db?user={USER}&password={quote(PASSWORD, safe='')}", {}),
    "twice": (f"https://{USERINFO}@{CLOSED}/db", {PASSWORD_ENV: PASSWORD}),
}


@pytest.mark.parametrize("route", ROUTES)
def test_cli_ingest_query_and_verify_never_show_the_canary(capture, tmp_path_factory, route):
    dsn, env = ROUTES[route]
    if route == "password file":  # kept out of the folder searched below, which it would match
        secret = tmp_path_factory.mktemp("secret") / "pw"
        secret.write_text(PASSWORD + "\n")
        env = {**env, PASSWORD_FILE_ENV: str(secret)}
    tmp_path = tmp_path_factory.mktemp("outputs")
    runs = [
        tapeflow(["ingest", "--format", "sim", str(capture), "--lake", str(tmp_path / "lake"),
                  "--clickhouse", dsn], tmp_path, env),
        tapeflow(["query", "SELECT 1"], tmp_path, {**env, "TAPEFLOW_CLICKHOUSE": dsn}),
    ]
    for run in runs:
        assert run.returncode == 2, run.stderr
        assert "Traceback" not in run.stderr
        assert NO_CONNECT in run.stderr or "query string" in run.stderr or "given twice" in run.stderr
    verify = tapeflow(["verify", "--format", "sim", str(capture)], tmp_path,
                      {**env, "TAPEFLOW_CLICKHOUSE": dsn})
    assert "Traceback" not in verify.stderr
    for run in (*runs, verify):
        assert not leaks(run.stdout + run.stderr), (run.args, run.stdout, run.stderr)
    assert not tree_leaks(tmp_path)


def test_files_written_with_canary_credentials_in_the_environment(capture, tmp_path):
    """A run that succeeds (embedded warehouse) while the canary sits in the environment: lake, dead
    letters and warehouse files hold none of it."""
    env = {USER_ENV: USER, PASSWORD_ENV: PASSWORD}
    run = tapeflow(["ingest", "--format", "sim", str(capture), "--lake", str(tmp_path / "lake"),
                    "--clickhouse", f"chdb://{tmp_path / 'warehouse'}"], tmp_path, env)
    assert "Traceback" not in run.stderr
    assert list((tmp_path / "lake").rglob("*.parquet")), run.stderr
    assert any("rejected" in str(p) for p in (tmp_path / "lake").rglob("*.parquet")), "no dead letter written"
    assert not leaks(run.stdout + run.stderr)
    assert not tree_leaks(tmp_path)


def test_live_flow_with_an_unreachable_warehouse_never_shows_the_canary(capture, tmp_path):
    dsn = f"https://{USERINFO}@{CLOSED}/db?connect_timeout=2"
    run = tapeflow(["live", "--capture", str(capture), "--format", "sim", "--lake", str(tmp_path / "lake"),
                    "--journal", str(tmp_path / "journal"), "--clickhouse", dsn], tmp_path, timeout_s=600)
    output = run.stdout + run.stderr
    assert run.returncode != 0 and NO_CONNECT in output, output[-3000:]
    assert not leaks(output), output
    assert not tree_leaks(tmp_path)


def test_dagster_materialization_never_stores_the_canary(tmp_path, monkeypatch, capfd, caplog):
    """The DSN with canary userinfo goes in the resource's own config (the riskiest place): the run
    fails on the unreachable server after its retries; neither the event log, the instance's files
    (run storage, compute logs) nor the process output holds the canary."""
    import dagster as dg
    from dagster._core.test_utils import instance_for_test

    from assets.partitions import INSTRUMENTS_NAME, instrument_key, partition_key
    from assets.warehouse import clickhouse_tables
    from dagster_project.resources import resources

    for name in ("TAPEFLOW_CLICKHOUSE", USER_ENV, PASSWORD_ENV, PASSWORD_FILE_ENV):
        monkeypatch.delenv(name, raising=False)
    # every retry still runs (and logs its error), without the 5 s waits between them (15 s of sleep)
    policy = clickhouse_tables.op.retry_policy
    assert policy is not None and policy.max_retries == 3
    monkeypatch.setattr(clickhouse_tables.op, "_retry_policy", policy._replace(delay=0))
    home = tmp_path / "dagster_home"
    home.mkdir()
    dsn = f"https://{USERINFO}@{CLOSED}/db?connect_timeout=2"
    with instance_for_test(temp_dir=str(home)) as instance:
        instance.add_dynamic_partitions(INSTRUMENTS_NAME, [instrument_key("sim", "SIM-BTCUSDT")])
        result = dg.materialize([clickhouse_tables], instance=instance, raise_on_error=False,
                                partition_key=str(partition_key("2024-01-01", "sim", "SIM-BTCUSDT")),
                                resources=resources(lake=tmp_path / "lake", clickhouse=dsn))
        logs = instance.all_logs(result.run_id)
        events = "\n".join(dg.serialize_value(entry) for entry in logs)
        restarts = sum(e.dagster_event is not None and e.dagster_event.event_type_value == "STEP_RESTARTED"
                       for e in logs)
        run_record = dg.serialize_value(instance.get_run_by_id(result.run_id))
    assert not result.success
    assert restarts == policy.max_retries  # the retries ran, each logged
    assert NO_CONNECT in events  # the forced error is in the event log, masked
    assert not leaks(events) and not leaks(run_record)
    out, err = capfd.readouterr()
    assert not leaks(out + err + caplog.text)
    assert not tree_leaks(tmp_path)


def test_prometheus_metrics_never_show_the_canary(capture, tmp_path, monkeypatch):
    """The live flow's metrics path, in process (the whole flow takes minutes to start here): every
    secret the project reads set to the canary in the environment, the settings read from it as
    ``flow_from_env`` reads them, the warehouse sink built from them (it fails on the unreachable
    server), then a decoded batch with a dead letter counted
    into :class:`FlowMetrics` by the metrics sink and a lake sink. The ``/metrics`` text scraped over
    HTTP holds every label family filled (venue, table, reason) and no canary form."""
    import urllib.request

    from flows.sinks import MetricsSink, TableSink
    from tapeflow.errors import StorageError
    from tapeflow.live.prom import FlowMetrics, start_metrics_server
    from tapeflow.settings import DatabentoSettings, LiveSettings, Settings
    from tapeflow.venues import get_format
    from tapeflow.venues.base import merge

    env = {"TAPEFLOW_CLICKHOUSE": f"https://{CLOSED}/db?connect_timeout=2", USER_ENV: USER,
           PASSWORD_ENV: PASSWORD, "DATABENTO_API_KEY": f"db-{PASSWORD}",
           "TAPEFLOW_WEBHOOK_KEY": PASSWORD, "TAPEFLOW_SERVE_TOKEN": PASSWORD,
           "TAPEFLOW_LIVE_CAPTURE": str(capture), "TAPEFLOW_LIVE_FORMAT": "sim",
           "TAPEFLOW_LIVE_METRICS_PORT": "0", "TAPEFLOW_LAKE": str(tmp_path / "lake")}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings, live = Settings.from_env(), LiveSettings.from_env()
    DatabentoSettings.from_env()
    metrics = FlowMetrics()
    server = start_metrics_server(live.metrics_port, metrics=metrics)
    try:
        with pytest.raises(StorageError) as failed:  # the warehouse sink with the canary DSN
            TableSink(dsn=settings.clickhouse_dsn, metrics=metrics, retry_s=0).build_part("s", "0", None)
        assert not leaks(str(failed.value))
        items = sorted(merge(list(get_format(live.format_name).decode(list(live.capture)))).items())
        assert dict(items)["rejected"].num_rows, "no dead letter decoded"
        MetricsSink(metrics, latency=True).build("m", 0, 1).write_batch(items)
        lake = TableSink(lake_root=settings.lake_dir, metrics=metrics).build_part("s", "0", None)
        lake.write_batch([t for _, t in items])
        lake.close()
        text = urllib.request.urlopen(server.url, timeout=10).read().decode()
    finally:
        server.close()
    for family in ("tapeflow_events_in_total{venue=", "tapeflow_rejected_total{reason=",
                   'tapeflow_events_out_total{table="trade"'):
        assert family in text, text  # the labels were filled: the search below is over something
    assert not leaks(text), text
