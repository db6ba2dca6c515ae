"""The domain check's frozen-backbone view (issue 30): camera noise and heavy compression, which a
fine-tuned detector's features may collapse, put a crop out of domain; scoring takes the larger of
the fine-tuned and the frozen distance."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from deepgen.evaluation.frozen import fit_frozen_check, frozen_features
from deepgen.evaluation.ood import fit_ood, mahalanobis_distance, mahalanobis_model
from deepgen.testing.toyfaces import draw_face

SIZE = 64  # the toy crops are drawn at 64 px: no resize


def _faces(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [draw_face(rng, 64) for _ in range(n)]


def _camera(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sensor noise, then blockiness from a low-quality JPEG round trip (what real uploads look like)."""
    noisy = np.clip(img.astype(np.float32) + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", noisy, [cv2.IMWRITE_JPEG_QUALITY, 15])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def test_camera_like_crops_are_out_of_domain_and_unseen_drawn_faces_are_not():
    record, sample = fit_frozen_check(_faces(160, 0), _faces(80, 1), size=SIZE)
    assert record["threshold"] > 0 and record["backbone"] == "efficientnet_lite0" and sample.shape[0] == 160
    model = mahalanobis_model(sample)
    rng = np.random.default_rng(3)
    unseen = mahalanobis_distance(model, frozen_features(_faces(40, 2), SIZE)) / record["threshold"]
    camera = mahalanobis_distance(model, frozen_features([_camera(f, rng) for f in _faces(40, 2)], SIZE))
    camera = camera / record["threshold"]
    assert np.mean(unseen > 1) <= 0.1 and np.mean(camera > 1) >= 0.9, (np.mean(unseen > 1), np.mean(camera > 1))


def test_scoring_takes_the_larger_of_the_fine_tuned_and_frozen_distances(tmp_path):
    from deepgen.inference import Scorer
    from deepgen.models import ModelConfig, create_detector
    from deepgen.models.bundle import reference_stats, save_bundle

    torch.manual_seed(0)
    model = create_detector(ModelConfig(image_size=SIZE))
    train, val = _faces(48, 0), _faces(24, 1)
    with torch.no_grad():
        ref, vf = (model.features(model.preprocess(x)).numpy() for x in (train, val))
    ood = fit_ood(ref, vf, np.arange(len(vf)))
    base = {**reference_stats(ref), "ood_sample": ref}
    save_bundle(str(tmp_path / "without"), model, reference=base, extras={"ood": ood})
    ood["frozen"], frozen = fit_frozen_check(train, val, SIZE)
    save_bundle(str(tmp_path / "with"), model, reference={**base, "ood_frozen_sample": frozen}, extras={"ood": ood})
    rng = np.random.default_rng(5)
    crops = [_camera(f, rng) for f in _faces(6, 9)]
    both = Scorer.load(str(tmp_path / "with"), "cpu").frame_outputs(crops)["ood"]
    fine_tuned = Scorer.load(str(tmp_path / "without"), "cpu").frame_outputs(crops)["ood"]
    frozen_only = mahalanobis_distance(mahalanobis_model(frozen), frozen_features(crops, SIZE))
    np.testing.assert_allclose(both, np.maximum(fine_tuned, frozen_only / ood["frozen"]["threshold"]), rtol=1e-6)
