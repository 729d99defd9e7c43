"""What the live flow's storage sink does when the warehouse stops answering mid-run.

A ClickHouse server restarting or a network blip must not end a live feed, and a warehouse that is
gone for good must not hang it forever. So a call that failed to *reach* the server (the driver's
``OperationalError``, an ``OSError``) is retried with exponential backoff, saying so on stderr,
until ``budget_s`` has passed; then :class:`WarehouseUnavailable` (a ``StorageError``) stops the
flow. Any other failure (a query the server refused, a disk full under chdb) is not transient and
is raised at once. Retrying a live append is safe: it carries its batch token, so a block the
server stored before the connection dropped is dropped when it comes again.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO, TypeVar

from clickhouse_connect.driver.exceptions import OperationalError

from tapeflow.errors import StorageError
from tapeflow.storage.dsn import redact_dsn

_T = TypeVar("_T")

DEFAULT_BUDGET_S = 60.0
FIRST_WAIT_S = 0.5
LONGEST_WAIT_S = 10.0


class WarehouseUnavailable(StorageError):
    """The warehouse did not answer for the whole retry budget."""


def is_unreachable(exc: BaseException) -> bool:
    """True when ``exc`` (or what it was raised from) says the server could not be reached."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, OperationalError | OSError):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


class WarehouseRetry:
    """Runs warehouse calls, retrying those that could not reach the server.

    Args:
        dsn: the warehouse DSN (shown masked in messages).
        budget_s: give up once a call has been failing this long (0: never retry).
        sleep: how to wait (tests pass a fake clock's).
        err: where the retry lines go.
    """

    def __init__(self, dsn: str, *, budget_s: float = DEFAULT_BUDGET_S,
                 sleep: Callable[[float], None] = time.sleep, err: IO[str] | None = None) -> None:
        self.shown = redact_dsn(dsn)
        self.budget_s = budget_s
        self.retries = 0
        self._sleep = sleep
        self._err = err

    def call(self, fn: Callable[..., _T], *args: object, **kwargs: object) -> _T:
        """``fn(*args, **kwargs)``, retried while the warehouse is unreachable.

        Raises:
            WarehouseUnavailable: it stayed unreachable for ``budget_s``.
        """
        waited_s, wait_s = 0.0, FIRST_WAIT_S
        while True:
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                if not is_unreachable(exc):
                    raise
                if waited_s >= self.budget_s:
                    raise WarehouseUnavailable(
                        f"the warehouse {self.shown} stopped answering and did not come back within "
                        f"{self.budget_s:g} s ({_reason(exc)}); the live flow stopped, the lake holds every "
                        "batch written before it") from exc
                wait_s = min(wait_s, self.budget_s - waited_s)
                self._say(f"live: warehouse {self.shown} unreachable ({_reason(exc)}); "
                          f"retrying in {wait_s:.1f} s")
                self._sleep(wait_s)
                self.retries += 1
                waited_s += wait_s
                wait_s = min(wait_s * 2, LONGEST_WAIT_S)
                continue
            if waited_s:
                self._say(f"live: warehouse {self.shown} is back after {waited_s:.1f} s")
            return result

    def _say(self, message: str) -> None:
        print(message, file=self._err or sys.stderr, flush=True)


def _reason(exc: BaseException) -> str:
    """The innermost message of ``exc``'s chain, cut to its first line (driver messages run long)."""
    seen: set[int] = set()
    inner: BaseException = exc
    while True:
        nxt = inner.__cause__ or inner.__context__
        if nxt is None or id(nxt) in seen:
            break
        seen.add(id(inner))
        inner = nxt
    text = str(inner).splitlines()[0] if str(inner) else type(inner).__name__
    return short_reason(text)


def short_reason(text: str) -> str:
    """The telling part of a connection failure's message (``[Errno 111] Connection refused``,
    a certificate failure), else the text cut to 200 characters."""
    for sign in ("[Errno", "CERTIFICATE_VERIFY_FAILED", "certificate verify failed", "timed out",
                 "Name or service not known"):
        at = text.find(sign)
        if at >= 0:
            end = min((i for i in (text.find(c, at) for c in "\"')") if i > at), default=len(text))
            return text[at:end].strip()
    return text if len(text) <= 200 else text[:200] + "..."
