"""``python -m tapeflow.warm``: compile the numba and JAX kernels at install time, so no command pays for it.

Every numba kernel in ``kernels/`` is declared ``cache=True``: numba compiles it on its first call
with a new signature and writes the machine code beside the source (``kernels/__pycache__/*.nbi``
index and ``*.nbc`` data; ``$NUMBA_CACHE_DIR`` moves them). The index is keyed on the source file's
content hash, the numba version, the signature and this CPU, so a cache built here serves every
later process of this checkout on this machine, and cannot be shipped prebuilt. Without it, the
first ``tapeflow live`` on a fresh checkout spends ~20 s compiling before its first output.

``make setup`` runs this module: it replays small simulated inputs through the commands a user runs
(``simulate``, ``ingest``, ``book``, ``live --capture``) and the batch derivations of the Dagster
assets, in this process and in a ``tapeflow live`` child, which compiles every kernel signature
they reach. A stamp (a hash of the kernel sources, numba and Python) beside the cache makes a
second run return at once. numba's cache knows only the file of each function, not the kernels it
calls from other files, so when any kernel source changed every cached kernel is dropped first.

The JAX kernels (the live and batch detectors, the models' training and forward passes, the L2
book) go into JAX's persistent compilation cache in ``kernels/__pycache__/jax``
(``kernels.jax_cache``), compiled by the same ``tapeflow live`` child (``--signals``) and by a
second child running :func:`jax_workloads`. Every process that imports ``kernels`` reads that
cache unless ``JAX_COMPILATION_CACHE_DIR`` says otherwise, and the test session starts from a copy
of it. JAX keys an entry on the program itself, so nothing there goes stale: a changed kernel
compiles anew on first use.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import kernels
from kernels import jax_cache

STAMP = "tapeflow-warm.json"
SIM_SECONDS = 20


def kernel_sources() -> list[Path]:
    """Every Python source under ``kernels/``."""
    root = Path(kernels.__file__).parent
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def source_state() -> dict[str, Any]:
    """What the compiled cache depends on: numba, Python, the machine, and each kernel source's hash."""
    root = Path(kernels.__file__).parent
    files = {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in kernel_sources()}
    return {"env": [metadata.version("numba"), sys.version, platform.machine(), platform.processor()],
            "files": files, "jax": [metadata.version("jax"), metadata.version("jaxlib")]}


def dependents(changed: set[str]) -> set[str]:
    """Module names (``bars``) of ``changed`` and of every kernel module importing them, transitively."""
    imports: dict[str, set[str]] = {}
    for path in kernel_sources():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "kernels":
                parts = node.module.split(".")[1:]
                found.update([parts[-1]] if parts else [alias.name for alias in node.names])
            elif isinstance(node, ast.Import):
                found.update(a.name.split(".")[-1] for a in node.names if a.name.startswith("kernels."))
        imports[path.stem] = found
    closure = set(changed)
    grew = True
    while grew:
        grew = False
        for module, uses in imports.items():
            if module not in closure and uses & closure:
                closure.add(module)
                grew = True
    return closure


def cache_dirs() -> list[Path]:
    """Where numba keeps the compiled kernels of each ``kernels/`` folder (its own locator rules)."""
    folders = sorted({p.parent for p in kernel_sources()})
    custom = os.environ.get("NUMBA_CACHE_DIR")
    if not custom:
        return [folder / "__pycache__" for folder in folders]
    # numba.core.caching: <NUMBA_CACHE_DIR>/<folder name>_<sha1 of the folder's absolute path>
    return [Path(custom) / f"{folder.name}_{hashlib.sha1(str(folder.resolve()).encode()).hexdigest()}"
            for folder in folders]


def _stamp_path() -> Path:
    return cache_dirs()[0] / STAMP


def _read_stamp() -> dict[str, Any]:
    try:
        stamp = json.loads(_stamp_path().read_text())
    except (OSError, ValueError):
        return {}
    return stamp if isinstance(stamp, dict) else {}


def _write_stamp(state: dict[str, Any], *, complete: bool, seconds: float | None = None) -> None:
    path = _stamp_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state | {"complete": complete, "seconds": seconds}, indent=1) + "\n")
    tmp.replace(path)


def is_current() -> bool:
    """True when every kernel the workloads reach was compiled from these very sources."""
    stamp, now = _read_stamp(), source_state()
    same = stamp.get("env") == now["env"] and stamp.get("files") == now["files"]
    return same and stamp.get("jax") == now["jax"] and bool(stamp.get("complete")) and jax_cache.DIR.is_dir()


def drop_stale() -> set[str]:
    """Drop the compiled code that a kernel source change left stale; returns the modules dropped.

    numba checks only the hash of a function's own file: a kernel that calls (often inlines) a
    kernel of another file keeps its old machine code when that file changes. So a change to
    ``bars.py`` drops ``bars``, ``bars_live``, ``bars_threshold`` and ``metrics`` (its importers),
    and a new numba or Python drops everything. The stamp then records the current sources, as
    not complete when anything changed.
    """
    stamp, now = _read_stamp(), source_state()
    old, files = stamp.get("files"), now["files"]
    if not isinstance(old, dict) or stamp.get("env") != now["env"]:
        stale = {Path(name).stem for name in [*files, *(old if isinstance(old, dict) else ())]}
    else:
        changed = {Path(n).stem for n in set(files) | set(old) if files.get(n) != old.get(n)}
        stale = dependents(changed) if changed else set()
    if stamp and not stale:
        return set()
    _drop(stale)
    _write_stamp(now, complete=bool(stamp.get("complete")) and not stale)
    return stale


def drop_cache() -> int:
    """Delete every compiled kernel (numba's ``.nbi``/``.nbc`` files of kernel modules, the JAX
    cache) and the stamp; returns how many numba files went."""
    dropped = _drop({p.stem for p in kernel_sources()})
    shutil.rmtree(jax_cache.DIR, ignore_errors=True)
    _stamp_path().unlink(missing_ok=True)
    return dropped


def _drop(stems: set[str]) -> int:
    dropped = 0
    for folder in cache_dirs():
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if path.suffix in (".nbi", ".nbc") and path.name.split(".")[0] in stems:
                path.unlink(missing_ok=True)
                dropped += 1
    return dropped


def workloads(scratch: Path) -> list[tuple[str, Callable[[], object]]]:
    """The runs that reach every kernel signature the commands and the assets use, in order."""
    sim = scratch / "sim"
    files: list[Path] = []

    def simulate() -> None:
        from tapeflow.simulator import simulate

        files.extend(simulate(3, 1, SIM_SECONDS * 10**9, sim, "crypto", progress=False).files)
        simulate(3, 1, SIM_SECONDS * 10**9, scratch / "equity", "equity", progress=False)

    def book() -> None:
        import numpy as np

        from kernels.l3book import apply_l3, new_l3_state
        from tapeflow.book.rebuild import snapshots_for_format
        from tapeflow.venues import get_format
        from tapeflow.venues.base import merge

        for interval_ns in (1_000_000_000, None):
            snapshots_for_format("sim", files, levels=10, interval_ns=interval_ns)
        # a busy day outgrows the initial order table: tiny tables make the kernels grow them here
        events = merge(list(get_format("sim").decode(files)))["order_event"]
        columns = [events.column(c).combine_chunks().to_numpy(zero_copy_only=False)
                   for c in ("order_id", "action", "side", "price_nanos", "size_nanos", "flags")]
        apply_l3(new_l3_state(order_capacity=16, level_capacity=8), *columns, levels=10,
                 snapshot_rows=np.array([len(columns[0]) - 1]))

    def l2_and_derived() -> None:
        from tapeflow.book.l2 import book_snapshots, quotes_from_deltas
        from tapeflow.book.stage import BookStage
        from tapeflow.derived import bars_for, features
        from tapeflow.venues import get_format
        from tapeflow.venues.base import merge

        tables = merge(list(get_format("sim").decode(files)))
        deltas, trades = tables["book_delta"], tables["trade"]
        snaps = book_snapshots(deltas, levels=10, interval_ns=1_000_000_000)
        book_snapshots(deltas, levels=10)
        quotes = quotes_from_deltas(deltas)
        for interval in ("1s", "1m", "tick:50", "volume:1000000000", "dollar:1000000000000000"):
            bars_for(trades, interval)
        features(snaps, quotes, trades, intervals=("1s", "1m"), levels=10)
        stage = BookStage("l2")  # the live flow's book on price-level venues (the sim flow takes L3)
        for start in range(0, deltas.num_rows, 4096):
            stage.apply({"book_delta": deltas.slice(start, 4096)})
        stage.close()

    def ingest() -> None:
        from tapeflow.storage.ingest import ingest

        ingest("sim", files, lake=scratch / "lake", clickhouse=None, progress=False)

    def lobster() -> None:
        # the LOBSTER block path's own kernels (sim's decode compiles the shared CSV scanner)
        from tapeflow.venues import get_format

        stem = scratch / "lobster" / "XYZ_2012-06-21_34200000_57600000_{}_1.csv"
        stem.parent.mkdir(parents=True, exist_ok=True)
        paths = [Path(str(stem).format(k)) for k in ("message", "orderbook")]
        paths[0].write_text("34200.01,1,1,100,2238200,1\n34200.5,4,1,100,2238200,1\n")
        paths[1].write_text("2239500,100,2238200,100\n2239500,100,2231800,10\n")
        list(get_format("lobster").decode(paths))

    def binance() -> None:
        # the Binance block path's kernels (tapeflow/venues/binance/scan.py and the L2 block walk),
        # which every live Binance client loads when it is built: on an empty cache the first client
        # of a process compiled them (~18 s of CPU measured under load, a test's 7.5 s alone)
        from tapeflow.venues.binance.client import made_up_session

        made_up_session()

    return [("simulate", simulate), ("book", book), ("l2 book, bars, metrics, features", l2_and_derived),
            ("ingest", ingest), ("lobster decode", lobster), ("binance block decode", binance)]


def jax_workloads(scratch: Path) -> list[tuple[str, Callable[[], object]]]:
    """The JAX kernels the batch detectors and the models compile, over ``workloads``' simulated
    days in ``scratch`` (run by :func:`jax_command`'s child, its cache pointed at ``kernels.jax_cache``)."""

    def detectors() -> None:
        from tapeflow.signals.config import DEFAULT_PATH, load
        from tapeflow.signals.detect import detect_format

        for folder, preset in (("sim", "crypto"), ("equity", "equity")):
            files = sorted((scratch / folder).rglob("*.events.csv.gz"))
            detect_format("sim", files, load(DEFAULT_PATH), preset=preset)

    def models() -> None:
        # every kind's training step (a fixed batch shape per kind and input width), its validation
        # loss and its forward pass; four short equity days make the folds the walk-forward needs
        from kernels.ml_train import TrainConfig
        from tapeflow.ml.dataset import model_features, segment
        from tapeflow.ml.evaluate import examples_for_file
        from tapeflow.ml.examples import ExampleParams
        from tapeflow.ml.walkforward import WalkForwardConfig, walk_forward
        from tapeflow.simulator import simulate

        params, segs = ExampleParams(), []
        for d in range(4):
            summary = simulate(7 + d, 1, 10 * 60 * 10**9, scratch / "models", "equity", progress=False,
                               start_ns=1_704_067_200_000_000_000 + d * 86_400 * 10**9)
            ((_, table),) = examples_for_file("sim", sorted(summary.files)[-1], params)
            segs.append(segment(table, 10, params, f"day{d}"))
        cfg = WalkForwardConfig(horizon_s=10, train_folds=2, models=("logreg", "mlp", "tcn"),
                                train=TrainConfig(max_steps=25, eval_every=25))
        walk_forward(segs, model_features(params), cfg)

    return [("detectors (JAX)", detectors), ("models (JAX)", models)]


def jax_command(scratch: Path) -> list[str]:
    """The child that runs :func:`jax_workloads` over ``scratch`` (``--jax-workloads``)."""
    return [sys.executable, "-m", "tapeflow.warm", "--jax-workloads", str(scratch)]


def live_command(files: Sequence[Path], scratch: Path) -> list[str]:
    """``tapeflow live`` over ``files`` into ``scratch``: the flow's own kernels, in its own process,
    with the live detectors (JAX) on."""
    return [sys.executable, "-m", "tapeflow.cli", "live", "--capture", *map(str, files), "--format", "sim",
            "--lake", str(scratch / "live"), "--no-clickhouse", "--signals"]


def warm(*, scratch: Path | None = None, force: bool = False, out: Callable[[str], object] = print) -> bool:
    """Build the kernel cache unless it is current; True when it compiled.

    Args:
        scratch: where the small inputs and outputs go (default: a temporary folder under ``build/``,
            removed afterwards).
        force: rebuild even when the stamp says the cache is current.
        out: where progress lines go.

    Raises:
        subprocess.CalledProcessError: the ``tapeflow live`` child failed.
    """
    had_cache = _stamp_path().exists()
    stale = drop_cache() if force else len(drop_stale())
    if is_current():
        out(f"kernels: compiled cache current ({_stamp_path().parent})")
        return False
    state = source_state()  # the sources this compile starts from (an edit meanwhile leaves it stale)
    started = time.perf_counter()
    base = scratch or Path("build")
    base.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="tapeflow-warm-", dir=base))
    children: list[tuple[str, subprocess.Popen[str]]] = []
    try:
        steps = workloads(folder)
        for name, run in steps[:1]:
            _timed(name, run, out)
        # the flow and the JAX kernels compile in processes of their own meanwhile (two cores: about
        # half the wall time), the JAX ones into the checkout's persistent cache, every compile kept
        files = sorted((folder / "sim").rglob("*.events.csv.gz"))
        env = os.environ | jax_cache.settings(jax_cache.DIR, min_compile_s=0)
        t0 = time.perf_counter()
        for name, argv in (("live flow", live_command(files, folder)), ("JAX kernels", jax_command(folder))):
            children.append((name, subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                                    text=True, env=env)))
        for name, run in steps[1:]:
            _timed(name, run, out)
        for name, child in children:
            _, err = child.communicate()
            if child.returncode:
                raise subprocess.CalledProcessError(child.returncode, child.args, stderr=err)
            out(f"kernels: {name} compiled in {time.perf_counter() - t0:.1f} s (in parallel)")
    finally:
        for _, child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
        shutil.rmtree(folder, ignore_errors=True)
    elapsed = time.perf_counter() - started
    _write_stamp(state, complete=True, seconds=round(elapsed, 1))
    note = f" (the compiled code of {stale} modules was stale)" if stale and had_cache and not force else ""
    out(f"kernels: compiled into {_stamp_path().parent} in {elapsed:.0f} s{note}")
    return True


def _timed(name: str, run: Callable[[], object], out: Callable[[str], object]) -> None:
    t0 = time.perf_counter()
    run()
    out(f"kernels: {name} compiled in {time.perf_counter() - t0:.1f} s")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m tapeflow.warm [--force] [--check] [--scratch DIR]``."""
    p = argparse.ArgumentParser(prog="python -m tapeflow.warm", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--force", action="store_true", help="recompile even when the cache is current")
    p.add_argument("--check", action="store_true", help="exit 1 unless the cache is current")
    p.add_argument("--drop", action="store_true", help="delete the compiled kernels and the stamp")
    p.add_argument("--scratch", type=Path, help="folder for the small inputs (default build/)")
    p.add_argument("--jax-workloads", type=Path, help=argparse.SUPPRESS)  # warm()'s JAX child
    args = p.parse_args(argv)
    if args.jax_workloads:
        for name, run in jax_workloads(args.jax_workloads):
            _timed(name, run, lambda line: print(line, flush=True))
        return 0
    if args.check:
        current = is_current()
        print(f"kernels: compiled cache {'current' if current else 'NOT current'} ({cache_dirs()[0]})")
        return 0 if current else 1
    if args.drop:
        print(f"kernels: {drop_cache()} compiled kernel files dropped")
        return 0
    try:
        warm(scratch=args.scratch, force=args.force, out=lambda line: print(line, flush=True))
    except Exception:
        # an install step: the traceback is for whoever changed the entry points the workloads call
        traceback.print_exc()
        print("kernels: compiling ahead failed (tests/test_warm.py shows why); commands will compile "
              "their kernels on first use", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
