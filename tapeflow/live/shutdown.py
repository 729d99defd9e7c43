"""How ``tapeflow live`` stops on SIGINT (Ctrl-C) and SIGTERM (``kill``, systemd, Kubernetes).

Without a recovery store, the first signal asks the flow to stop cleanly: :func:`stop_requested`
turns true, every source partition ends its stream at its next poll (a live connector closes,
flushing its journal), the flow finishes the batches in flight and the sinks close: the lake gets
what they buffered and ClickHouse every insert, then ``tapeflow live`` prints its summary. A flow
that has not ended ``grace_s`` after the signal, or a second signal, aborts it: Bytewax stops
where it is (what the sinks buffered since their last flush is not written).

With a recovery store (``--recovery``) the first signal aborts at once: the last committed epoch
is where the rerun resumes, and the batch tokens drop what the stores already hold. A clean stop
would be wrong there: it ends every stream, and the stateful stages (book, snapshots, metrics)
close their state at the end of a stream, so a resume after it could not continue them (a stopped
replay resumed without its book snapshots, measured).

Child processes (``--processes``, ``-i/-a``) get the signal forwarded (they stop the same way) and
are killed if still alive ``grace_s`` later.

Exit codes: 130 after SIGINT, 143 after SIGTERM (128 + the signal's number, as a shell reports a
process the signal killed), whether the stop was clean or aborted.
"""

from __future__ import annotations

import _thread
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence
from types import FrameType, TracebackType
from typing import IO

DEFAULT_GRACE_S = 30.0  # a live client alone may take 10 s to close its session (tapeflow.live.thread)
SIGNALS = (signal.SIGINT, signal.SIGTERM)

_stop = threading.Event()


def stop_requested() -> bool:
    """True once ``tapeflow live`` was asked to stop (sources end their streams when it is)."""
    return _stop.is_set()


def exit_code(signum: int) -> int:
    """The exit code after a stop by ``signum``: 128 + its number (130 SIGINT, 143 SIGTERM)."""
    return 128 + signum


class SignalStop:
    """While entered (on the main thread), SIGINT and SIGTERM stop the flow as the module says.

    Args:
        grace_s: how long a clean stop may take before the flow is aborted (and children killed).
        children: child processes to forward the signal to (and kill after ``grace_s``).
        err: where the stop messages go.
        announce: say on ``err`` that a stop began (a flow child leaves that to its parent).
        clean: False aborts at the first signal (a flow with a recovery store, see the module).
    """

    def __init__(self, *, grace_s: float = DEFAULT_GRACE_S, children: Sequence[subprocess.Popen[str]] = (),
                 err: IO[str] | None = None, announce: bool = True, clean: bool = True) -> None:
        self.grace_s = grace_s
        self.children = list(children)
        self.signum: int | None = None
        self.aborted = False
        self._err = err
        self._saved: dict[int, object] = {}
        self._timer: threading.Timer | None = None
        self._active = False
        self._late = False
        self._announce = announce
        self._clean = clean

    def __enter__(self) -> SignalStop:
        _stop.clear()
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                self._saved[signum] = signal.signal(signum, self._on_signal)
        self._active = True
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._active = False
        if self._timer is not None:
            self._timer.cancel()
        for signum, handler in self._saved.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        _stop.clear()

    @property
    def exit_code(self) -> int | None:
        """128 + the signal's number once a signal came, else None."""
        return exit_code(self.signum) if self.signum is not None else None

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self._late:
            self._abort(f"live: the flow did not stop within {self.grace_s:g} s: aborting it")
            return
        if self.signum is not None or not self._active:
            self._abort(f"live: {name} again: aborting the flow")
            return
        self.signum = signum
        if self._clean:
            _stop.set()
        for child in self.children:
            if child.poll() is None:
                child.send_signal(signum)
        if not self._clean:
            # children abort on the signal forwarded to them: only a hung one is killed (_overdue)
            self.aborted = True
            if not self.children:
                self._abort(f"live: {name}: stopping now; a rerun with the same --recovery resumes")
            elif self._announce:
                self._say(f"live: {name}: stopping now; a rerun with the same --recovery resumes")
        elif self._announce:
            self._say(f"live: {name}: stopping (the flow ends its batches and flushes its sinks; "
                      f"aborted after {self.grace_s:g} s or at a second signal)")
        self._timer = threading.Timer(self.grace_s, self._overdue)
        self._timer.daemon = True
        self._timer.start()

    def _overdue(self) -> None:
        if not self._active:
            return
        self._late = True
        alive = [child for child in self.children if child.poll() is None]
        for child in alive:
            child.kill()
        if alive:
            self._say(f"live: {len(alive)} flow process(es) did not stop within {self.grace_s:g} s: killed")
        if self.signum is not None and not self.children:
            # raised on the main thread at Bytewax's next signal check, through _on_signal
            _thread.interrupt_main(self.signum)

    def _abort(self, message: str) -> None:
        self.aborted = True
        if self._announce:
            self._say(message)
        for child in self.children:
            if child.poll() is None:
                child.kill()
        if not self.children:
            raise KeyboardInterrupt

    def _say(self, message: str) -> None:
        print(message, file=self._err or sys.stderr, flush=True)
