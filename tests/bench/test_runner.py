"""``python -m bench``: a module that raises costs only its own figures; the goals table comes last."""

from __future__ import annotations

import io
import sys
import uuid
from pathlib import Path

import pytest

from bench import Figure, Goal, Report, configure, median_time
from bench.__main__ import main

RECORDS = '''
from bench import Goal

FIGURES = (Goal("fake decode", "M frames/s", 1.0, before="0.07 M frames/s"),
           Goal("fake latency", "us", 50.0, before="1400 us", higher_is_better=False),
           Goal("fake extra", "s", None))

def run(report):
    report.section("fake section")
    report.add("tapeflow fake", 1000, 0.5, ours=True)
    report.record(FIGURES[0], 0.5)
    report.record(FIGURES[1], 20.0)
    report.record(FIGURES[2], 3.0)
'''
RAISES = '''
from bench import Goal

FIGURES = (Goal("boom figure", "M events/s", 5.0, before="3.5 M events/s"),)

def run(report):
    report.section("boom section")
    raise RuntimeError("kaboom in the module")
'''
RAISES_UNDECLARED = '''
def run(report):
    raise ValueError("no figures declared")
'''
SKIPS = '''
from bench import Goal

FIGURES = (Goal("needs real data", "M frames/s", 1.0, before="73k frames/s"),)

def run(report):
    report.section("skipper")
    report.skip("no real data")
'''


@pytest.fixture
def fake_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    name = f"fakebench_{uuid.uuid4().hex[:8]}"
    pkg = tmp_path / name
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    for module, text in (("records", RECORDS), ("raises", RAISES), ("undeclared", RAISES_UNDECLARED),
                         ("skips", SKIPS)):
        (pkg / f"{module}.py").write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    for key in [k for k in sys.modules if k.startswith(name)]:
        del sys.modules[key]


def _run(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        rc = main(argv, out=out, err=err)
    finally:
        configure(quick=False)
    return rc, out.getvalue(), err.getvalue()


def _goal_line(text: str, name: str) -> str:
    table = text.split("== goals")[1]
    return next(line for line in table.splitlines() if line.strip().startswith(name))


def test_a_raising_module_is_reported_and_the_others_still_run(fake_package: str) -> None:
    modules = ",".join(f"{fake_package}.{m}" for m in ("raises", "records", "undeclared"))
    rc, out, err = _run(["--only", modules])
    assert rc == 1
    assert "kaboom in the module" in err and "Traceback" in err
    assert f"bench: {fake_package}.raises FAILED (RuntimeError: kaboom in the module)" in err
    assert f"bench: {fake_package}.records done in" in err
    assert "FAILED: " in err.splitlines()[-1]
    # the goals table is the last thing printed, after every section
    assert out.rindex("== goals") > out.rindex("== fake section")
    boom = _goal_line(out, "boom figure")
    assert "failed" in boom and "n/a" in boom and "RuntimeError: kaboom" in boom and "3.5 M events/s" in boom
    assert "failed: ValueError: no figures declared" in _goal_line(out, f"{fake_package}.undeclared")


def test_goals_table_says_yes_no_and_dash(fake_package: str) -> None:
    rc, out, _ = _run(["--only", f"{fake_package}.records"])
    assert rc == 0
    decode = _goal_line(out, "fake decode").split()
    assert decode[-1] == "NO" and "0.07 M frames/s" in " ".join(decode)
    assert _goal_line(out, "fake latency").split()[-1] == "yes"
    extra = _goal_line(out, "fake extra").split()
    assert extra[-1] == "-" and extra[-2] == "-"  # no goal: '-' in the goal column and in 'met'


def test_figures_of_a_module_without_data_show_as_skipped(fake_package: str) -> None:
    rc, out, _ = _run(["--only", f"{fake_package}.skips"])
    assert rc == 0
    line = _goal_line(out, "needs real data")
    assert "skipped" in line and "(skipped: no real data)" in line and "73k frames/s" in line


def test_unknown_module_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = _run(["--only", "no_such_bench_module"])
    assert rc == 2 and "no module bench.no_such_bench_module" in err


def test_quick_times_one_run() -> None:
    calls: list[int] = []
    configure(quick=True)
    try:
        median_time(lambda: calls.append(1), repeats=3, warmup=1)
    finally:
        configure(quick=False)
    assert len(calls) == 2  # the warm-up and one timed run
    median_time(lambda: calls.append(1), repeats=3, warmup=1)
    assert len(calls) == 6


def test_render_without_goal_and_missed_goal() -> None:
    report = Report()
    report.figure("a", 2.0, "s", goal=1.0, higher_is_better=False, before="9 s")
    report.figure("b", 2.0, "s", goal=None)
    report.record(Goal("c", "s", 1.0), None, note="skipped: no real data")
    text = report.render()
    assert _goal_line(text, "a").split()[-1] == "NO"
    assert _goal_line(text, "b").split()[-1] == "-"
    assert Figure("c", None, "s", 1.0).met is None
