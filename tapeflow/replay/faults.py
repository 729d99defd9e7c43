"""Fault specs for the replay server: parse ``drop@120``-style specs and decide per frame index.

The index counts tape frames in tape order as they are queued to connections (see the package
docstring), so a fault hits the same frame in every run and fires exactly once even when the
client reconnects.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from tapeflow.errors import ConfigError
from tapeflow.timeutil import parse_duration_ns

KINDS = ("drop", "dup", "reorder", "disconnect", "stall")
_SPEC = re.compile(r"^(?P<kind>[a-z]+)@(?P<rel>\+)?(?P<index>\d+)(?::(?P<arg>\S+))?$")
DEFAULT_STALL_NS = 2_000_000_000


@dataclass(frozen=True)
class Fault:
    """One requested fault.

    Attributes:
        kind: ``drop``, ``dup``, ``reorder``, ``disconnect`` or ``stall``.
        index: global send index of the frame it applies to.
        stall_ns: how long a ``stall`` keeps the server silent (0 for other kinds).
    """

    kind: str
    index: int
    stall_ns: int = 0

    def spec(self) -> str:
        """The fault as the CLI spells it (``stall@10:2000ms``)."""
        tail = f":{self.stall_ns // 1_000_000}ms" if self.kind == "stall" else ""
        return f"{self.kind}@{self.index}{tail}"


@dataclass(frozen=True)
class Injected:
    """A fault the server really applied.

    Attributes:
        kind: the fault kind.
        index: global send index of the frame it hit.
        connection: id of the connection that frame was going to (1, 2, ... in accept order).
        location: ``file:line`` of the captured frame.
        random: True when drawn by the random fault plan rather than requested.
    """

    kind: str
    index: int
    connection: int
    location: str
    random: bool = False

    def as_dict(self) -> dict[str, object]:
        """JSON-ready view (for ``GET /_replay/status``)."""
        return {"kind": self.kind, "index": self.index, "connection": self.connection,
                "location": self.location, "random": self.random}


def parse_fault(spec: str, *, base_index: int = 0) -> Fault:
    """Parse ``KIND@N[:ARG]`` (``stall@1000:2s``); ``KIND@+N`` is relative to ``base_index``.

    Raises:
        ConfigError: unknown kind, bad index or bad stall duration (naming the spec).
    """
    m = _SPEC.match(spec.strip())
    if m is None:
        raise ConfigError(f"bad fault spec {spec!r}: expected KIND@N[:ARG], e.g. drop@120 or stall@1000:2s")
    kind, arg = m.group("kind"), m.group("arg")
    if kind not in KINDS:
        raise ConfigError(f"bad fault spec {spec!r}: unknown kind {kind!r} (known: {', '.join(KINDS)})")
    index = int(m.group("index")) + (base_index if m.group("rel") else 0)
    stall_ns = 0
    if kind == "stall":
        try:
            stall_ns = parse_duration_ns(arg) if arg else DEFAULT_STALL_NS
        except ConfigError as exc:
            raise ConfigError(f"bad fault spec {spec!r}: stall duration {arg!r} ({exc})") from exc
    elif arg is not None:
        raise ConfigError(f"bad fault spec {spec!r}: only stall takes an argument")
    return Fault(kind, index, stall_ns)


def parse_random_faults(spec: str) -> dict[str, float]:
    """Parse ``drop=0.001,dup=0.001`` into per-kind probabilities (stalls last 2 s).

    Raises:
        ConfigError: unknown kind or a probability outside [0, 1].
    """
    rates: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        kind, _, value = part.partition("=")
        if kind not in KINDS:
            raise ConfigError(f"bad random fault {part!r}: unknown kind {kind!r} (known: {', '.join(KINDS)})")
        try:
            rate = float(value)
        except ValueError:
            raise ConfigError(f"bad random fault {part!r}: {value!r} is not a probability") from None
        if not 0.0 <= rate <= 1.0:
            raise ConfigError(f"bad random fault {part!r}: probability {rate} outside [0, 1]")
        rates[kind] = rate
    return rates


@dataclass
class FaultPlan:
    """Requested faults by index plus optional random ones; :meth:`take` consumes them.

    Random draws depend only on ``(seed, index)``, so a run is reproducible whatever the
    connection pattern.
    """

    faults: list[Fault] = field(default_factory=list)
    rates: dict[str, float] = field(default_factory=dict)
    seed: int = 0

    def __post_init__(self) -> None:
        self._pending: dict[int, list[Fault]] = {}
        for f in self.faults:
            self.add(f)

    @classmethod
    def build(cls, faults: Iterable[str | Fault] = (), random_faults: str | dict[str, float] | None = None,
              seed: int = 0) -> FaultPlan:
        """A plan from specs or :class:`Fault` values and a random spec (string or dict)."""
        parsed = [f if isinstance(f, Fault) else parse_fault(f) for f in faults]
        if isinstance(random_faults, str):
            rates = parse_random_faults(random_faults)
        else:
            rates = dict(random_faults or {})
        return cls(parsed, rates, seed)

    def add(self, fault: Fault) -> None:
        """Schedule one more fault."""
        self._pending.setdefault(fault.index, []).append(fault)

    def pending(self) -> list[Fault]:
        """Faults not fired yet, by index."""
        # status() may run on another thread than the server's loop: never index a key that went
        return [f for i in sorted(self._pending) for f in self._pending.get(i, [])]

    def peek(self, index: int) -> list[Fault]:
        """The faults :meth:`take` would return for ``index`` now, left in the plan (the tape looks
        ahead at the frame it queues, so a stall or a disconnect stops it exactly there)."""
        if not self.rates and index not in self._pending:
            return []  # the common case, once per queued frame
        return [f for f, _ in self._draw(index, list(self._pending.get(index, [])))]

    def take(self, index: int) -> list[tuple[Fault, bool]]:
        """The faults for frame ``index`` (each with ``random``), removed from the plan."""
        return self._draw(index, self._pending.pop(index, []))

    def _draw(self, index: int, requested: list[Fault]) -> list[tuple[Fault, bool]]:
        hits = [(f, False) for f in requested]
        if self.rates:
            rng = random.Random(f"{self.seed}:{index}")
            for kind in KINDS:
                rate = self.rates.get(kind, 0.0)
                if rate and rng.random() < rate:
                    hits.append((Fault(kind, index, DEFAULT_STALL_NS if kind == "stall" else 0), True))
        return hits
