"""The Chromium launch flags are defined once (``tapeflow.serve.browser``): the browser test and the
dashboard benchmark launch the same browser the same way."""

from __future__ import annotations

import subprocess

from tapeflow.serve import browser
from tests.serve.conftest import REPO


def test_the_launch_flags_are_defined_in_one_place() -> None:
    import bench.dashboard
    import tests.serve.test_browser

    assert bench.dashboard.launch is browser.launch and tests.serve.test_browser.launch is browser.launch
    tracked = subprocess.run(["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.split()
    flag = next(f for f in browser.CHROMIUM_ARGS if f.startswith("--disable-component"))
    defining = [p for p in tracked if flag in (REPO / p).read_text(errors="replace")]
    assert defining == ["tapeflow/serve/browser.py"]
    assert "--headless" in browser.CHROMIUM_ARGS and "--no-sandbox" in browser.CHROMIUM_ARGS
