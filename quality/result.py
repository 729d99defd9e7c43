"""Plain results of a suite run: what assets turn into blocking checks and Data Docs render."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class CheckResult:
    """One named check of a suite.

    Attributes:
        name: stable check name (``crossed_book``, ``sequence_gaps``, ...), the asset check name.
        passed: whether the data met the threshold.
        unexpected_count: offending elements (rows, or columns for ``schema``).
        element_count: elements judged.
        examples: up to 5 offending rows as dicts, each with ``location`` (``row <i>`` of the table).
        details: threshold, observed values and the Great Expectations results behind the check.
        description: one line saying what the check means.
    """

    name: str
    passed: bool
    unexpected_count: int
    element_count: int
    examples: list[dict[str, Any]] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    def metadata(self) -> dict[str, Any]:
        """JSON values for an asset check's metadata: counts, threshold details and examples."""
        return {"unexpected_count": self.unexpected_count, "element_count": self.element_count,
                "description": self.description, "examples": self.examples,
                **{k: v for k, v in self.details.items() if k != "expectations"},
                "expectations": self.details.get("expectations", [])}


@dataclass
class SuiteResult:
    """Every check of one dataset partition.

    Attributes:
        dataset: the suite (``trades``, ``book_deltas``, ``order_events``, ``quotes``,
            ``book_snapshots``, ``bars``, ``metrics``).
        partition_day: ``YYYY-MM-DD`` when the table is one UTC day, else None.
        row_count: rows validated.
        checks: the checks, in suite order.
    """

    dataset: str
    partition_day: str | None
    row_count: int
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

    def check(self, name: str) -> CheckResult:
        """The check called ``name`` (KeyError naming the known ones if absent)."""
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(f"no check {name!r} in the {self.dataset} suite; have {[c.name for c in self.checks]}")
