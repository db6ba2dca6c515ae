"""Issue 24, findings 3 and 6 (bundles): an edited, truncated or mismatched bundle is refused at load in
one sentence, and ``model_id`` covers weights, preprocessing and calibration."""

from __future__ import annotations

import ast
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from deepgen.errors import DeepgenError
from deepgen.models import ModelConfig, create_detector
from deepgen.models.bundle import load_bundle, save_bundle


def _one_sentence(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg and "Traceback" not in msg and msg.endswith(".")
    return msg


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> str:
    torch.manual_seed(0)
    model = create_detector(ModelConfig(image_size=32))
    out = str(tmp_path_factory.mktemp("b") / "bundle")
    save_bundle(out, model, temperature=1.5, domain_temperatures={"a": 1.2},
                reference=np.random.default_rng(0).normal(size=(16, model.num_features)), datasets=["a"],
                extras={"faces": {"margin": 0.3, "align": False, "size": 32}})
    return out


def _copy(bundle: str, tmp_path: Path) -> str:
    out = str(tmp_path / "copy")
    shutil.copytree(bundle, out)
    return out


def _edit(path: str, name: str, fn) -> None:
    file = os.path.join(path, name)
    data = json.load(open(file))
    fn(data)
    with open(file, "w") as f:
        json.dump(data, f)


@pytest.mark.parametrize("name,edit,match", [
    ("config.json", lambda c: c["model"].update(image_size=48), "image_size 32 -> 48"),
    ("config.json", lambda c: c["model"].update(input_mean=[0.5, 0.5, 0.5]), "input_mean"),
    ("faces.json", lambda c: c.update(margin=0.1), "crop_margin 0.3 -> 0.1"),
    ("faces.json", lambda c: c.update(align=True), "crop_align False -> True"),
])
def test_edited_preprocessing_is_refused(bundle, tmp_path, name, edit, match):
    b = _copy(bundle, tmp_path)
    _edit(b, name, edit)
    with pytest.raises(DeepgenError, match="other preprocessing") as e:
        load_bundle(b)
    assert match in _one_sentence(e)


@pytest.mark.parametrize("value", [-1.5, 0, None, float("nan"), float("inf"), "1.5", 1e300, 0.5])
def test_edited_or_invalid_temperature_is_refused(bundle, tmp_path, value):
    b = _copy(bundle, tmp_path)
    _edit(b, "calibration.json", lambda c: c.update(temperature=value))
    with pytest.raises(DeepgenError, match="temperature|calibration.json edited") as e:
        load_bundle(b)
    _one_sentence(e)


def test_invalid_domain_temperature_is_refused(bundle, tmp_path):
    b = _copy(bundle, tmp_path)
    _edit(b, "calibration.json", lambda c: c["domain_temperatures"].update(a=-2.0))
    with pytest.raises(DeepgenError, match="temperature of domain 'a'") as e:
        load_bundle(b)
    _one_sentence(e)
    model = load_bundle(bundle).model
    with pytest.raises(DeepgenError, match="finite number > 0"):
        save_bundle(str(tmp_path / "x"), model, temperature=float("nan"), reference=np.zeros((4, model.num_features)))


def test_model_id_covers_weights_preprocessing_and_calibration(bundle, tmp_path):
    b = load_bundle(bundle)
    ref = b.reference

    def saved(name, **kw):
        args = {"temperature": 1.5, "domain_temperatures": {"a": 1.2},
                "extras": {"faces": {"margin": 0.3, "align": False, "size": 32}}, **kw}
        return save_bundle(str(tmp_path / name), b.model, reference=ref, **args)

    assert saved("same") == b.model_id == load_bundle(str(tmp_path / "same")).model_id
    assert saved("t", temperature=1.6) != b.model_id
    assert saved("dt", domain_temperatures={"a": 1.3}) != b.model_id
    assert saved("margin", extras={"faces": {"margin": 0.2, "align": False, "size": 32}}) != b.model_id
    assert len(b.model_id) == 16 and int(b.model_id, 16) >= 0


def test_truncated_weights_are_one_sentence(bundle, tmp_path):
    b = _copy(bundle, tmp_path)
    path = os.path.join(b, "model.safetensors")
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    with pytest.raises(DeepgenError, match="damaged or truncated") as e:
        load_bundle(b)
    _one_sentence(e)


def test_backbone_that_does_not_match_the_weights_is_one_sentence(bundle, tmp_path):
    b = _copy(bundle, tmp_path)
    _edit(b, "config.json", lambda c: c["model"].update(head_hidden=32, num_domains=3))
    with pytest.raises(DeepgenError, match="do not fit the model") as e:
        load_bundle(b)
    _one_sentence(e)
    _edit(b, "config.json", lambda c: c["model"].update(head_hidden=64, num_domains=1, backbone="resnet18"))
    with pytest.raises(DeepgenError, match="backbone 'resnet18'") as e:
        load_bundle(b)
    _one_sentence(e)


def test_bundle_module_does_not_import_inference():
    """The lower floor (models) never imports the upper one (the inference path)."""
    src = Path(__file__).resolve().parents[1] / "deepgen" / "models" / "bundle.py"
    names = set()
    for node in ast.walk(ast.parse(src.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    assert not any(n == "deepgen.inference" or n.startswith("deepgen.inference.") for n in names)
    assert not any(n.startswith(("deepgen.scoring", "deepgen.evaluation")) for n in names)
