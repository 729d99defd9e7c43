"""Normalized record declarations and their derived Arrow and ClickHouse projections."""

from tapeflow.schemas.core import Field, RecordType, common, concat
from tapeflow.schemas.records import *  # noqa: F403
from tapeflow.schemas.records import ALL_RECORDS

__all__ = ["ALL_RECORDS", "Field", "RecordType", "common", "concat"]
