"""The model kinds by name: what ``tapeflow.ml.walkforward`` trains, the Dagster run config's
``models`` and ``TAPEFLOW_ML_RETRAIN_KINDS`` accept (a light module: ``Settings`` reads it without
loading JAX)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from tapeflow.errors import ConfigError

if TYPE_CHECKING:
    from tapeflow.ml.examples import ExampleParams

MODELS = ("logreg", "mlp", "tcn")          # the default set: they read the examples' features
KINDS = (*MODELS, "deeplob")               # deeplob reads raw book levels (ExampleParams.book_levels)
BOOK_KINDS = ("deeplob",)                  # kinds whose inputs are the raw book levels


def checked_kinds(kinds: Sequence[str], where: str) -> tuple[str, ...]:
    """``kinds`` as a tuple, each a known kind and named once.

    Raises:
        ConfigError: an unknown or repeated kind, or none (``where`` says whose list it is).
    """
    out = tuple(kinds)
    bad = [k for k in out if k not in KINDS]
    if bad or not out or len(set(out)) != len(out):
        raise ConfigError(f"model kinds {list(out)} in {where}: each once, from {list(KINDS)}")
    return out


def dataset_params(kinds: Sequence[str], base: ExampleParams) -> ExampleParams:
    """The examples ``kinds`` read together: ``base``, plus its raw book levels (``book_levels`` =
    ``levels``) when one of them reads them (every kind of the set then trains on those rows)."""
    return replace(base, book_levels=base.levels) if set(kinds) & set(BOOK_KINDS) else base
