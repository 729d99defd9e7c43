"""Progress bars fit the terminal (80 and 40 columns) and leave their last line on screen."""

from __future__ import annotations

import io

import pytest

from tapeflow.progress import LAYOUTS, choose_layout, progress_bar


def _screens(text: str) -> list[str]:
    """Every state the terminal line went through (tqdm redraws with \\r)."""
    return [seg for line in text.split("\n") for seg in line.split("\r") if seg.strip()]


@pytest.mark.parametrize("columns", [40, 80, 120])
def test_every_redraw_fits_and_the_last_one_stays(columns: int) -> None:
    buf = io.StringIO()
    with progress_bar(27_400_000, "ingest binance", enabled=True, file=buf, columns=columns) as bar:
        for _ in range(4):
            bar.update(6_000_000)
            bar.set_postfix(events="12,345,678", refresh=False)
            bar.refresh()
        bar.update(bar.total - bar.n)
    text = buf.getvalue()
    screens = _screens(text)
    assert screens and all(len(s) <= columns - 1 for s in screens), screens
    assert text.endswith("\n")  # left on screen: tqdm(leave=False) ends by blanking the line instead
    assert "100%" in text.rstrip("\n").split("\r")[-1]
    bars = [s[s.index("|") + 1:s.rindex("|")] for s in screens]
    assert min(len(b) for b in bars) >= 8  # the bar keeps cells: the text around it gave way


def test_layout_is_richest_that_fits() -> None:
    assert choose_layout("ingest binance", 200) == LAYOUTS[0]
    assert "{rate_fmt}" not in choose_layout("ingest binance", 79)
    assert "{desc}" in choose_layout("ingest sim", 39)
    assert choose_layout("x" * 100, 39) == LAYOUTS[-1]


def test_disabled_bar_prints_nothing() -> None:
    buf = io.StringIO()
    with progress_bar(100, "ingest sim", enabled=False, file=buf, columns=80) as bar:
        bar.update(100)
    assert buf.getvalue() == ""
