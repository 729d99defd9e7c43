"""The engine's throttle state on disk: open windows, their held-back counts, acknowledgements.

Saved beside the outbox journal (``live.jsonl`` -> ``live.state.json``) by
:meth:`tapeflow.alerts.engine.AlertEngine.save_state` (the flow's stage: once per micro-batch) as
one JSON document written to a temporary file, fsynced and renamed over the old one, so a crash
leaves the previous state or the new one, never half of one. A new engine on the same journal
restores it: a window open when tapeflow was killed still holds back the next match, and the next
message carries every count held back before and after the restart.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tapeflow.alerts.alert import Alert
from tapeflow.errors import StorageError

VERSION = 1


@dataclass
class Window:
    """One (rule, venue, symbol)'s throttle window.

    Attributes:
        start_ns: venue time of the match that opened it (and was sent).
        suppressed: matches held back in it so far.
        template: the alert that opened it (closing counts are made from it).
        hold_until_ns: venue time an acknowledgement holds the key's follow-ups back until (0: none).
        acked_by: who acknowledged an alert of this key ('' when nobody did).
    """

    start_ns: int
    suppressed: int = 0
    template: Alert | None = None
    hold_until_ns: int = 0
    acked_by: str = ""


def state_path(journal: Path) -> Path:
    """Where the state of the engine on ``journal`` lives."""
    return journal.with_name(journal.stem + ".state.json")


def save(path: Path, windows: dict[tuple[str, str, str], Window], acks: dict[str, tuple[str, int]]) -> None:
    """Write the windows and acknowledgements atomically (temporary file, fsync, rename).

    Raises:
        StorageError: the file cannot be written.
    """
    doc = {"version": VERSION, "acks": acks, "windows": [
        {"rule": r, "venue": v, "symbol": s, "start_ns": w.start_ns, "suppressed": w.suppressed,
         "hold_until_ns": w.hold_until_ns, "acked_by": w.acked_by,
         "template": w.template.payload() if w.template is not None else None}
        for (r, v, s), w in windows.items()]}
    tmp = path.with_suffix(".tmp")
    try:
        with tmp.open("wb") as out:
            out.write(json.dumps(doc, sort_keys=True).encode())
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise StorageError(f"{path}: cannot save the alerts throttle state: {exc.strerror}") from exc


def load(path: Path) -> tuple[dict[tuple[str, str, str], Window], dict[str, tuple[str, int]]]:
    """The windows and acknowledgements :func:`save` wrote (empty when there is no file).

    Raises:
        StorageError: the file exists but cannot be read or is not a state document (it is
            written atomically, so this is damage, not a crash: say so rather than forget windows).
    """
    if not path.exists():
        return {}, {}
    try:
        doc = json.loads(path.read_bytes())
        if doc.get("version") != VERSION:
            raise ValueError(f"version {doc.get('version')!r}, expected {VERSION}")
        windows = {(w["rule"], w["venue"], w["symbol"]): Window(
            int(w["start_ns"]), int(w["suppressed"]), _alert(w["template"]), int(w["hold_until_ns"]),
            str(w["acked_by"])) for w in doc["windows"]}
        acks = {str(k): (str(by), int(at)) for k, (by, at) in doc["acks"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise StorageError(f"{path}: not an alerts throttle state file ({exc}); move it away to start "
                           "with no open windows") from None
    return windows, acks


def _alert(payload: dict[str, Any] | None) -> Alert | None:
    if payload is None:
        return None
    confidence = payload.get("confidence")
    return Alert(**{**payload, "confidence": math.nan if confidence is None else float(confidence)})
