"""Credentials in ``Settings``: read from ``NAME`` or from the file ``NAME_FILE``, never printed.

The value lives in a :class:`~tapeflow.alerts.secrets.Secret` (one secret type for the project):
its ``repr`` and ``str`` are a mask, and :meth:`~tapeflow.alerts.secrets.Secret.reveal` is the
only way to the text, called by the one function that sends it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from tapeflow.alerts.secrets import MASK, Secret, scrub
from tapeflow.errors import ConfigError

__all__ = ["MASK", "Secret", "env_secret", "scrub"]


def env_secret(env: Mapping[str, str], name: str) -> Secret | None:
    """The secret in ``env[name]``, or in the file ``env[name + "_FILE"]`` names (None: neither set).

    Args:
        env: the environment.
        name: the variable, e.g. ``DATABENTO_API_KEY``.

    Raises:
        ConfigError: both are set, or the file cannot be read or is empty (the message names the
            variable and the file, never the value).
    """
    value, path = env.get(name, ""), env.get(f"{name}_FILE", "")
    if value and path:
        raise ConfigError(f"set {name} or {name}_FILE, not both")
    if value:
        return Secret(value.strip(), f"env:{name}")
    if not path:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{name}_FILE: cannot read secret file {path}: {type(exc).__name__}") from None
    if not text:
        raise ConfigError(f"{name}_FILE: secret file {path} is empty")
    return Secret(text, f"file:{path}")
