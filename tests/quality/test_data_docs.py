"""The Data Docs page lists every check with its verdict and counts and needs nothing from the network."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser

import numpy as np
import pyarrow as pa

from quality import run_suite, write_data_docs
from tests.quality.conftest import DAY


class _Page(HTMLParser):
    """Collects every tag with its attributes and the cell texts of every table row."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _results(sim_day):
    quotes = sim_day.quotes
    bid = quotes.column("bid_price_nanos").to_numpy().copy()
    crossed = [100, 200, 300]
    bid[crossed] = quotes.column("ask_price_nanos").to_numpy()[crossed]
    bad = quotes.set_column(quotes.column_names.index("bid_price_nanos"), "bid_price_nanos", pa.array(bid))
    return [run_suite("trades", sim_day.trades, partition_day=DAY, book=sim_day.quotes),
            run_suite("quotes", bad, partition_day=DAY)]


def test_page_lists_every_check_with_verdict_and_counts(sim_day, tmp_path):
    results = _results(sim_day)
    page_path = write_data_docs(results, tmp_path / "docs")
    assert page_path == tmp_path / "docs" / "index.html"
    page = _Page()
    page.feed(page_path.read_text(encoding="utf-8"))
    check_rows = {(r[0], r[1]): r for r in page.rows if len(r) == 6 and r[0] != "check"}
    expected = {}
    for suite in results:
        for c in suite.checks:
            verdict = "SKIPPED" if "skipped" in c.details else ("PASS" if c.passed else "FAIL")
            expected[(c.name, verdict)] = [str(c.unexpected_count), str(c.element_count)]
    # a name may appear in both suites with equal counts; the set of (check, verdict) rows must match
    assert {k: v[2:4] for k, v in check_rows.items()} == expected
    assert check_rows[("crossed_book", "FAIL")][2] == "3"
    assert sum(1 for r in page.rows if len(r) == 6 and r[0] != "check") == sum(len(s.checks) for s in results)
    summary = [r for r in page.rows if len(r) == 5 and r[0] != "suite"]
    assert [(r[0], r[3], r[4]) for r in summary] == [("trades", "PASS", "-"),
                                                     ("quotes", "FAIL", "crossed_book")]


def test_page_opens_offline(sim_day, tmp_path):
    page_path = write_data_docs(_results(sim_day), tmp_path)
    html = page_path.read_text(encoding="utf-8")
    page = _Page()
    page.feed(html)
    assert not {t for t, _ in page.tags} & {"script", "link", "img", "iframe", "object", "embed"}
    refs = [v for _, attrs in page.tags for k, v in attrs.items() if k in ("href", "src") and v]
    assert refs and all(r.startswith("#") for r in refs)
    assert not re.search(r"https?://|url\(|@import", html)


def test_results_json_round_trips(sim_day, tmp_path):
    results = _results(sim_day)
    write_data_docs(results, tmp_path)
    data = json.loads((tmp_path / "results.json").read_text())
    assert [(s["dataset"], s["passed"]) for s in data] == [("trades", True), ("quotes", False)]
    crossed = next(c for c in data[1]["checks"] if c["name"] == "crossed_book")
    assert crossed["unexpected_count"] == 3
    assert [e["location"] for e in crossed["examples"]] == ["row 100", "row 200", "row 300"]
    assert np.all([e["best_bid_nanos"] >= e["best_ask_nanos"] for e in crossed["examples"]])
