"""The planted kinds added for the signal detectors, checked in the market data the simulator writes.

Seeds are drawn at random on every run (printed by the fixtures): a plant must show in the feed
whatever the seed. Evidence is read from the decoded venue files and the book tapeflow rebuilds
from them (``tests.simulator.evidence``), never from the simulator's state.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tapeflow.schemas.records import ASK, BID, L3_CANCEL, UNDEF_PRICE
from tapeflow.simulator import KINDS, SimSummary, get_preset, simulate
from tests.signals.evaluation import once_per_run
from tests.simulator.conftest import MINUTE_NS
from tests.simulator.evidence import Feed, S, adds_filled, episodes, load_feed, one_second_sigma

NEW_KINDS = ("institutional", "creep", "contraction", "wall", "spike")
PRICED = {"spoofing", "iceberg", "absorption", "whale", "withdrawal", "wall"}


def _feed(summary: SimSummary) -> Feed:
    symbol = next(iter(summary.events))
    return load_feed(summary.files, summary.tick_nanos[symbol])


@pytest.fixture(scope="module")
def crypto_feed(tmp_path_factory: pytest.TempPathFactory, plant_run: SimSummary) -> Feed:
    # the feed of the run's plant_run, loaded once per pytest run (by the first xdist worker to ask)
    return once_per_run(tmp_path_factory, "plants-crypto-feed", lambda _: _feed(plant_run))


@pytest.fixture(scope="module")
def equity_feed(tmp_path_factory: pytest.TempPathFactory, equity_plant_run: SimSummary) -> Feed:
    # the equity_plant_run's feed, loaded once per pytest run (the institutional and whale parent
    # tests both read it)
    return once_per_run(tmp_path_factory, "plants-equity-feed", lambda _: _feed(equity_plant_run))


def _of(summary: SimSummary, kind: str, look: bool) -> list[dict]:
    rows = [e for e in episodes(summary.episodes_path) if e["kind"] == kind and e["lookalike"] == look]
    assert rows, (kind, look)
    return rows


@pytest.mark.parametrize("overlap", [False, True])
def test_every_kind_in_the_table_with_its_fields(tmp_path: Path, overlap: bool) -> None:
    for k in range(3):
        seed = random.SystemRandom().randrange(1_000, 1_000_000)
        print(f"table overlap={overlap}: seed {seed}")
        summary = simulate(
            seed, 2, 30 * MINUTE_NS, tmp_path / f"r{k}", "equity", overlap=overlap, progress=False
        )
        table = pq.read_table(summary.episodes_path)
        assert table.schema.names == [
            "episode_id",
            "instrument",
            "kind",
            "lookalike",
            "side",
            "price_nanos",
            "start_ns",
            "end_ns",
            "refills",
            "params",
            "side_sign",
            "decisive_ns",
            "outcome",
        ]
        rows = episodes(summary.episodes_path)
        for symbol in ("SIMA", "SIMB"):
            mine = [e for e in rows if e["instrument"] == symbol]
            assert {(e["kind"], e["lookalike"]) for e in mine} == {
                (k, look) for k in KINDS for look in (False, True)
            }
        for e in rows:
            assert e["side_sign"] == {"B": 1, "A": -1, "N": 0}[e["side"]]
            assert e["start_ns"] <= e["decisive_ns"] <= max(e["end_ns"], e["start_ns"]) + 5 * S, e
            if e["kind"] in NEW_KINDS and not e["lookalike"] and e["kind"] != "contraction":
                assert e["side"] in ("B", "A"), e
            if e["kind"] == "contraction" or (e["lookalike"] and e["kind"] in ("institutional", "creep")):
                assert e["side"] == "N", e
            if e["kind"] in PRICED and (not e["lookalike"] or e["kind"] == "wall"):
                assert e["price_nanos"] != UNDEF_PRICE, e
            elif e["kind"] in NEW_KINDS:
                assert e["price_nanos"] == UNDEF_PRICE, e
            if e["kind"] == "wall":
                expect = {"cancelled_at_once"} if e["lookalike"] else {"pulled", "eaten"}
                assert e["outcome"] in expect and e["p"]["outcome"] == e["outcome"]
            else:
                assert e["outcome"] is None


def test_a_withdrawal_in_overlap_mode_pulls_at_its_touch(tmp_path: Path) -> None:
    # the integration run's seed: until the s25 plan layout (creeps in clusters of their own),
    # SIMA's bid side was swept bare when its withdrawal (SIMA-4) was due, which then waited for a
    # touch; the new layout of this seed (and of seeds 1-6) has no withdrawal due on a bare side,
    # so the wait itself is checked on a hand-built book (test_sim_agents.py) and here the pull
    summary = simulate(785682, 1, 30 * MINUTE_NS, tmp_path, "equity", overlap=True, progress=False)
    ev = _feed(summary).events
    for e in _of(summary, "withdrawal", False):
        side = BID if e["side"] == "B" else ASK
        assert e["price_nanos"] != UNDEF_PRICE and e["start_ns"] == e["decisive_ns"] == e["end_ns"]
        # the pull is in the feed, at its touch: orders cancelled at that instant at or behind the price
        at = (ev.column("ts_event_ns").to_numpy() == e["start_ns"]) & (ev.column("side").to_numpy() == side)
        at &= ev.column("action").to_numpy() == L3_CANCEL
        px = ev.column("price_nanos").to_numpy()[at]
        assert px.size and (px.max() if side == BID else px.min()) == e["price_nanos"], (px, e)
    assert summary.not_planted == []


def test_walls_rest_in_the_rebuilt_book_then_go(plant_run: SimSummary, crypto_feed: Feed) -> None:
    f = crypto_feed
    for e in _of(plant_run, "wall", False):
        until = e["p"].get("eat_start_ns", e["p"]["gone_ns"])
        rows = range(f.at(e["start_ns"] + S // 2), f.at(until - S // 2) + 1)
        sizes = [f.level_size(r, e["side"], e["price_nanos"]) for r in rows]
        assert len(rows) >= 20 and None not in sizes, e
        # 10x the median best depth of this very feed, at the episode price, for the whole stand
        assert min(sizes) >= 10 * f.best_depth_median, (min(sizes) / f.best_depth_median, e)
        # gone: what rests at its price a second later is less than the wall alone (background
        # orders join the level meanwhile, so "back to ordinary depth" would depend on the seed)
        wall_nanos = e["p"]["size_lots"] * get_preset("crypto").instrument(0).lot_nanos
        after = f.level_size(f.at(e["end_ns"] + S), e["side"], e["price_nanos"])
        assert after is not None and after < wall_nanos, (after, wall_nanos, e)
        if e["outcome"] == "eaten":
            # the wall went by trades: executed volume at its price covers it
            t = f.trades
            px = t.column("price_nanos").to_numpy()
            ts = t.column("ts_event_ns").to_numpy()
            at = (px == e["price_nanos"]) & (ts >= until) & (ts <= e["end_ns"])
            lot = get_preset("crypto").instrument(0).lot_nanos
            assert t.column("size_nanos").to_numpy()[at].sum() >= e["p"]["size_lots"] * lot
    for e in _of(plant_run, "wall", True):
        # the look-alike: as large, gone within half a second
        assert e["end_ns"] - e["start_ns"] <= 500_000_000
        wall_nanos = e["p"]["size_lots"] * get_preset("crypto").instrument(0).lot_nanos
        sizes = [
            f.level_size(r, e["side"], e["price_nanos"])
            for r in range(f.at(e["end_ns"] + S), f.at(e["end_ns"] + 3 * S))
        ]
        assert all(s is not None and s < wall_nanos for s in sizes), (sizes, wall_nanos, e)


def test_spikes_jump_several_sigma_with_volume(plant_run: SimSummary, crypto_feed: Feed) -> None:
    f = crypto_feed
    sigma = one_second_sigma(f)
    grid_1s = np.arange(f.grid_ns[0], f.grid_ns[-1] - S, S)
    vol_median = np.median([f.volume(int(t), int(t) + S) for t in grid_1s])
    for e in _of(plant_run, "spike", False):
        t = e["decisive_ns"]
        # the jump's reach: the furthest the mid went its way within 1 s of the jump, from half a
        # second before (the grid's mid after 1 s alone can already be on its way back: seed 991746
        # reached further, yet stood 4.5 ticks away at +1 s against a 4.6-tick bar)
        seg = f.mid_ticks[f.at(t - S // 2) : f.at(t + S) + 1]
        move = float(np.max((seg - seg[0]) * e["side_sign"]))
        print("spike", e["p"]["jump_ticks"], "ticks planted; moved", move, "sigma", sigma)
        assert move >= 5 * sigma, (move, sigma, e)
        assert f.volume(t, t + S) >= 5 * vol_median
    for e in _of(plant_run, "spike", True):
        t = e["decisive_ns"]
        # inside its stretch the planted jump is ordinary: under 3.5 local sigma (1 s mid changes
        # there, from the feed; the move itself rides on that volatility, so the planted size is judged)
        local = np.diff(f.mid_ticks[f.at(e["start_ns"]) : f.at(e["end_ns"]) : S // 250_000_000])
        local_sigma = float(np.sqrt(np.mean(local**2)))
        print("look-alike spike of", e["p"]["jump_ticks"], "ticks; local sigma", local_sigma)
        assert e["p"]["jump_ticks"] < 3.5 * local_sigma and local_sigma > sigma
        # it trades (the same sweep order as a spike's); how much depends on what the volatile
        # book holds within its few ticks: 0.9-36x the median 1 s volume over 30 seeds, so no
        # level is asserted (2x failed on seeds 574017 and 289152)
        assert f.volume(t, t + S) > 0


def test_creep_drifts_one_way_with_passive_fills(plant_run: SimSummary, crypto_feed: Feed) -> None:
    f = crypto_feed
    sigma = one_second_sigma(f)
    rate = len(f.event_ts) / ((f.grid_ns[-1] - f.grid_ns[0]) / S)
    lot = get_preset("crypto").instrument(0).lot_nanos
    for e in _of(plant_run, "creep", False):
        t0, t1 = e["start_ns"], e["end_ns"]
        planned = e["p"]["drift_ticks_per_s"] * (t1 - t0) / S
        moved = f.mid_change(t0, t1)
        print("creep planned", planned, "moved", moved)
        # the book follows the drifting fair price with a lag: measured 0.43-1.7x the plan
        assert moved * e["side_sign"] >= 0.3 * abs(planned)
        # one-directional: 1 s mid steps its way outnumber those against it at least twice over (a
        # random walk gives as many each way; measured 12:3 to 33:1 over 37 seeds). The size of the
        # steps is not judged: the drift (~1 tick/s) is of the order of the feed's 1 s sigma
        steps = np.diff(f.mid_ticks[f.at(t0) : f.at(t1) : 4]) * e["side_sign"]
        assert (steps > 0).sum() >= 2 * (steps < 0).sum(), (steps, sigma)
        fills = 0
        for child in range(1, 61):  # children are 0.5-2x the median trade (30 lots)
            fills += adds_filled(f, e["side"], child * lot * 1, t0, t1) if child >= 15 else 0
        assert fills >= 0.5 * e["p"]["passive_fills"], (fills, e)
    for e in _of(plant_run, "creep", True):
        r = f.events_in(e["start_ns"], e["end_ns"]) / ((e["end_ns"] - e["start_ns"]) / S)
        assert r < 0.6 * rate  # a quiet period


def test_contraction_compresses_the_range_not_the_activity(plant_run: SimSummary, crypto_feed: Feed) -> None:
    f = crypto_feed
    rate = len(f.event_ts) / ((f.grid_ns[-1] - f.grid_ns[0]) / S)
    for e in _of(plant_run, "contraction", False):
        t0, t1 = e["start_ns"], e["end_ns"]
        n = t1 - t0
        ranges = np.array(
            [f.mid_range(int(a), int(a) + n) for a in np.arange(f.grid_ns[0], f.grid_ns[-1] - n, 5 * S)]
        )
        rng_ticks = f.mid_range(t0, t1)
        share_below = float((ranges < rng_ticks).mean())
        print("contraction range", rng_ticks, "share of windows below", share_below)
        assert share_below <= 0.2
        assert f.events_in(t0, t1) / (n / S) > 0.7 * rate
    for e in _of(plant_run, "contraction", True):
        assert f.events_in(e["start_ns"], e["end_ns"]) / ((e["end_ns"] - e["start_ns"]) / S) < 0.6 * rate


@pytest.mark.parametrize("preset", ["crypto", "equity"])
def test_institutional_children_one_sided_lookalike_two_sided(
    preset: str, plant_run: SimSummary, equity_plant_run: SimSummary, crypto_feed: Feed, equity_feed: Feed
) -> None:
    run = plant_run if preset == "crypto" else equity_plant_run
    f = crypto_feed if preset == "crypto" else equity_feed
    lot = get_preset(preset).instrument(0).lot_nanos
    for e in _of(run, "institutional", False) + _of(run, "institutional", True):
        p, t0, t1 = e["p"], e["start_ns"], e["end_ns"]
        child = p["child_lots"] * lot
        filled = {s: adds_filled(f, s, child, t0, t1) for s in "BA"}
        # the background's own filled adds of that size: a 100-share child is a round lot the equity
        # background adds all day (seed 501837: 7-12 a side in windows as long), and a buying parent's
        # aggressive children then fill the ask side's round lots too (35 in one window against 6
        # around it): where the size is the background's, the counts cannot tell the parent's side
        n = t1 - t0
        usual = {s: max(adds_filled(f, s, child, t0 - n, t0), adds_filled(f, s, child, t1, t1 + n))
                 for s in "BA"}
        print("institutional", e["side"], "passive", p["passive_children"], "filled adds", filled,
              "usual", usual)
        if e["lookalike"]:
            assert min(filled.values()) >= 0.3 * p["passive_children"]
        else:
            other = "A" if e["side"] == "B" else "B"
            assert filled[e["side"]] >= 0.7 * p["passive_children"]
            if usual["B"] == usual["A"] == 0:
                assert filled[other] <= 0.15 * p["passive_children"] + 3
        # the aggressive children reached the tape in full (a child a thin book could not fill is
        # re-sent until it is, within the episode's span); other traders only add to the volume
        assert f.volume(t0, t1 + S, BID) >= p["aggressive_buy_lots"] * lot, e
        assert f.volume(t0, t1 + S, ASK) >= p["aggressive_sell_lots"] * lot, e


def _busy(summary: SimSummary, f: Feed) -> np.ndarray:
    """Per episode: the 10 s around its start hold 1.25x the run's median 10 s event count."""
    counts = np.array(
        [
            f.events_in(int(a), int(a) + 10 * S)
            for a in np.arange(f.grid_ns[0], f.grid_ns[-1] - 10 * S, 10 * S)
        ]
    )
    threshold = 1.25 * np.median(counts)
    rows = episodes(summary.episodes_path)
    return np.array([f.events_in(e["start_ns"] - 5 * S, e["start_ns"] + 5 * S) >= threshold for e in rows])


def _overlapping(summary: SimSummary) -> np.ndarray:
    """Per episode: its span (at least 1 s) intersects another episode's."""
    rows = episodes(summary.episodes_path)
    spans = [(e["start_ns"], max(e["end_ns"], e["start_ns"] + S)) for e in rows]
    return np.array(
        [any(a < d and c < b for j, (c, d) in enumerate(spans) if j != i) for i, (a, b) in enumerate(spans)]
    )


def test_overlap_mode_overlaps_and_default_does_not(
    plant_run: SimSummary, overlap_run: SimSummary, crypto_feed: Feed
) -> None:
    f = _feed(overlap_run)
    share = {}
    for name, run, feed in (("disjoint", plant_run, crypto_feed), ("overlap", overlap_run, f)):
        other, busy = _overlapping(run), _busy(run, feed)
        share[name] = (other.mean(), busy.mean(), (other | busy).mean())
        print(
            f"{name}: episodes overlapping another {other.mean():.2f}, starting in a busy 10 s "
            f"{busy.mean():.2f}, either {(other | busy).mean():.2f}"
        )
    assert share["disjoint"][0] == 0.0
    assert share["overlap"][0] >= 0.7
    assert share["overlap"][2] >= 0.85
    assert share["overlap"][1] > share["disjoint"][1]
    # regime plants never overlap each other: the engine has one regime state
    regime = [
        e
        for e in episodes(overlap_run.episodes_path)
        if e["kind"] in ("creep", "contraction") or (e["kind"] == "spike" and e["lookalike"])
    ]
    spans = sorted((e["start_ns"], e["end_ns"]) for e in regime)
    assert all(b <= c for (_, b), (c, _) in zip(spans, spans[1:], strict=False))


def test_cli_overlap_flag_and_same_seed_same_bytes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from tapeflow.cli import main

    digests = []
    for name, extra in (("a", ["--overlap"]), ("b", ["--overlap"]), ("c", [])):
        argv = ["simulate", "--seed", "9", "--instruments", "1", "--duration", "20m", "--preset", "equity"]
        assert main([*argv, "--out", str(tmp_path / name), *extra]) == 0
        files = sorted((tmp_path / name).rglob("*.*"))
        digests.append([(p.relative_to(tmp_path / name), p.read_bytes()) for p in files if p.is_file()])
    out = capsys.readouterr().out
    assert "planted episodes, overlapping" in out and "planted episodes, disjoint" in out
    assert digests[0] == digests[1]  # overlap mode is as deterministic as the default
    assert digests[0] != digests[2]
    table = tmp_path / "a" / "episodes.parquet"
    overlapping = _overlapping(
        SimSummary(out_dir=tmp_path / "a", preset="equity", seed=9, episodes_path=table)
    )
    assert overlapping.mean() >= 0.7



@pytest.mark.parametrize(
    ("preset", "per_hour", "hours"), [("crypto", 12, 1), ("equity", 6, 2), ("crypto", 2, 1 / 3)]
)
def test_overlap_plan_gives_creep_its_duration(preset: str, per_hour: int, hours: float) -> None:
    # docs/simulator.md: a creep drifts 60-180 s (SIMULATOR.md: "a slow one-directional drift"); at
    # the stealth score test's density (crypto, 12 per kind per hour) the overlap planner cut every
    # creep to its cluster's 0.7 x 44 s = 31 s until 2026-12-07. The plan alone (no simulation):
    # the regime ops' spans, no two regime plants at once, no busy kick inside a real creep.
    from kernels.sim_orders import OP_BUSY, OP_REGIME
    from tapeflow.simulator.episodes import plan_episodes

    seed = random.SystemRandom().randrange(1_000, 1_000_000)
    print(f"plan {preset} {per_hour}/h: seed {seed}")
    plan = plan_episodes(np.random.default_rng([seed, 0, 7]), get_preset(preset), 0,
                         int(hours * 3600 * S), per_kind_per_hour=per_hour, overlap=True)
    ops = plan.op_array()
    regime = ops[ops[:, 1] == OP_REGIME]
    spans = {int(ep): (int(regime[regime[:, 6] == ep, 0].min()), int(regime[regime[:, 6] == ep, 0].max()))
             for ep in np.unique(regime[:, 6])}
    creeps = [spans[ep] for ep, row in enumerate(plan.rows)
              if row["kind"] == "creep" and not row["lookalike"]]
    assert len(creeps) == max(1, round(per_hour * hours))
    assert all(60 * S <= b - a <= 180 * S for a, b in creeps), [(b - a) / S for a, b in creeps]
    ordered = sorted(spans.values())
    assert all(b <= c for (_, b), (c, _) in zip(ordered, ordered[1:], strict=False))
    busy = ops[ops[:, 1] == OP_BUSY, 0]
    assert not any(((busy >= a) & (busy <= b)).any() for a, b in creeps)
    # the other regime plants keep what the rest of the window allows (28-31 s at 12/h crypto)
    assert min(b - a for a, b in ordered) >= 25 * S


def _whole_whale_parents(run: SimSummary, f: Feed) -> list[dict]:
    """The run's real whale parents its end did not cut off (a remainder still re-sent when the
    simulation stopped cannot be whole: last child in the run's last 10 s)."""
    parents = [e for e in _of(run, "whale", False) if e["p"]["style"] == "parent"]
    return [e for e in parents if e["end_ns"] < int(f.event_ts[-1]) - 10 * S]


def test_whale_parents_reach_the_tape_in_full(
    tmp_path: Path, equity_plant_run: SimSummary, equity_feed: Feed
) -> None:
    # SIMULATOR.md: "a parent order of 50-200x median": every planned child trades (a child a thin
    # book cannot fill is worked, its remainder re-sent), so the parent's side carries at least the
    # planned volume within its span (+1 s). Until s27 the children were not worked and the tape
    # held 7-79 % of the plan (dev seeds 101, 102). Each real whale is a parent or a sweep at even
    # odds: a run without a parent (1 in 16) simulates another hour
    f = equity_feed
    parents = _whole_whale_parents(equity_plant_run, f)
    if not parents:
        seed = equity_plant_run.seed + 1
        print(f"whale parents: no parent in the run, seed {seed}")
        more = simulate(seed, 1, 60 * MINUTE_NS, tmp_path / "more", "equity", episodes_per_hour=8,
                        progress=False)
        f = _feed(more)
        parents = _whole_whale_parents(more, f)
    assert parents
    lot = get_preset("equity").instrument(0).lot_nanos
    for e in parents:
        side = BID if e["side"] == "B" else ASK
        got = f.volume(e["start_ns"], e["end_ns"] + S, side)
        planned = e["p"]["size_lots"] // e["p"]["children"] * e["p"]["children"] * lot  # whole children
        print("whale parent", e["side"], planned // lot, "lots planned, tape", got // lot)
        assert got >= planned, e
