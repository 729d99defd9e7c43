"""The headless Chromium that drives the dashboard in the browser test and the dashboard benchmark.

Debian's ``chromium`` package (``make chromium``), never a browser downloaded by
``playwright install``; the launch flags are defined here once, for every caller.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
# headless on a machine without a display or a GPU, and as root in CI containers (no sandbox);
# no background traffic, so nothing leaves the machine while the page is measured
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
MISSING = "Debian's chromium is not installed (make chromium; make test installs it when run as root)"


def available() -> bool:
    """Whether Debian's chromium is installed."""
    return CHROMIUM.exists()


def launch(playwright: Any) -> Any:
    """A headless Chromium browser from a started ``sync_playwright()`` (the caller closes it)."""
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS))
