"""Integer medians as ``np.median`` gives them, for the health stage's few values per batch.

The health stage takes a median per batch (of its rows' latencies) and a rolling median over the
last 64 batch medians (a venue's clock offset, a replay's usual latency). numpy's per-call
overhead (~20 us) and sorting 64 values every batch would cost more than the rest of the stage,
so: :func:`median_int` sorts a few Python ints (and selects the middle of many with
``np.partition``), and :class:`RollingMedian` keeps its window sorted as it moves (one insertion
and one removal per batch).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from dataclasses import dataclass, field

import numpy as np


def median_int(values: np.ndarray | list[int]) -> int:
    """``int(np.median(values))`` for integers, without numpy's per-call overhead (~20 us) on the
    few values a batch or a window of batch medians holds: the middle value, or the float64 mean of
    the two middle ones truncated toward zero, exactly as ``np.median`` then ``int`` give it.

    Args:
        values: a non-empty sequence of ints (int64 array or list).
    """
    n = len(values)
    if n == 1:
        return int(float(values[0]))  # np.median returns float64: beyond 2**53 it rounds, as here
    if n <= 64:
        return sorted_median(sorted(values.tolist() if isinstance(values, np.ndarray) else values))
    # a capture replay's batch holds up to DEFAULT_BATCH_EVENTS rows: select the middle ones
    # (O(n)), never sort them and make a list of them all (2 ms of a 20,000-row batch)
    mid = n // 2
    if n % 2:
        return int(float(np.partition(np.asarray(values, dtype=np.int64), mid)[mid]))
    part = np.partition(np.asarray(values, dtype=np.int64), (mid - 1, mid))
    return int((float(part[mid - 1]) + float(part[mid])) / 2)


def sorted_median(ordered: list[int]) -> int:
    """:func:`median_int` of a non-empty list already sorted."""
    n = len(ordered)
    mid = n // 2
    if n % 2:
        return int(float(ordered[mid]))
    return int((float(ordered[mid - 1]) + float(ordered[mid])) / 2)


@dataclass
class RollingMedian:
    """The median of the last ``size`` values pushed (picklable plain lists).

    Attributes:
        size: how many of the latest values count.
        values: those values, oldest first.
        ordered: the same values, sorted.
    """

    size: int
    values: list[int] = field(default_factory=list)
    ordered: list[int] = field(default_factory=list)

    def push(self, value: int) -> int:
        """Add ``value`` (dropping the oldest beyond ``size``); returns the new median."""
        self.values.append(value)
        insort(self.ordered, value)
        if len(self.values) > self.size:
            del self.ordered[bisect_left(self.ordered, self.values.pop(0))]
        return sorted_median(self.ordered)

    def median(self) -> int | None:
        """The median of the window (None when empty)."""
        return sorted_median(self.ordered) if self.ordered else None

    def clear(self) -> None:
        """Forget every value."""
        self.values.clear()
        self.ordered.clear()

    def __len__(self) -> int:
        return len(self.values)


__all__ = ["RollingMedian", "median_int", "sorted_median"]
