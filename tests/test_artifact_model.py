"""Artifact switches in the detector: frequency branch, blending-boundary head, their training and bundles."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest
import torch

from deepgen.artifacts.boundary import boundary_target
from deepgen.augment import PerturbConfig
from deepgen.errors import DeepgenError
from deepgen.evaluation.uncertainty import mc_dropout_predict
from deepgen.inference import bundle_predict
from deepgen.models import ModelConfig, boundary_scores, create_detector
from deepgen.models.bundle import load_bundle, save_bundle
from deepgen.testing.toyfaces import write_toy_faces
from deepgen.train import load_config
from deepgen.train.data import build_train_data, decode_image, make_train_batch
from deepgen.train.loop import boundary_training_targets, compute_losses

ROOT = os.path.join(os.path.dirname(__file__), "..")
NO_PERTURB = {f"{k}_p": 0.0 for k in ("jpeg", "blur", "noise", "color", "downscale")}


def _model(size: int = 64, seed: int = 0, **switches):
    torch.manual_seed(seed)
    return create_detector(ModelConfig(backbone="test_efficientnet", image_size=size, num_domains=2,
                                       num_methods=3, proj_dim=16, **switches))


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    d = tmp_path_factory.mktemp("faces")
    return write_toy_faces(str(d / "toy.parquet"), n_per_class=24, seed=0, dataset="toy")


def _batch(faces, cfg, n: int = 16, reals_only: bool = False):
    data = build_train_data([faces], cfg)
    rows = data.train
    if reals_only:
        rows = rows.filter(np.asarray(rows["label"].to_numpy(zero_copy_only=False)) == 0)
    rows = rows.slice(0, n)
    return {c: rows[c].to_numpy(zero_copy_only=False) for c in rows.column_names}, data.methods.index("sbi")


@pytest.mark.parametrize("frequency, boundary", [(False, False), (True, False), (False, True), (True, True)])
def test_switches_build_and_output_shapes(frequency, boundary):
    base = _model(64).num_features
    model = _model(64, frequency_branch=frequency, boundary_head=boundary, frequency_dim=8)
    assert model.num_features == base + (8 if frequency else 0)
    x = torch.randn(5, 3, 64, 64)
    out = model(x, grl_coefficient=0.5)
    assert out["logit"].shape == (5,)
    assert out["features"].shape == (5, model.num_features)
    assert out["proj"].shape == (5, 16)
    assert out["domain_logits"].shape == (5, 2) and out["method_logits"].shape == (5, 3)
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model.features(x), model(x)["features"])
        assert mc_dropout_predict(model.classifier, model.features(x), 3, return_logits=True).shape == (3, 5)
        scores = boundary_scores(model(x))
    assert scores.shape == (5,)
    if boundary:
        assert model(x)["boundary_logits"].shape == (5, 1, 16, 16) and model.boundary_size == (16, 16)
        assert np.all((scores > 0) & (scores < 1))
    else:
        assert "boundary_logits" not in out and np.isnan(scores).all()


def test_defaults_keep_the_old_architecture():
    model = _model(32)
    assert model.frequency is None and model.boundary is None
    assert not any(k.startswith(("frequency.", "boundary.")) for k in model.state_dict())


def test_boundary_head_needs_a_spatial_feature_map():
    with pytest.raises(DeepgenError, match=r"backbone .test_vit. gives 3-D features of shape .* set model.boundary_head: false"):
        create_detector(ModelConfig(backbone="test_vit", image_size=64, boundary_head=True))
    with pytest.raises(DeepgenError, match=r"shrinks 32-pixel crops to a 1x1 feature map.* raise model.image_size"):
        create_detector(ModelConfig(backbone="test_efficientnet", image_size=32, boundary_head=True))
    vit = create_detector(ModelConfig(backbone="test_vit", image_size=64, frequency_branch=True, frequency_dim=8))
    assert vit(torch.randn(2, 3, 64, 64))["features"].shape == (2, vit.backbone.num_features + 8)
    with pytest.raises(DeepgenError, match=r"cannot give intermediate feature map 9.* model.boundary_level to -1"):
        create_detector(ModelConfig(backbone="test_efficientnet", image_size=64, boundary_head=True, boundary_level=9))


@pytest.mark.parametrize("backbone", ["test_efficientnet", "test_vit"])
def test_boundary_head_on_a_finer_intermediate_map(backbone):
    model = _model(64, boundary_head=True, boundary_level=2) if backbone == "test_efficientnet" else create_detector(
        ModelConfig(backbone=backbone, image_size=64, boundary_head=True, boundary_level=2))
    x = torch.randn(3, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        out = model(x)
        _, maps = model.backbone.forward_intermediates(x, indices=[2])
        pooled = model.backbone.forward_head(model.backbone.forward_features(x), pre_logits=True)
    assert out["boundary_logits"].shape == (3, 1, 16, 16)
    assert model.boundary.block1[0].in_channels == maps[0].shape[1]
    assert torch.allclose(out["features"], pooled, atol=1e-5)  # the pooled features are unchanged


def test_boundary_target_is_the_pseudo_fake_mask_boundary(faces):
    cfg = load_config({"sbi_prob": 0.6, "batch_size": 8, "perturb": NO_PERTURB,
                       "model": {"boundary_head": True}})
    batch, sbi = _batch(faces, cfg, n=16)
    images, labels, doms, meths, masks = make_train_batch(batch, cfg, np.random.default_rng(3), sbi, with_masks=True)
    plain = make_train_batch(batch, cfg, np.random.default_rng(3), sbi)
    assert len(plain) == 4 and all(np.array_equal(a, b) for a, b in zip(plain[0], images))
    assert np.array_equal(plain[1], labels) and np.array_equal(plain[3], meths)
    was_real = batch["label"] == 0
    blended = np.array([m is not None for m in masks])
    assert blended.any() and (was_real & ~blended).any() and (~was_real).any()
    assert not (blended & ~was_real).any() and np.all(labels[blended] == 1) and np.all(meths[blended] == sbi)
    size = create_detector(cfg.model).boundary_size
    targets, use = boundary_training_targets(masks, labels, size)
    assert targets.shape == (16, 1) + size
    for i in np.flatnonzero(blended):
        m = masks[i]
        original = decode_image(batch["image"][i])
        assert m.shape == original.shape[:2]
        # the mask is the blend mask: outside it the pseudo-fake is the untouched source crop
        assert np.array_equal(images[i][m == 0], original[m == 0]) and not np.array_equal(images[i], original)
        by_hand = cv2.resize(4.0 * m.astype(np.float64) * (1.0 - m), size[::-1], interpolation=cv2.INTER_AREA)
        np.testing.assert_allclose(targets[i, 0], by_hand, atol=1e-6)
        np.testing.assert_array_equal(targets[i, 0], boundary_target(m, size))
        assert targets[i, 0].max() > 0.5
    assert np.all(use[blended]) and np.all(use[was_real])  # pseudo-fakes and reals train the head
    assert not use[~was_real].any()  # dataset fakes: no mask in the faces table, left out
    assert np.all(targets[~blended] == 0)


def test_boundary_loss_ignores_unmasked_fakes_and_stays_connected():
    model = _model(64, boundary_head=True)
    cfg = load_config({"lambda_boundary": 0.0, "sbi_prob": 0.5, "model": {"boundary_head": True}})
    out = model(torch.randn(4, 3, 64, 64), grl_coefficient=1.0)  # training outputs
    labels, domains, methods = torch.tensor([0, 1, 1, 0]), torch.zeros(4, dtype=torch.long), torch.tensor([-1, 0, 1, -1])
    rng = np.random.default_rng(0)
    t = torch.from_numpy(rng.uniform(0, 1, (4, 1) + model.boundary_size).astype(np.float32))
    use = torch.tensor([True, True, False, True])
    a = compute_losses(out, labels, domains, methods, cfg, t, use)
    t2 = t.clone()
    t2[2] = 1.0 - t2[2]  # a left-out row's target does not matter
    b = compute_losses(out, labels, domains, methods, cfg, t2, use)
    assert a["boundary"].item() == b["boundary"].item() > 0
    assert a["loss"].item() == pytest.approx(a["cls"].item())  # lambda_boundary 0: only a connected zero
    a["loss"].backward()
    grads = [p.grad for p in model.boundary.parameters()]
    assert all(g is not None and torch.all(g == 0) for g in grads)


def test_lambda_boundary_loss_decreases_on_pseudo_fakes(faces):
    cfg = load_config({"sbi_prob": 1.0, "batch_size": 8, "lambda_boundary": 1.0, "perturb": NO_PERTURB,
                       "model": {"image_size": 64, "boundary_head": True}})
    batch, sbi = _batch(faces, cfg, n=8, reals_only=True)
    images, labels, doms, meths, masks = make_train_batch(batch, cfg, np.random.default_rng(7), sbi, with_masks=True)
    assert all(m is not None for m in masks)  # a fixed batch of pseudo-fakes
    torch.manual_seed(0)
    model = create_detector(cfg.model)
    t, u = (torch.from_numpy(a) for a in boundary_training_targets(masks, labels, model.boundary_size))
    x = model.preprocess(images)
    y, d, m = torch.from_numpy(labels), torch.from_numpy(doms), torch.from_numpy(meths)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    history = []
    for _ in range(20):
        losses = compute_losses(model(x, grl_coefficient=1.0), y, d, m, cfg, t, u)
        opt.zero_grad()
        losses["loss"].backward()
        opt.step()
        history.append(losses["boundary"].item())
    # soft-target BCE cannot go below the targets' own entropy; the excess over it is the KL to learn away
    tt = t.clamp(1e-6, 1 - 1e-6)
    floor = float(-(tt * tt.log() + (1 - tt) * (1 - tt).log()).mean())
    excess = [h - floor for h in history]
    assert excess[-1] < 0.5 * excess[0], (floor, history)


def test_bundle_with_switches_round_trips(tmp_path):
    model = _model(64, frequency_branch=True, boundary_head=True, frequency_dim=8)
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, 64, 64))  # move BatchNorm stats off their init
    model.eval()
    feats = np.random.default_rng(1).normal(size=(50, model.num_features))
    save_bundle(str(tmp_path / "b"), model, recipe={"lambda_boundary": 0.5}, reference=feats)
    bundle = load_bundle(str(tmp_path / "b"))
    cfg = bundle.model_config
    assert cfg.frequency_branch and cfg.boundary_head and cfg.frequency_dim == 8
    x = torch.randn(6, 3, 64, 64)
    with torch.no_grad():
        a, b = model(x), bundle.model(x)
    assert torch.equal(a["logit"], b["logit"]) and torch.equal(a["boundary_logits"], b["boundary_logits"])
    np.testing.assert_array_equal(boundary_scores(a), boundary_scores(b))
    imgs = np.random.default_rng(0).integers(0, 256, (3, 40, 40, 3), dtype=np.uint8)
    assert bundle_predict(bundle, imgs)["features"].shape == (3, model.num_features)


def test_old_bundle_config_without_switch_keys_loads(tmp_path):
    model = _model(32).eval()
    out = str(tmp_path / "old")
    save_bundle(out, model, reference=np.random.default_rng(1).normal(size=(50, model.num_features)))
    path = os.path.join(out, "config.json")
    config = json.load(open(path))
    new_keys = ("frequency_branch", "frequency_dim", "frequency_width", "boundary_head", "boundary_channels",
                "boundary_stride", "boundary_level")
    config["model"] = {k: v for k, v in config["model"].items() if k not in new_keys}
    with open(path, "w") as f:
        json.dump(config, f)
    bundle = load_bundle(out)
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x)["logit"], bundle.model(x)["logit"])
    assert bundle.model.boundary is None and bundle.model.frequency is None


def test_artifacts_recipe_loads_and_bad_settings_fail():
    cfg = load_config("artifacts")
    assert cfg.name == "artifacts" and cfg.model.frequency_branch and cfg.model.boundary_head
    assert cfg.lambda_boundary > 0 and cfg.sbi_prob > 0
    full = load_config("full")
    assert not full.model.frequency_branch and not full.model.boundary_head and full.lambda_boundary == 0
    assert isinstance(cfg.perturb, PerturbConfig)
    with pytest.raises(DeepgenError, match=r"lambda_boundary is -1; set it to a finite number >= 0"):
        load_config({"lambda_boundary": -1})
    with pytest.raises(DeepgenError, match=r"no boundary head; set model.boundary_head: true"):
        load_config({"lambda_boundary": 0.5, "sbi_prob": 0.3})
    with pytest.raises(DeepgenError, match=r"no pseudo-fakes give boundary masks"):
        load_config({"lambda_boundary": 0.5, "model": {"boundary_head": True}})
    with pytest.raises(DeepgenError, match=r"model.boundary_stride is 0"):
        load_config({"model": {"boundary_stride": 0}})
    with pytest.raises(DeepgenError, match=r"model.boundary_level is -2; use -1"):
        load_config({"model": {"boundary_level": -2}})


def test_artifacts_recipe_trains_on_ray(ray_session, faces, tmp_path):
    from deepgen.train import train

    result = train("artifacts", [faces], str(tmp_path / "run"), workers=1,
                   overrides={"epochs": 1, "batch_size": 8})
    history = result["history"]
    assert len(history) == 1 and history[0]["train_boundary"] > 0
    bundle = load_bundle(str(tmp_path / "run" / "bundle"))
    assert bundle.model_config.frequency_branch and bundle.model_config.boundary_head
    imgs = np.stack([decode_image(b) for b in build_train_data([faces], load_config({"batch_size": 8})).val["image"].to_pylist()[:4]])
    with torch.no_grad():
        scores = boundary_scores(bundle.model(bundle.model.preprocess(imgs)))
    assert scores.shape == (4,) and np.all((scores >= 0) & (scores <= 1))
