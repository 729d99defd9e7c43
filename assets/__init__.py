"""Dagster assets and asset checks (batch runtime) wiring tapeflow, kernels and quality."""
