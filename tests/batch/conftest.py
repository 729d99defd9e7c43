"""The simulated landing folder of the Dagster tests serves the batch library's tests too."""

from tests.dagster.conftest import sim_files  # noqa: F401  (a fixture)
