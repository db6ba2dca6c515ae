"""Sweep settings: one YAML file (base recipe, search space, objective, scheduler) validated before Ray starts."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from deepgen import storage
from deepgen.errors import DeepgenError
from deepgen.train.config import TrainConfig, load_config, read_yaml_mapping, recipe_path

OBJECTIVES = ("min_auc", "mean_auc", "weighted")
SEARCHES = ("optuna", "random")
KEYS = ("recipe", "overrides", "epochs", "objective", "weight", "search", "seed", "space", "scheduler", "resources")
SCHEDULER_KEYS = ("asha", "grace_period", "reduction_factor")
RESOURCE_KEYS = ("workers", "cpus_per_worker", "max_concurrent_trials")


@dataclass
class Range:
    """A searched recipe key: uniform (or log-uniform) between ``low`` and ``high``, or ``fixed``."""

    low: float
    high: float
    log: bool = False

    @property
    def fixed(self) -> bool:
        return self.low == self.high


@dataclass
class TuneSettings:
    """Everything a sweep needs besides the data: the base recipe and how to search around it."""

    recipe: dict[str, Any]  # the base TrainConfig as a dict, fixed overrides applied
    space: dict[str, Range]
    epochs: int
    objective: str = "min_auc"
    weight: float = 0.5
    search: str = "optuna"
    seed: int = 0
    asha: bool = True
    grace_period: int = 1
    reduction_factor: float = 2.0
    workers: int = 1
    cpus_per_worker: float = 1.0
    max_concurrent_trials: int = 1
    source: str = "config"

    def recipe_with(self, params: dict[str, Any]) -> TrainConfig:
        """The full, validated training recipe of one trial."""
        return load_config(self.recipe, {**params, "epochs": self.epochs})


def objective_value(mean_auc: float, min_auc: float, objective: str, weight: float) -> float:
    """The sweep objective from the held-out mean and min AUC (NaN when they are undefined)."""
    if objective == "mean_auc":
        return float(mean_auc)
    if objective == "min_auc":
        return float(min_auc)
    return float(weight * min_auc + (1.0 - weight) * mean_auc)


def _mapping(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DeepgenError(f"{where} must be a mapping; see deepgen/configs/tune.yaml.")
    return value


def _unknown(data: dict, allowed: tuple[str, ...], where: str) -> None:
    bad = sorted(set(data) - set(allowed))
    if bad:
        raise DeepgenError(f"{where} has unknown key(s) {', '.join(bad)}; use only {', '.join(allowed)}.")


def _range(name: str, spec: Any, where: str) -> Range:
    if isinstance(spec, bool):
        raise DeepgenError(f"{where}: space.{name} is {spec!r}; give a number or {{low, high}}.")
    if isinstance(spec, int | float):
        return Range(float(spec), float(spec))
    if not isinstance(spec, dict) or not {"low", "high"} <= set(spec) or set(spec) - {"low", "high", "log"}:
        raise DeepgenError(f"{where}: space.{name} is {spec!r}; give a number or a mapping {{low, high, log}}.")
    low, high, log = spec["low"], spec["high"], bool(spec.get("log", False))
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high)):
        raise DeepgenError(f"{where}: space.{name} bounds {low!r}..{high!r} must be finite numbers.")
    if low > high:
        raise DeepgenError(f"{where}: space.{name} has low {low} above high {high}; swap them.")
    if log and low <= 0:
        raise DeepgenError(f"{where}: space.{name} is log-uniform with low {low}; use a low above 0.")
    return Range(float(low), float(high), log)


def load_settings(
    config: str | dict,
    objective: str | None = None,
    weight: float | None = None,
    search: str | None = None,
    asha: bool | None = None,
    epochs: int | None = None,
    workers: int | None = None,
) -> TuneSettings:
    """Read and validate a sweep file (arguments given here win over the file); every error is one sentence."""
    if isinstance(config, dict):
        data, where, base_dir = dict(config), "tune config", os.getcwd()
    else:
        where = recipe_path(str(config))
        data = read_yaml_mapping(where, "tune config", "one such as deepgen/configs/tune.yaml (or `tune`)",
                                 "deepgen/configs/tune.yaml")
        base_dir = os.path.dirname(where) if not storage.is_remote(where) else where.rsplit("/", 1)[0]
    _unknown(data, KEYS, where)
    scheduler = _mapping(data.get("scheduler"), f"{where}: scheduler")
    resources = _mapping(data.get("resources"), f"{where}: resources")
    _unknown(scheduler, SCHEDULER_KEYS, f"{where}: scheduler")
    _unknown(resources, RESOURCE_KEYS, f"{where}: resources")

    recipe = data.get("recipe")
    if isinstance(recipe, str) and not storage.is_remote(recipe) and not os.path.isabs(recipe):
        recipe = storage.join(base_dir, recipe) if storage.is_remote(base_dir) else os.path.join(base_dir, recipe)
    if recipe is None:
        raise DeepgenError(f"{where} names no base recipe; add `recipe: full.yaml` (a training recipe).")
    overrides = _mapping(data.get("overrides"), f"{where}: overrides")
    base = load_config(recipe, overrides)

    objective = objective or data.get("objective", "min_auc")
    if objective not in OBJECTIVES:
        raise DeepgenError(f"objective {objective!r} is unknown; use one of {', '.join(OBJECTIVES)}.")
    weight = data.get("weight", 0.5) if weight is None else weight
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0.0 <= weight <= 1.0:
        raise DeepgenError(f"weight is {weight!r}; set a number between 0 and 1 (share of min_auc).")
    search = search or data.get("search", "optuna")
    if search not in SEARCHES:
        raise DeepgenError(f"search {search!r} is unknown; use one of {', '.join(SEARCHES)}.")
    epochs = data.get("epochs") if epochs is None else epochs
    epochs = base.epochs if epochs is None else epochs
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise DeepgenError(f"epochs is {epochs!r}; set a positive number of epochs per trial.")
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise DeepgenError(f"{where}: seed is {seed!r}; set an integer.")

    space_spec = _mapping(data.get("space"), f"{where}: space")
    if not space_spec:
        raise DeepgenError(f"{where} has an empty space; add ranges such as `lr: {{low: 0.0003, high: 0.01}}`.")
    numeric = {k for k, v in base.to_dict().items() if isinstance(v, int | float) and not isinstance(v, bool)}
    space = {}
    for name, spec in space_spec.items():
        if name not in numeric or name in ("epochs", "seed", "batch_size", "num_to_keep", "max_failures"):
            raise DeepgenError(f"{where}: space.{name} is not a searchable recipe key; search float keys such "
                               "as lambda_domain, lambda_supcon, lambda_method, lr, sbi_prob.")
        space[name] = _range(name, spec, where)
    for bound in ("low", "high"):  # both ends must give a valid recipe (e.g. sbi_prob <= 1, lr > 0)
        load_config(base, {k: getattr(r, bound) for k, r in space.items()} | {"epochs": epochs})

    asha = scheduler.get("asha", True) if asha is None else asha
    grace = scheduler.get("grace_period", 1)
    rf = scheduler.get("reduction_factor", 2)
    if isinstance(grace, bool) or not isinstance(grace, int) or grace < 1:
        raise DeepgenError(f"{where}: scheduler.grace_period is {grace!r}; set a positive number of epochs.")
    if isinstance(rf, bool) or not isinstance(rf, int | float) or rf <= 1:
        raise DeepgenError(f"{where}: scheduler.reduction_factor is {rf!r}; set a number above 1 (e.g. 2).")
    workers = resources.get("workers", 1) if workers is None else workers
    cpus = resources.get("cpus_per_worker", 1)
    concurrent = resources.get("max_concurrent_trials", 1)
    for name, value in (("workers", workers), ("max_concurrent_trials", concurrent)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise DeepgenError(f"{name} is {value!r}; set a positive integer.")
    if isinstance(cpus, bool) or not isinstance(cpus, int | float) or cpus < 0:
        raise DeepgenError(f"{where}: resources.cpus_per_worker is {cpus!r}; set a number >= 0.")
    return TuneSettings(
        recipe=base.to_dict(), space=space, epochs=epochs, objective=objective, weight=float(weight),
        search=search, seed=seed, asha=bool(asha), grace_period=grace, reduction_factor=float(rf),
        workers=workers, cpus_per_worker=float(cpus), max_concurrent_trials=concurrent, source=where,
    )
