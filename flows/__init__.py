"""Bytewax dataflows (live runtime): sources, operators and sinks wiring tapeflow and kernels."""
