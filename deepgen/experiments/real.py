"""The real-face protocol of ``deepgen benchmark generalization --protocol real``: people the detector never saw.

One photo corpus (:func:`deepgen.synth.photos.render_photos`, FF++ layout, its method folders the
forgery families) is rendered from a folder of real photos with the people dealt into ``folds``
groups; forgeries only pair people of one group, so a test person's face never appears in training,
not even swapped into someone else. Faces are extracted once; every fold then re-labels the rows by
person (its group = test, two people of the others = val, the rest = train). Rows of the table:

- ``real→real``: each recipe (or ablation row) trained on the training people, scored on the fold's
  test people (mean ± std over folds and seeds);
- ``lofo:<family>``: ``full`` trained without one forgery family, scored on the test people's reals
  and that family's fakes only (the family's fold is ``i % folds``);
- ``procedural→real``: ``full`` trained on the procedural FF++-like corpus (drawn faces), scored on
  every fold's test people (today's failure, reported as such);
- ``procedural+real→real``: each recipe (and the ``-dann`` ablation row, which only acts here) with
  both corpora in one run (two domains for DANN), scored on the test people.

Columns: video AUC and ``real_flagged``, the share of real videos whose calibrated score reaches the
shipped threshold (0.5: bundles ship no other; with ``balanced_threshold`` it is the validation
videos' class-balanced decision point), the false-alarm rate a trust-and-safety team sees, and
``real_flagged_t_only``, the share a temperature-only calibration (no offset) would flag.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

from deepgen.errors import DeepgenError
from deepgen.experiments.corpora import prepared_corpus, read_stamp, video_scores, write_stamp

THRESHOLD = 0.5  # bundles score P(fake) calibrated by offset and temperature and ship no other threshold
SHARED_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data")
PHOTO_FOLDERS = ("real_faces", "real_faces_more")  # the shared photo folders, 33 people together
# real_faces_more's README: its leonardo_dicaprio is real_faces' p9 (one person, merged before any split)
SHARED_SAME_PERSON = ("p9=leonardo_dicaprio",)
PARTS = ("folds", "procedural", "lofo", "mixed")  # in the order they run


def default_photos() -> list[str] | None:
    """Every shared photo folder beside the checkout (``../shared/data/real_faces`` and ``real_faces_more``)
    that exists, or None (the project ships no photos)."""
    found = [os.path.normpath(os.path.join(SHARED_DATA, f)) for f in PHOTO_FOLDERS]
    found = [f for f in found if os.path.isdir(f)]
    return found or None


def same_person(photos: list[str]) -> list[str]:
    """The ``same_person`` pairs ``photos`` need: the shared folders' one common person when both are given."""
    names = {os.path.basename(os.path.normpath(p)): os.path.realpath(p) for p in photos}
    shared = all(os.path.realpath(os.path.join(SHARED_DATA, f)) == names.get(f) for f in PHOTO_FOLDERS)
    return list(SHARED_SAME_PERSON) if shared else []


def photo_folders(photos: str | list[str] | tuple[str, ...] | None) -> list[str] | None:
    """``--photos`` as a list of folders (one folder or several), or None."""
    if not photos:
        return None
    return [photos] if isinstance(photos, str) else list(photos)


def fold_groups(people: list[str], folds: int, seed: int) -> dict[str, str]:
    """person -> ``fold<i>``: a seeded deal of the people into ``folds`` groups of near-equal size."""
    order = sorted(people)
    perm = np.random.default_rng([seed, 7]).permutation(len(order))
    return {order[j]: f"fold{k % folds}" for k, j in enumerate(perm)}


def prepare_photo_corpus(out: str, photos: list[str], videos: int, frames: int, seed: int, folds: int, crop_size: int,
                         log: Callable[[str], None]) -> dict:
    """Render (or reuse) the photo corpus with people in fold groups, its manifest and ``crop_size`` faces."""
    from deepgen.datasets import write_manifest
    from deepgen.synth import load_groundtruth
    from deepgen.synth.photos import load_people, render_photos

    def render(root: str, manifest: str) -> None:
        people, _ = load_people(photos, same_person=same_person(photos))
        groups = fold_groups([p.id for p in people], folds, seed)
        render_photos(photos, "ffpp", root, videos=videos, seed=seed, frames=frames, splits=groups,
                      overwrite=True, log=log, same_person=same_person(photos))
        write_manifest("ffpp", root, manifest)

    stamp = {"photos": [os.path.abspath(p) for p in photos], "videos": videos, "frames": frames, "seed": seed, "folds": folds,
             "same_person": same_person(photos)}
    root, fdir = prepared_corpus(out, "photos", stamp, render, frames, crop_size, log)
    gt = load_groundtruth(root)
    person = {f"ffpp/{k}": e["target"] for k, e in gt["media"].items()}
    return {"faces": fdir, "groups": gt["splits"], "person": person, "root": root}


def prepare_procedural(out: str, videos: int, frames: int, seed: int, crop_size: int,
                       log: Callable[[str], None]) -> str:
    """Render (or reuse) the procedural FF++-like corpus of the same size and extract its faces."""
    from deepgen.datasets import write_manifest
    from deepgen.synth import render_preset

    def render(root: str, manifest: str) -> None:
        render_preset("ffpp", root, videos=videos, seed=seed, frames=frames, overwrite=True)
        write_manifest("ffpp", root, manifest)

    stamp = {"videos": videos, "frames": frames, "seed": seed}
    return prepared_corpus(out, "ffpp", stamp, render, frames, crop_size, log, "procedural ffpp")[1]


def val_people(groups: dict[str, str], fold: int | None, seed: int) -> set[str]:
    """Two people (one when fewer than five remain) of the training groups who validate in fold ``fold``
    (``None``: no fold is tested, everyone else trains)."""
    rest = sorted(p for p, g in groups.items() if g != f"fold{fold}")
    rng = np.random.default_rng([seed, 11, 1000 if fold is None else fold])
    k = 2 if len(rest) >= 5 else 1
    return {rest[i] for i in rng.permutation(len(rest))[:k]}


def fold_tables(out: str, data: dict, fold: int | None, seed: int, family: str | None = None
                ) -> tuple[str, pd.DataFrame]:
    """The fold's training faces table (train + val people, written once) and its test people's decoded crops
    (``fold=None``: every person trains or validates, the test crops are empty).

    ``family``: leave that forgery family out of training and test on the reals plus its fakes only.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from deepgen.faces.crop import decode_image
    from deepgen.faces.extract import read_faces
    from deepgen.storage import write_table

    table = read_faces(data["faces"])
    val = val_people(data["groups"], fold, seed)
    people = [data["person"][m] for m in table["media_id"].to_pylist()]
    role = ["test" if data["groups"][p] == f"fold{fold}" else "val" if p in val else "train" for p in people]
    table = table.set_column(table.column_names.index("split"), "split", pa.array(role, pa.string()))
    is_test = pc.equal(table["split"], "test")
    train = table.filter(pc.invert(is_test))
    test = table.filter(is_test)
    if family:
        train = train.filter(pc.not_equal(train["method"], family))
        test = test.filter(pc.is_in(test["method"], pa.array(["real", family])))
    name = "all" if fold is None else f"fold{fold}"
    path = os.path.join(out, "folds", f"{name}-s{seed}{'-' + family if family else ''}.parquet")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        write_table(train, path)
    df = test.drop_columns(["image"]).to_pandas()
    df["crop"] = [decode_image(b) for b in test["image"].to_pylist()]
    return path, df


def score_people(bundle, df: pd.DataFrame) -> dict:
    """Video AUC and the share of real videos at or above :data:`THRESHOLD` (calibrated score)."""
    from deepgen.evaluation.metrics import compute_metrics

    videos = video_scores(bundle, list(df["crop"]), df)
    labels = df.groupby("media_id")["label"].first().loc[videos.index]
    is_real = labels.to_numpy() == 0
    real = videos["score"][is_real]
    # what a temperature alone would flag: the balanced offset folded into the bias, put back
    unshifted = videos["logit"][is_real] + float(bundle.metrics.get("logit_offset", 0.0))
    return {"auc": compute_metrics(labels, videos["score"])["auc"], "real_flagged": float((real >= THRESHOLD).mean()),
            "real_flagged_t_only": float((unshifted >= 0).mean()),
            "real_videos": int(len(real)), "fake_videos": int((labels == 1).sum())}


def trained_rows(run: str, recipe: str, overrides: dict, faces: list[str], tests: object, workers: int,
                 score: Callable[[object], list[dict]]) -> tuple[list[dict], bool]:
    """Train ``recipe`` into ``run`` once and return ``score(bundle)``'s rows, each with ``train_s``, or the
    rows stored there by a run with the same resolved recipe, faces and ``tests``; (rows, reused)."""
    from deepgen.models.bundle import load_bundle
    from deepgen.train import train
    from deepgen.train.config import load_config

    key = json.loads(json.dumps({"recipe": recipe, "config": load_config(recipe, overrides).to_dict(),
                                 "faces": faces, "tests": tests}, default=float))
    stamp = read_stamp(run)
    if stamp and stamp.get("key") == key:
        return stamp["rows"], True
    t = time.perf_counter()
    res = train(recipe, faces, run, workers=workers, overrides=overrides, overwrite=True, quiet=True)
    rows = [{**r, "train_s": round(time.perf_counter() - t)} for r in score(load_bundle(res["bundle"]))]
    write_stamp(run, {"key": key, "rows": rows})
    return rows, False


def _train_and_score(out: str, name: str, recipe: str, overrides: dict, faces: list[str],
                     tests: list[tuple[str, pd.DataFrame]], workers: int, seed: int,
                     log: Callable[[str], None]) -> list[dict]:
    """Train once (or reuse a stored run with the same resolved recipe and faces), score each named test set."""
    run = os.path.join(out, "runs-real", f"{name}-s{seed}")
    rows, reused = trained_rows(run, recipe, overrides, faces, [t for t, _ in tests], workers,
                                lambda bundle: [{"test": t, **score_people(bundle, df)} for t, df in tests])
    log(f"  {name:28s} seed {seed}: " + (f"reused {run}" if reused else "; ".join(
        f"{r['test']} AUC {r['auc']:.3f} flagged {r['real_flagged']:.2f}" for r in rows)
        + f" ({rows[0]['train_s'] if rows else 0}s)"))
    return rows


def run_real(out: str, runs: list[tuple[str, str, dict]], base: dict, photos: list[str] | None, videos: int,
             frames: int,
             seed: int, seeds: int, crop_size: int, workers: int, folds: int, log: Callable[[str], None],
             parts: tuple[str, ...] = PARTS) -> pd.DataFrame:
    """The real-face protocol's ``parts`` (of :data:`PARTS`) for every seed; one row per (row, fold, seed).

    Finished trainings are stored with their key, so a rerun (say with more parts) reuses them.
    """
    from deepgen.synth.photos import PHOTO_FAMILIES

    bad = [p for p in parts if p not in PARTS]
    if bad:
        raise DeepgenError(f"real-protocol part(s) {', '.join(bad)} are unknown; choose from {', '.join(PARTS)}.")

    photos = photo_folders(photos) or default_photos()
    if not photos:
        raise DeepgenError("the real protocol needs real face photos; pass --photos DIR (e.g. "
                           "../shared/data/real_faces).")
    if folds < 2:
        raise DeepgenError(f"--folds is {folds}; the real protocol needs at least 2 folds over people.")
    log(f"data: photo corpus from {', '.join(photos)} ({videos} media items, {frames} frames, {crop_size}-px crops), "
        f"{folds} folds over people, {seeds} seed(s)")
    data = prepare_photo_corpus(out, photos, videos, frames, seed, folds, crop_size, log)
    n_groups = len(set(data["groups"].values()))
    if n_groups < folds:
        raise DeepgenError(f"--photos {', '.join(photos)} holds {len(data['groups'])} people, too few for {folds} folds; "
                           "lower --folds.")
    proc = (prepare_procedural(out, videos, frames, seed, crop_size, log)
            if {"procedural", "mixed"} & set(parts) else None)
    rows = []
    tests = {i: fold_tables(out, data, i, seed) for i in range(folds)}
    for k in range(seeds):
        s = seed + k
        for name, recipe, o in runs if "folds" in parts else ():
            if set(o) == {"lambda_domain"}:  # -dann: one training corpus is one domain, DANN acts only in `mixed`
                continue
            for i, (train_uri, df) in tests.items():
                for r in _train_and_score(out, f"{name}-fold{i}", recipe, {**base, **o, "seed": s}, [train_uri],
                                          [(f"fold{i}", df)], workers, s, log):
                    rows.append({"row": name, "protocol": "real→real", "fold": i, "seed": s, **r})
        if proc and "procedural" in parts:
            named = [(f"fold{i}", df) for i, (_, df) in tests.items()]
            for r in _train_and_score(out, "procedural", "full", {**base, "seed": s}, [proc], named, workers, s, log):
                rows.append({"row": "full (procedural)", "protocol": "procedural→real", "fold": int(r["test"][4:]),
                             "seed": s, **r})
        if "lofo" in parts:
            for j, family in enumerate(PHOTO_FAMILIES):
                i = j % folds
                train_uri, df = fold_tables(out, data, i, seed, family)
                for r in _train_and_score(out, f"lofo-{family}", "full", {**base, "seed": s}, [train_uri],
                                          [(f"fold{i}", df)], workers, s, log):
                    rows.append({"row": f"lofo:{family}", "protocol": "leave-one-family-out", "fold": i, "seed": s,
                                 **r})
        if proc and "mixed" in parts:  # each recipe and the -dann row on both corpora (two domains: DANN acts)
            for name, recipe, o in [r for r in runs if not r[2] or set(r[2]) == {"lambda_domain"}]:
                for i, (train_uri, df) in tests.items():
                    run = f"mixed-fold{i}" if name == "full" else f"mixed-{name}-fold{i}"
                    for r in _train_and_score(out, run, recipe, {**base, **o, "seed": s}, [proc, train_uri],
                                              [(f"fold{i}", df)], workers, s, log):
                        rows.append({"row": f"{name} (procedural+real)", "protocol": "procedural+real→real",
                                     "fold": i, "seed": s, **r})
    return pd.DataFrame(rows)


def run_realdf(out: str, runs: list[tuple[str, str, dict]], base: dict, photos: list[str] | None, videos: int,
               frames: int, seed: int, seeds: int, crop_size: int, workers: int, log: Callable[[str], None],
               real_deepfakes: str | None = None) -> pd.DataFrame:
    """Protocol ``realdf``: each run trained on the procedural corpus plus the photo corpus (every person
    trains), scored on the real deepfakes of ``../shared/data/real_deepfakes``; one row per (run, seed,
    source) with the source's AUC, its bootstrap 95% interval, real items flagged and the share out of domain."""
    from deepgen.experiments.realdf import (
        prepare_real_deepfakes,
        require_real_deepfakes,
        score_items,
        source_metrics,
    )

    root = require_real_deepfakes(real_deepfakes, "the realdf protocol")
    photos = photo_folders(photos) or default_photos()
    log(f"data: real deepfakes in {root}; training on {videos} procedural videos"
        + (f" and {videos} videos of the people in {', '.join(photos)}" if photos else "") + f", {seeds} seed(s)")
    test = prepare_real_deepfakes(out, root, frames, crop_size, log)
    corpora = [prepare_procedural(out, videos, frames, seed, crop_size, log)]
    if photos:
        data = prepare_photo_corpus(out, photos, videos, frames, seed, 3, crop_size, log)
        corpora.append(fold_tables(out, data, None, seed)[0])  # no test people: everyone trains
    rows = []
    for k in range(seeds):
        s = seed + k
        for name, recipe, o in runs:
            overrides = {**base, **o, "seed": s}
            found, _ = trained_rows(os.path.join(out, "runs-realdf", f"{name}-s{s}"), recipe, overrides, corpora,
                                    root, workers, lambda b, s=s: source_metrics(score_items(b, test), THRESHOLD, s))
            log(f"  {name:24s} seed {s}: " + "; ".join(f"{r['source']} AUC {r['auc']:.3f}" for r in found))
            rows += [{"row": name, "seed": s, **r} for r in found]
    return pd.DataFrame(rows)


def summarize_realdf(raw: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, source): mean ± std over seeds of AUC (with the mean bootstrap interval), real
    items flagged and the share out of domain."""
    out = []
    for (name, source), g in raw.groupby(["row", "source"], sort=False):
        row = {"row": name, "source": source, "items": f"{g['real'].iloc[0]} real / {g['fake'].iloc[0]} fake",
               "seeds": len(g)}
        for c in ("auc", "real_flagged", "out_of_domain"):
            v = g[c].to_numpy(float)
            v = v[np.isfinite(v)]
            row[c] = f"{v.mean():.3f} ± {v.std():.3f}" if len(v) else ""
        row["auc 95% interval"] = f"[{g['auc_lo'].mean():.2f}, {g['auc_hi'].mean():.2f}]"
        out.append(row)
    return pd.DataFrame(out)


def summarize_real(raw: pd.DataFrame) -> pd.DataFrame:
    """One row per table row: mean ± std over folds and seeds of video AUC and the real-flagged share."""
    out = []
    for (name, protocol), g in raw.groupby(["row", "protocol"], sort=False):
        row = {"row": name, "protocol": protocol, "runs": len(g)}
        for c in ("auc", "real_flagged", "real_flagged_t_only"):
            if c not in g:
                continue
            v = g[c].to_numpy(float)
            v = v[np.isfinite(v)]
            row[c] = f"{v.mean():.3f} ± {v.std():.3f}" if len(v) else ""
            if c != "real_flagged_t_only":
                row[f"min_{c}" if c == "auc" else f"max_{c}"] = (f"{(v.min() if c == 'auc' else v.max()):.3f}"
                                                                 if len(v) else "")
        row["test_videos"] = f"{g['real_videos'].mean():.0f} real / {g['fake_videos'].mean():.0f} fake"
        row["train_s"] = f"{g['train_s'].mean():.0f}"
        out.append(row)
    return pd.DataFrame(out)
