"""deepgen synth: real layouts, determinism, Haar-detectable faces, masks, artifacts, CRF levels."""

from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import tarfile

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from deepgen.errors import DeepgenError
from deepgen.synth import (
    PRESETS,
    gan_upsample,
    load_groundtruth,
    load_mask,
    neural_textures,
    read_mp4,
    reenact,
    render_clip,
    render_preset,
    sample_identity,
    sample_motion,
    sample_scene,
    swap_blend,
    swap_soft,
    write_mp4,
)
from deepgen.synth.command import synth
from deepgen.synth.encode import decode_png
from deepgen.synth.presets import FFPP_METHODS

FRAMES = 8
VIDEOS = {"ffpp": 12, "celebdf": 8, "dfdc": 8, "deeperforensics": 4, "wilddeepfake": 8}
CASCADE = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")


@pytest.fixture(scope="module")
def trees(tmp_path_factory) -> dict[str, str]:
    out = {}
    for preset in PRESETS:
        root = str(tmp_path_factory.mktemp(preset))
        comps = ("raw", "c23", "c40") if preset == "ffpp" else ("c23",)
        render_preset(
            preset, root, videos=VIDEOS[preset], seed=3, frames=FRAMES, compressions=comps
        )
        out[preset] = root
    return out


def media_frames(root: str, key: str) -> np.ndarray:
    """Decode one ground-truth media item: an MP4 with PyAV or a PNG sequence inside a tar.gz."""
    if "::" not in key:
        return read_mp4(os.path.join(root, key))
    archive, member = key.split("::")
    with tarfile.open(os.path.join(root, archive)) as tar:
        names = [
            m.name
            for m in tar.getmembers()
            if m.name.startswith(f"./{member}/") and m.name.endswith(".png")
        ]
        names.sort(key=lambda n: int(os.path.basename(n)[:-4]))
        return np.stack([decode_png(tar.extractfile(n).read()) for n in names])


def rel_files(root: str) -> set[str]:
    return {
        os.path.relpath(p, root)
        for p in glob.glob(os.path.join(root, "**", "*"), recursive=True)
        if os.path.isfile(p)
    }


def test_ffpp_layout(trees):
    root = trees["ffpp"]
    files = rel_files(root)
    reals = sorted(f for f in files if f.startswith("original_sequences/youtube/c23/videos/"))
    assert reals and all(
        re.fullmatch(r"original_sequences/youtube/c23/videos/\d{3}\.mp4", f) for f in reals
    )
    for method in FFPP_METHODS:
        fakes = [f for f in files if f.startswith(f"manipulated_sequences/{method}/c23/videos/")]
        assert fakes and all(
            re.fullmatch(rf"manipulated_sequences/{method}/c23/videos/\d{{3}}_\d{{3}}\.mp4", f)
            for f in fakes
        )
        for comp in ("raw", "c40"):  # every compression copy exists
            assert {f.replace("/c23/", f"/{comp}/") for f in fakes} <= files
    masks = [
        f
        for f in files
        if re.fullmatch(r"manipulated_sequences/\w+/masks/videos/\d{3}_\d{3}\.mp4", f)
    ]
    assert masks
    ids = {os.path.basename(f)[:3] for f in reals}
    seen = set()
    for part in ("train", "val", "test"):
        pairs = json.load(open(os.path.join(root, "splits", f"{part}.json")))
        assert pairs and all(len(p) == 2 and set(p) <= ids for p in pairs)
        seen |= {x for p in pairs for x in p}
    assert seen == ids


def test_celebdf_layout(trees):
    root = trees["celebdf"]
    files = rel_files(root)
    assert any(re.fullmatch(r"Celeb-real/id\d+_\d{4}\.mp4", f) for f in files)
    assert any(re.fullmatch(r"YouTube-real/\d{5}\.mp4", f) for f in files)
    assert any(re.fullmatch(r"Celeb-synthesis/id\d+_id\d+_\d{4}\.mp4", f) for f in files)
    gt = load_groundtruth(root)["media"]
    lines = open(os.path.join(root, "List_of_testing_videos.txt")).read().split("\n")
    lines = [ln for ln in lines if ln]
    assert {ln.split()[0] for ln in lines} == {"0", "1"}
    for ln in lines:
        label, rel = ln.split(" ")
        assert rel in files and int(label) == 1 - gt[rel]["label"]  # Celeb-DF: 1 means real


def test_dfdc_layout(trees):
    root = trees["dfdc"]
    gt = load_groundtruth(root)["media"]
    metas = glob.glob(os.path.join(root, "train", "dfdc_train_part_*", "metadata.json"))
    assert metas
    n_fake = 0
    for m in metas:
        part = os.path.dirname(m)
        for name, e in json.load(open(m)).items():
            assert re.fullmatch(r"[a-z]{10}\.mp4", name) and os.path.isfile(
                os.path.join(part, name)
            )
            assert e["split"] == "train" and e["label"] in ("REAL", "FAKE")
            rel = os.path.relpath(os.path.join(part, name), root)
            assert gt[rel]["label"] == (e["label"] == "FAKE")
            if e["label"] == "FAKE":
                n_fake += 1
                assert os.path.isfile(os.path.join(part, e["original"]))  # same part, same split
    assert n_fake
    rows = open(os.path.join(root, "test", "labels.csv")).read().split()
    assert rows[0] == "filename,label" and len(rows) > 1
    for row in rows[1:]:
        name, label = row.split(",")
        assert os.path.isfile(os.path.join(root, "test", name)) and gt[f"test/{name}"][
            "label"
        ] == int(label)


def test_deeperforensics_layout(trees):
    root = trees["deeperforensics"]
    base = sorted(os.listdir(os.path.join(root, "manipulated_videos", "end_to_end")))
    assert base and all(re.fullmatch(r"\d{3}_[MW]\d{3}\.mp4", n) for n in base)
    for lv in range(1, 6):
        assert (
            sorted(os.listdir(os.path.join(root, "manipulated_videos", f"end_to_end_level_{lv}")))
            == base
        )
    listed = []
    for part in ("train", "val", "test"):
        listed += open(os.path.join(root, "lists", "splits", f"{part}.txt")).read().split()
    assert sorted(listed) == base
    assert glob.glob(os.path.join(root, "source_videos", "*", "*", "*.mp4"))
    targets = {n[:3] for n in base}
    reals = {
        f[:3]
        for f in os.listdir(os.path.join(root, "ffpp_reals/original_sequences/youtube/c23/videos"))
    }
    assert targets <= reals


def test_wilddeepfake_layout(trees):
    root = trees["wilddeepfake"]
    for folder in ("real_train", "fake_train", "real_test", "fake_test"):
        archives = os.listdir(os.path.join(root, folder))
        assert archives and all(re.fullmatch(r"\d+\.tar\.gz", a) for a in archives)
        cls = folder.split("_")[0]
        for a in archives:
            n = a.split(".")[0]
            with tarfile.open(os.path.join(root, folder, a)) as tar:
                pngs = [m for m in tar.getnames() if m.endswith(".png")]
            assert pngs and all(re.fullmatch(rf"\./{n}/{cls}/\d+/\d+\.png", p) for p in pngs)


@pytest.mark.parametrize("preset", PRESETS)
def test_groundtruth_and_masks(trees, preset):
    root = trees[preset]
    gt = load_groundtruth(root)
    labels = [e["label"] for e in gt["media"].values()]
    assert 0 < sum(labels) < len(labels)
    for key, e in gt["media"].items():
        assert os.path.isfile(os.path.join(root, key.split("::")[0]))
        assert (
            e["target"] in gt["identities"]
            and gt["identities"][e["target"]]["skin_tone"] in "I II III IV V VI".split()
        )
        assert len(e["boxes"]) == FRAMES and all(b[0] < b[2] and b[1] < b[3] for b in e["boxes"])
        masks = load_mask(root, e)
        assert masks.shape == (FRAMES, gt["height"], gt["width"])
        if e["label"]:
            assert all(m.any() for m in masks), key
        else:
            assert e["mask"] is None and not masks.any()


@pytest.mark.parametrize("preset", PRESETS)
def test_haar_finds_faces(trees, preset):
    root = trees[preset]
    gt = load_groundtruth(root)["media"]
    hits, total = {0: 0, 1: 0}, {0: 0, 1: 0}
    for key, e in gt.items():
        if e["compression"] in ("raw", "c40"):  # same content as the c23 copy
            continue
        for f in media_frames(root, key):
            g = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)
            side = min(g.shape) // 5
            found = CASCADE.detectMultiScale(
                g, scaleFactor=1.1, minNeighbors=5, minSize=(side, side)
            )
            hits[e["label"]] += len(found) > 0
            total[e["label"]] += 1
    rate = (hits[0] + hits[1]) / (total[0] + total[1])
    assert rate >= 0.95, (preset, hits, total)
    assert hits[0] / total[0] >= 0.9 and hits[1] / total[1] >= 0.9, (preset, hits, total)


def test_deterministic_per_seed(tmp_path):
    a, b, c = (str(tmp_path / x) for x in "abc")
    for root, seed in ((a, 5), (b, 5), (c, 6)):
        render_preset("wilddeepfake", root, videos=4, seed=seed, frames=4, size=96)

    def digest(root):
        return {
            f: hashlib.sha256(open(os.path.join(root, f), "rb").read()).hexdigest()
            for f in sorted(rel_files(root))
        }

    assert digest(a) == digest(b)
    assert digest(a) != digest(c)
    d, e = str(tmp_path / "d"), str(tmp_path / "e")
    for root in (d, e):
        render_preset("ffpp", root, videos=3, seed=1, frames=4, size=96)
    assert (
        open(os.path.join(d, "deepgen_groundtruth.json")).read()
        == open(os.path.join(e, "deepgen_groundtruth.json")).read()
    )
    for key in load_groundtruth(d)["media"]:
        assert np.array_equal(read_mp4(os.path.join(d, key)), read_mp4(os.path.join(e, key)))


@pytest.fixture(scope="module")
def clip_and_donor():
    rng = np.random.default_rng(11)
    target, donor = sample_identity(rng, "t"), sample_identity(rng, "d")
    clip = render_clip(target, sample_motion(rng, 1.0), sample_scene(rng, 192, 192), 6, seed=1)
    return clip, donor


@pytest.mark.parametrize("family", [swap_blend, reenact, neural_textures, swap_soft, gan_upsample])
def test_forgery_changes_only_inside_mask(clip_and_donor, family):
    clip, donor = clip_and_donor
    f = family(clip, donor, 4)
    assert f.frames.shape == clip.frames.shape and f.masks.shape == clip.frames.shape[:3]
    changed = (f.frames != clip.frames).any(-1)
    assert not changed[f.masks == 0].any()
    assert all(m.any() for m in f.masks) and changed.any()
    assert (f.masks > 0).mean() < 0.5  # a face region, not the whole frame


def spectral_peak(frames: np.ndarray, boxes: np.ndarray) -> float:
    """Mean power at the period-2 and period-4 frequencies over the local high-frequency median."""
    scores = []
    for f, (x0, y0, x1, y1) in zip(frames, boxes):
        cx, cy = int((x0 + x1) / 2), int((y0 + y1) / 2)
        g = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).astype(np.float64)[
            cy - 24 : cy + 24, cx - 24 : cx + 24
        ]
        p = np.abs(np.fft.fft2((g - g.mean()) * np.outer(np.hanning(48), np.hanning(48)))) ** 2
        peaks = [p[i, j] for i in (0, 12, 24, 36) for j in (0, 12, 24, 36) if (i, j) != (0, 0)]
        scores.append(np.mean(peaks) / np.median(p[12:37, 12:37]))
    return float(np.mean(scores))


def test_gan_family_has_spectral_peaks(clip_and_donor):
    clip, donor = clip_and_donor
    real = spectral_peak(clip.frames, clip.boxes)
    fake = spectral_peak(gan_upsample(clip, donor, 4).frames, clip.boxes)
    swap = spectral_peak(swap_soft(clip, donor, 4).frames, clip.boxes)
    assert fake > 3 * real and fake > 3 * swap, (real, swap, fake)


def test_crf_levels_compress_more(clip_and_donor, trees):
    clip, _ = clip_and_donor
    sizes = []
    for crf in (0, 23, 40):
        path = f"/tmp/deepgen-synth-crf-{os.getpid()}-{crf}.mp4"
        write_mp4(path, clip.frames, 12, crf)
        sizes.append(os.path.getsize(path))
        os.remove(path)
    assert sizes[0] > sizes[1] > sizes[2]
    root = trees["ffpp"]
    for rel in glob.glob(os.path.join(root, "original_sequences/youtube/raw/videos/*.mp4")):
        s = [os.path.getsize(rel.replace("/raw/", f"/{c}/")) for c in ("raw", "c23", "c40")]
        assert s[0] > s[1] > s[2]


def test_cli_and_errors(tmp_path):
    out = str(tmp_path / "cli")
    res = CliRunner().invoke(
        synth,
        [
            "--preset",
            "celebdf",
            "--out",
            out,
            "--videos",
            "3",
            "--seed",
            "1",
            "--frames",
            "3",
            "--size",
            "96",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "celebdf" in res.output and os.path.isfile(os.path.join(out, "deepgen_groundtruth.json"))
    with pytest.raises(DeepgenError, match="not empty"):
        render_preset("celebdf", out, videos=3, seed=1, frames=3, size=96)
    with pytest.raises(DeepgenError, match="unknown synth preset"):
        render_preset("nope", str(tmp_path / "x"))


def test_render_to_s3(s3_bucket):
    from deepgen import storage

    out = f"{s3_bucket}/synth/celebdf"
    render_preset("celebdf", out, videos=3, seed=2, frames=3, size=96)
    fs, path = storage.get_fs(out)
    keys = {k[len(path) + 1 :] for k in fs.find(path)}
    gt = json.loads(storage.read_bytes(f"{out}/deepgen_groundtruth.json"))
    assert set(gt["media"]) <= keys and "List_of_testing_videos.txt" in keys
