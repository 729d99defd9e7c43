"""tapeflow: capture, repair, validate and store market microstructure data."""

__version__ = "0.1.0"
