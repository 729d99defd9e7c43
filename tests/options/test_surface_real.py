"""Surfaces of the real Deribit captures (../shared/data/README.md, "options/deribit").

The captures hold 10 options each, one or two per expiry: every expiry's smile is thin, so the test
checks that the snapshots hold what a plain reading of the tickers says they must (instruments fresh
at each grid time, OTM strikes with an IV per expiry), that every thin expiry is NaN with its reason,
and, for any expiry that is not thin, that its ATM IV lies within the range of its chain's mark IVs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tapeflow.cli import main
from tapeflow.options.chain import NS_PER_YEAR
from tests.conftest import need

MIN = 60_000_000_000


@pytest.fixture(scope="module")
def both(real_data: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    folder = need(real_data / "options" / "deribit")
    paths = sorted(str(p) for p in folder.glob("cryptofeed_DERIBIT*"))
    if len(paths) != 2:
        pytest.skip(f"expected the two Deribit captures in {folder}, found {len(paths)}")
    tmp = tmp_path_factory.mktemp("surface")
    argv = ["options", "--format", "deribit", *paths, "--out", str(tmp / "t.parquet"),
            "--surface", str(tmp / "s.parquet"), "--quiet"]
    assert main(argv) == 0
    return pq.read_table(tmp / "t.parquet").to_pandas(), pq.read_table(tmp / "s.parquet").to_pandas()


def _fresh(tickers: pd.DataFrame, t: int) -> pd.DataFrame:
    live = tickers[(tickers.ts_event_ns <= t) & (tickers.ts_event_ns >= t - MIN)]
    return live.sort_values("ts_event_ns", kind="stable").groupby("symbol").tail(1)


def test_snapshots_hold_the_fresh_instruments(both) -> None:  # noqa: ANN001
    tickers, surf = both
    snaps = surf.groupby(["underlying", "ts_ns"]).n_options.sum()
    times = sorted({t for _, t in snaps.index})
    assert [pd.Timestamp(t).strftime("%Y-%m-%d %H:%M") for t in times] == [
        "2021-04-05 17:48", "2021-04-05 17:49", "2021-04-05 17:50", "2021-04-17 16:45"]
    for (underlying, t), n in snaps.items():
        fresh = _fresh(tickers[tickers.underlying == underlying], t)
        assert n == len(fresh), (underlying, t)
    assert (surf.t_years == (surf.expiry_ns - surf.ts_ns) / NS_PER_YEAR).all()
    print(f"{len(snaps)} snapshots, {len(surf)} expiry rows, options per snapshot {snaps.tolist()}")


def test_thin_expiries_are_nan_with_a_reason_and_the_rest_is_sane(both) -> None:  # noqa: ANN001
    tickers, surf = both
    for row in surf.itertuples():
        chain = _fresh(tickers[(tickers.underlying == row.underlying) & (tickers.expiry_ns == row.expiry_ns)],
                       row.ts_ns)
        otm = np.where(chain.option_type == "C", chain.strike_price_nanos >= chain.underlying_price_nanos,
                       chain.strike_price_nanos < chain.underlying_price_nanos) & np.isfinite(chain.iv)
        assert row.n_strikes == chain.strike_price_nanos[otm].nunique()
        if row.n_strikes < 2:
            assert row.reasons == "too_few_strikes" and np.isnan([row.atm_iv, row.rr25, row.bf25]).all()
        elif np.isfinite(row.atm_iv):
            assert chain.mark_iv.min() <= row.atm_iv <= chain.mark_iv.max()
    thin = (surf.reasons == "too_few_strikes").sum()
    checked = {c: (int(surf[f"{c}_violations"].sum()), int(surf[f"{c}_checked"].sum()))
               for c in ("calendar", "butterfly", "parity")}
    print(f"thin expiries {thin} of {len(surf)}; with an ATM IV {np.isfinite(surf.atm_iv).sum()}; "
          f"violations/checked {checked}")
    # measured on these captures: every expiry has at most one OTM strike, no strike both sides
    assert thin == len(surf) == 36
    assert checked == {"calendar": (0, 0), "butterfly": (0, 0), "parity": (0, 0)}
