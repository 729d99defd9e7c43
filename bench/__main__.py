"""``python -m bench [--only MODULE[,MODULE]] [--quick]``: run the benchmark modules, print one report.

Progress goes to stderr (each module's name, then its elapsed seconds); the report goes to stdout
and ends with the goals table. A module that raises is reported (its traceback on stderr, its
figures marked failed in the goals table) and the run goes on; the exit code is 1 when any
module failed, 2 for an unknown module name.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import time
import traceback
from collections.abc import Sequence
from typing import IO

from bench import Goal, Report, configure, run_module

# bench.l2 is ours; other modules join by existing and exposing run(report) (see bench/__init__.py)
MODULES = ("bench.l2", "bench.l3", "bench.book_stage", "bench.live", "bench.backfill", "bench.stages",
           "bench.decode", "bench.ingest", "bench.coldstart", "bench.signals", "bench.signals_walls",
           "bench.signals_hidden", "bench.signals_institutional", "bench.signals_stealth",
           "bench.signals_spoofing_l2", "bench.options_iv", "bench.derivatives", "bench.alerts",
           "bench.bus", "bench.models", "bench.dashboard", "bench.backtest", "bench.failover",
           "bench.paper", "bench.ml_live",
           "bench.paper_report",
           "bench.step_memory")


def main(argv: Sequence[str] | None = None, *, out: IO[str] | None = None, err: IO[str] | None = None) -> int:
    """Entry point of ``python -m bench``; returns the exit code."""
    out, err = out or sys.stdout, err or sys.stderr
    args = _parser().parse_args(argv)
    names = MODULES if not args.only else [_module_name(n) for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if importlib.util.find_spec(n) is None]
    if args.only and unknown:
        short = ", ".join(n.removeprefix("bench.") for n in MODULES)
        print(f"bench: no module {', '.join(unknown)} (known: {short})", file=err)
        return 2
    configure(quick=args.quick)
    report = Report()
    started = time.perf_counter()
    failed = run_all([n for n in names if n not in unknown], report, err=err)
    print(report.render(), file=out, flush=True)
    print(f"bench: finished in {time.perf_counter() - started:.0f} s"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""), file=err, flush=True)
    return 1 if failed else 0


def run_all(names: Sequence[str], report: Report, *, err: IO[str]) -> list[str]:
    """Run each benchmark module into ``report``; returns the names of the modules that raised.

    A module's declared ``FIGURES`` that it did not record are added as not measured: skipped
    (with the reason the module gave :meth:`Report.skip`) or failed (with the error).
    """
    failed = []
    for name in names:
        print(f"bench: {name} ...", file=err, flush=True)
        t0 = time.perf_counter()
        report.skip_reason = ""
        module, error = None, None
        try:
            module = importlib.import_module(name)
            run_module(module, report)
        except Exception as exc:  # a broken module must not cost the figures of the others
            error = f"{type(exc).__name__}: {exc}"
            traceback.print_exc(file=err)
            failed.append(name)
        elapsed = time.perf_counter() - t0
        goals: tuple[Goal, ...] = tuple(getattr(module, "FIGURES", ()))
        if error is not None:
            report.missing(goals or (Goal(f"{name}: every figure", "", None),), f"failed: {error}")
        elif report.skip_reason:
            report.missing(goals, f"skipped: {report.skip_reason}")
        else:
            report.missing(goals, "missing: the module did not record it")
        outcome = f"FAILED ({error})" if error else "done"
        print(f"bench: {name} {outcome} in {elapsed:.1f} s", file=err, flush=True)
    return failed


def _module_name(text: str) -> str:
    text = text.strip()
    return text if "." in text else f"bench.{text}"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", metavar="MODULE[,MODULE]",
                   help=f"run only these modules ({', '.join(n.removeprefix('bench.') for n in MODULES)})")
    p.add_argument("--quick", action="store_true", help="one timed run per measurement instead of 3")
    return p


if __name__ == "__main__":
    raise SystemExit(main())
