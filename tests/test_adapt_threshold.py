"""`deepgen adapt threshold`: the decision point set on a user's own real videos, for a frame bundle, an
ensemble and a temporal bundle, re-scored through the one inference path."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow as pa
import pytest
import torch

from deepgen.adapt.threshold import fit_false_alarm_shift, flagged_share
from deepgen.cli import main
from deepgen.models.bundle import load_bundle
from deepgen.storage import write_table
from deepgen.testing.toyfaces import toy_faces_table


def test_the_shift_keeps_at_most_the_asked_share_of_reals_flagged():
    rng = np.random.default_rng(0)
    for n, rate in ((20, 0.05), (40, 0.05), (97, 0.1), (33, 0.2)):
        v = rng.normal(1.0, 2.0, n)
        s = fit_false_alarm_shift(v, rate)
        assert flagged_share(v, s) <= rate and (v - s >= 0).sum() == int(np.floor(rate * n + 1e-9))
    tied = np.array([3.0] * 5 + [1.0] * 15)  # ties at the cut: none of the tied videos may slip through
    assert flagged_share(tied, fit_false_alarm_shift(tied, 0.2)) <= 0.2
    assert flagged_share(tied, fit_false_alarm_shift(tied, 0.05)) == 0.0


def _video_logits(checkpoints: list[str], faces: str) -> np.ndarray:
    """Video logits through the one inference path, in-process (the command itself scores on Ray)."""
    from deepgen.faces.crop import decode_image
    from deepgen.inference import Scorer, aggregate_media
    from deepgen.storage import read_table

    frames = read_table(faces).to_pandas()
    scorer = Scorer.load(checkpoints, "cpu")
    out = scorer.frame_outputs([decode_image(b) for b in frames.pop("image")])
    frames = frames.assign(logit=out["logit"], features=list(out["features"]))
    return aggregate_media(frames, scorer.temperature, scorer.temporal)["logit"].to_numpy()


def _reals(path, n_videos: int, seed: int, clips: bool = False) -> str:
    """Real videos only (label 0); with ``clips`` each video is one 4-frame clip (clip_index, clip_pos)."""
    t = toy_faces_table(n_per_class=n_videos, size=48, seed=seed).to_pandas()
    reals = t[t["label"] == 0].reset_index(drop=True)
    if clips:
        reals = reals.loc[reals.index.repeat(4)].reset_index(drop=True)
        reals["frame_index"] = reals.groupby("media_id").cumcount()
        reals["clip_index"], reals["clip_pos"] = 0, reals["frame_index"]
    write_table(pa.Table.from_pandas(reals, preserve_index=False), path)
    return path


def _bundle(path, seed: int, temperature: float, arch: str = "detector") -> str:
    from deepgen.models import ModelConfig, create_detector
    from deepgen.models.bundle import reference_stats, save_bundle

    torch.manual_seed(seed)
    model = create_detector(ModelConfig(arch=arch, image_size=48, **({"clip_len": 4, "temporal_dim": 16}
                                                                     if arch == "temporal" else {})))
    with torch.no_grad():  # a detector that calls most real faces fake, as an untuned one on new footage does
        model.classifier[-1].bias += 3.0
    extras = ({"temporal": {"frame_temperature": 2.0, "temporal_temperature": 1.5, "fusion_temperature": 1.2}}
              if arch == "temporal" else None)
    ref = np.random.default_rng(seed).normal(size=(16, model.num_features))
    save_bundle(str(path), model, temperature=temperature, reference=reference_stats(ref), extras=extras)
    return str(path)


def test_adapt_threshold_on_a_bundle_and_an_ensemble(ray_session, tmp_path, capsys):
    faces = _reals(tmp_path / "reals.parquet", 24, seed=3)
    a, b = _bundle(tmp_path / "a", 0, 1.5), _bundle(tmp_path / "b", 1, 0.8)
    before = _video_logits([a], faces)
    assert flagged_share(before) > 0.5
    main(["adapt", "threshold", "--checkpoint", a, "--faces", faces, "--false-alarm", "0.05",
          "--out", str(tmp_path / "a2"), "--quiet"])
    res = json.loads(capsys.readouterr().out)
    new = load_bundle(str(tmp_path / "a2"))
    after = _video_logits([new.uri], faces)
    assert flagged_share(after) <= 0.05 and res["n_videos"] == 24 and res["flagged_after"] <= 0.05
    np.testing.assert_allclose(after, before - res["shift"], atol=1e-4)  # exactly the fitted shift
    rec = new.metrics["operating_point"]
    assert rec == new.extras["operating_point"] and rec["false_alarm"] == 0.05 and rec["n_videos"] == 24
    assert new.model_id != load_bundle(a).model_id and new.model_id == res["model_id"]

    main(["adapt", "threshold", "--checkpoint", a, "--checkpoint", b, "--faces", faces, "--false-alarm", "0.1",
          "--out", str(tmp_path / "ens"), "--quiet"])
    res = json.loads(capsys.readouterr().out)
    members = [str(tmp_path / "ens" / f"member-{i}") for i in (0, 1)]
    assert res["bundles"] == members
    ens_after = _video_logits(members, faces)
    assert flagged_share(ens_after) <= 0.1
    from deepgen.inference import Scorer

    assert "24 of your real videos" in Scorer.load(members, "cpu").operating_point


def test_adapt_threshold_on_a_temporal_bundle(ray_session, tmp_path, capsys):
    faces = _reals(tmp_path / "clips.parquet", 20, seed=5, clips=True)
    t = _bundle(tmp_path / "t", 2, 1.0, arch="temporal")
    before = _video_logits([t], faces)
    main(["adapt", "threshold", "--checkpoint", t, "--faces", faces, "--out", str(tmp_path / "t2"), "--quiet"])
    res = json.loads(capsys.readouterr().out)
    after = _video_logits([str(tmp_path / "t2")], faces)
    assert flagged_share(after) <= 0.05
    np.testing.assert_allclose(after, before - res["shift"], atol=1e-4)  # fused logit moved by the shift


def test_adapt_threshold_refuses_fakes_too_few_videos_and_bad_rates(ray_session, tiny_bundle, tmp_path, capsys):
    mixed = str(tmp_path / "mixed.parquet")
    write_table(toy_faces_table(n_per_class=4, size=48), mixed)
    few = _reals(tmp_path / "few.parquet", 6, seed=1)
    cases = [([mixed], "0.05", "labelled fake"), ([few], "0.05", "too few"), ([few], "0", "between 0 and 1"),
             ([few], "nan", "between 0 and 1")]
    for faces, rate, words in cases:
        out = tmp_path / f"out-{len(os.listdir(tmp_path))}"
        with pytest.raises(SystemExit) as e:
            main(["adapt", "threshold", "--checkpoint", tiny_bundle, *sum([["--faces", f] for f in faces], []),
                  "--false-alarm", rate, "--out", str(out), "--quiet"])
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 2 and words in err[-1] and err[-1].startswith("error:"), err
        assert not out.exists()


def test_adapt_threshold_from_analyst_verdicts(tmp_path, tiny_bundle, capsys):
    """The items marked real on the review page set the point from the logits their scores table holds."""
    import pandas as pd

    from deepgen.scoring.pipeline import scores_schema

    model_id = load_bundle(tiny_bundle).model_id
    logits = np.linspace(-2.0, 3.0, 30)
    rows = [{"media_id": f"m{i:02d}", "uri": f"/media/m{i:02d}.mp4", "fingerprint": "f", "model_id": model_id,
             "status": "ok", "logit": float(z), "score": float(1 / (1 + np.exp(-z / 1.5)))}
            for i, z in enumerate(logits)]
    scores = str(tmp_path / "scores.parquet")
    write_table(pa.Table.from_pylist(rows, schema=scores_schema()), scores)
    verdicts = tmp_path / "verdicts.csv"  # 24 marked real (one of them the top-scored item), 6 fake
    pd.DataFrame({"media_id": [r["media_id"] for r in rows], "model_id": model_id,
                  "verdict": ["real"] * 23 + ["fake"] * 6 + ["real"]}).to_csv(verdicts, index=False)
    out = str(tmp_path / "op")
    main(["adapt", "threshold", "--checkpoint", tiny_bundle, "--labels", str(verdicts), "--scores", scores,
          "--false-alarm", "0.05", "--out", out, "--quiet"])
    res = json.loads(capsys.readouterr().out)
    real = np.r_[logits[:23], logits[29]]
    assert res["n_videos"] == 24 and flagged_share(real, res["shift"]) <= 0.05
    assert res["shift"] == fit_false_alarm_shift(real, 0.05)
    assert str(verdicts) in load_bundle(out).metrics["operating_point"]["fitted_on"]
    from deepgen.evaluation.review import review
    from deepgen.inference import Scorer
    from deepgen.scoring.score import format_verdict

    point = Scorer.load(out, "cpu").operating_point  # what score writes on every row it scores
    assert point.startswith("fitted on 24 of your real videos") and "0.05" in point
    assert point in format_verdict({**rows[0], "operating_point": point, "uncertainty": 0.5, "in_domain": None,
                                    "n_frames": 1, "n_faces": 1, "n_tracks": 1})
    marked = pa.Table.from_pylist([{**r, "operating_point": point} for r in rows], schema=scores_schema())
    write_table(marked, str(tmp_path / "marked.parquet"))
    page = review(str(tmp_path / "marked.parquet"), str(tmp_path / "page"))["page"]
    assert f'"operating_points":["{point}"]' in open(page).read()  # the page's header shows it
    other = tmp_path / "other.csv"  # verdicts on another model's scores cannot set this bundle's point
    pd.DataFrame({"media_id": ["m00"], "model_id": "0123456789abcdef", "verdict": ["real"]}).to_csv(other, index=False)
    with pytest.raises(SystemExit):
        main(["adapt", "threshold", "--checkpoint", tiny_bundle, "--labels", str(other), "--scores", scores,
              "--out", str(tmp_path / "op2"), "--quiet"])
    assert "error:" in capsys.readouterr().err
