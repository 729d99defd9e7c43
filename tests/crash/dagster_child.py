"""A Dagster materialization of one simulated instrument-day in a child process that SIGKILLs itself
at a chosen step (``python -m tests.crash.dagster_child ROOT KILL``; KILL as in :mod:`tests.crash.child`).

ROOT is a deployment (:class:`tests.dagster.conftest.Deployment`): its landing folder holds the
simulated files; the lake, the chdb warehouse and the journal are written there. Every asset and
check of the project's Definitions runs for the partition, on an ephemeral Dagster instance.

``python -m tests.crash.dagster_child --serve`` imports Dagster and the project's assets once, then
forks one such child per request line (``ROOT<TAB>KILL<TAB>OUT``) and answers with its exit code
(-9: killed); the child's stdout and stderr go to ``OUT.stdout`` and ``OUT.stderr``. A fresh
interpreter per run spent seconds importing what every run imports. The server imports no chdb (it
starts ClickHouse's thread pools, which a fork would not carry): each child opens its own.
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


def serve() -> None:
    # what every run imports (the assets import some lazily), imported once before the forks
    import os

    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")  # as tapeflow.ml.registry imports mlflow
    import great_expectations  # noqa: F401
    import mlflow.store.model_registry.sqlalchemy_store  # noqa: F401  (the champion's registry: ~5 s)
    import mlflow.store.tracking.sqlalchemy_store  # noqa: F401

    import assets.partitions  # noqa: F401
    import dagster_project.definitions  # noqa: F401
    import quality.runner  # noqa: F401
    import tapeflow.ml.registry  # noqa: F401
    import tapeflow.signals.detect  # noqa: F401

    assert "chdb" not in sys.modules, "chdb was imported before the fork"
    from tests.forkserver import serve as fork_each

    fork_each(main)  # one request a line: ROOT<TAB>KILL<TAB>OUT


if __name__ == "__main__":
    serve() if sys.argv[1:] == ["--serve"] else main(sys.argv[1:])
