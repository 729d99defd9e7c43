"""The derivatives decoders against Tardis's own normalization of the same venue messages.

499 pairs of a raw message and tardis-node's output (/work/shared/data README, derivatives rows);
the pairs of the venues decoded here replay in file order through one decoder per test run, and
every funding rate, funding time, predicted rate, mark, index, open interest and liquidation
(side, price, amount, time, id) Tardis shows must equal the decoded one (tardis_pairs.py).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import need
from tests.derivatives.tardis_pairs import PAIRS, Outcome, replay

# Pairs decoded on purpose where Tardis shows nothing, each with why. tardis-node chooses a mapper
# by the message's date; these two tests run a message of a channel from before Tardis mapped it.
DELIBERATE = {
    ("map okex-futures messages", 12): "the mapper of a date before Tardis read liquidation-orders gives "
    "nothing; the same message at index 13 gives the liquidation we decode",
    ("map bybit messages", 14): "the mapper of a date before Tardis read allLiquidation gives nothing; "
    "the same message in the other run (index 0) gives the liquidation we decode",
}


@pytest.fixture(scope="module")
def outcomes(real_data: Path) -> list[Outcome]:
    need(real_data / PAIRS)
    return replay(real_data)


def test_every_pair_of_a_decoded_channel_equals_tardis(outcomes: list[Outcome]) -> None:
    ours = [o for o in outcomes if o.mine]
    table: Counter[tuple[str, str]] = Counter()
    compared: Counter[tuple[str, str]] = Counter()
    for o in ours:
        if o.ok:
            table[o.test.removeprefix("map ").removesuffix(" messages"), o.channel] += 1
            compared[o.test.removeprefix("map ").removesuffix(" messages"), o.channel] += o.compared
    for (test, ch), n in sorted(table.items()):
        total = sum(1 for o in ours if o.test == f"map {test} messages" and o.channel == ch)
        print(f"{test:16} {ch:20} {n:3} of {total:3} pairs equal ({compared[test, ch]} values compared)")
    wrong = [
        f"{o.test} #{o.index} {o.channel}: {o.problems}"
        for o in ours
        if not o.ok and (o.test, o.index) not in DELIBERATE
    ]
    assert not wrong, "\n".join(wrong)
    assert len(ours) == 74 and sum(o.ok for o in ours) == 72
    # the comparisons are not vacuous: values compared on most pairs, none of them skipped
    assert sum(o.compared for o in ours) >= 380
    assert sum(1 for o in ours if o.compared) >= 58


def test_the_deliberate_differences_still_differ(outcomes: list[Outcome]) -> None:
    by_key = {(o.test, o.index): o for o in outcomes}
    for key in DELIBERATE:
        assert key in by_key and not by_key[key].ok, f"{key} now equals Tardis: drop it from DELIBERATE"


def test_other_channels_are_ignored_by_rule_never_a_crash(outcomes: list[Outcome]) -> None:
    # the book, trade and ticker messages of the same runs: a dead letter ignored by rule each
    others = [o for o in outcomes if not o.mine]
    assert len(others) > 50
    for o in others:
        assert not o.rows, (o.test, o.index, o.channel, o.rows)
        assert set(o.rejects) <= {"unsupported_channel"}, (o.test, o.index, o.channel, o.rejects)


def test_decoded_channels_write_no_dead_letter_but_the_ruled_ones(outcomes: list[Outcome]) -> None:
    # BitMEX instrument updates before their symbol's partial: no_snapshot, as Tardis ignores them
    rejected = [(o.test, o.index, o.rejects) for o in outcomes if o.mine and o.rejects]
    assert rejected == [
        ("map bitmex messages", 1, ["no_snapshot"]),
        ("map bitmex messages", 10, ["no_snapshot"]),
    ]
