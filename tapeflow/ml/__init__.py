"""Machine-learning datasets built on the book (issue 12): see docs/models.md."""

from tapeflow.ml.examples import ExampleParams, feature_schema_hash, training_examples

__all__ = ["ExampleParams", "feature_schema_hash", "training_examples"]
