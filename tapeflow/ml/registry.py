"""The model registry: MLflow (``mlflow-skinny``) over a local SQLite store under the lake.

One registered model per instrument and label horizon (:func:`model_name`). Each trained challenger
becomes an MLflow run (parameters: the network and training settings and every dataset parameter;
metrics: its held-out scores and the comparison with the champion; tags: the feature-schema hash, the
training partitions, the held-out window, the code version) with the model files as its artifact
(``tapeflow.ml.artifact``), and a model version pointing at them carrying the same tags. The champion
is the version holding the alias ``champion``; :meth:`Registry.promote` moves it.

Where: ``<lake>/_models/mlflow.db`` and ``<lake>/_models/artifacts`` (:func:`default_root`); browse
with ``tapeflow ml registry`` or the MLflow UI (``make mlflow-ui``).
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tapeflow.errors import TapeflowError
from tapeflow.ml.artifact import ModelArtifact
from tapeflow.ml.promotion import Comparison

CHAMPION = "champion"
DB_NAME = "mlflow.db"
ARTIFACTS = "artifacts"
_NAME_OK = re.compile(r"[^A-Za-z0-9_.-]+")


class RegistryError(TapeflowError):
    """The registry store is unreadable, or a named model or version does not exist."""


def default_root(lake_dir: Path) -> Path:
    """Where a deployment's registry lives: ``<lake>/_models``."""
    return lake_dir / "_models"


def model_name(venue: str, symbol: str, horizon_s: int) -> str:
    """The registered model of one instrument and horizon, e.g. ``tapeflow.sim.EQ0.10s``."""
    return _NAME_OK.sub("_", f"tapeflow.{venue}.{symbol}.{horizon_s}s")


def code_version(repo: Path | None = None) -> str:
    """The git commit of the code (``+dirty`` with uncommitted changes), ``unknown`` outside git."""
    where = repo or Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where,
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


@dataclass(frozen=True)
class VersionInfo:
    """One registered version as a user browses it."""

    name: str
    version: int
    champion: bool
    kind: str
    tags: dict[str, str]
    metrics: dict[str, float]
    run_id: str
    source: str


class Registry:
    """MLflow tracking + model registry on ``<root>/mlflow.db``, artifacts under ``<root>/artifacts``."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.uri = f"sqlite:///{self.root / DB_NAME}"
        # importing mlflow runs logging.config.dictConfig unless told not to: that shuts down every
        # logging handler the host process installed and closes their streams (a test run lost its
        # stderr that way); tapeflow keeps the host's logging as it is
        os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
        from mlflow.tracking import MlflowClient

        # the store's schema migrations log at INFO on first use (mlflow sets its level on import)
        logging.getLogger("mlflow").setLevel(logging.WARNING)
        logging.getLogger("alembic").setLevel(logging.WARNING)

        self.client = MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)

    def _experiment(self, name: str) -> str:
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        return self.client.create_experiment(name, artifact_location=str(self.root / ARTIFACTS / name))

    def register(self, name: str, art: ModelArtifact, *, metrics: Mapping[str, float],
                 training_partitions: Sequence[str], held_out: str, comparison: Comparison | None = None,
                 params: Mapping[str, Any] | None = None, code: str | None = None,
                 tags: Mapping[str, str] | None = None) -> int:
        """Log ``art`` as a run and register it as a new version of ``name`` (not promoted).

        Args:
            name: the registered model (:func:`model_name`).
            art: the trained model.
            metrics: held-out scores (``macro_f1``, ``macro_f1_lo``...), logged on the run.
            training_partitions: the lake partitions it was trained on (``training_examples/<key>``).
            held_out: the window both it and the champion were scored on.
            comparison: the promotion decision, stored as tags.
            params: extra run parameters (the training configuration).
            code: the code version (default :func:`code_version`).
            tags: extra tags (the instrument: ``venue``, ``symbol``).

        Returns:
            The new version number.
        """
        import tempfile

        from mlflow.entities import Metric, Param, RunTag

        tags = {**(tags or {}), "feature_schema_hash": art.feature_schema_hash, "kind": art.spec.kind,
                "horizon_s": str(art.horizon_s), "training_partitions": json.dumps(list(training_partitions)),
                "held_out": held_out, "code_version": code or code_version()}
        if comparison is not None:
            tags.update({"decision": comparison.reason, "promote": str(comparison.promote).lower(),
                         "comparison": json.dumps(comparison.as_dict())})
        run_params = {**{f"model.{k}": v for k, v in art.spec._asdict().items()},
                      **{f"dataset.{k}": v for k, v in asdict(art.params).items()},
                      "horizon_s": art.horizon_s, **(params or {})}
        run = self.client.create_run(self._experiment(name), tags=tags,
                                     run_name=f"{art.spec.kind}:{held_out}")
        run_id = run.info.run_id
        self.client.log_batch(run_id, metrics=[Metric(k, float(v), 0, 0) for k, v in metrics.items()
                                               if v == v],
                              params=[Param(k, str(v)) for k, v in sorted(run_params.items())],
                              tags=[RunTag("val_macro_f1", f"{art.val_macro_f1:.4f}")])
        with tempfile.TemporaryDirectory() as tmp:
            self.client.log_artifacts(run_id, str(art.save(Path(tmp) / "model")), "model")
        self.client.set_terminated(run_id)
        from mlflow.exceptions import MlflowException

        try:
            self.client.get_registered_model(name)
        except MlflowException:
            self.client.create_registered_model(name, description="tapeflow up/flat/down classifier")
        mv = self.client.create_model_version(name, f"{run.info.artifact_uri}/model", run_id=run_id,
                                              tags={**tags, **{f"metric.{k}": f"{v:.4f}" for k, v in
                                                               metrics.items() if v == v}})
        return int(mv.version)

    def promote(self, name: str, version: int) -> None:
        """Make ``version`` the champion of ``name`` (the alias moves; older versions stay)."""
        self.client.set_registered_model_alias(name, CHAMPION, str(version))

    def champion_version(self, name: str) -> int | None:
        """The champion's version number, None when ``name`` has none (one SQL query: cheap to poll)."""
        from mlflow.exceptions import MlflowException

        try:
            return int(self.client.get_model_version_by_alias(name, CHAMPION).version)
        except MlflowException:
            return None

    def load(self, name: str, version: int) -> ModelArtifact:
        """The model files of one version.

        Raises:
            RegistryError: no such version.
        """
        from mlflow.exceptions import MlflowException

        try:
            mv = self.client.get_model_version(name, str(version))
            local = Path(mv.source.removeprefix("file://"))
            if not local.is_dir():  # a remote artifact store: fetch a copy
                local = Path(self.client.download_artifacts(mv.run_id, "model"))
        except MlflowException as exc:
            raise RegistryError(f"model {name!r} has no version {version}: {exc.message}") from exc
        return ModelArtifact.load(local)

    def champion(self, name: str) -> tuple[int, ModelArtifact] | None:
        """``(version, model)`` of the champion, None when there is none."""
        version = self.champion_version(name)
        return None if version is None else (version, self.load(name, version))

    def names(self) -> list[str]:
        """Every registered model name."""
        return sorted(m.name for m in self.client.search_registered_models())

    def versions(self, name: str) -> list[VersionInfo]:
        """Every version of ``name``, newest first."""
        champ = self.champion_version(name)
        out = []
        for mv in self.client.search_model_versions(f"name = '{name}'"):
            run = self.client.get_run(mv.run_id)
            out.append(VersionInfo(name, int(mv.version), int(mv.version) == champ, mv.tags.get("kind", ""),
                                   dict(mv.tags), dict(run.data.metrics), mv.run_id, mv.source))
        return sorted(out, key=lambda v: -v.version)


@dataclass(frozen=True)
class Champion:
    """An instrument's champion as a backtest of one day sees it."""

    version: int
    model: ModelArtifact
    last_day: str   # the latest day it was trained or judged (held out) on
    clean: bool     # last_day is before the day: following it looks at nothing of the day or later


def champion_before(lake: Path, venue: str, symbol: str, horizon_s: int, date: str) -> Champion | None:
    """The champion of the instrument at ``horizon_s`` in the lake's registry, judged against ``date``
    (None: no registry or no champion)."""
    root = default_root(lake)
    if not (root / DB_NAME).is_file():
        return None
    registry = Registry(root)
    name = model_name(venue, symbol, horizon_s)
    version = registry.champion_version(name)
    if version is None:
        return None
    tags = registry.client.get_model_version(name, str(version)).tags
    seen = [p.rsplit("/", 1)[-1] for p in [*json.loads(tags.get("training_partitions", "[]")),
                                           tags.get("held_out", "")] if p]
    last = max(seen, default="")
    return Champion(version, registry.load(name, version), last, bool(last) and last < date)
