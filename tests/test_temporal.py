"""Temporal evidence (issue 22): the registered temporal head reads order, temporal pseudo-fakes
drift, clips are grouped by their recorded order, and fusion scores the same in `score` and `evaluate`."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import torch

from deepgen.augment import temporal_blend
from deepgen.inference import TemporalFusion, aggregate_media, clip_groups, temporal_frame_logits
from deepgen.models import ModelConfig, create_detector, list_models
from deepgen.storage import read_table, write_table
from deepgen.testing.faces import face_frames, load_rgb, write_video


@pytest.fixture(scope="module")
def temporal_model():
    torch.manual_seed(0)
    model = create_detector(ModelConfig(arch="temporal", image_size=48, clip_len=4, temporal_dim=32))
    return model.eval()


def test_temporal_head_reads_order_and_a_repeated_frame_is_finite(temporal_model):
    assert "temporal" in list_models()
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (48, 48, 3), dtype=np.uint8) for _ in range(4)]
    with torch.no_grad():
        feats = temporal_model.features(temporal_model.preprocess(frames))  # (4, d): one clip in order
        seq = feats[None]
        z = temporal_model.temporal_logits(seq)
        shuffled = temporal_model.temporal_logits(seq[:, [2, 0, 3, 1]])
        repeated = temporal_model.temporal_logits(feats[[1, 1, 1, 1]][None])
        short = temporal_model.temporal_logits(seq[:, :1])  # a clip of one frame
    assert abs(float(z - shuffled)) > 1e-4
    assert torch.isfinite(repeated).all() and torch.isfinite(short).all()
    with pytest.raises(ValueError, match="1 <= L <= 4"):
        temporal_model.temporal_logits(torch.zeros(1, 5, feats.shape[1]))


def test_temporal_pseudo_fakes_drift_frame_by_frame_and_are_seeded():
    img = np.random.default_rng(1).integers(40, 200, (48, 48, 3), dtype=np.uint8)
    clip = [img] * 4  # a perfectly still real clip: any frame-to-frame change comes from the blend
    moving, masks = temporal_blend(clip, np.random.default_rng(3), drift=1.0)
    again, _ = temporal_blend(clip, np.random.default_rng(3), drift=1.0)
    still, still_masks = temporal_blend(clip, np.random.default_rng(3), drift=0.0)
    assert all(np.array_equal(a, b) for a, b in zip(moving, again))
    assert all(np.array_equal(still[0], f) for f in still[1:])  # drift 0: a temporally stable blend
    assert all(not np.array_equal(moving[0], f) for f in moving[1:])
    assert np.abs(masks[0] - masks[3]).max() > 0.05 and still_masks[0].max() > 0.1
    assert any(not np.array_equal(img, f) for f in moving)


def test_clips_follow_clip_pos_not_row_order(temporal_model):
    d = temporal_model.num_features
    rng = np.random.default_rng(2)
    frames = pd.DataFrame({"media_id": ["a"] * 6 + ["b"] * 3, "track_id": 0,
                           "clip_index": [0, 0, 0, 0, 1, 1, 0, 0, 0], "clip_pos": [0, 1, 2, 3, 0, 1, 0, 1, 2],
                           "logit": rng.normal(size=9), "features": list(rng.normal(size=(9, d)).astype(np.float32))})
    assert [list(g) for g in clip_groups(frames, 4)] == [[0, 1, 2, 3], [4, 5], [6, 7, 8]]
    fusion = TemporalFusion(temporal_model, 1.5, 2.0, 0.8)
    z = temporal_frame_logits(frames, fusion)
    perm = rng.permutation(9)
    z_perm = temporal_frame_logits(frames.iloc[perm].reset_index(drop=True), fusion)
    np.testing.assert_allclose(z_perm, z[perm], atol=1e-6)
    assert np.allclose(z[:4], z[0]) and not np.isclose(z[0], z[4])
    v = aggregate_media(frames, 99.0, fusion)  # the fusion's temperature, not the argument's
    zf = frames["logit"].to_numpy() / 1.5 + z / 2.0
    expect = [zf[:6].mean(), zf[6:].mean()]
    np.testing.assert_allclose(v["logit"], expect, atol=1e-9)
    np.testing.assert_allclose(v["score"], 1 / (1 + np.exp(-np.array(expect) / 0.8)), atol=1e-9)
    np.testing.assert_allclose(v["temporal_score"], 1 / (1 + np.exp(-np.array([z[:6].mean(), z[6:].mean()]) / 2.0)))
    no_clips = aggregate_media(frames.drop(columns=["clip_index", "clip_pos"]), 1.0, fusion)
    assert no_clips["temporal_score"].isna().all()


def test_temporal_recipe_loads():
    from deepgen.errors import DeepgenError
    from deepgen.train.config import load_config

    cfg = load_config("temporal")
    assert cfg.model.arch == "temporal" and cfg.lambda_domain == 0.1  # full's settings, plus the head
    with pytest.raises(DeepgenError, match="temporal_fakes"):
        load_config("temporal", {"temporal_fakes": 0})


@pytest.fixture(scope="module")
def temporal_bundle(temporal_model, tmp_path_factory) -> str:
    from deepgen.models.bundle import save_bundle

    out = str(tmp_path_factory.mktemp("tbundle") / "temporal")
    ref = np.random.default_rng(0).normal(size=(64, temporal_model.num_features))
    save_bundle(out, temporal_model, temperature=1.5, reference=ref, datasets=["t"],
                extras={"temporal": {"frame_temperature": 1.5, "temporal_temperature": 0.7,
                                     "fusion_temperature": 1.3}})
    return out


def test_fusion_scores_the_same_in_score_and_evaluate(ray_session, real_faces_dir, temporal_bundle, tmp_path):
    from deepgen.evaluation.run import evaluate
    from deepgen.faces.extract import extract_faces
    from deepgen.scoring import ScoreConfig, score

    rows = []
    for i, name in enumerate(["img1.jpg", "img10.jpg"]):
        uri = write_video(str(tmp_path / f"v{i}.mp4"), face_frames(load_rgb(real_faces_dir / name), 12, 320, 240,
                                                                   seed=i))
        rows.append({"media_id": f"t/v{i}.mp4", "uri": uri, "label": i % 2, "dataset": "t", "method": "x",
                     "split": "test", "source_id": f"s{i}", "compression": "c23", "media_type": "video"})
    manifest = str(tmp_path / "m.parquet")
    write_table(pa.Table.from_pylist(rows), manifest)
    cfg = ScoreConfig(frames=8, sampling="clips", clip_len=4, margin=0.3)
    extract_faces(manifest, str(tmp_path / "faces"), frames=8, size=48, margin=0.3, sampling="clips", clip_len=4)
    score(manifest, temporal_bundle, str(tmp_path / "scores"), cfg)
    evaluate([temporal_bundle], [str(tmp_path / "faces")], str(tmp_path / "eval"), split="all", mc_passes=0,
             evidence=False)
    scored = read_table(str(tmp_path / "scores")).to_pandas().set_index("media_id").sort_index()
    evaluated = read_table(str(tmp_path / "eval" / "predictions.parquet")).to_pandas().set_index("media_id")
    evaluated = evaluated.loc[scored.index]
    assert (scored["status"] == "ok").all() and len(scored) == 2
    assert scored["temporal_score"].notna().all()
    for col in ("score", "logit", "temporal_score"):
        np.testing.assert_allclose(scored[col].to_numpy(), evaluated[col].to_numpy(), atol=1e-6, rtol=0)
