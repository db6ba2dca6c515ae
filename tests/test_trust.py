"""Trust at the point of use: the domain check, per-frame timelines, heat maps and one-file scoring,
on a bundle really trained (Ray Train) on procedural faces and scored through the real pipeline."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from deepgen.evaluation.ood import (
    OodModel,
    fit_ood,
    knn_distance,
    mahalanobis_distance,
    mahalanobis_model,
)
from deepgen.inference import aggregate_media
from deepgen.storage import read_table, write_table
from deepgen.testing.faces import load_rgb, write_video, zoom_frames

PHOTOS = 12  # real-photo videos (each photo, a slow zoom)
UNSEEN = 10  # procedural videos of the bundle's preset, new seed: identities it never saw


def test_distances_grow_away_from_the_reference():
    rng = np.random.default_rng(0)
    scale = np.r_[np.ones(8), np.full(8, 0.1)]  # the reference varies in 8 directions, hardly in 8 others
    ref, near = rng.normal(size=(200, 16)) * scale, rng.normal(size=(50, 16)) * scale
    far = rng.normal(size=(50, 16)) * scale[::-1]
    for dist in (lambda x: knn_distance(ref, x, 5), lambda x: mahalanobis_distance(mahalanobis_model(ref), x)):
        assert dist(far).min() > np.quantile(dist(near), 0.9)
    from scipy.spatial.distance import mahalanobis  # the textbook definition, row by row
    from sklearn.covariance import LedoitWolf

    m = mahalanobis_model(np.c_[ref, np.zeros(len(ref))])  # a dead (constant) feature, as ReLU features have
    lw = LedoitWolf().fit(np.c_[ref, np.zeros(len(ref))])  # scikit-learn's own precision (eigendecomposition)
    np.testing.assert_allclose(m["precision"], lw.precision_, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(m["mean"], lw.location_)
    far0 = np.c_[far, np.zeros(len(far))]
    assert mahalanobis_distance(m, far0) == pytest.approx([mahalanobis(r, m["mean"], m["precision"]) for r in far0])
    rec = fit_ood(ref, near, np.repeat(np.arange(10), 5), method="mahalanobis")
    assert rec["n_validation_items"] == 10 and set(rec["thresholds"]) == {"knn", "mahalanobis"}
    ood = OodModel(rec, ref)
    assert (ood.frame_scores(far) > 1).mean() > 0.9
    # an item's ood_score is the mean of its crops' scores; in_domain is ood_score <= 1
    frames = pd.DataFrame({"media_id": ["a", "a", "b"], "logit": [0.0, 0.0, 0.0], "ood": [0.5, 0.9, 1.4]})
    v = aggregate_media(frames, 1.0).set_index("media_id")
    assert v.loc["a", "ood_score"] == pytest.approx(0.7) and bool(v.loc["a", "in_domain"])
    assert not bool(v.loc["b", "in_domain"])
    # score / rescore print one warning line only above the set share of out-of-domain items
    from deepgen.scoring.score import domain_warning

    assert domain_warning({"checked": 10, "out_of_domain": 2}) is None
    line = domain_warning({"checked": 10, "out_of_domain": 3})
    assert line.startswith("warning: 3 of 10 scored items (30%) are out of") and "\n" not in line


@pytest.fixture(scope="module")
def scored(procedural_bundle, real_faces_dir, tmp_path_factory):
    """Real-photo videos, unseen procedural videos and two failures, scored with --explain 1."""
    import glob

    from deepgen.datasets import build_manifest
    from deepgen.scoring import ScoreConfig, score
    from deepgen.synth import render_preset

    d = tmp_path_factory.mktemp("trust")
    rows = []
    for i, p in enumerate(sorted(glob.glob(str(real_faces_dir / "*.jpg")))[:PHOTOS]):
        uri = write_video(str(d / f"photo{i}.mp4"), zoom_frames(load_rgb(p), 4))
        rows.append({"media_id": f"photos/{i}.mp4", "uri": uri, "dataset": "photos", "label": 0})
    root = render_preset("ffpp", str(d / "unseen"), videos=UNSEEN, seed=7, frames=4, size=128)
    unseen = build_manifest("ffpp", root).to_pylist()
    rows += [{"media_id": r["media_id"], "uri": r["uri"], "dataset": "unseen", "label": r["label"]} for r in unseen]
    (d / "empty.mp4").write_bytes(b"")
    rows += [{"media_id": "bad/empty.mp4", "uri": str(d / "empty.mp4"), "dataset": "bad", "label": None},
             {"media_id": "bad/missing.mp4", "uri": str(d / "missing.mp4"), "dataset": "bad", "label": None}]
    write_table(pa.Table.from_pylist([{**r, "media_type": "video"} for r in rows]), str(d / "m.parquet"))
    summary = score(str(d / "m.parquet"), procedural_bundle["bundle"], str(d / "scores"),
                    ScoreConfig(frames=4, explain=1))
    from deepgen.synth.presets import load_groundtruth

    return {"summary": summary, "table": read_table(str(d / "scores")).to_pandas(), "root": root, "dir": d,
            "unseen": unseen, "fps": float(load_groundtruth(root)["fps"])}


def test_bundle_records_its_domain_check(procedural_bundle):
    from deepgen.models.bundle import load_bundle

    b = load_bundle(procedural_bundle["bundle"])
    rec = b.extras["ood"]
    assert rec["method"] in rec["thresholds"] and rec["quantile"] == 0.99 and rec["n_validation_items"] >= 2
    assert b.reference["ood_sample"].shape == (rec["n_reference"], b.model.num_features)


def test_out_of_domain_flags_real_photos_not_unseen_procedural_faces(scored):
    t = scored["table"]
    photos, unseen = t[(t.dataset == "photos") & (t.status == "ok")], t[(t.dataset == "unseen") & (t.status == "ok")]
    assert len(photos) >= PHOTOS - 1 and len(unseen) >= len(scored["unseen"]) - 1  # faces found
    out_photos = 1 - photos["in_domain"].astype(bool).mean()
    out_unseen = 1 - unseen["in_domain"].astype(bool).mean()
    print(f"\nout of domain: photos {out_photos:.2f} of {len(photos)}, unseen procedural {out_unseen:.2f} of "
          f"{len(unseen)}; ood_score photos min {photos.ood_score.min():.2f}, unseen max {unseen.ood_score.max():.2f}")
    assert out_photos >= 0.9, photos[["media_id", "ood_score"]]
    assert out_unseen <= 0.1, unseen[["media_id", "ood_score"]]
    assert ((t["ood_score"] > 1) == ~t["in_domain"].astype(bool))[t.status == "ok"].all()
    assert scored["summary"]["out_of_domain"] == int((~t["in_domain"].fillna(True).astype(bool)).sum())


def test_failures_are_null_rows_and_timelines_follow_the_frames(scored):
    t = scored["table"].set_index("media_id")
    for m, status in (("bad/empty.mp4", "unreadable"), ("bad/missing.mp4", "missing")):
        r = t.loc[m]
        assert r["status"] == status and r["error"]
        assert pd.isna(r["score"]) and pd.isna(r["ood_score"]) and r["in_domain"] is None  # never 0.5
    ok = t[t.status == "ok"]
    for _, r in ok.iterrows():
        assert len(r["frame_indices"]) == len(r["frame_scores"]) == len(r["frame_tracks"]) == r["n_faces"]
        assert np.all((r["frame_scores"] >= 0) & (r["frame_scores"] <= 1))
        fps = 25.0 if r.name.startswith("photos/") else scored["fps"]  # write_video's rate; the synth's
        assert np.allclose(r["frame_times"], np.asarray(r["frame_indices"]) / fps, atol=2e-3)
        assert len(r["face_crops"]) == r["n_tracks"]
        flagged = r["score"] >= 0.5
        assert (r["heatmaps"] is not None and len(r["heatmaps"]) == 1) == flagged  # --explain 1: flagged items only


def test_heat_maps_respond_to_the_forged_region(procedural_bundle, scored):
    """Synth ground-truth masks, cropped like the faces: mean heat inside the forged region > outside."""
    from deepgen.faces import ExtractConfig, extract_media
    from deepgen.faces.crop import crop_face, decode_image
    from deepgen.inference import Scorer
    from deepgen.scoring.pipeline import ScoreConfig, extract_config
    from deepgen.synth.presets import load_groundtruth, load_mask

    root, scorer = scored["root"], Scorer.load(procedural_bundle["bundle"], "cpu")
    ecfg: ExtractConfig = extract_config(procedural_bundle["bundle"], ScoreConfig(frames=4))
    media = load_groundtruth(root)["media"]
    inside, outside = [], []
    for key, e in media.items():
        if e["label"] != 1 or not e.get("mask"):
            continue
        faces, _ = extract_media({"media_id": key, "uri": os.path.join(root, key)}, ecfg)
        masks = load_mask(root, e)
        for f in faces[:2]:
            m = np.repeat(masks[f["frame_index"]][..., None], 3, -1)  # boxes are in original-frame pixels
            crop_mask = crop_face(m, f["box"], ecfg.size, ecfg.margin)[..., 0] > 0
            heat, kind = scorer.explain([decode_image(f["image"])])
            if crop_mask.any() and (~crop_mask).any():
                inside.append(heat[0][crop_mask].mean())
                outside.append(heat[0][~crop_mask].mean())
    assert kind == "gradcam" and len(inside) >= 4
    assert np.mean(inside) > np.mean(outside), (inside, outside)


def test_one_file_prints_its_verdict(procedural_bundle, scored, capsys):
    from deepgen.cli import main

    photo = str(scored["dir"] / "photo0.mp4")
    main(["score", photo, "--checkpoint", procedural_bundle["bundle"], "--frames", "4"])
    out = capsys.readouterr().out
    with capsys.disabled():  # shown with -s (the README's example)
        print("\n" + out)
    assert out.startswith("photo0.mp4: likely ") and "score " in out and "uncertainty " in out
    assert "OUT OF DOMAIN" in out and "track 0: 4 frames" in out and "status ok" in out
    with pytest.raises(SystemExit):
        main(["score", str(scored["dir"] / "nope.mp4"), "--checkpoint", procedural_bundle["bundle"]])
    assert capsys.readouterr().err.strip() == (f"error: {scored['dir'] / 'nope.mp4'} does not exist; pass a video "
                                               "or image file (or --manifest for many).")
