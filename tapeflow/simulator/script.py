"""The plan the engine executes: timed agent operations plus one description per planted episode."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

MS = 1_000_000
S = 1_000_000_000


@dataclass
class EpisodePlan:
    """Operations for the engine plus one description per episode (index = episode id).

    Attributes:
        ops: engine operations ``[time_ns, op, side, offset, size, slot, episode, aux]``.
        rows: one dict per episode (kind, lookalike, start_ns, decisive_ns, params).
        slots: agent order slots used so far.
        busy_ns: start times of the busy periods planted (overlap mode).
    """

    ops: list[list[int]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    slots: int = 0
    busy_ns: list[int] = field(default_factory=list)

    def op_array(self) -> np.ndarray:
        """The operations as int64[k, 8], sorted by time."""
        if not self.ops:
            return np.zeros((0, 8), np.int64)
        arr = np.asarray(self.ops, np.int64)
        # stable sort keeps the script order of operations planned for the same instant
        return arr[np.argsort(arr[:, 0], kind="stable")]

    def _slot(self) -> int:
        self.slots += 1
        return self.slots - 1

    def _op(
        self,
        t: int,
        code: int,
        ep: int,
        *,
        side: int = 0,
        off: int = 0,
        size: int = 0,
        slot: int = 0,
        aux: int = 0,
    ) -> None:
        self.ops.append([int(t), code, side, int(off), int(size), slot, ep, int(aux)])
