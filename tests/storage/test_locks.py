"""The lake's commit lock: a second writer waits for the first's commit, saying so, and gives up
with a clear error after its timeout; the owner marks tell live writers from dead ones."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

import pytest

from tapeflow.errors import StorageError
from tapeflow.schemas.records import BOOK_DELTA
from tapeflow.storage import lake
from tapeflow.storage.locks import LakeLock, owner_alive, register_owner, release_owners
from tapeflow.storage.parts import temp_path
from tapeflow.storage.writer import Writer
from tests.storage.samples import synthetic_deltas


def test_a_commit_waits_for_the_holder_then_goes_on(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows = synthetic_deltas(200, seed=3)
    held = threading.Event()
    releasing: list[float] = []

    def hold() -> None:
        with LakeLock(tmp_path):
            held.set()
            time.sleep(0.5)
            releasing.append(time.monotonic())  # still holding the lock

    threading.Thread(target=hold).start()
    held.wait()
    with caplog.at_level(logging.WARNING, "tapeflow.storage.locks"), Writer(tmp_path) as writer:
        writer.replace(BOOK_DELTA, rows)
        # the commit ended after the holder let go: ordered by the holder's own clock reading, not by
        # how long this thread measured (a starved CI worker woke late after held.wait() and saw
        # less than the holder's 0.5 s)
        assert releasing and time.monotonic() >= releasing[0]
    assert "waiting for another writer (pid" in caplog.text
    assert lake.read(BOOK_DELTA, tmp_path).num_rows == rows.num_rows


def test_a_commit_gives_up_after_its_timeout_with_a_clear_error(tmp_path: Path) -> None:
    with LakeLock(tmp_path), Writer(tmp_path, lock_timeout_s=0.2) as writer:
        with pytest.raises(StorageError, match=r"locked by another writer \(pid \d+\) for more than 0.2 s"):
            writer.replace(BOOK_DELTA, synthetic_deltas(50, seed=1))
    assert lake.read(BOOK_DELTA, tmp_path).num_rows == 0


def test_owner_marks(tmp_path: Path) -> None:
    assert not owner_alive(tmp_path, 999_999_999)  # no mark: dead
    register_owner(tmp_path)
    assert owner_alive(tmp_path, os.getpid())


def test_a_released_mark_frees_its_descriptor_and_one_with_staging_entries_is_kept(tmp_path: Path) -> None:
    def held() -> int:
        return len(os.listdir("/proc/self/fd"))

    busy, done = tmp_path / "busy", tmp_path / "done"
    before = held()
    entry = temp_path(busy)  # registers the mark, as every writer does before staging anything
    entry.write_text("a staged file")
    register_owner(done)
    assert held() == before + 2
    assert release_owners(tmp_path) == [done.resolve()]  # busy still stages a file: kept
    assert held() == before + 1
    assert owner_alive(busy, os.getpid()) and not owner_alive(done, os.getpid())
    entry.unlink()
    assert release_owners(tmp_path) == [busy.resolve()]
    assert held() == before and not owner_alive(busy, os.getpid())


def test_an_appender_reloads_a_partition_another_writer_changed(tmp_path: Path) -> None:
    rows = synthetic_deltas(300, seed=4).slice(0, 300)
    first, second, other = rows.slice(0, 100), rows.slice(100, 100), rows.slice(200, 100)
    with Writer(tmp_path) as live:
        live.append(BOOK_DELTA, first, token="a")
        live.flush()
        with Writer(tmp_path) as batch:  # swaps the partition under the live writer's feet
            batch.merge(BOOK_DELTA, other)
        live.append(BOOK_DELTA, second, token="b")
        live.flush()
    got = lake.read(BOOK_DELTA, tmp_path)
    assert got.num_rows == 300
    assert sorted(got.column("ts_recv_ns").to_pylist()) == sorted(rows.column("ts_recv_ns").to_pylist())
