"""One flow process of ``tapeflow live --processes N`` or ``-i/-a``: ``python -m tapeflow.live.child
<bytewax.run arguments>``.

It runs ``bytewax.run`` as the one-process command does (:func:`tapeflow.live.cli.run_in_process`),
so a child stops cleanly on the SIGINT/SIGTERM its parent forwards and reports a failure in one
line, and it prints its workers' ``live-summary`` lines for the parent to add up.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from tapeflow.live.cli import run_in_process
from tapeflow.live.shutdown import SignalStop


def main(argv: Sequence[str]) -> int:
    """Run the flow with ``bytewax.run`` arguments ``argv``; returns the exit code."""
    # with a recovery store a signal aborts (tapeflow.live.shutdown says why)
    with SignalStop(announce=False, clean="-r" not in argv) as stop:
        code, summaries = run_in_process([sys.executable, "-m", "bytewax.run", *argv], dict(os.environ),
                                         sys.stdout)
    for line in summaries:
        sys.stdout.write(line if line.endswith("\n") else line + "\n")
    sys.stdout.flush()
    return stop.exit_code or code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
