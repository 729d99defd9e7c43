"""The backtester: strategies over the reconstructed book and trades, with queue, latency and fee
models, and the risk report (docs/backtest.md)."""
