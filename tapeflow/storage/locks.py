"""The lake's locks: one commit at a time per lake, and which writers of it are still alive.

Two kinds of ``flock`` under the lake's private directory ``<root>/.tapeflow``:

- ``lock``: the **commit lock**. A writer holds it exclusively while it commits (a load's swaps
  and its warehouse swap, an append flush with its merges, a compaction, start-up cleanup), so two
  writers never build a partition's next version from the same old one and lose each other's
  rows. A second writer waits for it, saying so once on the log, and fails with
  :class:`~tapeflow.errors.StorageError` after ``timeout_s`` (default :data:`LOCK_TIMEOUT_S`).
  It is held for a commit, not for a writer's life: a live flow and an ingest share a lake.
- ``owners/<pid>``: the **owner mark**. A process that writes anything into the lake's staging
  area (``<root>/.tapeflow/tmp``, every name there starts with its pid) first holds its mark with
  a shared lock for the rest of its life (or until :func:`release_owners`, once it stages nothing
  there). The kernel drops the lock when the process dies, however it dies, so
  :func:`owner_alive` tells a dead writer's leftovers from a live one's without trusting pids (a
  reused pid cannot hold a dead process's lock).

``flock`` locks belong to an open file, so two writers in one process exclude each other as two
processes do; a forked child inherits its parent's mark and registers its own pid again.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import threading
import time
from pathlib import Path
from types import TracebackType

from tapeflow.errors import StorageError

PRIVATE = Path(".tapeflow")
LOCK_FILE = PRIVATE / "lock"
OWNERS = PRIVATE / "owners"
# How long a writer waits for another's commit before it gives up (a commit of a large load can take
# minutes on a slow disk; a hung holder should not block a cron job forever).
LOCK_TIMEOUT_S = 600.0
_POLL_S = 0.05

log = logging.getLogger(__name__)

_marks: dict[tuple[int, Path], int] = {}  # (pid, lake root) -> the fd holding this process's mark
_marks_guard = threading.Lock()


class LakeLock:
    """The commit lock of one lake (re-entrant within the object, not across objects).

    Args:
        root: the lake root.
        timeout_s: how long :meth:`acquire` waits for another holder before it raises.
    """

    def __init__(self, root: Path | str, timeout_s: float = LOCK_TIMEOUT_S) -> None:
        self.root = Path(root)
        self.timeout_s = timeout_s
        self._fd: int | None = None
        self._depth = 0
        self._guard = threading.RLock()

    def acquire(self) -> None:
        """Take the lock, waiting for another writer's commit to end.

        Raises:
            StorageError: still held by another writer after ``timeout_s``, or the lake's private
                directory cannot be written.
        """
        self._guard.acquire()
        if self._depth:
            self._depth += 1
            return
        try:
            self._fd = _take(self.root / LOCK_FILE, self.timeout_s, self.root)
        except BaseException:
            self._guard.release()
            raise
        self._depth = 1

    def release(self) -> None:
        """Let the next writer commit."""
        self._depth -= 1
        if self._depth == 0 and self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
        self._guard.release()

    def __enter__(self) -> LakeLock:
        self.acquire()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


def _take(path: Path, timeout_s: float, root: Path) -> int:
    fd = _open(path)
    deadline = time.monotonic() + timeout_s
    told = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                os.close(fd)
                raise StorageError(f"cannot lock the lake {root}: {exc}") from exc
        holder = _holder(path)
        if time.monotonic() >= deadline:
            os.close(fd)
            raise StorageError(f"the lake {root} is locked by another writer ({holder}) for more than "
                               f"{timeout_s:g} s; waited for its commit to end and gave up")
        if not told:
            log.warning("waiting for another writer (%s) to finish its commit into the lake %s", holder, root)
            told = True
        time.sleep(_POLL_S)
    # who holds it, for the message a waiting writer prints (advisory: the lock is the flock)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"pid {os.getpid()}\n".encode(), 0)
    return fd


def _holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "unknown pid"
    except OSError:
        return "unknown pid"


def _open(path: Path) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StorageError(f"cannot open the lake lock {path}: {exc}") from exc


def register_owner(root: Path | str) -> None:
    """Mark this process as a live writer of the lake at ``root`` (once per process and lake).

    Call before creating anything in the lake's staging area: cleanup deletes only what a process
    without a mark left there.
    """
    root = Path(root).resolve()
    key = (os.getpid(), root)
    if key in _marks:
        return
    with _marks_guard:
        if key in _marks:
            return
        path = root / OWNERS / str(os.getpid())
        while True:  # the mark's file may be unlinked by a cleanup between open and flock: retry
            fd = _open(path)
            fcntl.flock(fd, fcntl.LOCK_SH)
            try:
                same = os.fstat(fd).st_ino == os.stat(path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        _marks[key] = fd


def release_owners(under: Path | str) -> list[Path]:
    """Drop this process's marks on the lakes at or below ``under`` that hold none of its staging
    entries; return their roots. Each mark holds a descriptor for the process's life, so a process
    that wrote many lakes (a test worker: a temporary lake per test) grew by one per lake: a
    worker of the suite reached descriptor numbers over 1,024. Call only once no writer of this
    process uses those lakes (e.g. after a test's teardown): a writer that stages there again
    registers a fresh mark.
    """
    under = Path(under).resolve()
    pid, released = os.getpid(), []
    with _marks_guard:
        for key in [k for k in _marks if k[0] == pid and k[1].is_relative_to(under)]:
            root = key[1]
            area = root / PRIVATE / "tmp"  # parts.STAGING (parts imports this module)
            try:
                ours = any(name.startswith(f"{pid}-") for name in os.listdir(area))
            except FileNotFoundError:
                ours = False
            if ours:
                continue
            (root / OWNERS / str(pid)).unlink(missing_ok=True)
            os.close(_marks.pop(key))
            released.append(root)
    return released


def owner_alive(root: Path | str, pid: int) -> bool:
    """Whether the process ``pid`` holds its owner mark on the lake at ``root`` (it is a live writer).

    A mark no one holds is removed, so a later process reusing the pid starts a fresh one.
    """
    if (pid, Path(root).resolve()) in _marks and pid == os.getpid():
        return True
    path = Path(root) / OWNERS / str(pid)
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True
        path.unlink(missing_ok=True)
        return False
    finally:
        os.close(fd)
