"""Rebuild books from normalized deltas: BBO per event and top-N snapshots.

The one entry point both runtimes call. The fast kernels live in ``kernels/``; this module
picks the backend, groups by instrument and turns arrays into ``book_snapshot`` tables.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from kernels.reference import l2_replay_reference
from tapeflow.schemas.records import BOOK_DELTA


@dataclass
class L2Replay:
    """Per-event outputs of an L2 replay of one instrument (arrays aligned with the input rows).

    ``bbo`` holds ``bid_px, bid_sz, ask_px, ask_sz`` int64[n] and ``status`` uint8[n]
    (0 valid, 1 resync, 2 crossed); ``snaps`` holds ``snap_*`` arrays [k, levels] for the rows
    asked for.
    """

    bbo: dict[str, np.ndarray]
    snaps: dict[str, np.ndarray]


def replay_l2(deltas: pa.Table, *, levels: int = 10, snapshot_rows: np.ndarray | None = None,
              backend: str = "auto") -> L2Replay:
    """Replay the ``book_delta`` rows of ONE instrument in order.

    Args:
        deltas: a ``book_delta`` table (one venue/symbol), in arrival order.
        levels: depth recorded at ``snapshot_rows``.
        snapshot_rows: row indices after which to record the top ``levels`` levels.
        backend: ``auto``, ``jax``, ``numba`` or ``reference``.
    """
    assert deltas.schema.names == BOOK_DELTA.column_names
    cols = {n: deltas.column(n).to_numpy() for n in ("side", "action", "price_nanos", "size_nanos", "flags")}
    out = l2_replay_reference(cols["side"], cols["action"], cols["price_nanos"], cols["size_nanos"],
                              cols["flags"], levels=levels, snapshot_rows=snapshot_rows)
    snaps = {k: v for k, v in out.items() if k.startswith("snap_")}
    bbo = {k: v for k, v in out.items() if not k.startswith("snap_")}
    return L2Replay(bbo=bbo, snaps=snaps)
