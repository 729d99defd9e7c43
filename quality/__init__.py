"""Great Expectations suites and their runner, with no Dagster inside.

``import quality`` stays cheap: Great Expectations (seconds to import) loads on the first
validation, and one ephemeral context then serves the whole process.
"""

from quality.config import Baseline, QualityConfig
from quality.docs import write_data_docs
from quality.result import CheckResult, SuiteResult
from quality.runner import (
    DATASETS,
    baselines_from_days,
    baselines_from_table,
    check_names,
    plan_suite,
    run_suite,
    session_opens,
    validate_plans,
)

__all__ = [
    "DATASETS",
    "Baseline",
    "CheckResult",
    "QualityConfig",
    "SuiteResult",
    "baselines_from_days",
    "baselines_from_table",
    "check_names",
    "plan_suite",
    "run_suite",
    "session_opens",
    "validate_plans",
    "write_data_docs",
]
