"""Progress bars of the command line (``ingest``, ``book``): they fit the terminal and leave a last line.

tqdm sizes a bar to the terminal by squeezing the bar itself, so on 80 columns a bar with a rate
and an event count keeps about four cells, and on 40 it cuts the text in the middle. Here the
layout is chosen by width (the richest one that keeps at least :data:`MIN_BAR_CELLS` of bar) and
the bar stays on screen when done, as the run's last progress line.
"""

from __future__ import annotations

import os
import sys
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:
    from tqdm import tqdm

MIN_BAR_CELLS = 8
# richest first; {postfix} is tqdm's ", key=value" text (the event count)
LAYOUTS = (
    "{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt}{unit}{postfix} [{elapsed}<{remaining}, {rate_fmt}]",
    "{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt}{unit}{postfix} [{elapsed}]",
    "{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt}{unit}{postfix}",
    "{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt}{unit}",
    "{desc} {percentage:3.0f}%|{bar}|",
    "{percentage:3.0f}%|{bar}|",
)
# the widest values each field reaches in practice, to size a layout before the run starts
_SAMPLE = {"percentage": 100.0, "unit": "B", "n_fmt": "999.9M", "total_fmt": "999.9M",
           "postfix": ", events=99,999,999", "elapsed": "1:00:00", "remaining": "1:00:00",
           "rate_fmt": "999.9MB/s"}


def progress_bar(total: int, desc: str, *, enabled: bool, unit: str = "B", file: IO[str] | None = None,
                 columns: int | None = None) -> tqdm:
    """A tqdm bar over ``total`` units (bytes by default) that fits ``columns`` and stays when closed.

    Args:
        total: the amount of work (input bytes for ``ingest`` and ``book``).
        desc: what runs ("ingest sim").
        enabled: False gives a bar that prints nothing (not a terminal, ``--quiet``).
        unit: ``"B"`` scales by 1024 (KiB, MiB); anything else by 1000.
        file: where to draw (default stderr).
        columns: the terminal width (default: the width of ``file``'s terminal, else 80).
    """
    from tqdm import tqdm  # imported on use: commands that draw no bar start faster

    file = file or sys.stderr
    width = (columns or terminal_columns(file)) - 1  # the last column would wrap on some terminals
    return tqdm(total=total, desc=desc, unit=unit, unit_scale=True,
                unit_divisor=1024 if unit == "B" else 1000, file=file, disable=not enabled, leave=True,
                ncols=width, bar_format=choose_layout(desc, width), dynamic_ncols=False, mininterval=0.2)


def choose_layout(desc: str, width: int) -> str:
    """The richest of :data:`LAYOUTS` whose text leaves ``MIN_BAR_CELLS`` for the bar in ``width``."""
    for layout in LAYOUTS:
        if len(layout.format(desc=desc, bar="", **_SAMPLE)) + MIN_BAR_CELLS <= width:
            return layout
    return LAYOUTS[-1]


def terminal_columns(file: IO[str]) -> int:
    """The width of the terminal ``file`` writes to; ``$COLUMNS`` or 80 when it is not one."""
    try:
        return os.get_terminal_size(file.fileno()).columns or 80
    except (OSError, ValueError, AttributeError):
        text = os.environ.get("COLUMNS", "")
        return int(text) if text.isdigit() and int(text) > 0 else 80
