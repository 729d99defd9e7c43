"""The Great Expectations boundary: one ephemeral context per process, pandas frames in, plain dicts out.

Great Expectations takes seconds to import, so nothing here imports it at module load; the first
validation does, and every later one reuses the same context and batch definition.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

_LOCK = threading.Lock()
_STATE: dict[str, Any] = {}


@dataclass(frozen=True)
class Expect:
    """One Great Expectations expectation, named by its class (``ExpectColumnValuesToBeBetween``)."""

    kind: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Outcome:
    """The result of one expectation, as plain values."""

    kind: str
    kwargs: dict[str, Any]
    success: bool
    result: dict[str, Any]


def _batch_definition() -> Any:
    if "bd" not in _STATE:
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        # tqdm bars per validation would flood the logs of a backfill with hundreds of partitions
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        source = context.data_sources.add_pandas("tapeflow_quality")
        _STATE["bd"] = source.add_dataframe_asset("partition").add_batch_definition_whole_dataframe("whole")
        _STATE["context"] = context
    return _STATE["bd"]


def validate(suite_name: str, frame: pd.DataFrame, groups: list[list[Expect]]) -> list[list[Outcome]]:
    """Validate ``frame`` against every expectation of ``groups`` in one Great Expectations run.

    Args:
        suite_name: name of the transient expectation suite (shows in GX's own result JSON).
        frame: the data; row labels are the positions in the source table (examples use them).
        groups: expectations grouped by the check they belong to.

    Returns:
        The outcomes, grouped and ordered as ``groups``.
    """
    if not any(groups):
        return [[] for _ in groups]
    import great_expectations as gx
    import great_expectations.expectations as gxe

    with _LOCK:
        batch = _batch_definition().get_batch(batch_parameters={"dataframe": frame})
        suite = gx.ExpectationSuite(name=suite_name)
        for g, group in enumerate(groups):
            for e, spec in enumerate(group):
                suite.add_expectation(getattr(gxe, spec.kind)(**spec.kwargs, meta={"group": g, "item": e}))
        fmt = {"result_format": "SUMMARY", "partial_unexpected_count": 20}
        run = batch.validate(suite, result_format=fmt)
    out: list[list[Outcome | None]] = [[None] * len(group) for group in groups]
    for res in run.results:
        meta = res.expectation_config.meta
        spec = groups[meta["group"]][meta["item"]]
        result = dict(res.result or {})
        if res.exception_info and res.exception_info.get("raised_exception"):
            result["exception"] = res.exception_info.get("exception_message")
        out[meta["group"]][meta["item"]] = Outcome(spec.kind, spec.kwargs, bool(res.success), result)
    return [[o for o in group if o is not None] for group in out]
