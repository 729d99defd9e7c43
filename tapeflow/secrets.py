"""Credentials in ``Settings``: read from ``NAME`` or from the file ``NAME_FILE``, never printed.

The value lives in a :class:`Secret` (one secret type for the project: the alerts' channel secrets,
the Databento key): its ``repr`` and ``str`` are a mask, and :meth:`Secret.reveal` is the only way
to the text, called by the one function that sends it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from tapeflow.errors import ConfigError

MASK = "***"


class Secret:
    """A credential; :meth:`reveal` is the only way to its text."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str) -> None:
        self._value = value
        self.source = source  # "env:NAME" or "file:PATH": safe to name in an error

    def reveal(self) -> str:
        """The secret's text, for the one call that sends it."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self.source}, {MASK})"

    def __str__(self) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self.source)


def scrub(text: str, secrets: list[Secret]) -> str:
    """``text`` with every secret's value replaced by the mask (for receiver replies quoted in errors)."""
    for secret in secrets:
        value = secret.reveal()
        if value:
            text = text.replace(value, MASK)
    return text

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
