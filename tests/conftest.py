"""Shared fixtures: the real-data folder (skipped with a reason when absent), a chdb warehouse.

``TAPEFLOW_FD_TRACE=PATH`` (opt-in) appends, after each test's teardown, the test's id and how many
file descriptors its process holds to ``PATH.<worker>`` (``PATH.main`` without xdist): a count that
grows from one test to the next and does not come back names a descriptor leak.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def _absl_keeps_off_the_capture() -> None:
    """absl's logging handler (imported through optax and JAX) keeps the sys.stderr of its import,
    which under pytest is the session's capture file, and closes that stream when it is shut down
    while sys.stderr is another object: a test under ``capfd`` whose code runs
    ``logging.config.dictConfig`` (Dagster, MLflow) closed the worker's capture, and every later
    test on that worker errored with 'I/O operation on closed file'. Its stream is the real stderr."""
    import sys

    try:
        from absl import logging as absl_logging
    except ImportError:
        return
    absl_logging.get_absl_handler().python_handler.stream = sys.__stderr__


_absl_keeps_off_the_capture()

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    """One persistent JAX compilation cache for the session, shared by the xdist workers and every
    child process they start (each inherits the environment): without it every process compiled the
    same detectors again (a Dagster materialization child spent ~1/3 of its CPU in XLA compiles, ~29
    of them, each identical in every child). The executables are the same, so no test sees another
    result. Compiles of any duration are kept (JAX's default keeps only those over 1 s); a size limit
    makes JAX guard reads and writes with a file lock, so a worker never reads a half-written entry.
    A cache directory set by the caller is used as it is.

    The session's cache starts as a copy of the checkout's (``kernels/jax_cache.py``: what ``make
    setup`` compiled), so no test compiles what the install already did; what the session adds stays
    in its own folder, and no test sees another run's entries beyond that copy."""
    if hasattr(config, "workerinput") or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return  # a worker inherits the controller's; a caller's own cache is left alone
    import shutil
    import tempfile

    cache = tempfile.mkdtemp(prefix="tapeflow-tests-jax-")
    config.add_cleanup(lambda: shutil.rmtree(cache, ignore_errors=True))
    os.environ["JAX_COMPILATION_CACHE_DIR"] = cache  # before kernels is imported: it reads this
    _seed_jax_cache(Path(cache))
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(4 << 30))
    # keys without the folder's path, as the checkout's were written (kernels/jax_cache.py)
    os.environ.setdefault("JAX_PERSISTENT_CACHE_ENABLE_XLA_CACHES", "none")
    if "jax" in sys.modules:  # JAX reads these variables when it is imported
        import jax

        jax.config.update("jax_persistent_cache_enable_xla_caches",
                          os.environ["JAX_PERSISTENT_CACHE_ENABLE_XLA_CACHES"])
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs",
                          float(os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]))
        jax.config.update("jax_compilation_cache_max_size", int(os.environ["JAX_COMPILATION_CACHE_MAX_SIZE"]))


def _seed_jax_cache(cache: Path) -> int:
    """Copy the checkout's warmed JAX cache into ``cache``; returns the entries copied. An entry file
    is never rewritten once written (JAX skips a key it has; eviction unlinks), so it is hard-linked
    where it can be; its access-time file, which every read rewrites, is copied."""
    import shutil

    from kernels.jax_cache import DIR

    copied = 0
    for entry in DIR.glob("*-cache") if DIR.is_dir() else ():
        atime = entry.with_name(entry.name.removesuffix("-cache") + "-atime")
        if not atime.is_file():
            continue  # an entry still being written (JAX writes the atime file after it)
        try:
            os.link(entry, cache / entry.name)
        except OSError:
            shutil.copyfile(entry, cache / entry.name)
        shutil.copyfile(atime, cache / atime.name)
        copied += 1
    return copied


def pytest_sessionstart(session: pytest.Session) -> None:
    """Drop compiled kernels a kernel source change left stale (numba checks only a function's own file)."""
    if not hasattr(session.config, "workerinput"):  # once, in the controlling process
        from tapeflow.warm import drop_stale

        drop_stale()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """After a test's teardown, this process's owner marks on lakes in its ``tmp_path`` are dropped:
    each held a descriptor for the worker's life, one more per test that wrote a lake."""
    tmp_path = (getattr(item, "funcargs", None) or {}).get("tmp_path")
    yield
    locks = sys.modules.get("tapeflow.storage.locks")
    if tmp_path is not None and locks is not None:
        locks.release_owners(tmp_path)


def pytest_runtest_logfinish(nodeid: str, location: tuple[str, int | None, str]) -> None:
    trace = os.environ.get("TAPEFLOW_FD_TRACE")
    if trace:
        held = len(os.listdir("/proc/self/fd")) - 1  # less the one listdir opened
        with open(f"{trace}.{os.environ.get('PYTEST_XDIST_WORKER', 'main')}", "a") as out:
            out.write(f"{held}\t{nodeid}\n")


def real_data_root() -> Path:
    return Path(os.environ.get("TAPEFLOW_REAL_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The shared real-data folder; tests using it skip, saying why, when it is absent."""
    root = real_data_root()
    if not (root / "README.md").is_file():
        pytest.skip(f"real data not found at {root} (set TAPEFLOW_REAL_DATA)")
    return root


def need(path: Path) -> Path:
    """Skip the calling test, saying why, when a real-data file is missing."""
    if not path.exists():
        pytest.skip(f"real-data file missing: {path}")
    return path


@pytest.fixture(scope="module")
def dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A chdb directory for the module (chdb opens one data directory per process at a time)."""
    return f"chdb://{tmp_path_factory.mktemp('chdb')}"


@pytest.fixture
def wh(dsn: str) -> Iterator[Any]:
    """The module's warehouse with every record table dropped."""
    from tapeflow.schemas import ALL_RECORDS
    from tapeflow.storage.warehouse import Warehouse

    with Warehouse(dsn) as warehouse:
        for name in ALL_RECORDS:
            warehouse.client.command(f"DROP TABLE IF EXISTS {name}")
        yield warehouse
