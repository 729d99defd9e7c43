"""Order books: L2 and L3 rebuild, the snapshot grid, BBO/quote building.

- :mod:`tapeflow.book.l2`: price-level replay over the numba/JAX kernels, BBO per event.
- :mod:`tapeflow.book.l3`: order-by-order replay (DBN MBO semantics).
- :mod:`tapeflow.book.stage`: :class:`~tapeflow.book.stage.BookStage`, the incremental builder of
  ``book_snapshot`` and ``quote`` rows the live flow runs per micro-batch.
- :mod:`tapeflow.book.rebuild`: decode files of any format and rebuild their books.

Submodules are imported on use: the kernels behind them compile or load numba code.
"""
