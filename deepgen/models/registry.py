"""The detector registry, timm-style: a new architecture is one function decorated with
:func:`register_model`; :func:`create_detector` builds whatever ``ModelConfig.arch`` names.
"""

from __future__ import annotations

from collections.abc import Callable

from deepgen.errors import DeepgenError

_MODELS: dict[str, Callable] = {}


def register_model(name: str) -> Callable[[Callable], Callable]:
    """Decorator: register ``fn(cfg: ModelConfig) -> nn.Module`` as the detector architecture ``name``."""

    def add(fn: Callable) -> Callable:
        if name in _MODELS and _MODELS[name] is not fn:
            raise DeepgenError(f"detector architecture {name!r} is registered twice; give the new one another name.")
        _MODELS[name] = fn
        return fn

    return add


def list_models() -> list[str]:
    """Names of the registered detector architectures (the built-in ones register when ``deepgen.models``
    is imported, which any import of this module does first)."""
    return sorted(_MODELS)


def check_arch(name: str) -> None:
    """Raise a one-sentence DeepgenError when no detector architecture ``name`` is registered."""
    if name not in list_models():
        raise DeepgenError(f"model.arch {name!r} is not a registered detector; use one of {', '.join(list_models())}.")


def check_backbone(name: str) -> None:
    """Raise a one-sentence DeepgenError when timm does not know ``name``."""
    import timm

    if not timm.is_model(name):
        raise DeepgenError(
            f"unknown backbone {name!r}; list the available ones with "
            "`python -c \"import timm; print(timm.list_models('*name*'))\"` and set model.backbone."
        )


def create_detector(cfg, load_weights: bool = True):
    """Build the detector ``cfg.arch`` names from its (validated) config.

    ``load_weights``: start the backbone from ``cfg.weights`` / ``cfg.pretrained``; a checkpoint
    bundle passes False, since its own weights replace them anyway.
    """
    from dataclasses import replace

    cfg.validate()
    model = _MODELS[cfg.arch](cfg if load_weights else replace(cfg, pretrained=False))
    model.cfg = replace(model.cfg, pretrained=cfg.pretrained)  # the normalisation the builder recorded stays
    if load_weights and cfg.weights:
        from deepgen.models.weights import load_backbone_weights

        load_backbone_weights(model.backbone, cfg.backbone, cfg.weights)
    return model
