"""CoinbaseClient end to end through the replay server on the start of the real capture."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tapeflow.live.connector import ConnectorSettings
from tapeflow.replay.protocol import Frame
from tapeflow.venues.coinbase.client import CoinbaseClient
from tests.conftest import need
from tests.live.connb_replay import journal_matches_live, records, run_against_replay, status

PRODUCTS = ["SKL-USD", "SKL-BTC", "BAND-GBP", "NMR-EUR", "BAND-BTC", "YFI-BTC", "DASH-BTC", "NU-GBP",
            "CRV-EUR", "SKL-GBP"]
LINES = 3400  # the first ~11 s of the capture: 10 snapshots, level2 updates, 10 last_match + 24 matches


@pytest.fixture(scope="module")
def capture(real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first ``LINES`` lines of the real capture (a temporary copy, never in the repo)."""
    src = need(real_data / "cryptofeed" / "COINBASE.ws.28.0")
    out = tmp_path_factory.mktemp("coinbase") / "COINBASE.ws.28.0.head"
    out.write_text("".join(src.read_text().splitlines(keepends=True)[:LINES]))
    return out


def _matches(capture: Path) -> list[dict]:
    out = []
    for ln in capture.read_text().splitlines():
        if '"type":"match"' in ln or '"type":"last_match"' in ln:
            out.append(json.loads(ln.split(": ", 1)[1]))
    return out


def _run(capture: Path, journal: Path, faults=()):
    return run_against_replay(
        lambda srv: CoinbaseClient(PRODUCTS, endpoint=srv.ws_url, journal=journal,
                                   settings=ConnectorSettings(seed=5)),
        "coinbase", [capture], faults=faults, speed=10.0)


def test_level2_and_matches_without_gaps(capture: Path, tmp_path: Path) -> None:
    matches = _matches(capture)
    anchored = {m["product_id"] for m in matches if m["type"] == "last_match"}
    # every match after its product's last_match must link (trade_id + 1), counted from the file
    links = sum(1 for m in matches if m["type"] == "match" and m["product_id"] in anchored)
    assert links == 24
    client, srv, batches = _run(capture, tmp_path)
    assert (client.stats.links, client.stats.links_ok) == (links, links)
    assert client.stats.snapshots == 10 and client.stats.breaks == [] and client.resubscribes == 0
    live = records(batches)
    assert live["trade"].num_rows == len(matches)
    states = status(batches).column("state").to_pylist()
    assert states.count("synced") == 10 and "gap" not in states
    journal_matches_live(tmp_path, "coinbase", live)


def test_dropped_match_is_a_gap_and_the_product_resyncs(capture: Path, tmp_path: Path) -> None:
    target: dict[str, object] = {}

    def drop_a_match(tape: list[Frame]) -> list[str]:
        sent = [f for f in tape if f.key is None or f.key[0] != "ticker"]  # the client takes no ticker
        picks = [i for i, f in enumerate(sent)
                 if b'"type":"match"' in f.payload and b'"SKL-USD"' in f.payload]
        target["payload"] = json.loads(sent[picks[2]].payload)
        return [f"drop@{picks[2]}"]

    client, srv, batches = _run(capture, tmp_path, drop_a_match)
    dropped = target["payload"]
    assert [i.kind for i in srv.injected] == ["drop"]
    assert len(client.stats.breaks) == 1
    assert client.stats.breaks[0].startswith(f"SKL-USD: match trade_id {dropped['trade_id'] + 1} "
                                             f"after {dropped['trade_id'] - 1}")
    assert client.stats.resyncs == 1 and client.resubscribes == 1
    st = status(batches).to_pylist()
    assert [r["state"] for r in st if r["symbol"] == "SKL-USD"].count("recovered") == 1
    gap = next(r for r in st if r["state"] == "gap")
    assert gap["symbol"] == "SKL-USD" and gap["sequence"] > dropped["sequence"]
    live = records(batches)
    # the resubscription brought a last_match, as Coinbase sends on every matches subscription
    frames = [f.data for b in batches for f in b.frames]
    last_matches = [json.loads(f) for f in frames if b'"type":"last_match"' in f]
    assert len(last_matches) == 10 + 1 and last_matches[-1]["product_id"] == "SKL-USD"
    # ... and it is not a second trade row: every trade once, all but the dropped one
    ids = live["trade"].column("trade_id").to_pylist()
    assert ids.count(str(last_matches[-1]["trade_id"])) == 1 and len(set(ids)) == len(ids)
    assert live["trade"].num_rows == len(_matches(capture)) - 1 == 33
    journal_matches_live(tmp_path, "coinbase", live)
