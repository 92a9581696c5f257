"""Sweep files, typed and validated: a base config, a grid and/or variants, seeds and budgets
resolved into the :class:`RunSpec` of every run (:func:`load_sweep`), and how runs are named
(:func:`run_name`, :func:`setting_of`). The file format is :mod:`vaelab.experiments.sweep`'s
docstring.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..config import Config, load_config, set_dotted, yaml_load
from ..errors import ConfigError, VaelabError
from ..io import read_text
from ..rundir import SweepDir
from .claim_schema import check_claims


@dataclass
class RunSpec:
    """One run of a sweep: its directory name, the values that set it apart, its full config."""

    name: str
    values: dict[str, Any]
    seed: int
    config: dict[str, Any]


@dataclass
class Sweep:
    """A parsed sweep: where it writes and the runs it is made of."""

    name: str
    directory: Path
    runs: list[RunSpec]
    keys: list[str]
    spec: dict[str, Any] = field(default_factory=dict)

    @property
    def files(self) -> SweepDir:
        """The sweep directory's paths and readers."""
        return SweepDir(self.directory)


def _format(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "x".join(_format(v) for v in value)
    if isinstance(value, float):
        value = f"{value:g}"
    return re.sub(r"[^A-Za-z0-9._+-]", "_", str(value))


def run_name(values: dict[str, Any], seed: int) -> str:
    """``latent_dim=2-beta=0.5-seed1``: the leaf names and values that set a run apart."""
    parts = [f"{key.split('.')[-1]}={_format(v)}" for key, v in values.items() if key != "name"]
    if "name" in values:
        parts.insert(0, _format(values["name"]))
    return "-".join(parts + [f"seed{seed}"])


def setting_of(run_name: str) -> str:
    """``latent_dim=2-seed3`` -> ``latent_dim=2`` (``base`` when only the seed differs)."""
    return re.sub(r"-?seed\d+$", "", run_name) or "base"


def _settings(grid: dict[str, list], variants: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The values of each setting, in sweep order: every variant with every grid point (the grid
    value wins where both set a key)."""
    combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())] if grid else [{}]
    return [{**dict(variant), **combo} for variant in variants for combo in combos]


def load_sweep(spec: dict[str, Any] | str | Path, budget: str = "quick", output_dir: str | Path | None = None) -> Sweep:
    """Parse and validate a sweep (a dict or a YAML file) for ``budget``.

    Every run's config is built and validated before anything runs.

    Raises:
        ConfigError: unknown top-level keys, an empty grid, an unknown budget, or invalid run
            configs (all problems listed).
    """
    source = None
    if isinstance(spec, (str, Path)):
        source = Path(spec)
        try:
            spec = yaml_load(read_text(source, "sweep file"))
        except FileNotFoundError:
            raise ConfigError(f"sweep file {source} does not exist; check the path") from None
        except VaelabError as exc:
            raise ConfigError(str(exc)) from None
        except yaml.constructor.ConstructorError as exc:
            raise ConfigError(f"sweep file {source}: {exc.problem}") from None
        except yaml.YAMLError:
            raise ConfigError(f"sweep file {source} is not valid YAML; fix its syntax") from None
    if not isinstance(spec, dict):
        raise ConfigError("a sweep must be a mapping with base, grid and/or variants, seeds")
    allowed = {"name", "base", "grid", "variants", "seeds", "seed_keys", "budgets", "output_dir", "description",
               "claims", "figures", "evaluate", "full_budget"}  # claims, figures, evaluate, full_budget: read by
    # experiments.studies and the study pages
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise ConfigError(f"unknown sweep keys {', '.join(unknown)} (valid: {', '.join(sorted(allowed))})")
    _check_types(spec)
    if "claims" in spec:
        check_claims(spec["claims"], f"sweep file {source}" if source else "the sweep's claims")
    base = spec.get("base") or {}
    if isinstance(base, str):
        path = Path(base) if source is None or Path(base).is_absolute() else source.parent / base
        base = load_config(path).to_dict()
    base = Config.from_dict(base).to_dict()
    budgets = spec.get("budgets") or {}
    if budget not in ("quick", "full") and budget not in budgets:
        raise ConfigError(f"unknown budget {budget!r}; use quick or full (or one the sweep defines)")
    grid = spec.get("grid") or {}
    variants = spec.get("variants") or ([{}] if grid or not spec.get("variants") else [])
    seeds = seeds_for(spec, budget, base["seed"])
    seed_keys = spec.get("seed_keys") or []
    if not isinstance(seed_keys, list) or not all(isinstance(k, str) for k in seed_keys):
        raise ConfigError("sweep seed_keys must be a list of dotted config keys, e.g. [data.subset_seed]")
    if not isinstance(grid, dict) or any(not isinstance(v, list) or not v for v in grid.values()):
        raise ConfigError("sweep grid must map dotted config keys to non-empty lists of values")
    name = str(spec.get("name") or (source.stem if source else "sweep"))
    if "/" in name or name.startswith("."):
        raise ConfigError(f"sweep name must be a plain directory name, got {name!r}")
    directory = Path(output_dir or spec.get("output_dir") or "runs/sweeps") / name
    runs, problems = [], []
    for values in _settings(grid, variants):
        for seed in seeds:
            overrides = {k: v for k, v in values.items() if k != "name"}
            overrides.update(budgets.get(budget) or {})
            overrides.update({key: seed for key in seed_keys})
            config = dict(base)
            config = json.loads(json.dumps(config))  # deep copy
            set_dotted(config, overrides)
            rname = run_name(values, seed)
            config.update(seed=seed, name=rname, output_dir=str(directory / "runs"))
            if config.get("training", {}).get("tracker_group") is None:  # MLflow parent run / W&B group
                config.setdefault("training", {})["tracker_group"] = name
            try:
                Config.from_dict(config)
            except ConfigError as exc:
                problems.append(f"{rname}: {exc}")
                continue
            runs.append(RunSpec(rname, values, seed, config))
    if problems:
        raise ConfigError("invalid sweep:\n  - " + "\n  - ".join(problems))
    names = [r.name for r in runs]
    if len(set(names)) != len(names):
        raise ConfigError("two runs of the sweep get the same name; give variants distinct `name`s")
    keys = list(dict.fromkeys([k for v in variants for k in v] + list(grid)))
    return Sweep(name, directory, runs, keys, spec)


def _check_types(spec: dict[str, Any]) -> None:
    """The shape of each top-level key of a sweep file, checked before anything is built.

    Raises:
        ConfigError: a key of the wrong type, naming it and its expected form.
    """
    def text(key):
        return key in spec and spec[key] is not None and not isinstance(spec[key], str)

    for key in ("name", "output_dir", "description", "full_budget"):
        if text(key):
            raise ConfigError(f"sweep {key} must be a string, got {spec[key]!r}")
    if "base" in spec and spec["base"] is not None and not isinstance(spec["base"], (dict, str)):
        raise ConfigError(f"sweep base must be a config mapping or the path of a config file, got {spec['base']!r}")
    grid = spec.get("grid")
    if grid is not None and (not isinstance(grid, dict) or not all(isinstance(k, str) for k in grid)):
        raise ConfigError("sweep grid must map dotted config keys (text) to lists of values, e.g. "
                          "grid: {model.latent_dim: [2, 20]}")
    variants = spec.get("variants")
    if variants is not None and (not isinstance(variants, list) or not all(
            isinstance(v, dict) and all(isinstance(k, str) for k in v) for v in variants)):
        raise ConfigError("sweep variants must be a list of mappings of dotted config keys to values, e.g. "
                          "variants: [{name: cnn, model.network: conv3}]")
    for variant in variants or []:
        if "name" in variant and not isinstance(variant["name"], (str, int, float)):
            raise ConfigError(f"a sweep variant's name must be text, got {variant['name']!r}")
    budgets = spec.get("budgets")
    if budgets is not None and (not isinstance(budgets, dict) or not all(
            isinstance(k, str) and (v is None or isinstance(v, dict)) for k, v in budgets.items())):
        raise ConfigError("sweep budgets must map budget names to mappings of dotted config keys, e.g. "
                          "budgets: {quick: {training.epochs: 3}, full: {}}")
    for overrides in (budgets or {}).values():
        if overrides and not all(isinstance(k, str) for k in overrides):
            raise ConfigError("sweep budgets must map budget names to mappings of dotted config keys (text)")


def seeds_for(spec: dict[str, Any], budget: str, default: int = 1) -> list[int]:
    """The seeds of a sweep at ``budget``: ``seeds`` is a list (every budget) or a mapping of
    budget -> list (a budget it does not name gets ``default``).

    Raises:
        ConfigError: ``seeds`` is neither, or holds something other than integers.
    """
    seeds = spec.get("seeds")
    if isinstance(seeds, dict):
        seeds = seeds.get(budget)
    if seeds is None or seeds == []:
        return [default]
    if not isinstance(seeds, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ConfigError("sweep seeds must be a list of integers, or a mapping of budget -> list, "
                          "e.g. seeds: {quick: [1, 2, 3], full: [1, 2, 3, 4, 5]}")
    return list(seeds)
