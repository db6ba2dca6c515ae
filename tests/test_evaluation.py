"""Metrics, cross-dataset protocol and subgroup metrics."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score

from deepgen.errors import DeepgenError
from deepgen.evaluation.calibration import expected_calibration_error
from deepgen.evaluation.crossdataset import (
    auc_matrix,
    auc_matrix_from_predictions,
    cross_dataset_metrics,
)
from deepgen.evaluation.metrics import (
    aggregate_video_scores,
    compute_metrics,
    eer_from_roc,
    equal_error_rate,
    frame_and_video_metrics,
)
from deepgen.evaluation.subgroups import subgroup_metrics


@pytest.mark.parametrize("seed", range(20))
def test_auc_ap_match_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 400))
    y = rng.integers(0, 2, n)
    y[0], y[1] = 0, 1
    # few distinct values -> many ties, within and across classes
    s = np.round(rng.random(n) * rng.integers(2, 10)) / 10 + 0.05 * y * rng.integers(0, 2, n)
    m = compute_metrics(y, s)
    assert abs(m["auc"] - roc_auc_score(y, s)) < 1e-9
    assert abs(m["ap"] - average_precision_score(y, s)) < 1e-9
    assert m["accuracy"] == pytest.approx(np.mean((s >= 0.5) == y), abs=1e-12)
    assert (m["n"], m["n_pos"]) == (n, int(y.sum()))


@settings(max_examples=60, deadline=None, database=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.integers(0, 4)), min_size=2, max_size=40))
def test_auc_ap_match_sklearn_hypothesis(pairs):
    y = np.array([p[0] for p in pairs])
    s = np.array([p[1] for p in pairs], dtype=float) / 4  # 5 levels: heavy ties
    m = compute_metrics(y, s)
    if y.min() == y.max():
        assert math.isnan(m["auc"]) and math.isnan(m["ap"]) and math.isnan(m["eer"])
        return
    assert abs(m["auc"] - roc_auc_score(y, s)) < 1e-9
    assert abs(m["ap"] - average_precision_score(y, s)) < 1e-9
    assert 0.0 <= m["eer"] <= 1.0


def test_eer_exact_at_a_roc_point():
    # ROC points (fpr, fnr): (0,1) (0,.5) (.5,.5) (.5,0) (1,0): FPR == FNR == 0.5 at a point
    assert equal_error_rate([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9]) == pytest.approx(0.5, abs=1e-12)


def test_eer_interpolated_on_a_tied_segment():
    # a tie between one real and one fake at 0.5: the ROC jumps diagonally from (0, .5 fnr) to
    # (.5, 0 fnr); FPR == FNR at t = 1/2 of that segment: EER = 0.25 (nearest points give 0.5 or 0)
    assert equal_error_rate([0, 0, 1, 1], [0.5, 0.1, 0.5, 0.9]) == pytest.approx(0.25, abs=1e-12)


def test_eer_interpolated_on_a_vertical_segment():
    # reals 0.1 0.2 0.7, fakes 0.5 0.8: FPR stays 1/3 while FNR falls .5 -> 0; crossing at 1/3
    assert equal_error_rate([0, 0, 0, 1, 1], [0.1, 0.2, 0.7, 0.5, 0.8]) == pytest.approx(1 / 3, abs=1e-12)


def test_eer_known_answer_for_shifted_uniforms():
    # reals on a fine grid of U(0,1), fakes of U(0.5,1.5): threshold 0.75 gives FPR = FNR = 0.25
    n = 4000
    reals = (np.arange(n) + 0.5) / n
    fakes = reals + 0.5
    y = np.r_[np.zeros(n), np.ones(n)]
    assert equal_error_rate(y, np.r_[reals, fakes]) == pytest.approx(0.25, abs=1e-3)


def test_eer_from_roc_interpolates_linearly():
    fpr = np.array([0.0, 0.2, 0.6, 1.0])
    tpr = np.array([0.0, 0.6, 0.9, 1.0])  # fnr 1, .4, .1, 0 ; d = -1, -.2, .5, 1
    t = 0.2 / 0.7
    assert eer_from_roc(fpr, tpr) == pytest.approx(0.2 + t * 0.4, abs=1e-12)


def test_one_class_gives_nan_but_accuracy():
    m = compute_metrics([1, 1, 1, 1], [0.9, 0.2, 0.7, 0.6])
    assert math.isnan(m["auc"]) and math.isnan(m["ap"]) and math.isnan(m["eer"])
    assert m["accuracy"] == pytest.approx(0.75)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(DeepgenError, match="no samples"):
        compute_metrics([], [])
    with pytest.raises(DeepgenError, match="labels must be"):
        compute_metrics([0, 2], [0.1, 0.2])
    with pytest.raises(DeepgenError, match="NaN"):
        compute_metrics([0, 1], [0.1, float("nan")])
    with pytest.raises(DeepgenError, match="one score per"):
        compute_metrics([0, 1], [0.1])


def test_video_aggregations():
    frames = pd.DataFrame({
        "media_id": ["a"] * 5 + ["b"] * 3,
        "frame_index": [4, 3, 2, 1, 0, 0, 1, 2],
        "score": [0.9, 0.1, 0.1, 0.8, 0.2, 0.4, 0.5, 0.6],
        "label": [1] * 5 + [0] * 3,
    })
    # video a in frame order: 0.2 0.8 0.1 0.1 0.9
    got = {h: aggregate_video_scores(frames, how=h, k=2, window=2).set_index("media_id")["score"]
           for h in ("mean", "median", "topk", "max_smoothed")}
    assert got["mean"]["a"] == pytest.approx(0.42)
    assert got["median"]["a"] == pytest.approx(0.2)
    assert got["topk"]["a"] == pytest.approx(0.85)
    assert got["max_smoothed"]["a"] == pytest.approx(0.5)  # windows .5 .45 .1 .5
    assert got["max_smoothed"]["b"] == pytest.approx(0.55)
    arr = aggregate_video_scores(["x", "x", "y"], [0.2, 0.4, 0.9], how="mean")
    assert arr.set_index("media_id")["score"].to_dict() == pytest.approx({"x": 0.3, "y": 0.9})
    assert arr.set_index("media_id")["n_frames"].to_dict() == {"x": 2, "y": 1}
    with pytest.raises(DeepgenError, match="unknown"):
        aggregate_video_scores(frames, how="mode")


def test_frame_and_video_metrics():
    rng = np.random.default_rng(0)
    ids = np.repeat(np.arange(30), 4)
    label = (ids % 2).astype(int)
    score = np.clip(0.3 + 0.4 * label + rng.normal(0, 0.25, ids.size), 0, 1)
    frames = pd.DataFrame({"media_id": ids, "label": label, "score": score})
    out = frame_and_video_metrics(frames, how="mean")
    assert out["frame"]["n"] == 120 and out["video"]["n"] == 30
    vid = frames.groupby("media_id").agg(label=("label", "first"), score=("score", "mean"))
    assert out["video"]["auc"] == pytest.approx(roc_auc_score(vid["label"], vid["score"]), abs=1e-12)
    bad = frames.copy()
    bad.loc[0, "label"] = 1 - bad.loc[0, "label"]
    with pytest.raises(DeepgenError, match="several label"):
        frame_and_video_metrics(bad)


def _predictions(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for name, sep in (("ffpp", 2.5), ("celebdf", 1.0), ("dfdc", 0.5), ("wild", 0.0)):
        y = rng.integers(0, 2, 80)
        logit = sep * (2 * y - 1) + rng.normal(0, 1, 80)
        parts.append(pd.DataFrame({"media_id": [f"{name}/{i}" for i in range(80)], "dataset": name,
                                   "label": y, "logit": logit, "score": 1 / (1 + np.exp(-logit))}))
    return pd.concat(parts, ignore_index=True)


def test_cross_dataset_protocol():
    preds = _predictions()
    out = cross_dataset_metrics(preds, "ffpp")
    per = out["per_dataset"].set_index("dataset")
    for name, g in preds.groupby("dataset"):
        assert per.loc[name, "auc"] == pytest.approx(roc_auc_score(g["label"], g["score"]), abs=1e-12)
    unseen = per.loc[["celebdf", "dfdc", "wild"], "auc"].to_numpy()
    s = out["summary"]
    assert s["train_auc"] == pytest.approx(per.loc["ffpp", "auc"])
    assert s["mean_auc"] == pytest.approx(unseen.mean())
    assert s["std_auc"] == pytest.approx(unseen.std())
    assert (s["min_auc"], s["max_auc"]) == (pytest.approx(unseen.min()), pytest.approx(unseen.max()))
    assert s["gap_max_min"] == pytest.approx(unseen.max() - unseen.min())
    assert per.loc["wild", "gap"] == pytest.approx(per.loc["ffpp", "auc"] - per.loc["wild", "auc"])
    assert math.isnan(per.loc["ffpp", "gap"]) and s["n_unseen"] == 3


def test_cross_dataset_one_class_dataset_left_out_of_summary():
    preds = _predictions()
    preds = preds[~((preds["dataset"] == "wild") & (preds["label"] == 0))]
    s = cross_dataset_metrics(preds, ["ffpp"])["summary"]
    assert s["n_unseen_undefined"] == 1 and s["n_unseen"] == 3 and np.isfinite(s["mean_auc"])
    with pytest.raises(DeepgenError, match="lacks column"):
        cross_dataset_metrics(preds.drop(columns=["dataset"]), "ffpp")


def test_auc_matrix():
    m = auc_matrix([{"train": "ffpp", "test": "celebdf", "auc": 0.7},
                    {"train": "ffpp", "test": "ffpp", "auc": 0.99},
                    {"train": "celebdf", "test": "celebdf", "auc": 0.95}])
    assert m.loc["ffpp", "celebdf"] == 0.7 and math.isnan(m.loc["celebdf", "ffpp"])
    with pytest.raises(DeepgenError, match="twice"):
        auc_matrix([{"train": "a", "test": "b", "auc": 0.5}] * 2)
    preds = _predictions()
    mm = auc_matrix_from_predictions({"ffpp": preds, "other": preds})
    assert mm.shape == (2, 4) and mm.loc["other", "dfdc"] == mm.loc["ffpp", "dfdc"]


def test_subgroup_metrics_equal_subset_metrics():
    preds = _predictions(1)
    rng = np.random.default_rng(2)
    preds["skin_tone"] = rng.choice(["light", "medium", "dark"], len(preds))
    preds["age"] = rng.choice(["young", "old"], len(preds))
    out = subgroup_metrics(preds, ["skin_tone", "age"])
    table = out["table"].set_index(["attribute", "group"])
    for col in ("skin_tone", "age"):
        for value, sub in preds.groupby(col):
            ref = compute_metrics(sub["label"], sub["score"])
            row = table.loc[(col, value)]
            for k in ("n", "n_pos", "accuracy", "auc", "ap", "eer"):
                assert row[k] == pytest.approx(ref[k], abs=1e-12)
            assert row["ece"] == pytest.approx(expected_calibration_error(sub["label"], sub["score"]))
    summ = out["summary"].set_index("attribute")
    aucs = table.loc["skin_tone", "auc"]
    assert summ.loc["skin_tone", "worst_auc"] == pytest.approx(aucs.min())
    assert summ.loc["skin_tone", "auc_gap"] == pytest.approx(aucs.max() - aucs.min())
    assert summ.loc["skin_tone", "worst_group"] == aucs.idxmin()
    inter = subgroup_metrics(preds, ["skin_tone", "age"], intersect=True)["table"]
    assert len(inter) == 6 and set(inter["attribute"]) == {"skin_tone|age"}
    sub = preds[(preds["skin_tone"] == "dark") & (preds["age"] == "old")]
    row = inter.set_index("group").loc["dark|old"]
    assert row["auc"] == pytest.approx(roc_auc_score(sub["label"], sub["score"]), abs=1e-12)
    with pytest.raises(DeepgenError, match="lacks column"):
        subgroup_metrics(preds, "gender")
