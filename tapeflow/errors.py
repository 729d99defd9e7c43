"""The one exception hierarchy of tapeflow.

Bad input is a value (a ``Rejected`` row): decoders raise :class:`BadInput` for one bad frame,
line or record and turn it into a dead-letter row with its reason at the frame loop, so it never
escapes a decode. The other exceptions are for broken invariants and for requests tapeflow
cannot serve (an unknown format, an unreadable file, a legacy encoding).
"""

from __future__ import annotations


class TapeflowError(Exception):
    """Base of every error tapeflow raises on purpose."""


class FormatError(TapeflowError):
    """A file or stream is not in the format it was declared as (e.g. a legacy ``.dbz`` file)."""


class InputError(TapeflowError):
    """An input path that cannot be decoded at all: missing, a directory, empty, unreadable, or
    damaged at the file level (a compressed stream cut short). Line-level damage is never this:
    it is a ``rejected`` row."""


class ConfigError(TapeflowError):
    """A setting, DSN or command-line value is invalid."""


class BookError(TapeflowError):
    """A book kernel was given an impossible state (not bad market data: that is flagged)."""


class StorageError(TapeflowError):
    """The lake or the warehouse refused a write or a read."""


class BadInput(TapeflowError):
    """One unit of input (a frame, a line, a record) that cannot be normalized.

    Raised inside a decoder and caught at its frame loop, which writes a ``rejected`` row.

    Attributes:
        reason: the dead-letter reason, one of :class:`tapeflow.wire.rejects.Reason`.
        detail: what was wrong, naming the offending value ("size was '-3' at seq 1042").
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class BadNumber(BadInput):
    """A number that is not an exact finite decimal in range.

    Attributes:
        text: the value as given.
        what: the field it was ("bid price b"), named in ``detail``.
    """

    def __init__(self, reason: str, text: object, what: str = "") -> None:
        super().__init__(reason, f"{what} was {text!r}" if what else f"{text!r}")
        self.text = text
        self.what = what


class RegistryError(TapeflowError):
    """A venue folder cannot be loaded: it fails to import, or declares no ``FORMAT``."""
