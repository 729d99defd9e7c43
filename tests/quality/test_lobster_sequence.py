"""LOBSTER order events skip the numbers of hidden executions: not a lost message (real data).

The oracle is the message file itself, read with numpy: its type-5 rows (hidden executions) are
the only numbers the decoded order events lack. Skipped (saying why) without the shared data.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from quality import run_suite
from tapeflow.venues import get_format
from tapeflow.venues.base import merge

AAPL = "lobster/AAPL_2012-06-21_level10_first999"


@pytest.mark.realdata
def test_hidden_executions_are_no_sequence_gap(real_data: Path) -> None:
    paths = sorted((real_data / AAPL).glob("*.csv"))
    if len(paths) != 2:
        pytest.skip(f"{AAPL} (message + orderbook files) not under {real_data}")
    message_type = np.loadtxt(paths[0], delimiter=",", usecols=(1,), dtype=np.int64)
    events = merge(list(get_format("lobster").decode(paths)))["order_event"]
    numbered = set(events.column("sequence").to_pylist())
    skipped = set(range(len(message_type))) - numbered
    assert skipped == set(np.flatnonzero(message_type == 5).tolist()) and len(skipped) == 61
    gaps = run_suite("order_events", events, partition_day="2012-06-21").check("sequence_gaps")
    assert gaps.passed and gaps.details["contiguous"] is False
