"""The publisher against a real redis-server: consumer groups, replays, outages, dead letters."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pytest
import redis

from tapeflow.bus import Drop, RedisPublisher, decode_rows, read_dead_letters
from tapeflow.bus.consume import drain, ensure_group, read_group
from tapeflow.bus.server import LocalRedis, free_port
from tapeflow.schemas import ALL_RECORDS
from tests.bus.rows import batch

STREAM = "trades:binance:BTCUSDT"
TRADE = ALL_RECORDS["trade"]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _prices(rows: list[bytes]) -> list[int]:
    return decode_rows(TRADE, rows).column("price_nanos").to_pylist()


def _published(url: str, stream: str = STREAM) -> list[int]:
    client = redis.Redis.from_url(url)
    try:
        return _prices([fields[b"row"] for _, fields in client.xrange(stream)])
    finally:
        client.close()


def test_two_consumer_groups_read_every_row_in_order_each_at_its_pace(redis_url: str, tmp_path: Path) -> None:
    pub = RedisPublisher(redis_url, tmp_path / "dead.jsonl")
    pub.publish("trade", batch(0, 300))
    client = redis.Redis.from_url(redis_url)
    ensure_group(client, STREAM, "fast")
    ensure_group(client, STREAM, "slow")
    fast = [row for _, _, row in read_group(client, "fast", "f1", [STREAM], count=1000)]
    slow = [row for _, _, row in read_group(client, "slow", "s1", [STREAM], count=50)]
    pub.publish("trade", batch(300, 200))
    pub.publish("trade", pa.concat_tables([batch(500, 10), batch(500, 5, symbol="ETHUSDT")]))
    fast += [row for _, row in drain(client, "fast", "f1", [STREAM])[STREAM]]
    slow += [row for _, row in drain(client, "slow", "s1", [STREAM])[STREAM]]
    pub.close()
    assert _prices(fast) == _prices(slow) == list(range(510))
    assert _published(redis_url, "trades:binance:ETHUSDT") == list(range(500, 505))
    # nothing left pending: every delivered entry was acknowledged
    assert client.xpending(STREAM, "slow")["pending"] == 0
    assert pub.stats.published == 515 and pub.stats.duplicates == 0


def test_a_replay_from_the_snapshot_publishes_nothing_twice(redis_url: str, tmp_path: Path) -> None:
    """What a Bytewax resume does: the state of the last snapshot, then the batches since, again."""
    batches = [batch(i * 100, 100) for i in range(5)]
    first = RedisPublisher(redis_url, tmp_path / "dead.jsonl")
    first.publish("trade", batches[0])
    state = first.snapshot()
    for b in batches[1:3]:
        first.publish("trade", b)  # then killed: these two batches come again
    resumed = RedisPublisher(redis_url, tmp_path / "dead.jsonl", state=state)
    for b in batches[1:]:
        resumed.publish("trade", b)
    resumed.close()
    assert _published(redis_url) == list(range(500))
    assert resumed.stats.duplicates == 200
    assert resumed.stats.published == 100 + 200  # the snapshot's count, then the two new batches


def test_redis_down_at_start_buffers_then_delivers_in_order(tmp_path: Path) -> None:
    port = free_port()
    err = io.StringIO()
    pub = RedisPublisher(f"redis://127.0.0.1:{port}/0", tmp_path / "dead.jsonl", err=err)
    pub.publish("trade", batch(0, 50))  # no server: no exception, rows wait
    assert len(pub.pending) == 50 and pub.stats.outages == 1
    assert "unavailable" in err.getvalue() and "buffering up to 100000 rows" in err.getvalue()
    with LocalRedis(tmp_path / "redis", port) as server:
        pub.publish("trade", batch(50, 50))
        assert pub.flush(wait_s=10)
        pub.close()
        assert _published(server.url) == list(range(100))
    assert "answering again" in err.getvalue()
    assert not read_dead_letters(tmp_path / "dead.jsonl")


def test_redis_dropping_mid_run_loses_nothing_and_repeats_nothing(tmp_path: Path) -> None:
    server = LocalRedis(tmp_path / "redis", appendonly=True).start()
    err = io.StringIO()
    pub = RedisPublisher(server.url, tmp_path / "dead.jsonl", err=err)
    try:
        pub.publish("trade", batch(0, 100))
        server.stop()
        pub.publish("trade", batch(100, 100))
        assert len(pub.pending) == 100
        server.start()
        pub.publish("trade", batch(200, 100))
        assert pub.flush(wait_s=10)
        assert _published(server.url) == list(range(300))
    finally:
        pub.close()
        server.stop()
    assert pub.stats.outages == 1 and not pub.stats.dead_lettered


def test_an_outage_past_the_retry_budget_dead_letters_with_a_reason(tmp_path: Path) -> None:
    clock, err = FakeClock(), io.StringIO()
    dead = tmp_path / "dead.jsonl"
    pub = RedisPublisher(f"redis://127.0.0.1:{free_port()}/0", dead, retry_s=30, clock=clock, err=err)
    pub.publish("trade", batch(0, 40))
    clock.now += 29
    pub.publish("trade", batch(40, 10))
    assert len(pub.pending) == 50 and not dead.exists()
    clock.now += 2
    pub.publish("trade", batch(50, 5))
    assert not pub.pending
    lines = read_dead_letters(dead)
    assert [line["reason"] for line in lines] == ["unavailable"] * 55
    assert [line["row"]["price_nanos"] for line in lines] == list(range(55))
    assert {line["stream"] for line in lines} == {STREAM}
    assert pub.stats.dead_lettered == {"unavailable": 55}
    assert "55 rows dead-lettered (unavailable" in err.getvalue()


def test_the_buffer_bound_dead_letters_the_oldest_rows(tmp_path: Path) -> None:
    dead = tmp_path / "dead.jsonl"
    pub = RedisPublisher(f"redis://127.0.0.1:{free_port()}/0", dead, buffer_rows=30, err=io.StringIO())
    pub.publish("trade", batch(0, 50))
    assert [line["row"]["price_nanos"] for line in read_dead_letters(dead)] == list(range(20))
    assert [p[1] for p in pub.pending][0] == "20-0"
    pub.close(wait_s=0)
    reasons = [line["reason"] for line in read_dead_letters(dead)]
    assert reasons == [Drop.BUFFER_FULL] * 20 + [Drop.UNAVAILABLE] * 30


def test_an_entry_redis_refuses_is_dead_lettered_the_rest_published(redis_url: str, tmp_path: Path) -> None:
    client = redis.Redis.from_url(redis_url)
    client.set("trades:binance:ETHUSDT", "not a stream")
    dead = tmp_path / "dead.jsonl"
    pub = RedisPublisher(redis_url, dead, err=io.StringIO())
    pub.publish("trade", pa.concat_tables([batch(0, 10), batch(10, 3, symbol="ETHUSDT")]))
    pub.close()
    assert _published(redis_url) == list(range(10))
    lines = read_dead_letters(dead)
    assert [line["reason"] for line in lines] == ["refused"] * 3
    assert "WRONGTYPE" in str(lines[0]["detail"])


@pytest.mark.parametrize("maxlen", [50])
def test_maxlen_trims_approximately(redis_url: str, tmp_path: Path, maxlen: int) -> None:
    pub = RedisPublisher(redis_url, tmp_path / "dead.jsonl", maxlen=maxlen)
    for i in range(10):
        pub.publish("trade", batch(i * 100, 100))
    pub.close()
    length = redis.Redis.from_url(redis_url).xlen(STREAM)
    # approximate trimming drops whole radix-tree nodes (100 entries by default), never below MAXLEN
    assert maxlen <= length <= maxlen + 100
    assert _published(redis_url)[-1] == 999
