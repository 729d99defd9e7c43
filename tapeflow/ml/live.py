"""Live scoring: the champion model over one instrument's stream, micro-batch by micro-batch.

:class:`LivePredictor` keeps the instrument's recent 1 s ``book_snapshot`` rows and trades (enough
for the longest trailing window, the past returns and the TCN's window), rebuilds the
``training_examples`` features over that buffer with the batch code (``tapeflow.ml.training_examples``)
and scores the new grid rows through the model's jitted forward pass. Features at ``t`` read nothing
after ``t``, so each row's prediction is the batch one (:func:`score_table`), up to the rounding of
prefix sums over a shorter history.

The champion comes from a :class:`RegistryChampion`, which asks the registry for the champion's
version at most every ``min_interval_s`` and loads a newly promoted one: the next batch is scored by
it, without a restart. No champion yet: no prediction rows. Problems become ``rejected`` rows
(reasons ``model_load_failed``: the promoted version cannot be read, the previous one stays;
``prediction_failed``: the rows cannot be scored by this model, e.g. another grid step).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tapeflow.errors import TapeflowError
from tapeflow.ml.artifact import ModelArtifact, predict_examples
from tapeflow.ml.examples import SECOND_NS, training_examples
from tapeflow.schemas.core import concat
from tapeflow.schemas.ml import PREDICTION
from tapeflow.schemas.records import BOOK_SNAPSHOT, REJECTED, TRADE

REJECT_REASONS = ("model_load_failed", "prediction_failed")
# History kept whatever the model: a newly promoted model may need more than the one it replaces
# (a TCN 84 s, a flat model 65 s), and the buffer is trimmed before the switch is known.
RETAIN_NS = 150 * SECOND_NS


class Champion(Protocol):
    """Where a predictor gets its model: ``(name, version, model)`` or None (no champion yet)."""

    def current(self, venue: str, symbol: str) -> tuple[str, int, ModelArtifact] | None:
        """The instrument's champion now."""
        ...


class RegistryChampion:
    """The registry's champion per instrument, re-checked at most every ``min_interval_s``.

    Args:
        root: the registry folder (``tapeflow.ml.registry.default_root(lake)``).
        horizon_s: which model of the instrument (one per label horizon).
        min_interval_s: the least time between two looks at the champion alias (0: every batch).
        clock: seconds, monotonic (injectable for tests).
    """

    def __init__(self, root: Path, horizon_s: int = 10, *, min_interval_s: float = 1.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.root = root
        self.horizon_s = horizon_s
        self.min_interval_s = min_interval_s
        self.clock = clock
        self._registry = None
        self._held: dict[str, tuple[int, ModelArtifact]] = {}
        self._checked: dict[str, float] = {}
        self.errors: list[str] = []

    def current(self, venue: str, symbol: str) -> tuple[str, int, ModelArtifact] | None:
        """The champion of ``venue/symbol``, reloaded when the alias has moved."""
        from tapeflow.ml.registry import Registry, RegistryError, model_name

        name = model_name(venue, symbol, self.horizon_s)
        now = self.clock()
        if name not in self._checked or now - self._checked[name] >= self.min_interval_s:
            self._checked[name] = now
            if self._registry is None:
                self._registry = Registry(self.root)
            version = self._registry.champion_version(name)
            held = self._held.get(name)
            if version is not None and (held is None or held[0] != version):
                try:
                    self._held[name] = (version, self._registry.load(name, version))
                except (RegistryError, TapeflowError) as exc:
                    self.errors.append(f"{name} v{version}: {exc}")
        held = self._held.get(name)
        return None if held is None else (name, *held)


def score_table(art: ModelArtifact, examples: pa.Table, name: str, version: int, venue: str, symbol: str,
                warmed_up: np.ndarray | None = None) -> pa.Table:
    """``prediction`` rows for every row of a ``training_examples`` table (batch scoring).

    Args:
        art: the model.
        examples: one instrument's examples (``tapeflow.ml.training_examples``).
        name, version: the registered model and version written on the rows.
        venue, symbol: the instrument.
        warmed_up: overrides the table's own flag (the live buffer starts after the stream does).
    """
    seg, cls, proba = predict_examples(art, examples, name)
    n = len(seg.ts_ns)
    cols = {
        "ts_event_ns": seg.ts_ns, "ts_recv_ns": seg.ts_ns, "venue": [venue] * n, "symbol": [symbol] * n,
        "model_name": [name] * n, "model_version": np.full(n, version, np.int32),
        "model_kind": [art.spec.kind] * n, "horizon_s": np.full(n, art.horizon_s, np.int32),
        "predicted": (cls - 1).astype(np.int32), "p_down": proba[:, 0], "p_flat": proba[:, 1],
        "p_up": proba[:, 2],
        "warmed_up": examples.column("warmed_up").to_numpy(zero_copy_only=False) if warmed_up is None
        else warmed_up,
        "two_sided": examples.column("two_sided").to_numpy(zero_copy_only=False),
        "feature_schema_hash": [art.feature_schema_hash] * n,
    }
    return pa.table({f.name: pa.array(cols[f.name], f.arrow_type) for f in PREDICTION.fields})


def _rejected(venue: str, symbol: str, ts_ns: int, reason: str, detail: str) -> pa.Table:
    row = {"ts_event_ns": ts_ns, "ts_recv_ns": ts_ns, "venue": venue, "symbol": symbol, "reason": reason,
           "detail": detail, "location": "live prediction", "raw": b""}
    return pa.table({f.name: pa.array([row[f.name]], f.arrow_type) for f in REJECTED.fields})


class LivePredictor:
    """One instrument's live scorer: ``apply`` per micro-batch, ``close`` at the end of the stream.

    Args:
        champion: where the model comes from (:class:`RegistryChampion`).
    """

    def __init__(self, champion: Champion) -> None:
        self.champion = champion
        self.snaps: pa.Table | None = None
        self.trades: pa.Table | None = None
        self.first_ns: int | None = None
        self._errors_seen = 0

    def _keep_ns(self, art: ModelArtifact) -> int:
        p = art.params
        longest = max(*p.ofi_windows_s, p.vol_window_s, *p.flow_windows_s, *p.horizons_s)
        # the trailing windows, the past returns and labels, the TCN's rows, and one row for OFI's diff
        return (longest + 2) * SECOND_NS + (art.steps + 2) * p.step_ns

    def apply(self, venue: str, symbol: str, snaps: pa.Table | None, trades: pa.Table | None
              ) -> tuple[pa.Table, pa.Table]:
        """New 1 s snapshot rows and trades (arrival order) in; ``(prediction, rejected)`` rows out."""
        new = snaps is not None and snaps.num_rows > 0
        if new:
            snaps = snaps.select(BOOK_SNAPSHOT.column_names)  # type: ignore[union-attr]
            self.snaps = snaps if self.snaps is None else pa.concat_tables([self.snaps, snaps])
            if self.first_ns is None:
                self.first_ns = int(snaps.column("ts_event_ns")[0].as_py())  # type: ignore[union-attr]
        if trades is not None and trades.num_rows:
            trades = trades.select(TRADE.column_names)
            self.trades = trades if self.trades is None else pa.concat_tables([self.trades, trades])
        rejected = self._load_errors(venue, symbol)
        held = self.champion.current(venue, symbol)
        if not new or held is None or self.snaps is None:
            return PREDICTION.empty_table(), rejected
        name, version, art = held
        assert snaps is not None and self.first_ns is not None
        last_ns = int(self.snaps.column("ts_event_ns")[-1].as_py())
        since = int(snaps.column("ts_event_ns")[0].as_py())
        # the first new row still needs its whole history inside the buffer
        start_ns = since - max(self._keep_ns(art), RETAIN_NS)
        self.snaps = self.snaps.filter(pc.greater(self.snaps.column("ts_event_ns"), start_ns))
        buffer_start = int(self.snaps.column("ts_event_ns")[0].as_py())
        trades_in = self.trades if self.trades is not None else TRADE.empty_table()
        if trades_in.num_rows:
            # a trade is counted at the first grid instant at or after its arrival: older ones are done
            recent = pc.greater(trades_in.column("ts_recv_ns"), buffer_start - art.params.step_ns)
            trades_in = trades_in.filter(recent)
            self.trades = trades_in
        try:
            examples = training_examples(self.snaps, trades_in, art.params)
            longest_ns = max(*art.params.ofi_windows_s, art.params.vol_window_s,
                             *art.params.flow_windows_s) * SECOND_NS
            ts = examples.column("ts_event_ns").to_numpy()
            # the whole buffer is scored (past returns, past labels and the TCN's window read earlier
            # rows); only the new grid rows are emitted
            out = score_table(art, examples, name, version, venue, symbol, ts - longest_ns >= self.first_ns)
            out = out.filter(pc.greater_equal(out.column("ts_event_ns"), since))
        except TapeflowError as exc:
            bad = _rejected(venue, symbol, last_ns, "prediction_failed", f"{name} v{version}: {exc}")
            return PREDICTION.empty_table(), concat(REJECTED, [rejected, bad])
        return out, rejected

    def close(self) -> tuple[pa.Table, pa.Table]:
        """End of stream: nothing is held back (every grid row was scored when it arrived)."""
        return PREDICTION.empty_table(), REJECTED.empty_table()

    def _load_errors(self, venue: str, symbol: str) -> pa.Table:
        errors = getattr(self.champion, "errors", [])
        fresh = errors[self._errors_seen:]
        self._errors_seen = len(errors)
        now = int(self.snaps.column("ts_event_ns")[-1].as_py()) if self.snaps is not None else 0
        return concat(REJECTED, [_rejected(venue, symbol, now, "model_load_failed", e) for e in fresh])
