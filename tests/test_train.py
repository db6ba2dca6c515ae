"""Training: recipes validate before Ray starts; 2-worker Ray Train run learns a tiny faces table."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.metrics import roc_auc_score

import deepgen.runtime
from deepgen.errors import DeepgenError
from deepgen.inference import bundle_predict
from deepgen.models.bundle import load_bundle
from deepgen.storage import get_fs, read_table
from deepgen.testing.toyfaces import write_toy_faces
from deepgen.train import load_config, train
from deepgen.train.command import train as train_command
from deepgen.train.config import packaged_recipes
from deepgen.train.data import decode_image

CONFIGS = packaged_recipes()
RECIPES = ("erm", "sbi", "dann", "supcon", "full")


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    d = tmp_path_factory.mktemp("faces")
    return write_toy_faces(str(d / "toy.parquet"), n_per_class=100, seed=0, dataset="toy")


@pytest.fixture
def no_ray(monkeypatch):
    """Fail the test if training gets as far as starting Ray."""
    def refuse(*a, **k):
        raise AssertionError("Ray was started before the config was validated")

    monkeypatch.setattr(deepgen.runtime, "init_ray", refuse)


def test_recipes_load():
    names = set(CONFIGS)
    assert set(RECIPES) <= names
    for name in RECIPES:
        cfg = load_config(name)
        assert cfg.name == name
    full = load_config("full")
    assert min(full.lambda_domain, full.sbi_prob, full.ema_decay) > 0
    assert full.blend_other_prob == 1.0 and full.lambda_supcon == full.lambda_method == 0.0  # ablations (README)
    assert full.perturb.jpeg_p > 0 and full.perturb.jpeg_quality == (40, 95)


@pytest.mark.parametrize(
    "config, match",
    [
        ({"model": {"backbone": "resnet_does_not_exist"}}, r"unknown backbone 'resnet_does_not_exist'"),
        ({"lambda_domain": -0.5}, r"lambda_domain is -0.5; set it to a finite number >= 0"),
        ({"lambda_supcon": -1}, r"lambda_supcon is -1"),
        ({"learning_rate": 0.1}, r"unknown key\(s\) learning_rate"),
        ({"perturb": {"jpeg_p": 2}}, r"perturb.jpeg_p is 2"),
    ],
)
def test_bad_config_fails_before_workers(faces, tmp_path, no_ray, config, match):
    with pytest.raises(DeepgenError, match=match) as e:
        train(config, [faces], str(tmp_path / "run"))
    assert "\n" not in str(e.value)


def test_missing_faces_fails_before_workers(tmp_path, no_ray):
    with pytest.raises(DeepgenError, match=r"faces table .*nope.parquet does not exist; run `deepgen extract`"):
        train({}, [str(tmp_path / "nope.parquet")], str(tmp_path / "run"))


def test_missing_config_file_and_cli_message(faces, tmp_path, no_ray):
    with pytest.raises(DeepgenError, match="config file .*missing.yaml does not exist"):
        train(str(tmp_path / "missing.yaml"), [faces], str(tmp_path / "run"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("lambda_method: -2\n")
    res = CliRunner().invoke(train_command, ["--config", str(bad), "--faces", faces, "--out", str(tmp_path / "r")])
    assert isinstance(res.exception, DeepgenError) and "lambda_method is -2" in str(res.exception)


def test_training_batch_makes_pseudo_fakes_deterministically(faces):
    from deepgen.train.data import build_train_data, make_train_batch

    cfg = load_config({"sbi_prob": 1.0, "batch_size": 8, "perturb": {"jpeg_p": 0.5, "noise_p": 0.5}})
    data = build_train_data([faces], cfg)
    assert data.methods == ["sbi", "smooth", "swap"] and data.domains == ["toy"]
    rows = data.train.slice(0, 8)
    batch = {c: rows[c].to_numpy(zero_copy_only=False) for c in rows.column_names}
    a = make_train_batch(batch, cfg, np.random.default_rng(5), data.methods.index("sbi"))
    b = make_train_batch(batch, cfg, np.random.default_rng(5), data.methods.index("sbi"))
    assert all(np.array_equal(x, y) for x, y in zip(a[0], b[0]))
    images, labels, domains, methods = a
    was_real = batch["label"] == 0
    assert was_real.any() and np.all(labels == 1)  # every real became a pseudo-fake
    assert np.all(methods[was_real] == 0) and np.all(methods[~was_real] == batch["method"][~was_real])
    originals = [decode_image(x) for x in batch["image"]]
    assert all(not np.array_equal(img, orig) for img, orig, r in zip(images, originals, was_real) if r)


def test_training_batch_blends_other_faces_with_blend_other_prob(faces, monkeypatch):
    """blend_other_prob picks Face X-ray blends of another real of the batch; 0 keeps pure SBI."""
    import deepgen.train.data as data_mod
    from deepgen.train.data import build_train_data, make_train_batch

    calls = {"self": 0, "other": 0}
    real_self, real_other = data_mod.self_blend, data_mod.other_blend

    def count(kind, fn):
        def wrapped(*args, **kwargs):
            calls[kind] += 1
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(data_mod, "self_blend", count("self", real_self))
    monkeypatch.setattr(data_mod, "other_blend", count("other", real_other))
    for prob, expect in ((0.0, "self"), (1.0, "other")):
        cfg = load_config({"sbi_prob": 1.0, "blend_other_prob": prob, "batch_size": 8})
        data = build_train_data([faces], cfg)  # its validation pseudo-fakes use the same blenders
        calls.update(self=0, other=0)
        rows = data.train.slice(0, 16)
        batch = {c: rows[c].to_numpy(zero_copy_only=False) for c in rows.column_names}
        images, labels, _, _, masks = make_train_batch(batch, cfg, np.random.default_rng(1), 0, with_masks=True)
        n_real = int((batch["label"] == 0).sum())
        assert n_real >= 2 and calls[expect] == n_real and sum(calls.values()) == n_real
        assert np.all(labels == 1) and sum(m is not None for m in masks) == n_real
    with pytest.raises(DeepgenError, match=r"blend_other_prob is 1.5; set a probability between 0 and 1"):
        load_config({"blend_other_prob": 1.5})


def test_two_worker_training_reaches_auc(ray_session, faces, s3_bucket, tmp_path):
    cfg = {"name": "itest", "epochs": 8, "batch_size": 16, "lr": 0.003,
           "model": {"backbone": "test_efficientnet", "image_size": 64}}
    out = f"{s3_bucket}/runs/itest"  # checkpoints and bundle on the (local) S3 endpoint
    held = write_toy_faces(str(tmp_path / "held.parquet"), n_per_class=20, seed=3, dataset="toyheld",
                           background=(120, 220))
    result = train(cfg, [faces], out, workers=2, heldout=[held])
    best = result["metrics"]
    assert best["val_mean_auc"] > 0.8, result["history"]
    assert best["val_auc_toy"] == best["val_mean_auc"]  # selection ignores the held-out dataset
    assert best["heldout_mean_auc"] == best["heldout_min_auc"] == best["val_auc_toyheld"]
    assert [h["epoch"] for h in result["history"]] == list(range(8))
    assert all(h["resumed_from_epoch"] == -1 for h in result["history"])

    bundle = load_bundle(result["bundle"])
    assert bundle.model_id == result["model_id"]
    assert bundle.temperature == pytest.approx(result["temperature"]) and bundle.temperature > 0
    assert bundle.datasets["train"] == ["toy"] and bundle.datasets["val"] == ["toy"]
    assert bundle.datasets["heldout"] == ["toyheld"]
    assert bundle.metrics["selected"]["val_mean_auc"] == pytest.approx(best["val_mean_auc"])
    assert bundle.reference["sample"].shape[1] == bundle.model.num_features
    # the bundle's model reproduces the reported validation AUC on the validation faces
    table = read_table(faces)
    val = table.filter(table["split"].to_numpy(zero_copy_only=False) == "val")
    images = np.stack([decode_image(b) for b in val["image"].to_pylist()])
    pred = bundle_predict(bundle, images)
    assert roc_auc_score(val["label"].to_numpy(), pred["score"]) == pytest.approx(best["val_auc"], abs=1e-6)
    assert result["bundle"] == f"{out}/bundle" and result["checkpoints"].startswith(f"{out}/checkpoints/")
    fs, path = get_fs(result["checkpoints"])
    kept = [p for p in fs.ls(path, detail=False) if p.rstrip("/").rsplit("/", 1)[-1].startswith("checkpoint_2")]
    assert 1 <= len(kept) <= 2  # num_to_keep


def test_weight_average_is_an_ema_of_weights_and_buffers():
    import torch

    from deepgen.train.loop import weight_average

    model = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.BatchNorm1d(1))
    assert weight_average(model, 0.0) is None
    ema = weight_average(model, 0.99)
    w0 = model[0].weight.detach().clone()
    ema.update_parameters(model)  # the first update copies the weights
    with torch.no_grad():
        model[0].weight.add_(2.0)
        model[1].running_mean.fill_(4.0)
    ema.update_parameters(model)  # warm-up: decay (1 + 1) / (10 + 1), not 0.99, after one update
    d = 2 / 11
    assert torch.allclose(ema.module[0].weight, w0 * d + (w0 + 2.0) * (1 - d))
    assert torch.allclose(ema.module[1].running_mean, torch.tensor([4.0 * (1 - d)]))
    for _ in range(2000):  # long runs reach the configured decay
        ema.update_parameters(model)
    assert torch.allclose(ema.module[0].weight, w0 + 2.0, atol=1e-4)
    with pytest.raises(DeepgenError, match=r"ema_decay is 1.0; use 0 \(off\) or a decay in \(0, 1\)"):
        load_config({"ema_decay": 1.0})


def test_temperature_is_fitted_on_video_logits_as_inference_scores_them():
    import pandas as pd

    from deepgen.evaluation.calibration import fit_temperature
    from deepgen.inference import aggregate_media
    from deepgen.train.trainer import fit_calibration

    rng = np.random.default_rng(0)
    videos = np.repeat(np.arange(60), 4)
    tracks = np.tile([0, 0, 1, 1], 60)
    labels = (videos % 2).astype(np.int64)
    logits = (2.0 * labels - 1.0) + rng.normal(0, 3.0, len(videos))  # noisy frames, steadier videos
    datasets = np.zeros(len(videos), np.int64)
    agg = aggregate_media(pd.DataFrame({"media_id": videos, "track_id": tracks, "logit": logits}), 1.0)
    expected = fit_temperature(agg["logit"], np.arange(60) % 2)
    t_video, per_domain = fit_calibration(logits, labels, datasets, ["ffpp"], videos, tracks)
    t_frame, _ = fit_calibration(logits, labels, datasets, ["ffpp"])
    assert t_video == pytest.approx(expected) and per_domain["ffpp"] == pytest.approx(expected)
    assert abs(t_video - t_frame) > 0.1  # the frame-level fit is a different (worse-matched) temperature


def test_balanced_offset_moves_the_decision_point_into_the_bias_not_the_ranking():
    import torch

    from deepgen.models import create_detector
    from deepgen.models.config import ModelConfig
    from deepgen.train.trainer import calibrate

    rng = np.random.default_rng(0)
    # a detector that has learned a prior, not a boundary: every logit positive, fakes 3 to 1
    labels = np.r_[np.zeros(40), np.ones(120)].astype(np.int64)
    logits = np.where(labels == 1, rng.normal(5.0, 1.0, len(labels)), rng.normal(3.0, 1.0, len(labels)))
    videos, zeros = np.arange(len(labels)), np.zeros(len(labels), np.int64)
    model = create_detector(ModelConfig(backbone="test_efficientnet", image_size=32)).eval()
    x = torch.from_numpy(rng.normal(0, 1, (4, 3, 32, 32)).astype(np.float32))
    with torch.no_grad():
        before = model(x)["logit"].numpy()
    offset, temperature, _ = calibrate(model, logits, labels, zeros, ["d"], videos, zeros)
    with torch.no_grad():
        after = model(x)["logit"].numpy()
    np.testing.assert_allclose(after, before - offset, atol=1e-5)  # folded into the bias, exactly
    assert 3.5 < offset < 4.5 and temperature > 0  # the balanced point, not pulled toward the 3:1 majority
    from deepgen.train.trainer import fit_calibration

    assert temperature == pytest.approx(fit_calibration(logits - offset, labels, zeros, ["d"], videos, zeros)[0])
    assert (logits[labels == 0] >= 0).mean() == 1.0  # a temperature alone flags every real
    assert (logits[labels == 0] - offset >= 0).mean() < 0.35
    # the same classes at the opposite imbalance give the same point
    flipped = np.r_[np.zeros(120), np.ones(40)].astype(np.int64)
    z2 = np.where(flipped == 1, rng.normal(5.0, 1.0, len(flipped)), rng.normal(3.0, 1.0, len(flipped)))
    from deepgen.evaluation.calibration import fit_offset

    assert fit_offset(z2, flipped) == pytest.approx(offset, abs=0.4)
    offset_off, _, _ = calibrate(model, logits, labels, zeros, ["d"], videos, zeros, balanced=False)
    assert offset_off == 0.0


def test_frames_per_video_keeps_evenly_spaced_frames_with_all_their_faces():
    import pyarrow as pa

    from deepgen.train.data import frames_per_video

    keys = ["a"] * 16 + ["b"] * 3
    frames = [f for f in range(8) for _ in (0, 1)] + [0, 5, 9]  # video a: 2 faces a frame
    t = pa.table({"media_key": keys, "frame_index": frames, "x": list(range(19))})
    out = frames_per_video(t, 4)
    got = sorted(set(zip(out["media_key"].to_pylist(), out["frame_index"].to_pylist())))
    assert got == [("a", 0), ("a", 2), ("a", 5), ("a", 7), ("b", 0), ("b", 5), ("b", 9)]
    assert out.num_rows == 8 + 3
    with pytest.raises(DeepgenError, match="frames_per_video is -1"):
        load_config({"frames_per_video": -1})


def test_frames_per_video_reaches_the_training_split(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from deepgen.train.data import build_train_data

    one = pq.read_table(write_toy_faces(str(tmp_path / "toy.parquet"), n_per_class=40, seed=0))
    three = pa.concat_tables([one.set_column(one.column_names.index("frame_index"), "frame_index",
                                             pa.array(np.full(one.num_rows, f), pa.int64())) for f in (0, 3, 6)])
    pq.write_table(three, str(tmp_path / "three.parquet"))
    cfg = {"batch_size": 8, "model": {"backbone": "test_efficientnet", "image_size": 32}}
    every = build_train_data([str(tmp_path / "three.parquet")], load_config(cfg))
    single = build_train_data([str(tmp_path / "three.parquet")], load_config({**cfg, "frames_per_video": 1}))
    assert every.train.num_rows == 3 * single.train.num_rows > 0
    assert every.val.num_rows == single.val.num_rows  # validation keeps every frame
