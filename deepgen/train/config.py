"""Training recipes: one YAML file -> :class:`TrainConfig`, validated before any Ray worker starts."""

from __future__ import annotations

import math
import os
import posixpath
from dataclasses import asdict, dataclass, field, fields
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

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
    balanced_threshold: bool = True  # fold a class-balanced decision offset, fitted on validation videos, into the
    # classifier's bias, so a calibrated 0.5 treats reals and fakes as equally likely (README, "Calibration")
    frames_per_video: int = 0  # > 0: train on at most this many frames of each video (evenly spaced); 0: all
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


MAX_EPOCHS = 10_000
_KINDS = {bool: "true or false", int: "a whole number", float: "a finite number", str: "text"}


def _type_ok(value: Any, tp: Any) -> bool:
    """Whether a recipe value has the dataclass field's type (bools are not numbers, numbers are finite)."""
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, UnionType):
        return any(_type_ok(value, a) for a in args)
    if tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if tp is str:
        return isinstance(value, str)
    if origin is tuple:
        return (isinstance(value, tuple | list) and (Ellipsis in args or len(value) == len(args))
                and all(_type_ok(v, args[0] if Ellipsis in args else a) for v, a in zip(value, args)))
    return True


def _describe(tp: Any) -> str:
    origin, args = get_origin(tp), get_args(tp)
    if origin in (Union, UnionType):
        return " or ".join("null" if a is type(None) else _describe(a) for a in args)
    if origin is tuple:
        return f"a list of {len(args)} {_KINDS.get(args[0], 'value')}s" if Ellipsis not in args else "a list"
    return _KINDS.get(tp, getattr(tp, "__name__", str(tp)))


def check_types(obj: Any, where: str, prefix: str = "") -> None:
    """One sentence for the first recipe value whose type does not match its field (a string for a
    bool, NaN or inf for a float, 1.5 for an int), sections included."""
    hints = get_type_hints(type(obj))
    for f in fields(obj):
        value = getattr(obj, f.name)
        if f.name in _SECTIONS and isinstance(obj, TrainConfig):
            check_types(value, where, f"{f.name}.")
            continue
        if not _type_ok(value, hints[f.name]):
            raise DeepgenError(f"{where}: {prefix}{f.name} is {value!r}; set it to {_describe(hints[f.name])}.")


def validate_config(cfg: TrainConfig, where: str = "config") -> TrainConfig:
    """Raise a one-sentence DeepgenError for an unusable recipe; return it unchanged otherwise."""
    check_types(cfg, where)
    cfg.model.validate(where)
    for name in ("lambda_domain", "lambda_supcon", "lambda_method", "lambda_boundary", "lr", "weight_decay",
                 "grl_gamma", "crop_margin"):
        value = getattr(cfg, name)
        if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise DeepgenError(f"{where}: {name} is {value!r}; set it to a finite number >= 0.")
    for name in ("temporal_epochs", "temporal_fakes"):
        if not isinstance(getattr(cfg, name), int) or getattr(cfg, name) < 1:
            raise DeepgenError(f"{where}: {name} is {getattr(cfg, name)!r}; set it to a positive integer.")
    for name in ("temporal_lr", "temporal_drift"):
        if not isinstance(getattr(cfg, name), int | float) or getattr(cfg, name) <= 0:
            raise DeepgenError(f"{where}: {name} is {getattr(cfg, name)!r}; set it to a number > 0.")
    if cfg.lr == 0:
        raise DeepgenError(f"{where}: lr is 0; set a positive learning rate such as 1e-3.")
    if cfg.supcon_temperature <= 0:
        raise DeepgenError(f"{where}: supcon_temperature is {cfg.supcon_temperature!r}; set a temperature > 0 "
                           "such as 0.1.")
    if cfg.epochs > MAX_EPOCHS:
        raise DeepgenError(f"{where}: epochs is {cfg.epochs!r}; use at most {MAX_EPOCHS} epochs.")
    if cfg.seed < 0:
        raise DeepgenError(f"{where}: seed is {cfg.seed!r}; use a whole number >= 0.")
    p = cfg.perturb
    for name in ("jpeg_quality", "blur_sigma", "noise_std", "downscale_factor"):
        lo, hi = getattr(p, name)
        if lo < 0 or lo > hi:
            raise DeepgenError(f"{where}: perturb.{name} is {[lo, hi]!r}; give [low, high] with 0 <= low <= high.")
    if p.jpeg_quality[1] > 100 or p.downscale_factor[1] > 1 or p.downscale_factor[0] <= 0 or p.color_strength < 0:
        raise DeepgenError(f"{where}: perturb settings are out of range (jpeg_quality within 1..100, downscale_factor "
                           "within (0, 1], color_strength >= 0); fix the perturb section.")
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
    if not isinstance(cfg.frames_per_video, int) or isinstance(cfg.frames_per_video, bool) or cfg.frames_per_video < 0:
        raise DeepgenError(f"{where}: frames_per_video is {cfg.frames_per_video!r}; use 0 (every frame) or a "
                           "positive integer.")
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


def _recipe_key(where: str) -> str:
    """A recipe file's normalised location, for cycle detection (``a/./b.yaml`` is ``a/b.yaml``)."""
    if storage.is_remote(where):
        scheme, _, rest = where.partition("://")
        return f"{scheme}://{posixpath.normpath(rest)}"
    return os.path.realpath(os.path.abspath(os.path.expanduser(where)))


def resolve_base(base: str, where: str) -> str:
    """Where ``base:`` in the recipe at ``where`` points: a packaged name (``erm``) as it is, an
    absolute path or URI as it is, and any other path relative to the recipe's own folder."""
    if "/" not in base and not base.endswith((".yaml", ".yml")) and not storage.is_remote(base):
        return base  # a packaged recipe name
    if storage.is_remote(base) or os.path.isabs(os.path.expanduser(base)):
        return os.path.expanduser(base) if not storage.is_remote(base) else base
    if storage.is_remote(where):
        scheme, _, rest = where.partition("://")
        return f"{scheme}://{posixpath.normpath(posixpath.join(posixpath.dirname(rest), base))}"
    return os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(where)), base))


def read_recipe(config: str, _seen: tuple[str, ...] = ()) -> dict:
    """A recipe file as a mapping, with ``base: NAME_OR_PATH`` resolved (the file's keys override the base's).

    A relative ``base:`` path is relative to the recipe's own folder (as includes are in other config
    systems); a chain of bases that comes back to a file already read is refused in one sentence.
    """
    where = recipe_path(config)
    key = _recipe_key(where)
    if key in _seen:
        raise DeepgenError(f"{where}: base recipes form a cycle ({' -> '.join((*_seen, key))}); break it.")
    data = read_yaml_mapping(where, "config file", "a recipe such as configs/full.yaml or a packaged name "
                             "(full)", "deepgen/configs/erm.yaml")
    base = data.pop("base", None)
    if base is None:
        return data
    if not isinstance(base, str) or not base.strip():
        raise DeepgenError(f"{where}: base is {base!r}; name a recipe such as `base: full` or a YAML path.")
    return _merge(read_recipe(resolve_base(base, where), (*_seen, key)), data)


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
