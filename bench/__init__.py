"""``make bench``: throughput of tapeflow's kernels against peers measured in the same run.

Contract for a benchmark module ``bench/<name>.py``: expose ``run(report: Report) -> None`` that
times its workloads and records them with :meth:`Report.add`; rows flagged ``ours`` are
tapeflow's, the others are peers, and each peer row shows ``ours / peer`` (the fastest of our
rows in the same section divided by the peer's rate). Timings never fail anything: they print.

Rates are per CPU second of this process (``time.process_time``): the machine is shared, and CPU
time is what "events/s per core" means for single-threaded kernels; wall-clock rates print too.

Headline figures (issue 8's goals) go through :meth:`Report.figure` (or :meth:`Report.record` with a
:class:`Goal`): each prints beside its goal and the figure measured before the work began ("today"),
in one table at the end of the report, with whether the goal was met. :func:`median_time` gives the
median of 3 timed runs after a warm-up (1 run with ``python -m bench --quick``).

A module declares its headline figures in a module-level ``FIGURES`` tuple of :class:`Goal`, so that
they show in the goals table even when they were not measured: a module that found no real data
calls :meth:`Report.skip` (its unrecorded figures print as "skipped: no real data"), and one that
raised gets them printed as failed (``python -m bench`` goes on with the next module).
:func:`real_file` finds a file under ``$TAPEFLOW_REAL_DATA``.

Also accepted (see :func:`run_module`): a zero-argument ``run()`` returning a list of dicts with
``name``, ``events`` and ``seconds``; rows whose name starts with "tapeflow" count as ours.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

_settings = {"quick": False}


@dataclass
class Row:
    """One measured implementation: ``events`` processed in ``seconds`` (best of the repeats)."""

    name: str
    events: int
    seconds: float
    ours: bool
    note: str = ""
    wall_seconds: float = 0.0

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else float("inf")


@dataclass(frozen=True)
class Goal:
    """A headline figure a benchmark module promises (declare them in the module's ``FIGURES``).

    Attributes:
        name: what is measured ("Binance JSON decode").
        unit: e.g. ``"M frames/s"``, ``"us"``, ``"s"``.
        goal: the goal in ``unit`` (None: reported only).
        before: the figure before the work, as text with its unit ("73k frames/s").
        higher_is_better: False for costs (latency, seconds, memory).
    """

    name: str
    unit: str
    goal: float | None
    before: str = ""
    higher_is_better: bool = True


@dataclass
class Figure:
    """A headline figure: ``value`` in ``unit`` against ``goal`` (and the figure before the work).

    ``value`` None means not measured; ``note`` then says why ("skipped: no real data", "failed: ...").
    """

    name: str
    value: float | None
    unit: str
    goal: float | None
    before: str = ""
    higher_is_better: bool = True
    note: str = ""

    @property
    def met(self) -> bool | None:
        if self.goal is None or self.value is None:
            return None
        return self.value >= self.goal if self.higher_is_better else self.value <= self.goal


@dataclass
class Section:
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


class Report:
    """Collects rows per section and prints them aligned: ``name  events/s  ratio-vs-ours``."""

    def __init__(self) -> None:
        self.sections: list[Section] = []
        self.figures: list[Figure] = []
        self.skip_reason = ""

    @property
    def quick(self) -> bool:
        """True under ``python -m bench --quick``: a module may also shrink its inputs."""
        return bool(_settings["quick"])

    def figure(self, name: str, value: float | None, unit: str, *, goal: float | None, before: str = "",
               higher_is_better: bool = True, note: str = "") -> Figure:
        """Record a headline figure, printed beside its goal in the report's last table.

        Args:
            name: what was measured ("Binance JSON decode").
            value: the measurement (a median of runs, timed after a warm-up); None when it could
                not be measured (``note`` says why).
            unit: e.g. ``"M frames/s"``, ``"us"``, ``"s"``, ``"GiB"``.
            goal: the goal in the same unit (None: reported only).
            before: the figure before this work, as text with its unit ("73k frames/s").
            higher_is_better: False for costs (latency, seconds, memory).
            note: what was measured, on what input.
        """
        fig = Figure(name, value, unit, goal, before, higher_is_better, note)
        self.figures.append(fig)
        return fig

    def record(self, goal: Goal, value: float | None, *, note: str = "") -> Figure:
        """Record the measurement of a declared :class:`Goal` (see :meth:`figure`)."""
        return self.figure(goal.name, value, goal.unit, goal=goal.goal, before=goal.before,
                           higher_is_better=goal.higher_is_better, note=note)

    def skip(self, reason: str = "no real data") -> None:
        """Say why the current module measures nothing (more): its unrecorded ``FIGURES`` print as skipped."""
        self.skip_reason = reason

    def missing(self, goals: tuple[Goal, ...] | list[Goal], note: str) -> None:
        """Add every goal of ``goals`` not recorded yet as not measured, with ``note`` as the reason."""
        recorded = {f.name for f in self.figures}
        for goal in goals:
            if goal.name not in recorded:
                self.record(goal, None, note=note)

    def section(self, title: str) -> None:
        """Start a section (ratios compare rows within one section only)."""
        self.sections.append(Section(title))

    def note(self, text: str) -> None:
        """A line printed under the current section's table (data source, caveats)."""
        self._current().notes.append(text)

    def add(self, name: str, events: int, seconds: float | tuple[float, float], *, ours: bool,
            note: str = "") -> Row:
        """Record a measurement in the current section.

        ``seconds`` is CPU seconds, or ``(cpu, wall)`` as :func:`best_time` returns.
        """
        cpu, wall = seconds if isinstance(seconds, tuple) else (seconds, seconds)
        row = Row(name, events, cpu, ours, note, wall)
        self._current().rows.append(row)
        return row

    def _current(self) -> Section:
        if not self.sections:
            self.section("benchmarks")
        return self.sections[-1]

    def render(self) -> str:
        """The whole report as text."""
        lines: list[str] = []
        for sec in self.sections:
            lines.append(f"\n== {sec.title}")
            best = max((r.events_per_s for r in sec.rows if r.ours), default=0.0)
            width = max((len(r.name) for r in sec.rows), default=10)
            if sec.rows:
                lines.append(f"  {'implementation':<{width}}  {'events/s (cpu)':>14}  {'ours/peer':>9}"
                             f"  {'events/s (wall)':>15}  note")
            for r in sec.rows:
                ratio = "-" if r.ours or not best else f"{best / r.events_per_s:8.1f}x"
                wall = r.events / r.wall_seconds if r.wall_seconds > 0 else float("inf")
                lines.append(f"  {r.name:<{width}}  {r.events_per_s:>14,.0f}  {ratio:>9}  {wall:>15,.0f}"
                             f"  {r.note}")
            lines.extend(f"  * {n}" for n in sec.notes)
        if self.figures:
            lines.append(self._render_figures())
        return "\n".join(lines)

    def _render_figures(self) -> str:
        rows = [("figure", "measured", "goal", "before", "met", "")]
        for f in self.figures:
            sign = ">=" if f.higher_is_better else "<="
            goal = "-" if f.goal is None else f"{sign} {f.goal:,.3g} {f.unit}"
            if f.value is None:
                measured, met = _unmeasured(f.note), "n/a"
            else:
                measured, met = f"{f.value:,.3g} {f.unit}", {True: "yes", False: "NO", None: "-"}[f.met]
            rows.append((f.name, measured, goal, f.before or "-", met, f"({f.note})" if f.note else ""))
        widths = [max(len(r[i]) for r in rows) for i in range(5)]
        lines = ["\n== goals (the issues' own): measured beside goal and the figure before the work"]
        for name, measured, goal, before, met, note in rows:
            lines.append(f"  {name:<{widths[0]}}  {measured:>{widths[1]}}  {goal:>{widths[2]}}  "
                         f"{before:>{widths[3]}}  {met:<{widths[4]}}  {note}".rstrip())
        return "\n".join(lines)


def _unmeasured(note: str) -> str:
    for word in ("skipped", "failed"):
        if note.startswith(word):
            return word
    return "missing"


def real_file(relative: str) -> Path | None:
    """``$TAPEFLOW_REAL_DATA/relative`` (default ``../shared/data``) when it exists, else None."""
    path = Path(os.environ.get("TAPEFLOW_REAL_DATA", "../shared/data")) / relative
    return path if path.exists() else None


def configure(*, quick: bool) -> None:
    """Set how :func:`median_time` and :func:`best_time` time (``quick``: one timed run each)."""
    _settings["quick"] = quick


def _repeats(repeats: int) -> int:
    return 1 if _settings["quick"] else repeats


def run_module(module: object, report: Report) -> None:
    """Run one benchmark module under either contract (``run(report)`` or rows returned)."""
    import inspect

    run = module.run  # type: ignore[attr-defined]
    positional = [p for p in inspect.signature(run).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if positional:
        run(report)
        return
    rows = run()
    report.section((module.__doc__ or module.__name__).strip().splitlines()[0])  # type: ignore[attr-defined]
    report.note("timed by the module itself: wall clock in both rate columns")
    for r in rows or []:
        report.add(str(r["name"]), int(r["events"]), float(r["seconds"]),
                   ours=str(r["name"]).startswith("tapeflow"))


def median_time(fn: Callable[[], object], *, repeats: int = 3, warmup: int = 1,
                setup: Callable[[], object] | None = None) -> tuple[float, float]:
    """Median (CPU seconds, wall seconds) of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls.

    ``setup`` runs untimed before each call (the warm-up calls too). Compilation, caches and imports
    are paid by the warm-up, so the figure is the steady state; report cold start separately.
    Under ``--quick`` one call is timed.
    """
    import statistics

    repeats = _repeats(repeats)
    for _ in range(warmup):
        if setup is not None:
            setup()
        fn()
    cpus, walls = [], []
    for _ in range(repeats):
        if setup is not None:
            setup()
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        cpus.append(time.process_time() - c0)
        walls.append(time.perf_counter() - t0)
    return statistics.median(cpus), statistics.median(walls)


def best_time(fn: Callable[[], object], *, repeats: int = 3, setup: Callable[[], object] | None = None
              ) -> tuple[float, float]:
    """Fastest (CPU seconds, wall seconds) of ``repeats`` calls of ``fn``.

    ``setup`` runs untimed before each call. The fastest run is the least disturbed one on a
    shared machine. Under ``--quick`` one call is timed.
    """
    repeats = _repeats(repeats)
    best_cpu = best_wall = float("inf")
    for _ in range(repeats):
        if setup is not None:
            setup()
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        best_cpu = min(best_cpu, time.process_time() - c0)
        best_wall = min(best_wall, time.perf_counter() - t0)
    return best_cpu, best_wall
