"""``python -m bench``: run every benchmark module present and print one report."""

from __future__ import annotations

import importlib
import importlib.util
import time

from bench import Report, run_module

# bench.l2 is ours; other modules join by existing and exposing run(report) (see bench/__init__.py)
MODULES = ("bench.l2", "bench.l3", "bench.live", "bench.backfill", "bench.stages", "bench.decode",
           "bench.ingest")


def main() -> None:
    report = Report()
    t0 = time.perf_counter()
    for name in MODULES:
        if importlib.util.find_spec(name) is None:
            continue
        run_module(importlib.import_module(name), report)
    print(report.render())
    print(f"\nbench finished in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
