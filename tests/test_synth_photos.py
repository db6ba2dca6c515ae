"""deepgen synth --photos: corpora of real people (../shared/data/real_faces), split by identity, masks, flicker."""

from __future__ import annotations

import csv
import os
from dataclasses import replace

import cv2
import numpy as np
import pytest

from deepgen.cli import main
from deepgen.datasets import build_manifest
from deepgen.errors import DeepgenError
from deepgen.synth import load_groundtruth, load_mask, read_mp4
from deepgen.synth import photos as ph
from deepgen.synth.presets import STYLES


@pytest.fixture(scope="module")
def photo_dir(real_faces_dir, tmp_path_factory):
    """Two photos each of six people of the shared folder (links, never copies) with their identities.csv."""
    with open(real_faces_dir / "identities.csv") as f:
        rows = list(csv.DictReader(f))
    by: dict[str, list[str]] = {}
    for r in rows:
        by.setdefault(r["identity"], []).append(r["file"])
    people = sorted((p for p in by if len(by[p]) >= 2), key=lambda p: -len(by[p]))[:6]
    d = tmp_path_factory.mktemp("photos")
    with open(d / "identities.csv", "w") as f:
        f.write("file,identity\n")
        for p in people:
            for name in by[p][:2]:
                os.symlink(real_faces_dir / name, d / name)
                f.write(f"{name},{p}\n")
    return d


@pytest.fixture(scope="module")
def people(photo_dir):
    found, model = ph.load_people(str(photo_dir), "yunet")
    assert model == "yunet5"
    return found


def _style(frames: int = 4, size: int = 96, motion: float = 1.0):
    return replace(STYLES["ffpp"], frames=frames, width=size, height=size, motion=motion)


def _people_splits(root: str, manifest) -> dict[str, set[str]]:
    """person -> the manifest splits of every media item showing them (as target or as the swapped-in face)."""
    gt = load_groundtruth(root)["media"]
    seen: dict[str, set[str]] = {}
    for mid, split in zip(manifest.column("media_id").to_pylist(), manifest.column("split").to_pylist()):
        entry = gt[mid.split("/", 1)[1]]
        for person in (entry["target"], entry["source"]):
            if person:
                seen.setdefault(person, set()).add(split)
    return seen


def test_identity_split_and_masks_in_the_written_corpus(photo_dir, tmp_path):
    root = str(tmp_path / "ffpp")
    ph.render_photos(str(photo_dir), "ffpp", root, videos=16, frames=3, size=64, compressions=("raw",),
                     landmarks="yunet")
    m = build_manifest("ffpp", root, compression="raw")
    seen = _people_splits(root, m)
    assert len(seen) == 6 and all(len(s) == 1 for s in seen.values()), seen  # nobody on two sides
    assert {s for v in seen.values() for s in v} == {"train", "val", "test"}
    methods = set(m.column("method").to_pylist())
    assert methods <= {"real", *ph.PHOTO_FAMILIES} and len(methods) >= 4  # the family is the FF++ method
    gt = load_groundtruth(root)
    assert gt["source"] == "photos" and gt["landmarks"] == "yunet5"
    # each fake against its real twin, decoded from the lossless videos: changes lie inside the mask
    for key, e in gt["media"].items():
        if not e["label"]:
            continue
        fake = read_mp4(os.path.join(root, key)).astype(int)
        twin = read_mp4(os.path.join(root, f"original_sequences/youtube/raw/videos/{os.path.basename(key)[:3]}.mp4")).astype(int)
        mask = load_mask(root, e) > 0
        near = np.stack([cv2.dilate(x.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0 for x in mask])
        changed = np.abs(fake - twin).max(-1) > 6
        assert changed[~near].sum() == 0, key  # 4:2:0 chroma may spill a pixel or two past the mask
        assert changed[mask].mean() > 0.3, key  # the mask is where the forgery is


def test_identity_split_in_dfdc_layout(photo_dir, tmp_path):
    root = str(tmp_path / "dfdc")
    ph.render_photos(str(photo_dir), "dfdc", root, videos=12, frames=2, size=48, landmarks="yunet")
    seen = _people_splits(root, build_manifest("dfdc", root))
    # the DFDC adapter re-splits training videos into train/val by original video, as for the real
    # DFDC, so there the identity split holds between test and the rest
    sides = {p: {"test" if s == "test" else "train/val" for s in v} for p, v in seen.items()}
    assert all(len(s) == 1 for s in sides.values()) and {"test"} in sides.values(), sides


@pytest.mark.parametrize("seed", [0, 1])
def test_each_family_mask_covers_what_it_changed_and_little_else(people, seed):
    rng = np.random.default_rng(seed)
    target, donor = people[seed], people[seed + 2]
    clip = ph.render_real(target, target.sources[0], _style(), rng)
    for family in ph.PHOTO_FAMILIES:
        f = ph.FORGERS[family](clip, donor.sources[0], np.random.default_rng(seed))
        assert f.family == family and f.frames.shape == clip.frames.shape
        changed = np.abs(f.frames.astype(int) - clip.frames).max(-1) > 0
        mask = f.masks > 0
        assert changed.sum() > 0.02 * changed.size, family
        assert (changed & ~mask).sum() == 0, family  # every changed pixel is inside the mask
        assert mask.sum() <= 1.2 * changed.sum(), (family, mask.sum() / changed.sum())  # and little else (<= 1.08 measured)


def test_per_frame_jitter_flickers_the_blend_boundary(people, monkeypatch):
    clip = ph.render_real(people[1], people[1].sources[0], _style(frames=6, size=96, motion=0.0),
                          np.random.default_rng(3))

    def flicker() -> tuple[float, float]:
        f = ph.face_swap(clip, people[4].sources[0], np.random.default_rng(5))
        m = f.masks.astype(np.float32) / 255
        band = (m > 0) & (m < 1) | (np.abs(np.diff(m, axis=0, prepend=m[:1])) > 0)
        band = np.stack([cv2.dilate(b.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0 for b in band])
        outside = ~np.stack([cv2.dilate((x > 0).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0 for x in m])
        step = np.abs(np.diff(f.frames.astype(np.float32), axis=0)).mean(-1)
        inb, out = band[1:] & band[:-1], outside[1:] & outside[:-1]
        return float(step[inb].mean()), float(step[out].mean())

    boundary, outside = flicker()
    assert boundary > 3 * outside, (boundary, outside)  # measured 11.3 vs 1.2 grey levels a frame  # the boundary moves, the background does not
    monkeypatch.setattr(ph, "JITTER", 0.0)
    still, _ = flicker()
    assert boundary > 3 * still, (boundary, still)  # measured 1.2 without jitter  # and it is the per-frame jitter that moves it


def _error(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and err.count(". ") == 0, err
    return err


def test_photos_errors_are_one_sentence(tmp_path, capsys):
    base = ["synth", "--preset", "ffpp", "--out", str(tmp_path / "out"), "--videos", "4", "--quiet"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "holds no photos or videos" in _error(base + ["--photos", str(empty)], capsys)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"not a jpeg at all")
    err = _error(base + ["--photos", str(bad), "--landmarks", "yunet"], capsys)
    assert "a.jpg is not a readable image" in err
    blank = tmp_path / "blank"
    blank.mkdir()
    for i in range(2):
        cv2.imwrite(str(blank / f"wall{i}.png"), np.full((80, 80, 3), 120 + 40 * i, np.uint8))
    assert "no face was found in any of the 2 files" in _error(base + ["--photos", str(blank), "--landmarks", "yunet"],
                                                                capsys)
    assert not (tmp_path / "out").exists()  # nothing is written when the source is unusable


def test_two_faces_tables_with_one_dataset_name_stay_two_domains(tmp_path):
    from deepgen.testing.toyfaces import write_toy_faces
    from deepgen.train import load_config
    from deepgen.train.data import build_train_data

    # a procedural and a photo corpus in the FF++ layout both call themselves "ffpp"
    a = write_toy_faces(str(tmp_path / "a.parquet"), n_per_class=20, seed=0, dataset="ffpp")
    b = write_toy_faces(str(tmp_path / "b.parquet"), n_per_class=20, seed=1, dataset="ffpp")
    data = build_train_data([a, b], load_config("full", {"batch_size": 4}))
    assert data.domains == ["ffpp", "ffpp#2"]
    assert set(data.train["domain"].to_pylist()) == {0, 1}
    assert set(data.val_datasets) <= {"ffpp", "ffpp#2"} and len(data.val_datasets) == 2


def test_real_protocol_folds_keep_people_apart(photo_dir, tmp_path):
    import pyarrow as pa

    from deepgen.experiments.real import fold_groups, fold_tables
    from deepgen.storage import read_table, write_table
    from deepgen.synth.encode import encode_png

    people = sorted({r.split(",")[1] for r in (photo_dir / "identities.csv").read_text().split()[1:]})
    groups = fold_groups(people, 3, seed=0)
    assert sorted(groups.values()).count("fold0") == 2 and set(groups.values()) == {"fold0", "fold1", "fold2"}
    root = str(tmp_path / "photos")
    ph.render_photos(str(photo_dir), "ffpp", root, videos=24, frames=2, size=48, splits=groups, landmarks="yunet")
    m = build_manifest("ffpp", root).to_pandas()
    gt = load_groundtruth(root)
    assert {e["split"] for e in gt["media"].values()} == {"fold0", "fold1", "fold2"}
    for e in gt["media"].values():  # forgeries pair people of one group only
        assert e["source"] is None or groups[e["source"]] == groups[e["target"]]
    png = encode_png(np.zeros((8, 8, 3), np.uint8))
    faces = pa.table({"media_id": m["media_id"], "image": [png] * len(m), "label": m["label"].astype("int8"),
                      "dataset": m["dataset"], "method": m["method"], "split": m["split"], "source_id": m["source_id"]})
    write_table(faces, str(tmp_path / "faces.parquet"))
    data = {"faces": str(tmp_path / "faces.parquet"), "groups": gt["splits"],
            "person": {f"ffpp/{k}": e["target"] for k, e in gt["media"].items()}}
    for fold in range(3):
        path, test = fold_tables(str(tmp_path), data, fold, seed=0)
        train = read_table(path).to_pandas()
        test_people = {data["person"][x] for x in test["media_id"]}
        train_people = {data["person"][x] for x in train["media_id"]}
        assert test_people == {p for p, g in groups.items() if g == f"fold{fold}"}
        assert not test_people & train_people and set(train["split"]) == {"train", "val"}
        path, held = fold_tables(str(tmp_path), data, fold, seed=0, family="reenactment")
        assert "reenactment" not in set(read_table(path).to_pandas()["method"])
        assert set(held["method"]) <= {"real", "reenactment"}


def test_mirrored_cameras_keep_landmark_meaning_so_swaps_fit(people):
    from deepgen.faces.align import similarity_transform

    src, donor = people[0].sources[0], people[3].sources[0]
    cam = ph.sample_camera(src, _style(), np.random.default_rng(0))
    for mirror in (False, True):
        _, lm, _ = ph.render_view(src, replace(cam, mirror=mirror), 0, (96, 96), 0.0, 0.0)
        assert lm[0, 0] < lm[16, 0] and lm[36, 0] < lm[45, 0]  # index 0 stays the image-left jaw point
        m = similarity_transform(donor.points[0], lm)
        scale = float(np.sqrt(abs(np.linalg.det(m[:, :2]))))
        assert 0.5 < scale * donor.iod() / ph._iod(lm) < 2  # the donor's face lands at the target's size


# ---------------------------------------------------------------- issue 32 (findings 5, 6) and issue 29 (item 2)
# Tiny generated photos (procedural faces YuNet finds), so these tests need nothing from ../shared.


def _faces(folder, names: list[str], seed: int = 0) -> None:
    """Write one procedural face photo per relative name (distinct faces)."""
    from deepgen.synth.face import render_identity, sample_identity

    for i, name in enumerate(names):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        im = render_identity(sample_identity(np.random.default_rng([seed, i]), f"x{i}"), size=96, seed=i)
        cv2.imwrite(str(path), im[..., ::-1])


def _csv(folder, text: str | bytes) -> None:
    data = text.encode() if isinstance(text, str) else text
    (folder / "identities.csv").write_bytes(data)


@pytest.fixture()
def four(tmp_path):
    d = tmp_path / "four"
    _faces(d, [f"img{i}.png" for i in range(4)])
    return d


def _people_of(folder, same_person=()) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in ph.photo_inputs(folder if isinstance(folder, list) else str(folder), same_person):
        out.setdefault(p.identity, []).append(p.file)
    return out


@pytest.mark.parametrize("text,match", [
    ("file,identity\nimg0.png,p1\nimg1.png,p2\nimg0.png,p2\nimg2.png,p3\nimg3.png,p3\n",
     r"lists img0.png twice, as 'p1' \(row 2\) and 'p2' \(row 4\)"),  # before: the last row won silently
    ("file,identity\nimg0.png,p1\nimg1.png,  \nimg2.png,p3\nimg3.png,p3\n", "row 3 of .* has no identity"),
    ("file,identity\nimg0.png,p1\nimg1.png\nimg2.png,p3\nimg3.png,p3\n", "row 3 of .* has no identity"),
    (b"file,identity\nimg0.png,Jos\xe9\nimg1.png,p2\nimg2.png,p3\nimg3.png,p3\n", "save it as UTF-8"),
    ("name,person\nimg0.png,p1\n", "needs the header file,identity"),
])
def test_identities_csv_problems_are_one_sentence(four, text, match, capsys, tmp_path):
    _csv(four, text)
    with pytest.raises(DeepgenError, match=match) as e:
        ph.photo_inputs(str(four))
    msg = str(e.value)
    assert "\n" not in msg and msg.endswith(".") and "identities.csv" in msg
    err = _error(["synth", "--preset", "ffpp", "--out", str(tmp_path / "out"), "--photos", str(four), "--quiet"],
                 capsys)
    assert err == f"error: {msg}"


def test_identities_csv_folder_bom_duplicates_and_spelling(four, tmp_path):
    (four / "identities.csv").mkdir()
    with pytest.raises(DeepgenError, match="identities.csv is a folder") as e:  # before: IsADirectoryError
        ph.photo_inputs(str(four))
    assert "\n" not in str(e.value)
    (four / "identities.csv").rmdir()
    # a UTF-8 BOM (Excel's "CSV UTF-8") just works; a file listed twice as the same person is fine;
    # "P1 " and "p1" are one person (stripped and case-folded)
    _csv(four, "\ufefffile,identity\nimg0.png,P1 \nimg1.png,p1\nimg1.png,P1\nimg2.png, Zoë\nimg3.png,zoë\n")
    assert _people_of(four) == {"p1": ["img0.png", "img1.png"], "zoë": ["img2.png", "img3.png"]}
    people, _ = ph.load_people(str(four), "yunet")
    assert [p.id for p in people] == ["p1", "zoë"]


def test_several_photo_folders_merge_people_by_name(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    _faces(a, ["x0.png", "x1.png", "x2.png"], seed=1)
    _csv(a, "file,identity\nx0.png,Alice\nx1.png,bob\nx2.png,dan\n")
    _faces(b, ["alice/0.png", "carol/0.png", "al/0.png", "erin/0.png"], seed=2)  # no csv: one person per sub-folder
    people = _people_of([str(a), str(b)])
    assert people["alice"] == ["a/x0.png", "b/alice/0.png"]  # one person across folders
    assert sorted(people) == ["al", "alice", "bob", "carol", "dan", "erin"]
    merged = _people_of([str(a), str(b)], ["alice=al"])
    assert sorted(merged) == ["alice", "bob", "carol", "dan", "erin"] and len(merged["alice"]) == 3
    with pytest.raises(DeepgenError, match="names 'alicia', whom no --photos folder lists"):
        ph.photo_inputs([str(a), str(b)], ["alicia=al"])
    with pytest.raises(DeepgenError, match="overlap"):
        ph.photo_inputs([str(b), str(b / "alice")])
    # the CLI takes --photos twice (one --photos works as before) and keeps each person on one side
    out = tmp_path / "ffpp"
    main(["synth", "--preset", "ffpp", "--out", str(out), "--photos", str(a), "--photos", str(b), "--same-person",
          "alice=al", "--videos", "12", "--frames", "2", "--size", "48", "--landmarks", "yunet", "--quiet"])
    gt = load_groundtruth(str(out))
    assert sorted(gt["splits"]) == ["alice", "bob", "carol", "dan", "erin"]
    assert gt["photos"] == [str(a), str(b)]
    seen = _people_splits(str(out), build_manifest("ffpp", str(out)))
    assert all(len(s) == 1 for s in seen.values()), seen  # nobody on two sides
    photos = {e["photo"] for e in gt["media"].values()}
    assert photos <= {f for fs in merged.values() for f in fs}


@pytest.mark.parametrize("videos", [2, 3, 4])
def test_small_photo_corpora_fill_every_split_with_people(four, tmp_path, videos):
    """Before: KeyError: 'test' for --videos 2, 3 or 4."""
    logs: list[str] = []
    root = str(tmp_path / "ffpp")
    ph.render_photos(str(four), "ffpp", root, videos=videos, frames=2, size=48, landmarks="yunet", log=logs.append)
    m = build_manifest("ffpp", root).to_pandas()
    gt = load_groundtruth(root)
    assert set(gt["splits"].values()) == {"train", "val", "test"}
    for split in ("train", "val", "test"):  # a real and a fake in each
        assert set(m[m["split"] == split]["label"]) == {0, 1}, (split, m[["split", "label"]])
    assert any(line.startswith(f"--videos {videos} is fewer than a real and a fake for each of the 3 splits")
               for line in logs), logs


def test_too_few_people_is_said_in_one_sentence(tmp_path, capsys):
    two = tmp_path / "two"
    _faces(two, ["a.png", "b.png"])
    logs: list[str] = []
    root = str(tmp_path / "ffpp")
    ph.render_photos(str(two), "ffpp", root, videos=2, frames=2, size=48, landmarks="yunet", log=logs.append)
    assert set(load_groundtruth(root)["splits"].values()) == {"train", "test"}
    assert any(line.startswith("only 2 people:") and "at least 3 people and --videos 6" in line for line in logs)
    # a layout that only swaps faces needs two people in a split: none here, so one sentence, nothing written
    err = _error(["synth", "--preset", "celebdf", "--out", str(tmp_path / "c"), "--photos", str(two),
                  "--videos", "4", "--landmarks", "yunet", "--quiet"], capsys)
    assert "no fake can be made" in err and "at least 6 people and --videos 9" in err
    assert not (tmp_path / "c").exists()


def test_shared_folders_merge_the_one_person_they_share(real_faces_dir):
    """../shared: real_faces calls Leonardo DiCaprio p9, real_faces_more leonardo_dicaprio (its README)."""
    more = real_faces_dir.parent / "real_faces_more"
    if not (more / "identities.csv").is_file():
        pytest.skip("../shared/data/real_faces_more is absent")
    from deepgen.experiments.real import same_person

    apart = _people_of([str(real_faces_dir), str(more)])
    assert len(apart) == 34
    pairs = same_person([str(real_faces_dir), str(more)])  # what the benchmarks and the demo pass
    assert pairs == ["p9=leonardo_dicaprio"] and same_person([str(more)]) == []
    merged = _people_of([str(real_faces_dir), str(more)], pairs)
    assert len(merged) == 33 and "leonardo_dicaprio" not in merged
    assert any(f.startswith("real_faces_more/leonardo_dicaprio/") for f in merged["p9"])
