"""Coverage-guided fuzzing of one decoder with atheris (libFuzzer).

``python -m tests.fuzz.atheris_target FORMAT [libFuzzer flags]``, e.g. ``-runs=500`` or
``-max_total_time=60``. The input bytes are the choices of :func:`tests.fuzz.venues.fuzz_once`
(read through a ``FuzzedDataProvider``): which unit of the format's valid sample to mutate and
how, so libFuzzer's coverage feedback steers structure-aware mutations, not raw bytes a decoder
would refuse at its first check. The venue's package and ``tapeflow/wire`` are instrumented, but
for their numba modules (the compiled block paths of Binance, LOBSTER and the simulator), whose
branches libFuzzer therefore does not see.

A crash (any exception but a ``TapeflowError``, or conservation broken) stops the run with the
traceback and writes the input as ``crash-<sha1>`` under ``-artifact_prefix``; replay it with
``python -m tests.fuzz.atheris_target FORMAT crash-<sha1>``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import atheris


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1].startswith("-"):
        print("usage: python -m tests.fuzz.atheris_target FORMAT [libFuzzer flags]", file=sys.stderr)
        raise SystemExit(2)
    fmt = argv[1]
    with atheris.instrument_imports(include=INSTRUMENTED, exclude=_compiled()):
        from tapeflow.venues import get_format
        from tests.fuzz import venues

        get_format(fmt).decode  # noqa: B018 -- imports the decoder inside the instrumented block
    folder = Path(tempfile.mkdtemp(prefix=f"atheris-{fmt}-", dir=_scratch()))

    def one_input(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        venues.fuzz_once(fmt, lambda n: fdp.ConsumeIntInRange(0, n - 1), folder)

    atheris.Setup([argv[0], *argv[2:]], one_input)
    atheris.Fuzz()


INSTRUMENTED = ("tapeflow.venues", "tapeflow.wire", "tapeflow.errors")


def _compiled() -> list[str]:
    """The instrumented packages' numba modules: numba cannot compile atheris' rewritten bytecode."""
    import tapeflow

    root = Path(tapeflow.__file__).parent.parent
    found = []
    for package in INSTRUMENTED:
        folder = root / package.replace(".", "/")
        for path in folder.rglob("*.py") if folder.is_dir() else ():
            if "numba" in path.read_text(encoding="utf-8"):
                found.append(".".join(path.relative_to(root).with_suffix("").parts))
    return found


def _scratch() -> str | None:
    shm = Path("/dev/shm")
    return str(shm) if shm.is_dir() else None


if __name__ == "__main__":
    main(sys.argv)
