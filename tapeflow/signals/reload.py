"""Thresholds that follow their file: a running flow picks up an edited file without a restart."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path

from tapeflow.errors import ConfigError
from tapeflow.signals.config import Thresholds, load


class ThresholdsReloader:
    """Holds the current thresholds and swaps them when the file changes and validates.

    A bad edit is rejected with a message (``last_error``, and ``on_reject`` when given) and the
    thresholds in force stay; the next good edit is taken. The file is compared by content, not
    by mtime: two edits within one mtime tick (coarse filesystems) must not be missed.

    Args:
        path: the thresholds file.
        min_interval_s: ``poll`` reads the file at most this often (the flow polls per batch).
        on_reject: called with the ConfigError's message when an edit is rejected.
        clock: monotonic seconds (tests pass a fake).

    Raises:
        ConfigError: the file is bad at start: there is nothing to fall back on.
    """

    def __init__(self, path: Path, *, min_interval_s: float = 1.0,
                 on_reject: Callable[[str], object] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.path = Path(path)
        self.min_interval_s = min_interval_s
        self.on_reject = on_reject
        self._clock = clock
        self._current = load(self.path)
        self._digest = self._read_digest()
        self._checked_at = clock()
        self.last_error: str | None = None
        self.reloads = 0

    @property
    def current(self) -> Thresholds:
        """The thresholds in force."""
        return self._current

    def poll(self, *, force: bool = False) -> bool:
        """Reload when the file changed since the last look; True when new thresholds took effect."""
        now = self._clock()
        if not force and now - self._checked_at < self.min_interval_s:
            return False
        self._checked_at = now
        digest = self._read_digest()
        if digest is None or digest == self._digest:
            return False
        self._digest = digest
        try:
            fresh = load(self.path)
        except ConfigError as exc:
            self.last_error = f"rejected edited thresholds, keeping the previous ones: {exc}"
            if self.on_reject is not None:
                self.on_reject(self.last_error)
            return False
        self._current = fresh
        self.last_error = None
        self.reloads += 1
        return True

    def _read_digest(self) -> bytes | None:
        try:
            return hashlib.sha256(self.path.read_bytes()).digest()
        except OSError:
            # a file being replaced (editor's rename) is briefly absent: look again next poll
            return None
