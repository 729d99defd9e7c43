"""The soak: the simulator feed paced through the replay server into ``tapeflow live`` for minutes.

``make soak`` (``python -m bench.soak``; not part of ``make test`` nor of ``python -m bench``):

1. simulate a base tape (10 simulated minutes of one instrument, cached under ``SOAK_DIR``);
2. calibrate: serve it as fast as possible to ``tapeflow live`` and take the frames/s the flow
   processes (from its Prometheus metrics, see :func:`calibrate`);
3. loop the base tape into one long enough for the soak (each copy after the first shifted in time
   and sequence, and starting with the simulator's ``R`` reset, so the book never grows across
   copies; :class:`LoopedTape`, made as it is read) and serve it from a replay server in this
   process at ``SOAK_LOAD`` (70 %) of that rate for ``SOAK_MINUTES`` (25);
4. every 10 s: the RSS of ``tapeflow live`` and its flow process, and the flow's Prometheus
   metrics (events in, the batch-latency histogram).

It prints the samples, the RSS slope after the warm-up (least squares, MiB/min) and the p99 batch
latency after the warm-up, and exits 1 when the slope is above its bound (docs/reliability.md
says why the bound is what it is).

Settings (environment): SOAK_MINUTES (25), SOAK_LOAD (0.7), SOAK_WARMUP_MINUTES (a fifth of the
run, at least 1), SOAK_DIR (a temporary folder), SOAK_SAMPLE_S (10), SOAK_MAX_FPS (skip the
calibration: the max frames/s of an earlier one).
"""

from __future__ import annotations

import gzip
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tapeflow.replay.protocol import Frame, dumps, loads

SYMBOL = "SIM-BTCUSDT"
BASE_DURATION = "10m"
CALIBRATE_S = 180.0  # at most; it stops once the base tape is processed
# the smallest per-event retention a Python flow can have: one int (28 B) in a list slot (8 B)
SMALLEST_LEAK_BYTES = 36
_METRIC = re.compile(r'^(\w+)(?:\{([^}]*)\})? ([0-9.eE+-]+|NaN|\+Inf)$')


@dataclass
class Sample:
    """One look at the running flow."""

    t_s: float
    rss_mib: float
    events_in: float
    buckets: dict[float, float] = field(default_factory=dict)  # le -> cumulative count


def _env(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(*args: str, **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "tapeflow.cli", *args], text=True, **kw)  # type: ignore[call-overload]


def base_tape(work: Path) -> Path:
    """The simulated base file (made once per ``work`` folder)."""
    out = work / "base"
    found = sorted(out.rglob("*.events.csv.gz"))
    if not found:
        subprocess.run([sys.executable, "-m", "tapeflow.cli", "simulate", "--instruments", "1", "--duration",
                        BASE_DURATION, "--out", str(out)], check=True, stdout=subprocess.DEVNULL)
        found = sorted(out.rglob("*.events.csv.gz"))
    return found[0]


class LoopedTape(Sequence):
    """The base tape's frames ``copies`` times over, made as the server reads them.

    Each copy after the first is shifted in time and sequence (and starts with the simulator's
    ``R`` reset). A 25-minute tape held as frames would take tens of GB (about 4 KB a frame in the
    replay server), so frames are made when the server's producer takes them, just before it
    waits for their due time; their ``ts_recv`` is then set to that due time on the wall clock
    (``ts_event`` keeps its recorded distance before it), so the flow's
    ``tapeflow_batch_latency_seconds`` (its sink's clock minus a batch's newest ``ts_recv``)
    measures from the server's send to the flow's output, and the health stage judges a feed
    that is live rather than a recording of 2024.
    """

    def __init__(self, base: list[Frame], copies: int, speed: float) -> None:
        self.base, self.copies, self.speed = base, copies, speed
        self.rec0 = base[0].recv_ns
        self.span_ns = base[-1].recv_ns - self.rec0 + 1_000_000_000
        self.top_seq = max(loads(f.payload)["seq"] for f in base)
        self.wall0_ns: int | None = None  # the wall time the tape's recorded start stands for
        self.anchored = False

    def __len__(self) -> int:
        return len(self.base) * self.copies

    def __getitem__(self, i: int) -> Frame:  # type: ignore[override]
        c, j = divmod(i, len(self.base))
        return self._shift(self.base[j], c)

    def __iter__(self) -> Iterator[Frame]:
        for c in range(self.copies):
            for frame in self.base:
                yield self._shift(frame, c)

    def _shift(self, frame: Frame, c: int) -> Frame:
        recv_ns = frame.recv_ns + c * self.span_ns
        msg = loads(frame.payload)
        if not self.anchored and recv_ns > self.rec0:
            # taken right after the first frame went out: the server holds the first one until a
            # client subscribes and anchors its pacing there, so the first frame's time is early
            # by that wait (seconds: a jump of the recorded years would be a hostile feed)
            self.wall0_ns, self.anchored = time.time_ns() - int((recv_ns - self.rec0) / self.speed), True
        elif self.wall0_ns is None:
            self.wall0_ns = time.time_ns()
        wall_ns = self.wall0_ns + int((recv_ns - self.rec0) / self.speed)
        msg["ts_event"], msg["ts_recv"] = wall_ns - (msg["ts_recv"] - msg["ts_event"]), wall_ns
        msg["seq"] += c * self.top_seq
        return Frame(recv_ns, dumps(msg), frame.key, frame.location, frame.send)

    @property
    def recorded_fps(self) -> float:
        """Frames per second of recorded time."""
        return len(self.base) / ((self.base[-1].recv_ns - self.rec0) / 1e9)


class Server:
    """``tapeflow replay-server --format sim`` in a process of its own."""

    def __init__(self, tape: Path, speed: float | None) -> None:
        pace = ["--as-fast-as-possible"] if speed is None else ["--speed", f"{speed:.6f}"]
        self.proc = _cli("replay-server", "--format", "sim", str(tape), *pace, "--progress-every", "600s",
                         stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if "websocket" in line:
                self.ws, self.status_url = line.split()[2], line.split()[-1]
                return
        raise RuntimeError(f"replay-server exited with {self.proc.wait()}")

    def status(self) -> dict:
        with urllib.request.urlopen(self.status_url, timeout=10) as r:
            return json.load(r)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _live(ws: str, seconds: float, work: Path, metrics_port: int) -> subprocess.Popen[str]:
    work.mkdir(parents=True, exist_ok=True)
    with open(work / "live.log", "w") as log:  # a file, not a pipe nobody reads for 25 minutes
        return _cli("live", "--venue", "sim", "--symbols", SYMBOL, "--endpoint", ws, "--no-clickhouse",
                    "--lake", str(work / "lake"), "--journal", str(work / "journal"),
                    "--duration", f"{int(seconds)}s", "--metrics-port", str(metrics_port),
                    stdout=log, stderr=subprocess.STDOUT)


def calibrate(base: Path, base_frames: int, work: Path) -> float:
    """Frames/s ``tapeflow live`` processes when the whole base tape is there at once.

    The server writes the tape far faster than the flow decodes it (the connector queues what it
    reads), so the rate is the flow's: the base tape's frames over the time from the flow's first
    event to its last, read from its ``tapeflow_events_in_total`` every second.
    """
    server = Server(base.parent.parent, None)
    port = _free_port()
    live = _live(server.ws, CALIBRATE_S + 30, work / "calibrate", port)
    points: list[tuple[float, float]] = []
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < CALIBRATE_S and live.poll() is None:
            time.sleep(1)
            events, _ = _scrape(port)
            if events > 0:
                points.append((time.monotonic(), events))
            if len(points) > 5 and points[-1][1] == points[-6][1]:
                break  # no new event for 5 s: the tape is done
    finally:
        _stop(live)
        server.stop()
    if len(points) < 3:
        raise RuntimeError(f"calibration saw too few samples: {points}")
    done = next(t for t, e in points if e == points[-1][1])
    return base_frames / max(done - points[0][0], 1.0)


def _stop(live: subprocess.Popen[str]) -> None:
    """Ctrl-C, as a user stops it (SIGTERM stops it the same way since `tapeflow live` forwards it)."""
    if live.poll() is None:
        live.send_signal(signal.SIGINT)
    try:
        live.wait(timeout=120)
    except subprocess.TimeoutExpired:
        live.kill()
        live.wait()


def _tree_rss_mib(pid: int) -> float:
    """RSS of ``pid`` and its descendants (Linux ``/proc``)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        m = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        total += int(m.group(1)) if m else 0
    return total / 1024


def _scrape(port: int) -> tuple[float, dict[float, float]]:
    """(events in, the batch-latency histogram's cumulative buckets) from the flow's /metrics."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return math.nan, {}
    events, buckets = 0.0, {}
    for line in text.splitlines():
        m = _METRIC.match(line)
        if not m:
            continue
        name, labels, value = m.groups()
        if name == "tapeflow_events_in_total":
            events += float(value)
        elif name == "tapeflow_batch_latency_seconds_bucket":
            le = re.search(r'le="([^"]+)"', labels or "")
            if le:
                buckets[math.inf if le.group(1) == "+Inf" else float(le.group(1))] = float(value)
    return events, buckets


def quantile(q: float, before: dict[float, float], after: dict[float, float]) -> float:
    """The ``q`` quantile of the observations between two scrapes of a cumulative histogram
    (linear within the bucket, as Prometheus' ``histogram_quantile``); nan when there are none."""
    edges = sorted(after)
    counts = [after[e] - before.get(e, 0.0) for e in edges]
    if not counts or counts[-1] <= 0:
        return math.nan
    rank = q * counts[-1]
    lower, below = 0.0, 0.0
    for edge, cum in zip(edges, counts, strict=True):
        if cum >= rank:
            if math.isinf(edge):
                return lower
            return lower + (edge - lower) * (rank - below) / max(cum - below, 1e-12)
        lower, below = edge, cum
    return edges[-2] if len(edges) > 1 else math.nan


def soak(base: Path, load: float, max_fps: float, seconds: float, work: Path,
         sample_s: float) -> list[Sample]:
    """Serve the looped base tape at ``load`` x ``max_fps`` to ``tapeflow live`` for ``seconds``,
    sampling every ``sample_s``."""
    from tapeflow.replay.server import ReplayServer

    server = ReplayServer("sim", [base.parent.parent], speed=1.0)
    target_fps = load * max_fps
    copies = max(1, math.ceil(target_fps * (seconds + 60) / len(server.tape)))
    recorded_fps = len(server.tape) / ((server.tape[-1].recv_ns - server.tape[0].recv_ns) / 1e9)
    server.speed = target_fps / recorded_fps
    server.tape = tape = LoopedTape(server.tape, copies, server.speed)  # type: ignore[assignment]
    print(f"soak: max {max_fps:,.0f} frames/s; serving {target_fps:,.0f} frames/s ({server.speed:.2f}x the "
          f"recorded {tape.recorded_fps:,.0f}/s), {copies} copies of the base tape ({len(tape):,} frames)",
          flush=True)
    port = _free_port()
    samples: list[Sample] = []
    with server.run_in_thread():
        live = _live(server.ws_url, seconds, work / "soak", port)
        t0 = time.monotonic()
        try:
            while live.poll() is None and time.monotonic() - t0 < seconds + 120:
                time.sleep(sample_s - (time.monotonic() - t0) % sample_s)
                events, buckets = _scrape(port)
                s = Sample(time.monotonic() - t0, _tree_rss_mib(live.pid), events, buckets)
                if math.isnan(events) or s.t_s > seconds:
                    continue  # starting, or past its --duration and shutting down: not the soak
                samples.append(s)
                print(f"soak: {s.t_s:7.1f} s  RSS {s.rss_mib:8.1f} MiB  events in {s.events_in:12,.0f}",
                      flush=True)
        finally:
            _stop(live)
    tail = (work / "soak" / "live.log").read_text().strip().splitlines()[-1:]
    print(f"soak: tapeflow live exited {live.returncode}; served {server.frames_served:,} frames", *tail,
          sep="\n  ")
    return samples


def main() -> int:
    minutes = _env("SOAK_MINUTES", 25)
    load = _env("SOAK_LOAD", 0.7)
    warmup_s = _env("SOAK_WARMUP_MINUTES", max(1.0, minutes / 5)) * 60
    sample_s = _env("SOAK_SAMPLE_S", 10)
    work = Path(os.environ.get("SOAK_DIR") or tempfile.mkdtemp(prefix="tapeflow-soak-"))
    seconds = minutes * 60
    print(f"soak: {minutes:g} min at {load:.0%} of max throughput, warm-up {warmup_s / 60:g} min, in {work}")
    base = base_tape(work)
    with gzip.open(base, "rb") as fh:
        base_frames = sum(1 for _ in fh) - 1
    max_fps = _env("SOAK_MAX_FPS", 0) or calibrate(base, base_frames, work)
    samples = soak(base, load, max_fps, seconds, work, sample_s)
    return report(samples, warmup_s, load * max_fps)


def report(samples: list[Sample], warmup_s: float, target_fps: float) -> int:
    """Print the slope and p99 after the warm-up; 1 when memory grew beyond the bound."""
    after = [s for s in samples if s.t_s >= warmup_s and s.rss_mib > 0]
    if len(after) < 3:
        print(f"soak: only {len(after)} samples after the warm-up: nothing to judge")
        return 1
    t_min = np.array([s.t_s for s in after]) / 60
    rss = np.array([s.rss_mib for s in after])
    fit, cov = np.polyfit(t_min, rss, 1, cov=True)
    slope, slope_se = float(fit[0]), float(np.sqrt(cov[0, 0]))
    first, last = after[0], after[-1]
    rate = (last.events_in - first.events_in) / max(last.t_s - first.t_s, 1e-9)
    p50, p99 = (quantile(q, first.buckets, last.buckets) * 1e3 for q in (0.5, 0.99))
    bound = SMALLEST_LEAK_BYTES / 2 * target_fps * 60 / 2**20
    print(f"soak: after warm-up: {len(after)} samples over {(last.t_s - first.t_s) / 60:.1f} min, RSS "
          f"{rss.min():.1f}..{rss.max():.1f} MiB (mean {rss.mean():.1f}), slope {slope:+.3f} "
          f"+- {slope_se:.3f} MiB/min "
          f"(bound {bound:.3f}: half of {SMALLEST_LEAK_BYTES} B per frame at {target_fps:,.0f} frames/s)")
    print(f"soak: events in {rate:,.0f}/s; latency (server send -> flow output, a batch's newest row) "
          f"p50 {p50:.2f} ms, p99 {p99:.2f} ms (interpolated in the histogram's buckets; 10,000 = beyond)")
    if slope > bound:
        print("soak: FAILED: memory grows after the warm-up")
        return 1
    print("soak: passed: memory does not grow after the warm-up")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
