"""Every server tapeflow starts listens on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tapeflow.cli import _parser
from tapeflow.live.prom import start_metrics_server
from tapeflow.replay.server import ReplayServer
from tapeflow.simulator import simulate

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK = "127.0.0.1"


def test_replay_server_binds_loopback_by_default(tmp_path):
    simulate(seed=3, instruments=1, duration_ns=5_000_000_000, out_dir=tmp_path, progress=False)

    async def bound() -> list[str]:
        server = ReplayServer("sim", [tmp_path / "sim"])
        await server.start()
        try:
            return [address[0] for address in server._runner.addresses]
        finally:
            await server.stop()

    assert asyncio.run(bound()) == [LOOPBACK]


def test_replay_server_cli_defaults_to_loopback():
    args = _parser().parse_args(["replay-server", "--format", "sim", "capture"])
    assert args.host == LOOPBACK


def test_metrics_endpoint_binds_loopback_by_default():
    server = start_metrics_server(0)
    try:
        assert server.server.server_address[0] == LOOPBACK
    finally:
        server.close()


def _ui_command(*overrides: str) -> str:
    out = subprocess.run(["make", "-s", "-n", "ui", *overrides], cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=60).stdout
    commands = [line for line in out.splitlines() if "dagster dev" in line]
    assert len(commands) == 1, out
    return commands[0]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_ui_binds_loopback_unless_told_otherwise():
    assert re.search(rf"dagster dev -h {re.escape(LOOPBACK)} ", _ui_command())
    assert "dagster dev -h 0.0.0.0 " in _ui_command("UI_HOST=0.0.0.0")


def test_every_documented_dagster_ui_command_names_its_host():
    """``dagster dev``/``dagster-webserver`` lines in the Makefile and docs say -h 127.0.0.1 (or UI_HOST)."""
    texts = [ROOT / "Makefile", ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    found = 0
    for path in texts:
        for line in path.read_text().splitlines():
            for command in re.findall(r"dagster(?: dev|-webserver)\b[^`\n]*", line):
                if " -m " not in command and " -f " not in command:
                    continue  # prose naming the command, not an invocation
                found += 1
                assert re.search(r"(-h|--host) (127\.0\.0\.1|\$\(UI_HOST\))", command), \
                    f"{path.name}: {command}"
    assert found >= 2
