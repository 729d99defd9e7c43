"""The one exception hierarchy of tapeflow.

Bad input is a value (a ``Rejected`` row); these exceptions are for broken invariants and
for requests tapeflow cannot serve (an unknown format, an unreadable file, a legacy encoding).
"""

from __future__ import annotations


class TapeflowError(Exception):
    """Base of every error tapeflow raises on purpose."""


class FormatError(TapeflowError):
    """A file or stream is not in the format it was declared as (e.g. a legacy ``.dbz`` file)."""


class ConfigError(TapeflowError):
    """A setting, DSN or command-line value is invalid."""


class BookError(TapeflowError):
    """A book kernel was given an impossible state (not bad market data: that is flagged)."""


class StorageError(TapeflowError):
    """The lake or the warehouse refused a write or a read."""
