"""The text form of the derivatives polls a flow runs: ``binance_usdm:BTCUSDT,ETHUSDT;okx:BTC-USDT-SWAP``.

Kept apart from the pollers (and their decoders) so that settings can check it without loading them.
"""

from __future__ import annotations

from tapeflow.errors import ConfigError

# builders in tapeflow.derivatives.poll_config
POLL_VENUES = ("binance_usdm", "binance_coinm", "bybit", "okx")


def parse_spec(spec: str) -> list[tuple[str, tuple[str, ...]]]:
    """``;``-separated ``VENUE:SYMBOL[,SYMBOL...]`` -> ``[(venue, symbols), ...]``.

    Raises:
        ConfigError: an unknown venue, a venue without symbols, or nothing at all.
    """
    out: list[tuple[str, tuple[str, ...]]] = []
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        name, _, symbols = part.partition(":")
        if name.strip() not in POLL_VENUES:
            raise ConfigError(f"unknown derivatives poll venue {name.strip()!r} in {spec!r}; "
                              f"known: {', '.join(POLL_VENUES)}")
        names = tuple(s.strip() for s in symbols.split(",") if s.strip())
        if not names:
            raise ConfigError(f"derivatives poll {part!r} names no symbol (VENUE:SYMBOL[,SYMBOL...])")
        out.append((name.strip(), names))
    if not out:
        raise ConfigError(f"no derivatives poll in {spec!r} (VENUE:SYMBOL[,SYMBOL...][;...])")
    return out
