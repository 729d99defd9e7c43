"""``python -m tapeflow.warm``: the install compiles the kernels once; stale compiled code is dropped."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from kernels import jax_cache
from tapeflow import warm


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty numba cache folder (and JAX cache folder) in place of the checkout's."""
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "numba"))
    monkeypatch.setattr(jax_cache, "DIR", tmp_path / "jax")
    jax_cache.DIR.mkdir()
    folder = warm.cache_dirs()[0]
    folder.mkdir(parents=True)
    return folder


def _fake_compiled(folder: Path, modules: list[str]) -> None:
    for module in modules:
        (folder / f"{module}.some_kernel-12.py311.nbi").write_bytes(b"index")
        (folder / f"{module}.some_kernel-12.py311.1.nbc").write_bytes(b"code")


def _left(folder: Path) -> set[str]:
    return {p.name.split(".")[0] for p in folder.iterdir() if p.suffix in (".nbi", ".nbc")}


def test_a_kernel_change_drops_its_importers_too() -> None:
    # bars.py's 128-bit helpers are inlined into these modules' compiled code
    assert warm.dependents({"bars"}) == {"bars", "bars_live", "bars_threshold", "metrics"}
    assert warm.dependents({"_l2state"}) >= {"_l2state", "l2book_numba", "l2book"}
    assert "l3book" not in warm.dependents({"sim_rng"})


def test_drop_stale_keeps_what_did_not_change(cache: Path) -> None:
    modules = ["bars", "bars_live", "metrics", "l3book", "sim_rng"]
    _fake_compiled(cache, modules)
    state = warm.source_state()
    state["files"]["bars.py"] = "an older version"
    (cache / warm.STAMP).write_text(json.dumps(state | {"complete": True}))
    assert not warm.is_current()
    assert warm.drop_stale() == {"bars", "bars_live", "bars_threshold", "metrics"}
    assert _left(cache) == {"l3book", "sim_rng"}
    assert not warm.is_current()  # the stamp now says: these sources, not every kernel compiled
    assert warm.drop_stale() == set()


def test_new_numba_drops_everything(cache: Path) -> None:
    _fake_compiled(cache, ["l3book", "sim_rng"])
    state = warm.source_state() | {"env": ["0.1", "other python", "x", "y"], "complete": True}
    (cache / warm.STAMP).write_text(json.dumps(state))
    assert {"l3book", "sim_rng"} <= warm.drop_stale()
    assert _left(cache) == set()


def test_a_current_cache_returns_at_once(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (cache / warm.STAMP).write_text(json.dumps(warm.source_state() | {"complete": True}))

    def no_workloads(scratch: Path) -> list:
        raise AssertionError("a current cache compiled again")

    monkeypatch.setattr(warm, "workloads", no_workloads)
    lines: list[str] = []
    assert warm.warm(out=lines.append) is False
    assert warm.is_current() and "current" in lines[0]
    assert warm.main(["--check"]) == 0


def test_warm_compiles_then_says_current(cache: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[str] = []
    monkeypatch.setattr(warm, "workloads", lambda scratch: [("a", lambda: ran.append("a")),
                                                             ("b", lambda: ran.append("b"))])
    monkeypatch.setattr(warm, "live_command", lambda files, scratch: ["true"])
    monkeypatch.setattr(warm, "jax_command", lambda scratch: ["true"])
    assert warm.warm(scratch=tmp_path / "build", out=lambda line: None) is True
    assert ran == ["a", "b"] and warm.is_current()
    assert list((tmp_path / "build").iterdir()) == []  # the scratch inputs are gone
    assert warm.warm(out=lambda line: None) is False


def test_the_workloads_still_run(tmp_path: Path) -> None:
    """The warm step calls the commands' and assets' entry points: it must follow their changes."""
    steps = warm.workloads(tmp_path) + warm.jax_workloads(tmp_path)
    for _, run in steps:
        run()
    files = sorted((tmp_path / "sim").rglob("*.events.csv.gz"))
    assert files
    subprocess.run(warm.live_command(files, tmp_path), check=True, capture_output=True, timeout=600)
    assert any((tmp_path / "live").rglob("*.parquet"))
