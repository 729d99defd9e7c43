"""Normalized record declarations and their derived Arrow and ClickHouse projections."""

from tapeflow.schemas.alerts import ALERT_RECORDS
from tapeflow.schemas.batch import BATCH_RECORDS
from tapeflow.schemas.core import Field, RecordType, common, concat
from tapeflow.schemas.records import *  # noqa: F403
from tapeflow.schemas.records import ALL_RECORDS

__all__ = ["ALERT_RECORDS", "ALL_RECORDS", "BATCH_RECORDS", "Field", "RecordType", "common", "concat"]
