"""The run directory: the one owner of its on-disk format.

A run directory (``<output_dir>/<name>/``) holds everything needed to rebuild and resume a
run::

    config.yaml            the fully resolved config (loadable with ``vaelab train --config``)
    environment.json       seed, versions of Python/torch/numpy/vaelab, device, threads, command, git commit
    data.json              your own data only: its path, sha256, shapes (``--resume`` refuses changed data)
    data.npz               data given to ``vaelab.train(config, data=...)`` from Python (a streamed torch
                           Dataset: its test and validation splits only)
    metrics.csv            one row per epoch: train and evaluation recon/KL/negative ELBO, seconds
    summary.json           best epoch, final metrics, seconds per epoch (written at the end)
    checkpoints/last.safetensors, checkpoints/best.safetensors
    tensorboard/           TensorBoard event files (scalars per epoch, image grids, config as hparams)
    trackers.json          --logger mlflow/wandb: the tracker runs' ids (a resumed run continues them)
    evaluation.json        ``vaelab evaluate`` (``evaluation-<split>.json`` for another split)
    figures/*.png          every figure of :func:`vaelab.plots.plot_run` (of the last model)

Everything that reads or writes one of these files asks :class:`RunDir` for its path and goes
through its readers and (atomic) writers. The module imports neither torch nor numpy.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import CheckpointError
from .io import atomic_write_text

def unknown_network(values: Any) -> bool:
    """True when the config ``values`` (plain, as read from YAML) name a ``model.network``
    that nobody registered (a plug-in whose module was not imported)."""
    from . import registry

    model = values.get("model") if isinstance(values, dict) else None
    network = model.get("network") if isinstance(model, dict) else None
    return isinstance(network, str) and network not in registry.NETWORKS


@dataclass(frozen=True)
class _Folder:
    """A directory vaelab owns the layout of: its ``path``, usable wherever a path is."""

    path: Path

    def __init__(self, path: str | Path):
        object.__setattr__(self, "path", Path(path))

    def __fspath__(self) -> str:
        return str(self.path)

    def __str__(self) -> str:
        return str(self.path)

    @property
    def name(self) -> str:
        return self.path.name


class RunDir(_Folder):
    """The paths of one run directory and the readers and writers of its files.

    >>> run = RunDir("runs/mnist-z2")
    >>> run.metrics_csv, run.checkpoint("best")
    """

    # --- paths ---------------------------------------------------------------------------------

    @property
    def config_yaml(self) -> Path:
        return self.path / "config.yaml"

    @property
    def environment_json(self) -> Path:
        return self.path / "environment.json"

    @property
    def data_json(self) -> Path:
        return self.path / "data.json"

    @property
    def data_npz(self) -> Path:
        return self.path / "data.npz"

    @property
    def metrics_csv(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def summary_json(self) -> Path:
        return self.path / "summary.json"

    @property
    def steps_csv(self) -> Path:
        """The training terms every ``training.log_every_steps`` steps (when the run logs them)."""
        return self.path / "steps.csv"

    @property
    def trackers_json(self) -> Path:
        return self.path / "trackers.json"

    @property
    def probes_json(self) -> Path:
        return self.path / "probes.json"

    @property
    def error_txt(self) -> Path:
        return self.path / "error.txt"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def figures(self) -> Path:
        return self.path / "figures"

    @property
    def tensorboard(self) -> Path:
        return self.path / "tensorboard"

    def checkpoint(self, which: str = "last") -> Path:
        """``checkpoints/<which>.safetensors`` (``which``: 'last' or 'best')."""
        return self.checkpoints / f"{which}.safetensors"

    def evaluation_json(self, split: str = "test") -> Path:
        """``evaluation.json`` (the test split) or ``evaluation-<split>.json``."""
        return self.path / ("evaluation.json" if split == "test" else f"evaluation-{split}.json")

    @property
    def written_directories(self) -> tuple[Path, ...]:
        """The directories a training process writes atomically into (stale temporaries of a
        killed writer are cleaned from them)."""
        return (self.path, self.checkpoints, self.figures)

    def is_run(self) -> bool:
        """True when the directory holds a run (its ``config.yaml``)."""
        return self.config_yaml.is_file()

    def finished(self) -> bool:
        """True when ``summary.json`` exists (the training command completed)."""
        return self.summary_json.is_file()

    # --- config --------------------------------------------------------------------------------

    def read_config(self):
        """``config.yaml`` as a :class:`~vaelab.config.Config`.

        Raises:
            ConfigError: it is missing, empty, not valid YAML or an invalid config (a network
                nobody registered: with what the run imported, :meth:`plugin_hint`).
        """
        from .config import load_config
        from .errors import ConfigError

        try:
            return load_config(self.config_yaml)
        except ConfigError as exc:
            from .schema import yaml_load

            try:
                unknown = unknown_network(yaml_load(self.config_yaml.read_text()))
            except Exception:  # the file's own problem is what the error already says
                unknown = False
            hint = self.plugin_hint() if unknown else ""
            if hint:
                raise ConfigError(f"{exc}{hint}") from None
            raise

    def plugin_hint(self) -> str:
        """What to import so that this run's plug-in network is known again, from
        ``environment.json`` (``imports``, ``networks``): ``"; ..."`` to append to a message, or
        ``""`` when the run recorded none."""
        from .plugins import import_hint

        try:
            env = json.loads(self.environment_json.read_text())
        except (OSError, ValueError, UnicodeDecodeError):
            return ""
        if not isinstance(env, dict):
            return ""
        imports = [m for m in env.get("imports") or [] if isinstance(m, str)]
        if imports:
            return f"; this run imported {', '.join(imports)}: {import_hint(imports)}"
        builder = (env.get("networks") or {}).get("builder") if isinstance(env.get("networks"), dict) else None
        if isinstance(builder, str) and builder.startswith("__main__."):
            return (f"; this run's network builder {builder} was defined in a script: move it into a module and "
                    "import that with `vaelab --import MODULE`")
        return ""

    def write_config(self, config) -> Path:
        return atomic_write_text(self.config_yaml, config.to_yaml())

    # --- metrics.csv ---------------------------------------------------------------------------

    def write_metrics(self, history: list[dict[str, float]]) -> None:
        """Write the whole per-epoch history as CSV, atomically (so a crash never leaves half a
        row); nothing when there is no row yet."""
        write_metrics_csv(self.metrics_csv, history)

    def read_metrics(self) -> list[dict[str, float]]:
        """``metrics.csv``'s rows as floats (``epoch`` as int); empty cells read as NaN; no file
        or no row: ``[]``.

        Raises:
            CheckpointError: the file is unreadable or damaged (naming the line).
        """
        return read_metrics_csv(self.metrics_csv)

    # --- JSON files ----------------------------------------------------------------------------

    def read_summary(self) -> dict[str, Any] | None:
        """``summary.json`` (None while the run is still training).

        Raises:
            CheckpointError: it is damaged.
        """
        return read_json(self.summary_json)

    def write_summary(self, summary: dict[str, Any]) -> Path:
        return write_json(self.summary_json, summary)

    def read_environment(self) -> dict[str, Any] | None:
        return read_json(self.environment_json)

    def write_environment(self, environment: dict[str, Any]) -> Path:
        return write_json(self.environment_json, environment)

    def read_evaluation(self, split: str = "test") -> dict[str, Any] | None:
        """``evaluation.json`` when the run has been evaluated (``vaelab evaluate``), else None."""
        return read_json(self.evaluation_json(split))

    def write_evaluation(self, results: dict[str, Any], split: str = "test") -> Path:
        return write_json(self.evaluation_json(split), results)

    def completed_summary(self) -> dict[str, Any] | None:
        """``summary.json`` of a run that finished at least one epoch; None when it is missing,
        damaged (a relaunch of a sweep resumes such a run) or records no epoch."""
        try:
            summary = self.read_summary()
        except CheckpointError:
            return None
        return summary if summary and summary.get("epochs") else None

    def read_data_record(self) -> dict[str, Any] | None:
        """``data.json`` (your own data: path, sha256, shapes), or None.

        Raises:
            CheckpointError: it is damaged.
        """
        return read_json(self.data_json)

    def read_trackers(self) -> dict[str, dict[str, Any]]:
        """``trackers.json``: tracker name -> its run's ids; ``{}`` when there is none or it is
        damaged (the trackers then start new runs)."""
        try:
            value = read_json(self.trackers_json) or {}
        except CheckpointError:
            return {}
        return value if all(isinstance(v, dict) for v in value.values()) else {}

    def write_trackers(self, ids: dict[str, dict[str, Any]]) -> Path:
        return write_json(self.trackers_json, ids)

    def read_probes(self) -> dict[str, Any]:
        """``probes.json`` (probe values kept with a study's results), ``{}`` when absent.

        Raises:
            CheckpointError: it is damaged.
        """
        return read_json(self.probes_json) or {}

    def write_probes(self, values: dict[str, float | None]) -> Path:
        """Write ``probes.json`` (keys sorted, NaN as null: the caller's), atomically."""
        return atomic_write_text(self.probes_json, json.dumps(values, indent=2, sort_keys=True) + "\n")

    def read_steps(self) -> list[dict[str, float]]:
        """``steps.csv``'s rows (as :meth:`read_metrics`); ``[]`` when the run logs no steps."""
        return read_metrics_csv(self.steps_csv)


class SweepDir(_Folder):
    """A sweep directory, the one owner of its layout::

        sweep.yaml       the sweep file as run, its resolved run names, swept keys and budget
        runs/<name>/     one run directory (:class:`RunDir`) per run
        results.csv      the table of settings (mean and spread over seeds), and results.md
        figures/         the sweep's comparison figures
    """

    @property
    def sweep_yaml(self) -> Path:
        return self.path / "sweep.yaml"

    @property
    def runs(self) -> Path:
        return self.path / "runs"

    @property
    def results_csv(self) -> Path:
        return self.path / "results.csv"

    @property
    def results_md(self) -> Path:
        return self.path / "results.md"

    @property
    def figures(self) -> Path:
        return self.path / "figures"

    def run(self, name: str) -> RunDir:
        return RunDir(self.runs / name)

    def is_sweep(self) -> bool:
        """True when the directory holds a sweep (its ``sweep.yaml``)."""
        return self.sweep_yaml.is_file()

    def read_meta(self) -> dict[str, Any]:
        """``sweep.yaml`` as a mapping (``{}`` when it is empty).

        Raises:
            VaelabError: it is missing, not UTF-8 text or not a valid YAML mapping.
        """
        import yaml

        from .errors import VaelabError
        from .io import read_text
        from .schema import yaml_load

        try:
            meta = yaml_load(read_text(self.sweep_yaml, "sweep file"))
        except FileNotFoundError:
            raise VaelabError(f"{self.path} is not a sweep directory (no sweep.yaml); check the path") from None
        except yaml.YAMLError:
            raise VaelabError(f"{self.sweep_yaml} is not valid YAML; it is damaged: launch the sweep again to "
                              "rewrite it") from None
        if meta is not None and not isinstance(meta, dict):
            raise VaelabError(f"{self.sweep_yaml} should hold a mapping; it is damaged: launch the sweep again to "
                              "rewrite it")
        return meta or {}

    def write_meta(self, text: str) -> Path:
        """Write ``sweep.yaml`` (atomically)."""
        return atomic_write_text(self.sweep_yaml, text)

    def run_names(self) -> list[str]:
        """The run names ``sweep.yaml`` resolved, in the sweep's order.

        Raises:
            VaelabError: as :meth:`read_meta`.
        """
        return list(self.read_meta().get("resolved_runs", []))


def write_json(path: Path, value: dict[str, Any]) -> Path:
    """``value`` as indented JSON, written atomically."""
    return atomic_write_text(path, json.dumps(value, indent=2))


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``; None when the file does not exist.

    Raises:
        CheckpointError: it is not valid JSON or not an object.
    """
    if not path.exists():
        return None
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise CheckpointError(f"{path} is not valid JSON ({exc}); the file is truncated or damaged, "
                              "copy it again or delete it") from None
    if not isinstance(value, dict):
        raise CheckpointError(f"{path} should hold a JSON object; it is damaged")
    return value


def write_metrics_csv(path: Path, history: list[dict[str, float]]) -> None:
    """Write the whole per-epoch history as CSV at ``path``, atomically."""
    if not history:
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(history[0]))
    writer.writeheader()
    writer.writerows(history)
    atomic_write_text(path, buffer.getvalue())


def read_metrics_csv(path: Path) -> list[dict[str, float]]:
    """The rows of the ``metrics.csv`` at ``path`` (see :meth:`RunDir.read_metrics`)."""
    if not path.exists():
        return []
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path} cannot be read ({exc}); copy the run directory again") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows:
        return []
    header, history = rows[0], []
    if "epoch" not in header:
        raise CheckpointError(f"{path} has no 'epoch' column (header: {','.join(header)[:80]}); "
                              "it is not a vaelab metrics file")
    for line, values in enumerate(rows[1:], start=2):
        if not values:
            continue
        if len(values) != len(header):
            raise CheckpointError(
                f"{path}, line {line}: {len(values)} values for {len(header)} columns; the file is "
                "truncated or damaged (copy it again, or delete the line)"
            )
        try:  # an empty cell (a metric not computed that epoch) reads as NaN
            row = {k: float(v) if v.strip() else math.nan for k, v in zip(header, values)}
        except ValueError:
            raise CheckpointError(f"{path}, line {line}: a value is not a number; the file is damaged") from None
        row["epoch"] = int(row["epoch"])
        history.append(row)
    return history


# --- a run directory read back -----------------------------------------------------------------


@dataclass
class RunRecord:
    """What a run directory holds, read without touching the model or the data.

    ``history`` holds the rows of ``metrics.csv`` as floats (``epoch`` as int); ``summary`` is
    ``summary.json`` (None while the run is still training); ``eval_name`` is the evaluated
    split (``test`` or ``val``). Empty cells of ``metrics.csv`` read as NaN. A run of a sweep
    (:func:`vaelab.experiments.claims.collect_runs`) also has its ``setting`` (the run's name
    without the seed), ``seed`` and ``probes`` (``probes.json``: probe values computed earlier
    from the checkpoint and kept with the results).
    """

    run_dir: Path
    config: Any  # a vaelab.config.Config
    history: list[dict[str, float]] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    environment: dict[str, Any] | None = None
    evaluation: dict[str, Any] | None = None
    """``evaluation.json`` when the run has been evaluated (``vaelab evaluate``), else None."""
    setting: str = ""
    seed: int | None = None
    probes: dict[str, float] = field(default_factory=dict)
    evaluated_otherwise: list[str] = field(default_factory=list)
    """For a run of a sweep: the settings of the sweep file's ``evaluate:`` its evaluation was
    not made with (``["classifier independent"]``; :func:`vaelab.experiments.claims.evaluated_otherwise`)."""

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def files(self) -> RunDir:
        return RunDir(self.run_dir)

    @property
    def eval_name(self) -> str:
        if self.summary and self.summary.get("eval_split"):
            return self.summary["eval_split"]
        if self.history and "val_neg_elbo" in self.history[0]:
            return "val"
        return "test"

    @property
    def finished(self) -> bool:
        """True when ``summary.json`` exists (the training command completed)."""
        return self.summary is not None

    @property
    def best_row(self) -> dict[str, float] | None:
        """The epoch with the lowest evaluation negative ELBO (None without history)."""
        key = f"{self.eval_name}_neg_elbo"
        rows = [row for row in self.history if key in row and math.isfinite(row[key])]
        return min(rows, key=lambda row: row[key]) if rows else None

    def checkpoint(self, which: str) -> Path:
        return RunDir(self.run_dir).checkpoint(which)

    def value(self, dotted: str) -> Any:
        """The resolved config's value at ``dotted`` (``"model.latent_dim"``).

        Raises:
            KeyError: the config has no such key.
        """
        node: Any = self.config.to_dict()
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                raise KeyError(f"config has no key {dotted!r}")
            node = node[part]
        return node


def read_run(run_dir: str | Path) -> RunRecord:
    """Read ``run_dir``'s config, metrics, summary, environment and evaluation.

    A run still training (no ``summary.json`` yet) is fine, and so is one that has not
    finished an epoch (empty history).

    Raises:
        CheckpointError: ``run_dir`` is not a directory, has no or an invalid ``config.yaml``,
            or a damaged ``metrics.csv``/``summary.json`` (naming the file, the line and what
            to do).
    """
    from .errors import ConfigError

    files = RunDir(run_dir)
    if not files.path.is_dir():
        raise CheckpointError(f"run directory {files} does not exist; check the path")
    if not files.config_yaml.is_file():
        present = ", ".join(sorted(p.name for p in files.path.iterdir() if not p.name.startswith("."))[:8]) or "nothing"
        raise CheckpointError(
            f"{files} is not a run directory: config.yaml is missing (found: {present}); "
            "pass the directory that `vaelab train` wrote (runs/<name>)"
        )
    try:
        config = files.read_config()
    except ConfigError as exc:
        raise CheckpointError(f"cannot use the run's config: {exc}") from None
    return RunRecord(run_dir=files.path, config=config, history=files.read_metrics(), summary=files.read_summary(),
                     environment=files.read_environment(), evaluation=files.read_evaluation())
