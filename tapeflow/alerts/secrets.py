"""Secrets of the alert channels: read from the environment or a file, never printed.

A secret field of the alerts file takes ``env:NAME`` or ``file:PATH`` (a literal is refused, so a
key never sits in a committed file). The value lives in a :class:`Secret` whose ``repr`` and ``str``
are a mask, so a secret that reaches a log line, an exception or a ledger row by mistake shows as
``***`` (the canary test in ``tests/alerts`` checks every one of those paths).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from tapeflow.errors import ConfigError
from tapeflow.secrets import MASK, Secret, scrub

__all__ = ["MASK", "Secret", "resolve", "scrub"]


def resolve(reference: object, where: str, env: Mapping[str, str] | None = None) -> Secret:
    """Read the secret ``reference`` names (``env:NAME`` or ``file:PATH``).

    Args:
        reference: the value of the config key.
        where: the key, named in errors (the value never is).
        env: the environment (default ``os.environ``).

    Raises:
        ConfigError: not a reference, an unset variable, or an unreadable or empty file.
    """
    env = os.environ if env is None else env
    if not isinstance(reference, str) or not reference.startswith(("env:", "file:")):
        raise ConfigError(f"{where}: a secret must be given as 'env:VARIABLE' or 'file:PATH', "
                          "never written into the file")
    kind, _, name = reference.partition(":")
    if kind == "env":
        value = env.get(name)
        if not value:
            raise ConfigError(f"{where}: environment variable {name} is not set")
    else:
        try:
            value = Path(name).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{where}: cannot read secret file {name}: {type(exc).__name__}") from None
        if not value:
            raise ConfigError(f"{where}: secret file {name} is empty")
    return Secret(value, reference)
