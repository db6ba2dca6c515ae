"""Real deepfakes (issue 29): the development set read in each dataset's own layout, and the per-source
metrics with bootstrap intervals the realdf benchmark reports."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from deepgen.evaluation.metrics import bootstrap_auc_interval
from deepgen.experiments.realdf import (
    default_real_deepfakes,
    real_deepfake_manifest,
    source_metrics,
)


def test_bootstrap_interval_brackets_the_auc_and_narrows_with_more_items():
    rng = np.random.default_rng(0)

    def sample(n):
        y = np.r_[np.zeros(n), np.ones(n)].astype(int)
        return y, np.r_[rng.normal(0, 1, n), rng.normal(1, 1, n)]

    from sklearn.metrics import roc_auc_score

    y, s = sample(10)
    lo, hi = bootstrap_auc_interval(y, s, seed=1)
    assert lo <= roc_auc_score(y, s) <= hi and (lo, hi) == bootstrap_auc_interval(y, s, seed=1)
    y2, s2 = sample(400)
    lo2, hi2 = bootstrap_auc_interval(y2, s2, seed=1)
    assert hi2 - lo2 < (hi - lo) / 3
    assert all(np.isnan(bootstrap_auc_interval([0, 0, 0], [0.1, 0.2, 0.3])))


def test_source_metrics_per_source_and_overall():
    items = pd.DataFrame({"label": [0, 0, 1, 1, 0, 1], "score": [0.1, 0.6, 0.7, 0.9, 0.2, 0.3],
                          "source": ["a", "a", "a", "a", "b", "b"],
                          "in_domain": [True, False, True, True, False, False]})
    rows = {r["source"]: r for r in source_metrics(items)}
    assert set(rows) == {"a", "b", "all"} and rows["a"]["auc"] == 1.0 and rows["b"]["auc"] == 1.0
    assert rows["a"]["real_flagged"] == 0.5 and rows["all"]["real_flagged"] == pytest.approx(1 / 3)
    assert rows["all"]["out_of_domain"] == 0.5 and rows["all"]["items"] == 6 and rows["all"]["fake"] == 3


def test_the_shared_real_deepfakes_read_in_their_own_layouts():
    root = default_real_deepfakes()
    if root is None:
        pytest.skip("../shared/data/real_deepfakes is absent")
    t = real_deepfake_manifest(root).to_pandas()
    counts = t.groupby("source")["label"].agg(["size", "sum"]).to_dict("index")
    assert counts["ffpp_c23"] == {"size": 7, "sum": 4} and counts["celebdf_clips"] == {"size": 14, "sum": 7}
    assert counts["dfdc"] == {"size": 4, "sum": 3} and counts["dfdc_crops"]["size"] == 67
    assert set(t["split"]) == {"test"} and set(t["dataset"]) == {"real_deepfakes"} and t["media_id"].is_unique
    assert set(t.loc[t["source"] == "dfdc_crops", "media_type"]) == {"image"}
    assert set(t.loc[t["source"] == "ffpp_c23", "method"]) == {"real", "Deepfakes", "Face2Face", "FaceSwap",
                                                                "NeuralTextures"}


def test_realdf_summary_and_the_heavy_compression_row():
    from deepgen.experiments.benchmark import ABLATIONS
    from deepgen.experiments.real import summarize_realdf
    from deepgen.train.config import load_config

    raw = pd.DataFrame({"row": ["full"] * 4, "seed": [0, 0, 1, 1], "source": ["a", "all", "a", "all"],
                        "items": 4, "real": 2, "fake": 2, "auc": [0.5, 0.6, 0.7, 0.8],
                        "auc_lo": [0.1, 0.2, 0.3, 0.4], "auc_hi": [0.9, 0.9, 1.0, 1.0],
                        "real_flagged": [0.5, 0.5, 0.0, 0.0], "out_of_domain": [1.0, 1.0, 1.0, 1.0]})
    rows = summarize_realdf(raw).set_index("source")
    assert rows.loc["a", "auc"] == "0.600 ± 0.100" and rows.loc["a", "auc 95% interval"] == "[0.20, 0.95]"
    assert rows.loc["all", "real_flagged"] == "0.250 ± 0.250" and rows.loc["all", "seeds"] == 2
    cfg = load_config("full", ABLATIONS["+heavy_compression"])
    assert tuple(cfg.perturb.jpeg_quality) == (10, 60) and cfg.perturb.downscale_p == 0.5


def test_with_no_test_fold_every_person_trains_or_validates():
    from deepgen.experiments.real import fold_groups, val_people

    groups = fold_groups([f"p{i}" for i in range(9)], 3, seed=0)
    val = val_people(groups, None, seed=0)
    assert len(val) == 2 and val <= set(groups) and val == val_people(groups, None, seed=0)


def test_item_groups_keep_a_person_or_source_video_on_one_side():
    from deepgen.experiments.realdf_head import item_groups

    ids = ["r/ffpp_c23/519.mp4", "r/ffpp_c23/519_515.mp4", "r/ffpp_c23/515.mp4", "r/ffpp_c23/750_743.mp4",
           "r/dfdc_crops/fake/akndzxxbai_ryfqnbcpmt_6.jpg", "r/dfdc_crops/real/ryfqnbcpmt_0.jpg",
           "r/celebdf_clips/fake/id0_id1_0005_segment_1.mp4", "r/celebdf_clips/real/id1_0009_segment_1.mp4",
           "r/celebdf_clips/real/00279_segment_1.mp4", "r/dfdc/widuwuoiur.mp4", "r/folder/real/x.mp4"]
    sources = [None] * 9 + ["dfdc_train_part_10/ryfqnbcpmt.mp4", None]
    g = item_groups(ids, sources)
    assert g[0] == g[1] == g[2] != g[3]  # 519 and 515 are one pair
    assert g[4] == g[5] == g[9]  # a fake crop, its original's crop and a video made from the same original
    assert g[6] == g[7] and len({g[3], g[4], g[6], g[8], g[10]}) == 5


def test_a_head_fitted_on_other_peoples_forgeries_scores_held_out_items(tiny_bundle):
    """Grouped folds: every item is scored once per variant by a head that never saw its group; a signal
    the crops carry (fakes brighter) is learnt by the refit head and the ImageNet probe."""
    from deepgen.experiments.realdf_head import VARIANTS, head_cross_validation, summarize_head

    rng = np.random.default_rng(0)
    rows = []
    for i in range(16):
        label = i % 2
        for _ in range(2):
            crop = rng.integers(0, 120, (48, 48, 3), dtype=np.uint8) + (100 if label else 0)
            rows.append({"media_id": f"r/celebdf_clips/{'fake' if label else 'real'}/id{i}_0001.mp4",
                         "label": label, "source": "celebdf_clips" if i < 8 else "dfdc_crops",
                         "source_id": None, "track_id": 0, "crop": crop.astype(np.uint8)})
    raw = head_cross_validation([tiny_bundle], pd.DataFrame(rows), folds=4, seed=0, steps=20, log=lambda _: None)
    assert len(raw) == 16 * len(VARIANTS) and raw.groupby("variant")["media_id"].nunique().eq(16).all()
    assert raw["score"].between(0, 1).all()
    from sklearn.metrics import roc_auc_score

    for v in ("head refit", "ImageNet probe"):
        r = raw[raw.variant == v]
        assert roc_auc_score(r["label"], r["score"]) > 0.9, v
    table = summarize_head(raw)
    assert set(table["variant"]) == set(VARIANTS) and set(table["source"]) == {"celebdf_clips", "dfdc_crops", "all"}
