"""The venue registry: the only switch from a format name to its decoder, verifier, client, replay.

Each folder ``tapeflow/venues/<venue>/`` declares ``FORMAT = VenueFormat(...)`` in its
``__init__.py``, naming its parts as ``"module:attribute"`` strings that are imported on first
use, so listing the formats (``tapeflow --help``, ``tapeflow formats``) imports no decoder.
The CLI's ``--format`` choices, the replay server's formats, the live sources' clients and
``tapeflow verify`` all ask this module, so adding a venue is adding a folder.

The folders are found by scanning the ``tapeflow.venues`` package, never by importing it
statically: the live and replay frameworks sit below the venues (whose clients and replay
adapters build on them), and reach a venue only through this registry.

A folder that fails to import, or declares no ``FORMAT``, is an error naming the folder and the
exception: a format never goes missing silently.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tapeflow.errors import ConfigError, RegistryError

if TYPE_CHECKING:
    from tapeflow.wire.capture import Decoded

VENUES_PACKAGE = "tapeflow.venues"


@dataclass
class VerifyReport:
    """Outcome of checking a file against its own oracle."""

    ok: int
    total: int
    what: str
    failures: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.total > 0 and self.ok == self.total and not self.failures

    def line(self) -> str:
        return f"verified: {self.ok} of {self.total} {self.what}"


Decode = Callable[[Sequence[Path]], Iterator["Decoded"]]
Verify = Callable[[Sequence[Path]], list[VerifyReport]]


class VenueFormat:
    """A decodable input format, as its venue folder declares it.

    Each part is either the object itself or a ``"module:attribute"`` string imported on first use.

    Args:
        name: the CLI FORMAT name (lobster, dbn, binance, ...).
        decode: paths -> iterator of :class:`~tapeflow.wire.capture.Decoded` chunks; bad input
            becomes ``rejected`` rows, never an exception (only an unreadable or wrong-format
            file raises ``FormatError``).
        verify: paths -> reports against the files' own oracle (None: the format has none).
        client: the live connector class (a :class:`tapeflow.live.Connector`; None: no live feed).
        replay: the replay-server adapter class (a :class:`tapeflow.replay.protocol.VenueReplay`;
            None: the format cannot be served).
        description: one line for ``tapeflow formats``.
        bars: ``trade`` table -> the trades the venue's own bars count (``tapeflow bars``; None:
            every trade; IQFeed leaves out its basis ``O`` trades).
    """

    __slots__ = ("_parts", "description", "folder", "name")

    def __init__(self, name: str, decode: Decode | str, *, verify: Verify | str | None = None,
                 client: type | str | None = None, replay: type | str | None = None,
                 description: str = "", bars: Callable[[Any], Any] | str | None = None) -> None:
        self.name = name
        self.description = description
        self.folder = ""  # set by the registry: the venue folder that declared it
        self._parts: dict[str, Any] = {"decode": decode, "verify": verify, "client": client,
                                       "replay": replay, "bars": bars}

    def __repr__(self) -> str:
        return f"VenueFormat({self.name!r})"

    def _part(self, key: str) -> Any:
        value = self._parts[key]
        if isinstance(value, str):
            value = self._parts[key] = _load(value, self.name, key)
        return value

    @property
    def decode(self) -> Decode:
        """The decoder (imported on first use)."""
        return self._part("decode")

    @property
    def verify(self) -> Verify | None:
        """The verifier, or None when the format has no oracle."""
        return self._part("verify")

    @property
    def client(self) -> type | None:
        """The live connector class, or None when the venue has no live feed."""
        return self._part("client")

    @property
    def replay(self) -> type | None:
        """The replay adapter class, or None when the format cannot be served."""
        return self._part("replay")

    @property
    def bar_trades(self) -> Callable[[Any], Any] | None:
        """The venue's rule for which trades make bars, or None (every trade)."""
        return self._part("bars")

    @property
    def has_verify(self) -> bool:
        """Whether a verifier is declared (without importing it)."""
        return self._parts["verify"] is not None

    @property
    def has_client(self) -> bool:
        """Whether a live client is declared (without importing it)."""
        return self._parts["client"] is not None

    @property
    def has_replay(self) -> bool:
        """Whether a replay adapter is declared (without importing it)."""
        return self._parts["replay"] is not None


def _load(spec: str, fmt: str, part: str) -> Any:
    module, _, attr = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise RegistryError(f"format {fmt!r}: its {part} {spec!r} cannot be loaded: "
                            f"{type(exc).__name__}: {exc}") from exc


@functools.cache
def formats() -> dict[str, VenueFormat]:
    """Every format the venue folders declare, by name.

    Raises:
        RegistryError: a folder fails to import or declares no ``FORMAT`` (naming the folder
            and the exception), or two folders declare one name.
    """
    package = importlib.import_module(VENUES_PACKAGE)
    found: dict[str, VenueFormat] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
        if not info.ispkg:
            continue
        where = f"tapeflow/venues/{info.name}/"
        try:
            module = importlib.import_module(f"{VENUES_PACKAGE}.{info.name}")
        except Exception as exc:  # any failure of a venue folder is reported as that folder's
            raise RegistryError(f"{where} failed to import: {type(exc).__name__}: {exc}") from exc
        fmt = getattr(module, "FORMAT", None)
        if not isinstance(fmt, VenueFormat):
            raise RegistryError(f"{where} declares no FORMAT = VenueFormat(...) in its __init__.py")
        if fmt.name in found:
            raise RegistryError(f"{where} declares format {fmt.name!r}, already declared by "
                                f"tapeflow/venues/{found[fmt.name].folder}/")
        fmt.folder = info.name
        found[fmt.name] = fmt
    return found


def format_names() -> list[str]:
    """The format names, sorted (for ``--format`` choices)."""
    return sorted(formats())


def get_format(name: str) -> VenueFormat:
    """The format called ``name``.

    Raises:
        ConfigError: no venue folder declares it (naming the known formats).
        RegistryError: a venue folder is broken.
    """
    known = formats()
    if name not in known:
        raise ConfigError(f"unknown format {name!r}; known formats: {', '.join(sorted(known))}")
    return known[name]


def replayable() -> list[str]:
    """The formats a replay server can serve, sorted."""
    return sorted(n for n, f in formats().items() if f.has_replay)


def live_venues() -> list[str]:
    """The formats with a live connector, sorted."""
    return sorted(n for n, f in formats().items() if f.has_client)


def client_class(venue: str) -> type:
    """The live connector class of ``venue``.

    Raises:
        ConfigError: the venue is unknown or has no live connector (naming those that have one).
    """
    fmt = formats().get(venue)
    if fmt is None or not fmt.has_client:
        known = ", ".join(live_venues())
        raise ConfigError(f"no live connector for venue {venue!r}; venues with one: {known}")
    return fmt.client  # type: ignore[return-value]


def replay_adapter(name: str) -> type:
    """The replay adapter class of format ``name``.

    Raises:
        ConfigError: the format is unknown or cannot be served (naming those that can).
    """
    fmt = formats().get(name)
    if fmt is None or not fmt.has_replay:
        raise ConfigError(f"format {name!r} cannot be replayed; replayable: {', '.join(replayable())}")
    return fmt.replay  # type: ignore[return-value]
