"""The one configuration resource: where the lake, the warehouse, the landing folder and the journal are.

Every field defaults to the ``TAPEFLOW_*`` variable that :class:`tapeflow.settings.Settings` reads
(plus ``TAPEFLOW_LANDING`` and ``TAPEFLOW_JOURNAL`` for the batch inputs), resolved when a run or a
sensor uses the resource, never at import, so loading the definitions reads no environment.
"""

from __future__ import annotations

import os
from pathlib import Path

from dagster import ConfigurableResource

from tapeflow.ml.kinds import checked_kinds
from tapeflow.settings import Settings

DEFAULT_LANDING = "landing"
DEFAULT_JOURNAL = "journal"


class TapeflowResource(ConfigurableResource):
    """Paths and DSN of one tapeflow deployment.

    Attributes:
        lake_dir: Parquet lake root (default ``TAPEFLOW_LAKE``, else ``lake``).
        clickhouse_dsn: warehouse DSN (default ``TAPEFLOW_CLICKHOUSE``, else ``chdb:warehouse``).
        landing_dir: vendor drops, ``<landing>/<format>/...`` (default ``TAPEFLOW_LANDING``, else
            ``landing``).
        journal_dir: the live journal, ``<journal>/<venue>/<YYYY-MM-DD>.jsonl`` (default
            ``TAPEFLOW_JOURNAL``, else ``journal``).
        real_data: the shared real-data folder (default ``TAPEFLOW_REAL_DATA``).
        ml_flat_share: retraining's per-fold label threshold as a share of flat training rows
            (default ``TAPEFLOW_ML_FLAT_SHARE``, else None: the examples' own alpha).
        ml_retrain_kinds: the model kinds the retrain schedule and the drift sensor ask the
            ``champion`` asset to train (default ``TAPEFLOW_ML_RETRAIN_KINDS``, else logreg, mlp, tcn).
    """

    lake_dir: str | None = None
    clickhouse_dsn: str | None = None
    landing_dir: str | None = None
    journal_dir: str | None = None
    real_data: str | None = None
    ml_flat_share: float | None = None
    ml_retrain_kinds: list[str] | None = None

    def settings(self) -> Settings:
        """The tapeflow settings this resource stands for (explicit fields win over the environment)."""
        env = Settings.from_env()
        return Settings(
            lake_dir=Path(self.lake_dir) if self.lake_dir else env.lake_dir,
            clickhouse_dsn=self.clickhouse_dsn or env.clickhouse_dsn,
            real_data=Path(self.real_data) if self.real_data else env.real_data,
        )

    @property
    def flat_share(self) -> float | None:
        """The share of flat training rows retraining chooses its label threshold by (None: off)."""
        return self.ml_flat_share if self.ml_flat_share is not None else Settings.from_env().ml_flat_share

    @property
    def retrain_kinds(self) -> tuple[str, ...]:
        """The kinds retraining trains (``Settings.ml_retrain_kinds`` unless the field is set).

        Raises:
            ConfigError: an unknown or repeated kind, or an empty list.
        """
        if self.ml_retrain_kinds is None:
            return Settings.from_env().ml_retrain_kinds
        return checked_kinds(self.ml_retrain_kinds, "the resource's ml_retrain_kinds")

    @property
    def lake(self) -> Path:
        """The lake root."""
        return self.settings().lake_dir

    @property
    def dsn(self) -> str:
        """The warehouse DSN."""
        return self.settings().clickhouse_dsn

    @property
    def landing(self) -> Path:
        """The landing folder for vendor files."""
        return Path(self.landing_dir or os.environ.get("TAPEFLOW_LANDING", DEFAULT_LANDING))

    @property
    def journal(self) -> Path:
        """The live journal root."""
        return Path(self.journal_dir or os.environ.get("TAPEFLOW_JOURNAL", DEFAULT_JOURNAL))
