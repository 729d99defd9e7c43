"""A Dagster materialization of one simulated instrument-day in a child process that SIGKILLs itself
at a chosen step (``python -m tests.crash.dagster_child ROOT KILL``; KILL as in :mod:`tests.crash.child`).

ROOT is a deployment (:class:`tests.dagster.conftest.Deployment`): its landing folder holds the
simulated files; the lake, the chdb warehouse and the journal are written there. Every asset and
check of the project's Definitions runs for the partition, on an ephemeral Dagster instance.
"""

from __future__ import annotations

import sys
from pathlib import Path

import dagster as dg

from tests.crash.child import Killer
from tests.dagster.conftest import SIM_DAY, Deployment, materialize, register

SYMBOL = "SIM-ETHUSDT"


def main(argv: list[str]) -> None:
    from assets.partitions import partition_key

    dep = Deployment(Path(argv[0]))
    instance = dg.DagsterInstance.ephemeral()
    register(instance, dep)
    killer = Killer(argv[1])
    killer.install()
    result = materialize(dep, instance, partition_key=partition_key(SIM_DAY, "sim", SYMBOL))
    print("DONE", killer.steps, result.success, flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
