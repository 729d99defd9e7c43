"""The ``sim`` block path (compiled scan, rows as columns) against the per-line path: same rows,
rejects and bytes, on simulator output and on Hypothesis-mutated lines, whatever the chunk size."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tapeflow.simulator import simulate
from tapeflow.venues.base import merge
from tapeflow.venues.sim.block import decode_file
from tapeflow.venues.sim.messages import HEADER
from tapeflow.venues.sim.parse import decode
from tests.venues.blockpaths import assert_identical, mutated_lines


@pytest.fixture(scope="module")
def sim_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    minute_ns = 60 * 1_000_000_000
    start = 1_704_153_600_000_000_000 - 2 * minute_ns  # two files per symbol: a snapshot at each start
    return simulate(3, 1, 4 * minute_ns, tmp_path_factory.mktemp("sim"), "crypto", start_ns=start,
                    episodes_per_hour=0, progress=False).files


def test_simulator_files_identical_to_per_line_path(sim_files: list[Path]) -> None:
    per_line = list(decode(sim_files, fast=False))
    tables = assert_identical(per_line, list(decode(sim_files)))
    lines = sum(sum(1 for _ in gzip.open(p, "rb")) - 1 for p in sim_files)
    assert "rejected" not in tables and lines > 1000
    # small chunks (each file opens with a snapshot longer than them): every boundary, same rows
    for chunk in (7, 500):
        assert_identical(per_line, [c for p in sim_files for c in decode_file(p, chunk, "sim")])


# lines the mutations start from: a snapshot, every type, decimals of every shape
LINES = [
    "1,1,1,R,0,B,0,0", "2,2,2,S,7,B,100.01,100", "3,3,3,S,8,A,100.5,0.25", "4,4,4,A,9,B,99,1",
    "5,5,5,D,9,B,99,1", "6,6,6,E,7,B,100.01,40", "7,7,7,H,0,A,100.5,0.125", "8,9,10,A,11,A,100.000000001,3",
    "9223372036854775807,0,9223372036854775807,A,9223372036854775807,B,999999999.999999999,1",
]
ODD = ["NaN", "-", "+", " ", ",", ".", "e", "\r", "\t", "\x00", "\xff", "0", "00", "9", "-1", "R", "S",
       "Q", "B", "A", "99999999999999999999", "1e3", "\n"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=mutated_lines(LINES, ODD, 14), chunk=st.sampled_from([1, 2, 3, 100_000]), gz=st.booleans())
def test_mutated_lines_identical_to_per_line_path(tmp_path: Path, lines: list[bytes], chunk: int,
                                                  gz: bool) -> None:
    folder = tmp_path / "SIMX"
    folder.mkdir(exist_ok=True)
    path = folder / "2024-01-02.events.csv"
    body = HEADER.encode() + b"\n" + b"".join(lines)
    path.write_bytes(gzip.compress(body) if gz else body)
    tables = assert_identical(list(decode([path], fast=False)), list(decode_file(path, chunk, "sim")))
    rejected = tables["rejected"].num_rows if "rejected" in tables else 0
    assert rejected <= body.count(b"\n")  # at most one per line after the header


def test_bad_line_inside_a_snapshot_at_a_chunk_boundary(tmp_path: Path) -> None:
    # a rejected line does not end a snapshot: the S lines after it stay in it, whatever the cut
    folder = tmp_path / "SIMX"
    folder.mkdir()
    path = folder / "2024-01-02.events.csv"
    body = [HEADER, "1,1,1,R,0,B,0,0", "2,2,2,S,7,B,100,1", "3,3,3,Q,8,B,100,1", "4,4,4,S,9,A,101,1",
            "5,5,5,S,10,A,102,1", "6,6,6,A,11,B,99,1"]
    path.write_text("\n".join(body) + "\n")
    for chunk in (1, 2, 3, 4, 5):
        tables = merge(list(decode_file(path, chunk, "sim")))
        assert tables["rejected"].column("reason").to_pylist() == ["unknown_message"], chunk
        assert tables["order_event"].column("order_id").to_pylist() == [0, 7, 9, 10, 11], chunk


@pytest.mark.parametrize("lines", [0, 3, 6])
def test_a_file_ending_at_a_chunk_boundary(tmp_path: Path, lines: int) -> None:
    # the last take finds no line: the decode ends (a header-only file too)
    folder = tmp_path / "SIMX"
    folder.mkdir()
    path = folder / "2024-01-02.events.csv"
    body = [HEADER, "1,1,1,R,0,B,0,0", "2,2,2,S,7,B,100,1", "3,3,3,A,8,B,99,1", "4,4,4,A,9,A,101,1",
            "5,5,5,D,8,B,99,1", "6,6,6,D,9,A,101,1"][:lines + 1]
    path.write_text("\n".join(body) + "\n")
    assert_identical(list(decode([path], fast=False)), list(decode_file(path, 3, "sim")))
