"""Machine-learning datasets built on the book (issue 12): see docs/models.md.

The names below load on first use, so ``tapeflow --help`` (which imports ``tapeflow.ml.cli``) loads
no Arrow, pandas or book kernels.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ExampleParams", "feature_schema_hash", "training_examples"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from tapeflow.ml import examples

        return getattr(examples, name)
    raise AttributeError(f"module 'tapeflow.ml' has no attribute {name!r}")
