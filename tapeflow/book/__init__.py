"""Order books: L2 and L3 rebuild, the snapshot grid, BBO/quote building.

One builder of ``book_snapshot`` and ``quote`` rows for both runtimes: the live flow feeds the book
stage micro-batches, the batch rebuild is the same stage over whole tables.

- :mod:`tapeflow.book.stage`: :class:`~tapeflow.book.stage.BookStage` (``apply`` a micro-batch,
  ``replay`` whole tables, ``advance`` on a heartbeat, ``close``).
- :mod:`tapeflow.book.instrument`: one instrument's book inside the stage (one compiled call per batch).
- :mod:`tapeflow.book.rows`: the ``book_snapshot`` / ``quote`` tables (one list shape).
- :mod:`tapeflow.book.grid`: per-instrument grouping and the snapshot time grid rule.
- :mod:`tapeflow.book.l2`, :mod:`tapeflow.book.l3`: per-event replay (``replay_l2``, ``L2Book``,
  ``replay_l3``) and the table entry points (``book_snapshots``, ``quotes_from_deltas``,
  ``l3_book_snapshots``).
- :mod:`tapeflow.book.rebuild`: decode files of any format and rebuild their books.
- :mod:`tapeflow.book.partition`: one lake partition's books (the Dagster ``book`` assets).

Submodules are imported on use: the kernels behind them compile or load numba code.
"""
