"""The Great Expectations boundary: one ephemeral context per process, pandas frames in, plain dicts out.

Great Expectations takes seconds to import, so nothing here imports it at module load; the first
validation does, and every later one reuses the same context and batch definition.

GX fingerprints every pandas batch it builds (``pandas_data_fingerprint``, a batch marker in its
result): ``pd.util.hash_pandas_object`` over the whole frame, and where a column holds lists (book
snapshot levels) a ``pickle.dumps`` of the whole frame instead. Nothing reads that marker here (a
suite result names its partition and row count), yet it cost ~14 s of one backfill run, so the
validations run with the fingerprint off.

GX also rebuilds an expectation's ``configuration`` (a pydantic ``dict()`` plus a new
``ExpectationConfiguration``) on every access, ~170 times per expectation while it plans the
metrics: nearly half of a validation's time. An expectation does not change while it is being
validated, so each validation here builds it once per expectation object (see
:func:`_configuration_once`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
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


@contextlib.contextmanager
def _no_fingerprint() -> Iterator[None]:
    """GX skips the batch fingerprint for frames at or above ``HASH_THRESHOLD`` bytes: make that every frame.

    Restored afterwards, so another Great Expectations user in the process keeps its fingerprints
    (validations here are serialized by ``_LOCK``).
    """
    from great_expectations.execution_engine import pandas_execution_engine as engine

    saved = engine.HASH_THRESHOLD
    engine.HASH_THRESHOLD = -1
    try:
        yield
    finally:
        engine.HASH_THRESHOLD = saved


@contextlib.contextmanager
def _configuration_once() -> Iterator[None]:
    """``Expectation.configuration`` computed once per expectation object during one validation.

    Keyed by object identity, and the objects are kept alive by the memo, so an id is never reused
    for another expectation while the memo lives; it is dropped (and the property restored) on exit.
    Callers that change a configuration (suite parameters) work on a deep copy, as GX does anyway.
    """
    from great_expectations.expectations.expectation import Expectation

    prop = Expectation.__dict__["configuration"]
    memo: dict[int, tuple[Any, Any]] = {}

    def configuration(self: Any) -> Any:
        hit = memo.get(id(self))
        if hit is None:
            hit = memo[id(self)] = (self, prop.fget(self))
        return hit[1]

    Expectation.configuration = property(configuration)  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        Expectation.configuration = prop  # type: ignore[method-assign]
        memo.clear()


def validate(suite_name: str, frame: pd.DataFrame, groups: list[list[Expect]], *,
             result_format: dict[str, Any] | None = None) -> list[list[Outcome]]:
    """Validate ``frame`` against every expectation of ``groups`` in one Great Expectations run.

    Args:
        suite_name: name of the transient expectation suite (shows in GX's own result JSON).
        frame: the data; row labels are the positions in the source table (examples use them).
        groups: expectations grouped by the check they belong to.
        result_format: GX's result format (default: SUMMARY with 20 offending rows listed).

    Returns:
        The outcomes, grouped and ordered as ``groups``.
    """
    if not any(groups):
        return [[] for _ in groups]
    import great_expectations as gx
    import great_expectations.expectations as gxe

    with _LOCK:
        with _no_fingerprint(), _configuration_once():
            batch = _batch_definition().get_batch(batch_parameters={"dataframe": frame})
            suite = gx.ExpectationSuite(name=suite_name)
            for g, group in enumerate(groups):
                for e, spec in enumerate(group):
                    expectation = getattr(gxe, spec.kind)(**spec.kwargs, meta={"group": g, "item": e})
                    suite.add_expectation(expectation)
            fmt = result_format or {"result_format": "SUMMARY", "partial_unexpected_count": 20}
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
