"""Experiment trackers: MLflow and Weights & Biases, two :class:`~vaelab.training.callbacks.Logger` s.

``training.logger`` (``--logger``) lists the loggers, comma-separated:

* ``tensorboard``: event files in ``RUN_DIR/tensorboard`` (:class:`vaelab.plots.callbacks.TensorBoard`);
* ``csv``: ``RUN_DIR/metrics.csv`` -- always written, as the run directory needs it (figures,
  ``vaelab compare``); the name is accepted so a list can say so;
* ``mlflow``: a run in a local SQLite store, ``sqlite:///<output_dir>/mlflow.db`` by default
  (``--mlflow-uri`` for another store or a server), experiment ``--mlflow-experiment``;
  artifacts under ``<output_dir>/mlartifacts`` for a new local experiment;
* ``wandb``: a Weights & Biases run, **offline** (files under ``RUN_DIR/wandb``, ``wandb sync``
  uploads them later) unless you are logged in (``WANDB_API_KEY`` or ``wandb login``);
  ``WANDB_MODE`` overrides.

Each tracker records the config as parameters (flattened dotted keys), every epoch's row of
``metrics.csv`` as metrics at step = epoch, and at the end the figures, ``summary.json``,
``config.yaml`` and the last checkpoint as artifacts. A resumed run continues the same tracker
run (its id is kept in ``RUN_DIR/trackers.json``). Runs with a ``training.tracker_group`` (a
sweep sets it to the sweep's name) are grouped: children of one MLflow parent run, one W&B group.

mlflow and wandb are optional (``pip install 'vaelab[mlflow]'`` / ``'vaelab[wandb]'``), imported
only when asked for; missing, they give one line with the install command.
"""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

from ..config import Config
from ..errors import ConfigError, option
from ..rundir import RunDir
from ..schema import flatten
from .callbacks import Logger


def _import(module: str, extra: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(f"{option('training.logger', extra)} needs the {module} package: pip install 'vaelab[{extra}]'") from None


def _artifacts(run_dir: Path) -> list[tuple[Path, str]]:
    """(file, artifact folder) pairs logged at the end of a run."""
    run = RunDir(run_dir)
    files = [(p, "figures") for p in sorted(run.figures.glob("*")) if p.is_file()]
    files += [(path, "") for path in (run.summary_json, run.config_yaml, run.environment_json, run.data_json)
              if path.is_file()]
    last = run.checkpoint("last")
    if last.is_file():
        files.append((last, "checkpoints"))
    return files


def default_mlflow_uri(config: Config) -> str:
    """``sqlite:///<absolute output_dir>/mlflow.db``, a local SQLite store beside the runs."""
    return "sqlite:///" + str((Path(config.output_dir) / "mlflow.db").resolve())


class MLflowTracker(Logger):
    """``--logger mlflow``: one MLflow run per vaelab run, through ``MlflowClient`` (no global
    active run, so runs in threads or processes do not interfere).

    Raises (at the run's start, one line): ConfigError when mlflow is not installed,
    VaelabError when its store cannot be opened or the run cannot start."""

    name = "mlflow"

    def __init__(self):
        super().__init__()
        self.mlflow = self.client = self.uri = self.run_id = self.experiment_id = None

    def open(self, config: Config) -> None:
        """Open the tracking store of ``config`` (``training.mlflow_uri``, default
        :func:`default_mlflow_uri`)."""
        self.mlflow = _import("mlflow", "mlflow")
        from mlflow.tracking import MlflowClient

        self.uri = config.training.mlflow_uri or default_mlflow_uri(config)
        if self.uri.startswith("sqlite:///"):
            Path(self.uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
        if self.uri.startswith(("http://", "https://")):
            _check_server(self.uri)  # MLflow would retry an unreachable server for minutes
        try:
            self.client = MlflowClient(tracking_uri=self.uri)
            self.client.search_experiments(max_results=1)  # opens the store now: a bad URI fails here, in one line
        except Exception as exc:  # noqa: BLE001 - MLflow's and its store's errors (SQLAlchemy, HTTP)
            raise _mlflow_error(self.uri, exc, "cannot open its store") from None

    def _experiment(self, config: Config) -> str:
        name = config.training.mlflow_experiment
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        location = None
        if self.uri.startswith("sqlite:///") or "://" not in self.uri:
            location = (Path(config.output_dir) / "mlartifacts").resolve().as_uri()
        try:
            return self.client.create_experiment(name, artifact_location=location)
        except self.mlflow.exceptions.MlflowException:  # created meanwhile by another process
            return self.client.get_experiment_by_name(name).experiment_id

    def start(self, trainer) -> None:
        self.open(trainer.config)
        self.run_id = (self.previous_state(trainer) or {}).get("run_id")
        try:
            self._start(trainer.config, trainer.run_dir.path)
        except Exception as exc:  # noqa: BLE001 - MLflow's and its store's errors (SQLAlchemy, HTTP) in one line
            raise _mlflow_error(self.uri, exc, "cannot start the run") from None

    def _start(self, config: Config, run_dir: Path) -> None:
        from mlflow.entities import Param

        self.experiment_id = self._experiment(config)
        if self.run_id is not None:  # a resumed run continues its MLflow run
            self.client.update_run(self.run_id, status="RUNNING")
            return
        tags = {"vaelab.run_dir": str(run_dir.resolve())}
        group = config.training.tracker_group
        if group:
            tags.update({"vaelab.group": group, "mlflow.parentRunId": mlflow_parent_run(config, self.client,
                                                                                         self.experiment_id)})
        run = self.client.create_run(self.experiment_id, run_name=run_dir.name, tags=tags)
        self.run_id = run.info.run_id
        params = [Param(k, json.dumps(v) if not isinstance(v, str) else v) for k, v in flatten(config.to_dict()).items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 parameters per batch
            self.client.log_batch(self.run_id, params=params[start:start + 100])

    def log_epoch(self, trainer, row: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, row["epoch"]) for k, v in row.items()
                   if k != "epoch" and isinstance(v, (int, float)) and math.isfinite(v)]
        self.client.log_batch(self.run_id, metrics=metrics)

    def finish(self, trainer, summary: dict[str, Any]) -> None:
        for path, folder in _artifacts(trainer.run_dir.path):
            self.client.log_artifact(self.run_id, str(path), folder or None)
        self.client.set_terminated(self.run_id, "FINISHED")

    def fail(self, trainer, exc: BaseException) -> None:
        if self.run_id is not None:
            from ..errors import TrainingInterrupted

            status = "KILLED" if isinstance(exc, (TrainingInterrupted, KeyboardInterrupt)) else "FAILED"
            self.client.set_terminated(self.run_id, status)

    def resume_state(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "tracking_uri": self.uri}


def _mlflow_error(uri: str, exc: Exception, what: str):
    """A one-line VaelabError for an error MLflow (or its store) raised at ``uri``."""
    from ..errors import VaelabError

    first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
    return VaelabError(f"MLflow at {uri} {what} ({type(exc).__name__}: {first}); check --mlflow-uri (a "
                       "sqlite:///FILE.db path, or the http:// address of a tracking server), or leave mlflow out of "
                       "--logger")


def _check_server(uri: str, timeout: float = 10.0) -> None:
    """Raise VaelabError unless a TCP connection to the host of ``uri`` opens within ``timeout`` s."""
    import socket
    from urllib.parse import urlsplit

    from ..errors import VaelabError

    parts = urlsplit(uri)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname or "", port), timeout=timeout).close()
    except OSError as exc:
        raise VaelabError(f"cannot reach the MLflow tracking server at {uri} within {timeout:.0f} s "
                          f"({exc.strerror or exc}); start it (`mlflow server`), fix --mlflow-uri, or leave mlflow out "
                          "of --logger") from None


def mlflow_parent_run(config: Config, client=None, experiment_id: str | None = None) -> str:
    """The id of the MLflow parent run of ``config.training.tracker_group`` in the config's
    experiment, created on first use (tag ``vaelab.parent_of``).

    Raises:
        ConfigError: mlflow is not installed.
    """
    group = config.training.tracker_group
    if client is None:
        tracker = MLflowTracker()
        tracker.open(config)
        client, experiment_id = tracker.client, tracker._experiment(config)
    found = client.search_runs([experiment_id], filter_string=f"tags.`vaelab.parent_of` = '{group}'", max_results=1)
    if found:
        return found[0].info.run_id
    return client.create_run(experiment_id, run_name=group, tags={"vaelab.parent_of": group}).info.run_id


def _wandb_logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    import netrc

    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


class WandbTracker(Logger):
    """``--logger wandb``: a W&B run in ``RUN_DIR/wandb``, offline unless you are logged in
    (``WANDB_MODE`` overrides).

    Raises (at the run's start, one line): ConfigError when wandb is not installed."""

    name = "wandb"

    def __init__(self):
        super().__init__()
        self.wandb = self.run = self.run_id = None

    def start(self, trainer) -> None:
        self.wandb = _import("wandb", "wandb")
        self.run_id = (self.previous_state(trainer) or {}).get("run_id")
        config, run_dir = trainer.config, trainer.run_dir.path
        mode = os.environ.get("WANDB_MODE") or ("online" if _wandb_logged_in() else "offline")
        self.run = self.wandb.init(
            project=config.training.wandb_project, name=run_dir.name, group=config.training.tracker_group,
            dir=str(run_dir), config=flatten(config.to_dict()), mode=mode, id=self.run_id,
            resume="allow" if self.run_id else None, reinit="create_new",
            settings=self.wandb.Settings(silent=True, console="off"),
        )
        self.run_id = self.run.id

    def log_epoch(self, trainer, row: dict[str, float]) -> None:
        epoch = row["epoch"]
        self.run.log({k: v for k, v in row.items() if k != "epoch"} | {"epoch": epoch}, step=epoch)

    def finish(self, trainer, summary: dict[str, Any]) -> None:
        run_dir = trainer.run_dir.path
        artifact = self.wandb.Artifact(f"{run_dir.name}", type="vaelab-run")
        for path, folder in _artifacts(run_dir):
            artifact.add_file(str(path), name=f"{folder}/{path.name}" if folder else path.name)
        self.run.log_artifact(artifact)
        self.run.summary.update({k: v for k, v in flatten(summary).items() if isinstance(v, (int, float, str))})
        self.run.finish()

    def fail(self, trainer, exc: BaseException) -> None:
        if self.run is not None:
            self.run.finish(exit_code=1)

    def resume_state(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "mode": self.run.settings.mode if self.run is not None else None}
