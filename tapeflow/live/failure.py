"""What ``tapeflow live`` says when its flow cannot start or stops on an error: one line, no traceback.

The flow runs inside Bytewax, whose Rust core wraps a Python exception raised in a step or a sink
(``BytewaxRuntimeError``, the original as its cause) and prints a Rust panic report on the process's
stderr. So the command checks the warehouse before the flow starts (:func:`check_warehouse`),
names a :class:`~tapeflow.errors.TapeflowError` found anywhere in a failure's chain as the error
it is (exit 2), anything else as an internal error (exit 70; ``TAPEFLOW_TRACEBACK=1`` prints it),
and keeps Bytewax's panic reports off the terminal (:class:`PanicFilter`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import threading
import traceback
from collections.abc import Iterator
from types import TracebackType
from typing import IO

from tapeflow.errors import TapeflowError
from tapeflow.live.retry import short_reason
from tapeflow.storage.dsn import redact_dsn

EXIT_ERROR = 2
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130
NO_WAREHOUSE_HINT = "--no-clickhouse runs the flow without the warehouse (the lake only)"


def check_warehouse(dsn: str) -> None:
    """Open and close the warehouse the flow will write, so an unreachable one is one error now.

    Raises:
        TapeflowError: it cannot be opened; the message names the masked DSN, why, and the way out.
    """
    from tapeflow.storage.warehouse import Warehouse

    # the driver logs every failed request itself; the error below says it once
    logging.getLogger("clickhouse_connect").setLevel(logging.CRITICAL)
    try:
        with _engine_stderr_silenced():
            Warehouse(dsn).close()
    except TapeflowError as exc:
        first = str(exc).splitlines()[0]
        # the driver's text runs to hundreds of characters: keep what failed and the telling part
        reason = first if len(first) <= 240 else f"{first.split(': ', 1)[0]}: {short_reason(first)}"
        raise type(exc)(f"live: cannot open the warehouse {redact_dsn(dsn)} (--clickhouse / "
                        f"TAPEFLOW_CLICKHOUSE): {reason}; {NO_WAREHOUSE_HINT}") from None


@contextlib.contextmanager
def _engine_stderr_silenced() -> Iterator[None]:
    # chdb's engine prints its own report of a failed open (a locked directory) straight to file
    # descriptor 2; the StorageError it raises says the same, once
    if os.environ.get("TAPEFLOW_TRACEBACK"):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def tapeflow_error(exc: BaseException) -> TapeflowError | None:
    """The first :class:`TapeflowError` in ``exc``'s chain of causes, if any."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, TapeflowError):
            return cause
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def interrupted(exc: BaseException) -> bool:
    """True when the flow stopped because of a signal (Bytewax's ``signal received``)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, KeyboardInterrupt) or "signal received" in str(cause):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def report(exc: BaseException, err: IO[str] | None = None) -> int:
    """Print the one line a failed flow deserves and return its exit code (2, 70 or 130)."""
    err = err or sys.stderr
    if interrupted(exc):
        return EXIT_INTERRUPTED
    error = tapeflow_error(exc)
    if error is not None:
        message = str(error).splitlines()[0]
        if "warehouse" in message and "--no-clickhouse" not in message:
            message = f"{message}; {NO_WAREHOUSE_HINT}"
        print(f"tapeflow: error: {message}", file=err, flush=True)
        return EXIT_ERROR
    if os.environ.get("TAPEFLOW_TRACEBACK"):
        traceback.print_exception(exc, file=err)
    inner = exc.__cause__ or exc
    print(f"tapeflow: internal error in the live flow: {type(inner).__name__}: "
          f"{str(inner).splitlines()[0] if str(inner) else ''}\n"
          "  this is a bug in tapeflow: please report it with the command line "
          "(TAPEFLOW_TRACEBACK=1 prints where it happened)", file=err, flush=True)
    return EXIT_INTERNAL


_PANIC = re.compile(r"^thread '.*' panicked at ")
_PANIC_TAIL = re.compile(r"^(Box<dyn Any>|note: |stack backtrace:|\s+\d+: |\s+at |\s*$)")


class PanicFilter:
    """While entered, this process's stderr (file descriptor 2) passes through a filter that drops
    Rust panic reports (header, payload, backtrace): the Python exception behind one is reported
    by :func:`report`. Everything else passes line by line. ``TAPEFLOW_TRACEBACK=1`` turns it off.
    """

    def __init__(self) -> None:
        self._saved_fd: int | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> PanicFilter:
        if os.environ.get("TAPEFLOW_TRACEBACK"):
            return self
        sys.stderr.flush()
        read_fd, write_fd = os.pipe()
        self._saved_fd = os.dup(2)
        os.dup2(write_fd, 2)
        os.close(write_fd)
        self._reader = threading.Thread(target=self._pump, args=(read_fd, self._saved_fd), daemon=True,
                                        name="tapeflow-stderr")
        self._reader.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._saved_fd is None:
            return
        sys.stderr.flush()
        os.dup2(self._saved_fd, 2)  # closes the pipe's last write end: the reader sees its end
        if self._reader is not None:
            self._reader.join(timeout=5)
        os.close(self._saved_fd)
        self._saved_fd = None

    @staticmethod
    def _pump(read_fd: int, out_fd: int) -> None:
        in_panic, payload = False, False
        with os.fdopen(read_fd, "rb") as pipe:
            for line in pipe:
                text = line.decode(errors="replace")
                if _PANIC.match(text):
                    in_panic, payload = True, True
                    continue
                if payload:  # the line after the header is the panic's payload, whatever it says
                    payload = False
                    continue
                if in_panic and _PANIC_TAIL.match(text):
                    continue
                in_panic = False
                os.write(out_fd, line)
