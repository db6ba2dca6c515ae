"""Training recipes: one YAML file -> :class:`TrainConfig`, validated before any Ray worker starts."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import yaml

from deepgen import storage
from deepgen.augment import PerturbConfig
from deepgen.errors import DeepgenError
from deepgen.models import ModelConfig


@dataclass
class TrainConfig:
    """A training recipe: model architecture, loss weights, pseudo-fakes, perturbations and schedule."""

    model: ModelConfig = field(default_factory=ModelConfig)
    perturb: PerturbConfig = field(default_factory=PerturbConfig)
    name: str = "erm"
    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    lambda_domain: float = 0.0  # DANN domain discriminator (behind gradient reversal)
    lambda_supcon: float = 0.0  # supervised contrastive loss on the projection head
    lambda_method: float = 0.0  # manipulation-method adversary (behind gradient reversal)
    lambda_boundary: float = 0.0  # blending-boundary map BCE (needs model.boundary_head and pseudo-fakes)
    supcon_temperature: float = 0.1
    grl_gamma: float = 10.0  # DANN schedule steepness: coef = 2/(1+exp(-gamma p)) - 1
    sbi_prob: float = 0.0  # chance a real training face becomes its self-blended pseudo-fake
    sbi_only: bool = False  # train on reals + pseudo-fakes only (the datasets' fakes are dropped)
    blend_other_prob: float = 0.0  # share of pseudo-fakes blending in another real face (Face X-ray), not itself
    crop_margin: float = 0.3  # margin extraction used; maps frame landmarks/boxes into the crop
    crop_align: bool = False  # whether extraction aligned the crops (set from the faces' extract.json)
    num_to_keep: int = 2  # checkpoints kept, best by val_mean_auc
    max_failures: int = 2  # worker failures survived by resuming from the last checkpoint
    amp: bool = True  # bf16/fp16 autocast on GPU (ignored on CPU)
    ema_decay: float = 0.0  # > 0: validate and save an exponential moving average of the weights
    temporal_epochs: int = 40  # model.arch temporal: epochs of the head over the cached clip embeddings
    temporal_lr: float = 1e-3  # the head's learning rate (the frame backbone is frozen meanwhile)
    temporal_fakes: int = 2  # temporal pseudo-fakes made from each real training clip
    temporal_drift: float = 1.0  # their frame-to-frame wobble (deepgen.augment.temporal_blend; 0: stable)
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_SECTIONS = {"model": ModelConfig, "perturb": PerturbConfig}


def _build(cls, data: dict, where: str):
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise DeepgenError(
            f"{where} has unknown key(s) {', '.join(unknown)}; use only {', '.join(sorted(known))}."
        )
    kwargs = {}
    for key, value in data.items():
        if key in _SECTIONS and cls is TrainConfig:
            if not isinstance(value, dict):
                raise DeepgenError(f"{where}: '{key}' must be a mapping of its settings.")
            value = _build(_SECTIONS[key], value, f"{where} section '{key}'")
        elif isinstance(value, list):
            value = tuple(value)
        kwargs[key] = value
    return cls(**kwargs)


def validate_config(cfg: TrainConfig, where: str = "config") -> TrainConfig:
    """Raise a one-sentence DeepgenError for an unusable recipe; return it unchanged otherwise."""
    cfg.model.validate(where)
    for name in ("lambda_domain", "lambda_supcon", "lambda_method", "lambda_boundary", "lr", "weight_decay"):
        value = getattr(cfg, name)
        if not isinstance(value, int | float) or value < 0:
            raise DeepgenError(f"{where}: {name} is {value!r}; set it to a number >= 0.")
    for name in ("temporal_epochs", "temporal_fakes"):
        if not isinstance(getattr(cfg, name), int) or getattr(cfg, name) < 1:
            raise DeepgenError(f"{where}: {name} is {getattr(cfg, name)!r}; set it to a positive integer.")
    for name in ("temporal_lr", "temporal_drift"):
        if not isinstance(getattr(cfg, name), int | float) or getattr(cfg, name) <= 0:
            raise DeepgenError(f"{where}: {name} is {getattr(cfg, name)!r}; set it to a number > 0.")
    if cfg.lr == 0:
        raise DeepgenError(f"{where}: lr is 0; set a positive learning rate such as 1e-3.")
    for name in ("epochs", "batch_size", "num_to_keep"):
        if not isinstance(getattr(cfg, name), int) or getattr(cfg, name) < (2 if name == "batch_size" else 1):
            raise DeepgenError(f"{where}: {name} is {getattr(cfg, name)!r}; set it to a positive integer"
                               f"{' >= 2' if name == 'batch_size' else ''}.")
    if not isinstance(cfg.ema_decay, int | float) or not 0.0 <= cfg.ema_decay < 1.0:
        raise DeepgenError(f"{where}: ema_decay is {cfg.ema_decay!r}; use 0 (off) or a decay in (0, 1) such as 0.995.")
    for name in ("sbi_prob", "blend_other_prob"):
        if not isinstance(getattr(cfg, name), int | float) or not 0.0 <= getattr(cfg, name) <= 1.0:
            raise DeepgenError(f"{where}: {name} is {getattr(cfg, name)!r}; set a probability between 0 and 1.")
    for f in fields(PerturbConfig):
        if f.name.endswith("_p") and not 0.0 <= getattr(cfg.perturb, f.name) <= 1.0:
            raise DeepgenError(f"{where}: perturb.{f.name} is {getattr(cfg.perturb, f.name)}; "
                               "set a probability between 0 and 1.")
    if cfg.lambda_boundary > 0 and not cfg.model.boundary_head:
        raise DeepgenError(f"{where}: lambda_boundary is {cfg.lambda_boundary} but the model has no boundary head; "
                           "set model.boundary_head: true or lambda_boundary: 0.")
    if cfg.lambda_boundary > 0 and not (cfg.sbi_only or cfg.sbi_prob > 0):
        raise DeepgenError(f"{where}: lambda_boundary is {cfg.lambda_boundary} but no pseudo-fakes give boundary "
                           "masks; set sbi_prob > 0 (or sbi_only: true) or lambda_boundary: 0.")
    if cfg.max_failures < -1:
        raise DeepgenError(f"{where}: max_failures is {cfg.max_failures}; use -1 (forever) or a count >= 0.")
    return cfg


def read_yaml_mapping(where: str, kind: str, hint: str, example: str) -> dict:
    """A YAML file (path or URI) holding a mapping; a missing, invalid or non-mapping file is one sentence."""
    if not storage.exists(where):
        raise DeepgenError(f"{kind} {where} does not exist; pass {hint}.")
    try:
        data = yaml.safe_load(storage.read_bytes(where)) or {}
    except yaml.YAMLError as e:
        raise DeepgenError(f"{kind} {where} is not valid YAML ({str(e).splitlines()[0]}); fix it.") from e
    if not isinstance(data, dict):
        raise DeepgenError(f"{kind} {where} must hold a mapping of settings; see {example}.")
    return data


def packaged_recipes() -> list[str]:
    """Names of the recipes shipped in ``deepgen/configs`` (package data)."""
    from importlib.resources import files

    return sorted(p.name[: -len(".yaml")] for p in files("deepgen.configs").iterdir()
                  if p.name.endswith(".yaml"))


def recipe_path(config: str) -> str:
    """A packaged recipe name (``full``) -> its file in the installed package; a path or URI unchanged."""
    from importlib.resources import as_file, files

    name = str(config)
    if "/" in name or name.endswith((".yaml", ".yml")) or storage.is_remote(name):
        return name
    resource = files("deepgen.configs") / f"{name}.yaml"
    if not resource.is_file():
        raise DeepgenError(f"recipe {name!r} is neither a file nor a packaged recipe; pass a YAML path or one "
                           f"of {', '.join(packaged_recipes())}.")
    with as_file(resource) as path:  # a real file for installed wheels and editable checkouts alike
        return str(path)


def _merge(base: dict, over: dict) -> dict:
    """``over`` on top of ``base``; sections (mappings) merge key by key."""
    out = dict(base)
    for key, value in over.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def read_recipe(config: str, _seen: tuple[str, ...] = ()) -> dict:
    """A recipe file as a mapping, with ``base: NAME_OR_PATH`` resolved (the file's keys override the base's)."""
    where = recipe_path(config)
    data = read_yaml_mapping(where, "config file", "a recipe such as configs/full.yaml or a packaged name "
                             "(full)", "deepgen/configs/erm.yaml")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str):
        raise DeepgenError(f"{where}: base is {base!r}; name a recipe such as `base: full`.")
    if base in _seen or where in _seen:
        raise DeepgenError(f"{where}: base recipes form a cycle ({' -> '.join((*_seen, where))}); break it.")
    if "/" in base and not storage.is_remote(base) and not base.startswith("/"):
        base = storage.join(where.rsplit("/", 1)[0], base) if "/" in where else base
    return _merge(read_recipe(base, (*_seen, where)), data)


def load_config(config: str | dict | TrainConfig, overrides: dict | None = None) -> TrainConfig:
    """Read a recipe (packaged name, YAML path/URI, dict or TrainConfig), apply ``overrides``, validate it."""
    if isinstance(config, TrainConfig):
        data, where = config.to_dict(), "config"
    elif isinstance(config, dict):
        data, where = dict(config), "config"
    else:
        where = str(config)
        data = read_recipe(where)
    for key, value in (overrides or {}).items():  # "model.image_size" style keys reach into sections
        section, _, sub = key.partition(".")
        if sub:
            data.setdefault(section, {})[sub] = value
        else:
            data[key] = value
    try:
        cfg = _build(TrainConfig, data, where)
    except TypeError as e:
        raise DeepgenError(f"{where} could not be read as a recipe ({e}); compare it with deepgen/configs/erm.yaml.") from e
    return validate_config(cfg, where)
