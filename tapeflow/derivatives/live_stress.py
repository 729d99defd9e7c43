"""The live stage of the insurance-fund stress levels: :func:`tapeflow.derivatives.derived.insurance_stress`
on the micro-batches of the live flow (the funds come from the REST pollers).

Each fund ``(venue, symbol, asset)`` keeps its running peak and its latest time. A batch's rows of a
fund go through ``insurance_stress`` itself with the peak carried in (a first row at the carried
peak, dropped from the output), so the levels equal those of one call over the whole table. A row
older than its fund's latest time would change a peak already used: it is a ``too_late`` dead
letter, never a silent drop (a poll answered again with the same time is not older: it counts, as
it does in the batch function).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from tapeflow.derivatives.derived import STRESS_SCHEMA, InsuranceStressConfig, insurance_stress
from tapeflow.derivatives.derived_signals import STRESS
from tapeflow.schemas.derivatives import INSURANCE_FUND
from tapeflow.schemas.records import INSURANCE_STRESS, REJECTED, UNDEF_PRICE
from tapeflow.wire.rejects import Reason, Rejects

__all__ = ["STRESS", "LiveStress", "stress_record"]
Fund = tuple[str, str, str]


class LiveStress:
    """Insurance-fund stress levels, incrementally (see the module docstring)."""

    def __init__(self, config: InsuranceStressConfig | None = None) -> None:
        self.config = config or InsuranceStressConfig()
        self._peak: dict[Fund, int] = {}
        self._last_ns: dict[Fund, int] = {}
        self.late_rows = 0

    def update(self, tables: dict[str, pa.Table]) -> list[tuple[str, pa.Table]]:
        """Take a micro-batch's tables (only ``insurance_fund`` is read); the stress rows of its
        funds' balances, and dead letters for the rows older than their fund's latest."""
        table = tables.get(INSURANCE_FUND.name)
        if table is None or not table.num_rows:
            return []
        rejects = Rejects("derived")
        funds = list(zip(*(table.column(k).to_pylist() for k in ("venue", "symbol", "asset")), strict=True))
        ts = table.column("ts_event_ns").to_numpy()
        balance = table.column("balance_nanos").to_numpy()
        ok = np.ones(table.num_rows, dtype=bool)
        for i, fund in enumerate(funds):
            if ts[i] < self._last_ns.get(fund, -(2**62)):
                why = (f"insurance fund {fund[0]} {fund[1]} {fund[2]} at {ts[i]} came after its balance "
                       f"at {self._last_ns[fund]}")
                rejects.add(Reason.TOO_LATE, why, "derived", repr(table.slice(i, 1).to_pylist()[0]),
                            ts_event_ns=int(ts[i]), symbol=fund[1])
                ok[i] = False
                self.late_rows += 1
        kept = table if ok.all() else table.filter(pa.array(ok))
        out: list[tuple[str, pa.Table]] = []
        if kept.num_rows:
            stress = self._levels(kept)
            if stress.num_rows:
                out.append((STRESS, stress))
        for fund, t, b, accepted in zip(funds, ts, balance, ok, strict=True):  # the state after the batch
            if accepted and b != UNDEF_PRICE:
                self._last_ns[fund] = max(self._last_ns.get(fund, int(t)), int(t))
                self._peak[fund] = max(self._peak.get(fund, int(b)), int(b))
        if len(rejects):
            out.append((REJECTED.name, rejects.table()))
        return out

    def flush(self) -> list[tuple[str, pa.Table]]:
        """End of the stream: nothing is held back (every row is computed as it comes)."""
        return []

    def _levels(self, table: pa.Table) -> pa.Table:
        # a carried peak goes in as the first row of its fund, then out again
        seeds = list(self._peak.items())
        if not seeds:
            return insurance_stress(table, self.config)
        seed_rows: dict[str, list] = {name: [] for name in table.column_names}
        for (venue, symbol, asset), peak in seeds:
            # at the fund's latest time, before the batch's rows in input order: first after the sort
            row = {"ts_event_ns": self._last_ns[(venue, symbol, asset)], "ts_recv_ns": -1,
                   "venue": venue, "symbol": symbol, "asset": asset, "balance_nanos": peak}
            for name in seed_rows:
                seed_rows[name].append(row[name])
        seeded = pa.concat_tables([pa.table(seed_rows, schema=table.schema), table])
        rows = insurance_stress(seeded, self.config)
        keep = np.ones(rows.num_rows, dtype=bool)
        # the seed is each fund's first row in time order (its time is at or before every row of the batch)
        key = list(zip(*(rows.column(k).to_pylist() for k in ("venue", "symbol", "asset")), strict=True))
        seen: set[Fund] = set()
        for i, fund in enumerate(key):
            if fund in self._peak and fund not in seen:
                seen.add(fund)
                keep[i] = False
        return rows.filter(pa.array(keep)).cast(STRESS_SCHEMA)


def stress_record(stress: pa.Table) -> pa.Table:
    """``insurance_stress`` rows (``derived.STRESS_SCHEMA``) as the ``insurance_stress`` record the
    lake and the warehouse store: the balance's time is both its times (a derived row, as the basis's)."""
    cols = {name: stress.column(name) for name in stress.column_names}
    cols["ts_recv_ns"] = stress.column("ts_event_ns")
    return INSURANCE_STRESS.table({name: cols[name] for name in INSURANCE_STRESS.column_names})
