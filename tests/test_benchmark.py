"""The generalization benchmark's scoring and table: per-dataset video AUC, mean/min over unseen sets."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from deepgen.errors import DeepgenError
from deepgen.experiments.benchmark import (
    PERTURBATIONS,
    TESTS,
    TRAIN,
    generalization,
    markdown_table,
    score_recipe,
)
from deepgen.experiments.command import benchmark as benchmark_command
from deepgen.models.bundle import load_bundle
from deepgen.train.config import load_config


def _crops(videos_per_set: int = 8, frames: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for d in (TRAIN, *TESTS):
        for v in range(videos_per_set):
            label = v % 2
            for f in range(frames):
                crop = rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)
                rows.append({"media_id": f"{d}-{v}", "frame_index": f, "label": label, "dataset": d,
                             "skin_tone_group": ("light", "dark")[v // 2 % 2], "crop": crop})
    return pd.DataFrame(rows)


def test_score_recipe_row_is_consistent(tiny_bundle):
    bundle = load_bundle(tiny_bundle)
    df = _crops()
    out = score_recipe(bundle, df, seed=0)
    row = out["row"]
    unseen = [row[d] for d in TESTS]
    assert all(0.0 <= v <= 1.0 for v in [*unseen, row[TRAIN]])
    assert row["mean_auc"] == pytest.approx(np.mean(unseen)) and row["min_auc"] == pytest.approx(min(unseen))
    assert {f"auc_{p}" for p in PERTURBATIONS} | {"auc_pgd2", "ece_in_domain", "worst_group_auc"} <= set(row)
    assert 0.0 <= row["ece_in_domain"] <= 1.0 and 0.0 <= row["worst_group_auc"] <= 1.0
    videos = out["videos"]
    assert len(videos) == df["media_id"].nunique() and np.isfinite(videos["logit"]).all()
    again = score_recipe(bundle, df, seed=0)["row"]  # seeded perturbations and attack: same numbers
    assert all(again[k] == pytest.approx(v, nan_ok=True) for k, v in row.items())


def test_markdown_table_formats_numbers_and_blanks():
    t = pd.DataFrame([{"recipe": "erm", "mean_auc": 0.61234, "ece": float("nan")}])
    assert markdown_table(t).splitlines() == ["| recipe | mean_auc | ece |", "|---|---|---|", "| erm | 0.612 |  |"]


def test_unknown_recipe_is_one_sentence(tmp_path):
    with pytest.raises(DeepgenError, match=r"recipe\(s\) nope have no configs/<name>.yaml; choose from .*full"):
        generalization(str(tmp_path), recipes=("nope",))


@pytest.mark.parametrize("kwargs, match", [
    ({"image_size": 8}, r"model.image_size is 8; use at least 16 pixels"),
    ({"ablate": ("-nope",)}, r"ablation\(s\) -nope are unknown; choose from full, \+self_blends"),
    ({"crop_size": 8}, r"crop size 8 is too small for a face; use --crop-size 16 or more"),
])
def test_bad_sizes_fail_before_any_data_is_made(tmp_path, kwargs, match):
    with pytest.raises(DeepgenError, match=match):
        generalization(str(tmp_path / "out"), recipes=("erm",), **kwargs)
    assert not (tmp_path / "out").exists()


def test_a_larger_crop_alone_is_said_to_be_resized_before_anything_is_made(tmp_path):
    """--crop-size 160 without --image-size trains at the recipe's 96 px: one line says so, first."""
    class Stop(Exception):
        pass

    lines = []

    def log(line):
        lines.append(line)
        raise Stop

    with pytest.raises(Stop):
        generalization(str(tmp_path / "out"), recipes=("erm",), crop_size=160, log=log)
    assert lines == ["note: the recipes' models take 96-px input, so the 160-px crops are resized to it; pass "
                     "--image-size 160 to train at the crop size."]
    assert not (tmp_path / "out").exists()


def test_realdf_without_the_real_deepfakes_is_one_sentence_before_ray(tmp_path, monkeypatch):
    import deepgen.experiments.realdf
    import deepgen.runtime

    monkeypatch.setattr(deepgen.experiments.realdf, "default_real_deepfakes", lambda: None)
    monkeypatch.setattr(deepgen.runtime, "init_ray", lambda *a, **k: pytest.fail("Ray started"))
    with pytest.raises(DeepgenError, match=r"^the realdf protocol needs the real deepfakes; pass --real-deepfakes DIR"):
        generalization(str(tmp_path / "out"), recipes=("full",), protocol="realdf")
    res = CliRunner().invoke(benchmark_command, ["generalization", "--protocol", "realdf", "--out", str(tmp_path / "o"),
                                                 "--real-deepfakes", str(tmp_path / "missing")])
    assert res.exit_code == 2 and "does not exist" in res.output


def test_seeds_summarize_as_mean_and_std_and_ablations_turn_one_component_off():
    from deepgen.experiments.benchmark import _runs, summarize_seeds

    raw = pd.DataFrame([{"recipe": "erm", "seed": s, "mean_auc": v, "train_s": 10.0 + s}
                        for s, v in enumerate((0.7, 0.8, 0.9))] + [{"recipe": "full", "seed": 0, "mean_auc": 0.5,
                                                                     "train_s": 5.0}])
    table = summarize_seeds(raw).set_index("recipe")
    assert table.loc["erm", "mean_auc"] == f"0.800 ± {np.std([0.7, 0.8, 0.9]):.3f}" and table.loc["erm", "seeds"] == 3
    assert table.loc["full", "mean_auc"] == "0.500 ± 0.000" and table.loc["erm", "train_s"] == "11"
    runs = {name: o for name, _, o in _runs(("erm",), ablate=True, protocol="a")}
    assert runs["full"] == {} and runs["full-ema"] == {"ema_decay": 0.0} and "full-dann" not in runs
    assert "full-dann" in {name for name, _, _ in _runs(("erm",), ablate=True, protocol="b")}
    assert all(len(o) >= 1 for name, o in runs.items() if name != "full")
    assert runs["full+self_blends"] == {"blend_other_prob": 0.7} and runs["full-xray_blends"] == {"sbi_prob": 0.0}
    for o in runs.values():  # every row is a valid recipe
        load_config("full", o)
    picked = _runs(("erm",), ablate=("+strong_perturb",), protocol="a")
    assert [name for name, _, _ in picked] == ["full", "full+strong_perturb"]


def test_seeded_runs_are_reused_only_for_the_same_resolved_recipe(tmp_path, monkeypatch):
    import deepgen.experiments.benchmark as bench
    import deepgen.models.bundle
    import deepgen.train

    calls = []

    def fake_train(recipe, faces, run, **kw):
        calls.append(kw["overrides"])
        os.makedirs(run, exist_ok=True)
        return {"bundle": run}

    monkeypatch.setattr(deepgen.train, "train", fake_train)
    monkeypatch.setattr(deepgen.models.bundle, "load_bundle", lambda uri: None)
    monkeypatch.setattr(bench, "_eval_crops", lambda faces: None)
    monkeypatch.setattr(bench, "score_recipe", lambda b, df, seed, robustness: {"row": {"mean_auc": 0.5, "min_auc": 0.4}})
    faces = {TRAIN: str(tmp_path / "faces")}
    args = (str(tmp_path), "full", "full", {"seed": 0}, faces, 1, 0, lambda msg: None)
    first = bench._protocol_a(*args)
    again = bench._protocol_a(*args)  # same recipe, overrides and data: the stored row, no training
    assert len(calls) == 1 and again == first
    bench._protocol_a(str(tmp_path), "full", "full", {"seed": 0, "lambda_supcon": 0.5}, faces, 1, 0, lambda m: None)
    assert len(calls) == 2  # another resolved recipe trains again
    # an ablation row whose overrides resolve to a model trained before under another name: reused
    bench._protocol_a(str(tmp_path), "full+supcon", "full", {"seed": 0, "lambda_supcon": 0.5}, faces, 1, 0,
                      lambda m: None)
    assert len(calls) == 2


def test_protocol_b_trains_on_four_presets_and_scores_the_fifth(tmp_path, monkeypatch):
    import deepgen.experiments.benchmark as bench
    import deepgen.models.bundle
    import deepgen.train

    trained = []

    def fake_train(recipe, faces, run, **kw):
        trained.append(sorted(faces))
        return {"bundle": run}

    def fake_crops(faces, seen):
        (held,) = faces  # one held-out preset, scored on all its rows
        assert seen == ()
        return pd.DataFrame({"media_id": ["a", "a", "b", "c"], "label": [0, 0, 1, 1], "crop": [None] * 4,
                             "dataset": held})

    monkeypatch.setattr(deepgen.train, "train", fake_train)
    monkeypatch.setattr(deepgen.models.bundle, "load_bundle", lambda uri: uri)
    monkeypatch.setattr(bench, "_eval_crops", fake_crops)
    monkeypatch.setattr(bench, "video_scores", lambda bundle, crops, df: pd.DataFrame(
        {"score": [0.5, 0.9, 0.1] if "-dfdc-" in bundle else [0.1, 0.9, 0.8]}, index=["a", "b", "c"]))
    faces = {p: str(tmp_path / p) for p in (TRAIN, *TESTS)}
    row = bench._protocol_b(str(tmp_path), "erm", "erm", {"seed": 0}, faces, 1, 0, lambda m: None)
    assert len(trained) == 5
    for held, used in zip(faces, trained):
        assert used == sorted(f for p, f in faces.items() if p != held)  # never trained on the held preset
    assert row["dfdc"] == 0.5 and all(row[p] == 1.0 for p in faces if p != "dfdc")
    assert row["mean_auc"] == pytest.approx(0.9) and row["min_auc"] == 0.5


def test_real_protocol_folds_keep_people_apart_and_summarize_both_flag_rates():
    from deepgen.experiments.benchmark import ABLATIONS
    from deepgen.experiments.real import fold_groups, summarize_real, val_people

    people = [f"p{i}" for i in range(10)]
    groups = fold_groups(people, 3, seed=0)
    assert sorted(groups) == people and sorted(set(groups.values())) == ["fold0", "fold1", "fold2"]
    for fold in range(3):
        val = val_people(groups, fold, seed=0)
        assert len(val) == 2 and all(groups[p] != f"fold{fold}" for p in val)  # never a test person
    assert fold_groups(people, 3, seed=0) == groups  # seeded
    raw = pd.DataFrame({"row": ["full"] * 3, "protocol": ["real→real"] * 3, "fold": [0, 1, 2], "seed": 0,
                        "auc": [0.6, 0.7, 0.8], "real_flagged": [0.1, 0.2, 0.0],
                        "real_flagged_t_only": [1.0, 1.0, 0.9], "real_videos": 10, "fake_videos": 10,
                        "train_s": 60})
    row = summarize_real(raw).iloc[0]
    assert row["auc"] == "0.700 ± 0.082" and row["min_auc"] == "0.600"
    assert row["real_flagged"] == "0.100 ± 0.082" and row["max_real_flagged"] == "0.200"
    assert row["real_flagged_t_only"] == "0.967 ± 0.047"
    assert load_config("full", ABLATIONS["@frames4"]).frames_per_video == 4
    assert load_config("full", ABLATIONS["@input64"]).model.image_size == 64
