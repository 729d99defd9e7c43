"""Reading a validated TOML config file (the signals thresholds, the alert rules): one way to read
it and one way to name the file, line and key of a bad value."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

from tapeflow.errors import ConfigError


def read_toml(path: Path, what: str) -> tuple[str, dict[str, Any]]:
    """The text and the parsed document of ``path``.

    Raises:
        ConfigError: unreadable (``cannot read the {what}``) or not valid TOML.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the {what}: {exc}") from exc
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return text, doc


class KeyLocator:
    """Errors that name where a dotted key (``rule.fast.min_confidence``) stands in the file."""

    def __init__(self, path: Path, text: str) -> None:
        self.path, self.lines = path, text.splitlines()

    def fail(self, dotted: str, message: str) -> ConfigError:
        line = self._line(dotted)
        where = f"{self.path}:{line}" if line else str(self.path)
        return ConfigError(f"{where}: {dotted}: {message}")

    def _line(self, dotted: str) -> int | None:
        # tomllib keeps no positions: find the key's own line after the header of its table
        parts = dotted.split(".")
        key = parts[-1].strip('"')
        header = [p.strip('"') for p in parts[:-1]]
        in_table = not header
        for number, line in enumerate(self.lines, 1):
            stripped = line.strip()
            if stripped.startswith("["):
                names = [n.strip().strip('"') for n in stripped.strip("[]").split(".")]
                in_table = names == header
                if in_table and not key:
                    return number
                continue
            if in_table and re.match(rf'^"?{re.escape(key)}"?\s*=', stripped):
                return number
        return None
