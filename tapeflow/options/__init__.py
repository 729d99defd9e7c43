"""Options (issue 14): Deribit option tickers, their implied vols from the kernels, ``tapeflow options``.

The pricing kernels are :mod:`kernels.options_pricing` (JAX) and :mod:`kernels.options_reference`
(NumPy); this package reads venue messages into option rows and runs the kernels over them
(docs/options.md).
"""

# ``tapeflow live --capture FILE... --format deribit-options`` runs the options flow (flows.options,
# docs/options.md "The live stage"), not a venue format of the market flow
LIVE_FORMAT = "deribit-options"
