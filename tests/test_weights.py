"""Backbone weights with no network: the packaged ImageNet EfficientNet-Lite0 mapping and user state dicts."""

from __future__ import annotations

import pickle
import socket

import cv2
import numpy as np
import pytest
import timm
import torch

from deepgen.errors import DeepgenError
from deepgen.models import ModelConfig, create_detector, input_mean_std
from deepgen.models.weights import packaged_state_dict

# ImageNet classes a photo of a person shows: clothing, headwear, eyewear, ties, wigs, masks
PERSON_CLASSES = {399, 400, 411, 433, 445, 452, 457, 459, 474, 515, 578, 601, 610, 617, 638, 639, 643, 652, 655,
                  667, 678, 689, 697, 735, 793, 808, 834, 836, 837, 841, 869, 903, 906}


@pytest.fixture
def no_network(monkeypatch):
    """Any socket use fails the test: weights must come from disk."""

    def refuse(*a, **k):
        raise AssertionError("weights loading touched the network")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _photos(real_faces_dir, flip: bool = False) -> torch.Tensor:
    imgs = []
    for f in sorted(real_faces_dir.glob("*.jpg")):
        im = cv2.resize(cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB), (224, 224), interpolation=cv2.INTER_AREA)
        imgs.append(im[:, ::-1] if flip else im)
    x = torch.from_numpy(np.ascontiguousarray(np.stack(imgs))).permute(0, 3, 1, 2).float() / 255
    return (x - 0.5) / 0.5  # the Lite checkpoints' normalisation


def _probs(model, x) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x).softmax(1)


def _person_top5(p: torch.Tensor) -> float:
    return float(np.mean([bool(PERSON_CLASSES & set(r)) for r in p.topk(5, 1).indices.tolist()]))


def test_packaged_lite0_maps_onto_timm_and_predicts_imagenet(real_faces_dir, no_network):
    torch.manual_seed(0)
    random = timm.create_model("efficientnet_lite0", pretrained=False)
    mapped = timm.create_model("efficientnet_lite0", pretrained=False)
    mapped.load_state_dict(packaged_state_dict("efficientnet_lite0"))
    x, xf = _photos(real_faces_dir), _photos(real_faces_dir, flip=True)
    p, pf, r = _probs(mapped, x), _probs(mapped, xf), _probs(random, x)
    # confident and meaningful: a person-worn ImageNet class in the top 5 of nearly every photo
    assert _person_top5(p) >= 0.9 and _person_top5(pf) >= 0.9
    assert _person_top5(r) <= 0.2
    entropy = lambda q: float((-(q * q.clamp_min(1e-12).log()).sum(1)).mean())  # noqa: E731
    assert entropy(p) < entropy(r) - 1.0
    # stable: mirroring the photo keeps the prediction
    assert (p.argmax(1) == pf.argmax(1)).float().mean() >= 0.6
    assert torch.nn.functional.cosine_similarity(p, pf).mean() >= 0.8


def test_detector_starts_from_packaged_weights_and_records_normalisation(no_network):
    cfg = ModelConfig(backbone="efficientnet_lite0", weights="packaged", image_size=64)
    model = create_detector(cfg)
    ref = packaged_state_dict("efficientnet_lite0")
    assert torch.equal(model.backbone.conv_stem.weight, ref["conv_stem.weight"])
    assert model.cfg.input_mean == (0.5, 0.5, 0.5) and model.cfg.input_std == (0.5, 0.5, 0.5)
    assert input_mean_std(model.cfg) == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


def test_user_state_dict_loads_and_mismatches_are_one_sentence(tmp_path, no_network):
    src = create_detector(ModelConfig(backbone="test_efficientnet", image_size=32))
    good = tmp_path / "good.pth"
    torch.save({f"module.{k}": v for k, v in src.backbone.state_dict().items()}, good)
    model = create_detector(ModelConfig(backbone="test_efficientnet", image_size=32, weights=str(good)))
    for k, v in src.backbone.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[k], v)

    state = src.backbone.state_dict()
    key = next(k for k, v in state.items() if v.ndim == 4)
    bad = tmp_path / "bad.pth"
    torch.save({**state, key: torch.zeros(1, 1, 1, 1)}, bad)
    with pytest.raises(DeepgenError, match=rf"weights .*bad.pth do not fit backbone test_efficientnet: {key} has shape"):
        create_detector(ModelConfig(backbone="test_efficientnet", image_size=32, weights=str(bad)))
    other = tmp_path / "other.pth"
    torch.save(timm.create_model("resnet10t", pretrained=False, num_classes=0).state_dict(), other)
    with pytest.raises(DeepgenError, match=r"do not fit backbone test_efficientnet: the state dict lacks \d+ tensor"):
        create_detector(ModelConfig(backbone="test_efficientnet", image_size=32, weights=str(other)))
    with pytest.raises(DeepgenError, match="weights file .*nope.pth does not exist"):
        create_detector(ModelConfig(backbone="test_efficientnet", image_size=32, weights=str(tmp_path / "nope.pth")))


class _Payload:
    def __reduce__(self):
        return (print, ("this ran",))


def test_pickled_code_in_a_weights_file_is_refused(tmp_path, capsys):
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"conv_stem.weight": _Payload()}))
    with pytest.raises(DeepgenError, match="is not a tensor state dict"):
        create_detector(ModelConfig(backbone="test_efficientnet", image_size=32, weights=str(evil)))
    assert "this ran" not in capsys.readouterr().out


def test_packaged_weights_need_a_matching_backbone():
    with pytest.raises(DeepgenError, match="no packaged weights exist for backbone 'test_efficientnet'"):
        create_detector(ModelConfig(backbone="test_efficientnet", weights="packaged"))
    with pytest.raises(DeepgenError, match="weights and model.pretrained are both set"):
        create_detector(ModelConfig(backbone="efficientnet_lite0", weights="packaged", pretrained=True))
