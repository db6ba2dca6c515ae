"""The one inference path: aggregation rules, and `score` and `evaluate` agreeing on the same media."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from deepgen.evaluation.calibration import sigmoid
from deepgen.evaluation.uncertainty import binary_entropy
from deepgen.inference import aggregate_media, ensemble_model_id
from deepgen.storage import read_table, write_table
from deepgen.testing.faces import face_frames, load_rgb, write_video


def test_video_logit_is_the_max_over_tracks_of_the_track_mean():
    frames = pd.DataFrame({
        "media_id": ["a"] * 6 + ["b"] * 2,
        "track_id": [0, 0, 0, 1, 1, 1, 0, 0],
        "logit": [-2.0, -1.0, -3.0, 1.0, 2.0, 3.0, 0.5, 1.5],
    })
    v = aggregate_media(frames, temperature=2.0).set_index("media_id")
    assert v.loc["a", "logit"] == pytest.approx(2.0)  # the swapped track (mean 2) decides, not the mean (0)
    assert v.loc["b", "logit"] == pytest.approx(1.0)
    assert v.loc["a", "n_tracks"] == 2 and v.loc["a", "n_faces"] == 6 and v.loc["b", "n_tracks"] == 1
    assert v.loc["a", "score"] == pytest.approx(float(sigmoid(1.0)))  # calibrated: sigmoid(logit / T)
    assert v.loc["a", "uncertainty"] == pytest.approx(float(binary_entropy(sigmoid(1.0))))
    assert np.isnan(v.loc["a", "mutual_info"])


def test_mc_passes_aggregate_like_the_logit():
    frames = pd.DataFrame({"media_id": ["a", "a"], "track_id": [0, 1], "logit": [0.0, 1.0],
                           "mc_logits": [np.array([0.0, 0.0]), np.array([4.0, -4.0])]})
    v = aggregate_media(frames, 1.0).iloc[0]
    # pass 1: max(0, 4) = 4; pass 2: max(0, -4) = 0 -> the passes disagree: mutual information > 0
    p = sigmoid(np.array([4.0, 0.0]))
    expected = binary_entropy(p.mean()) - binary_entropy(p).mean()
    assert v["mutual_info"] == pytest.approx(float(expected))


def test_cpu_inference_goes_in_small_batches_with_the_same_outputs():
    """On a CPU crops go through in batches of CPU_BATCH (faster there); the outputs do not depend on it."""
    import torch

    from deepgen.inference import model_frame_outputs
    from deepgen.models import ModelConfig, create_detector
    from deepgen.models.detector import CPU_BATCH, inference_batch

    assert inference_batch("cpu", 256) == CPU_BATCH and inference_batch("cpu", 8) == 8
    assert inference_batch("cuda:0", 256) == 256
    torch.manual_seed(0)
    model = create_detector(ModelConfig(image_size=32))
    crops = np.random.default_rng(0).integers(0, 256, (CPU_BATCH + 5, 32, 32, 3), dtype=np.uint8)
    seen = []
    model.register_forward_pre_hook(lambda m, args: seen.append(len(args[0])))
    out = model_frame_outputs(model, crops, "cpu")
    assert seen == [CPU_BATCH, 5]
    with torch.no_grad():
        whole = model.eval()(model.preprocess(crops))  # one batch
    np.testing.assert_allclose(out["logit"], whole["logit"].numpy(), atol=1e-5)


def test_ensemble_model_id_is_order_free():
    assert ensemble_model_id(["a"]) == "a"
    assert ensemble_model_id(["a", "b"]) == ensemble_model_id(["b", "a"]) != ensemble_model_id(["a", "c"])


@pytest.fixture(scope="module")
def face_manifest(real_faces_dir, tmp_path_factory) -> str:
    d = tmp_path_factory.mktemp("same")
    rows = []
    for i, name in enumerate(["img1.jpg", "img10.jpg", "img11.jpg"]):
        uri = write_video(str(d / f"v{i}.mp4"), face_frames(load_rgb(real_faces_dir / name), 8, 320, 240, seed=i))
        rows.append({"media_id": f"t/v{i}.mp4", "uri": uri, "label": i % 2, "dataset": "t",
                     "method": "real" if i % 2 == 0 else "swap", "split": "test", "source_id": f"s{i}",
                     "compression": "c23", "media_type": "video"})
    path = str(d / "m.parquet")
    write_table(pa.Table.from_pylist(rows), path)
    return path


def test_score_and_evaluate_give_the_same_video_predictions(ray_session, tiny_bundle, face_manifest, tmp_path):
    from deepgen.evaluation.run import evaluate
    from deepgen.faces.extract import extract_faces
    from deepgen.models.bundle import read_model_config
    from deepgen.scoring import ScoreConfig, score

    cfg = ScoreConfig(frames=4, margin=0.3)
    size = read_model_config(tiny_bundle).image_size  # scoring crops straight to the model's input size
    extract_faces(face_manifest, str(tmp_path / "faces"), frames=cfg.frames, size=size, margin=cfg.margin,
                  detector=cfg.detector)
    score(face_manifest, tiny_bundle, str(tmp_path / "scores"), cfg)
    evaluate([tiny_bundle], [str(tmp_path / "faces")], str(tmp_path / "eval"), split="all", mc_passes=0,
             evidence=False)
    scored = read_table(str(tmp_path / "scores")).to_pandas().set_index("media_id").sort_index()
    evaluated = read_table(str(tmp_path / "eval" / "predictions.parquet")).to_pandas().set_index("media_id")
    evaluated = evaluated.loc[scored.index]
    assert (scored["status"] == "ok").all() and len(scored) == 3
    for col in ("score", "logit", "uncertainty", "ood_score"):
        np.testing.assert_allclose(scored[col].to_numpy(), evaluated[col].to_numpy(), atol=1e-6, rtol=0)
    assert (scored["n_tracks"] >= 1).all()
    assert (scored["in_domain"] == evaluated["in_domain"]).all()
