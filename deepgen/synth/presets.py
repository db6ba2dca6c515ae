"""Dataset presets: render a procedural corpus in the on-disk layout of a real deepfake dataset.

:func:`render_preset` writes one of :data:`PRESETS` (ffpp, celebdf, dfdc, deeperforensics,
wilddeepfake) exactly as the real dataset lays out its files, plus a ground-truth sidecar
``deepgen_groundtruth.json`` at the root (not part of any real layout; adapters ignore it):

```
{"format": "deepgen-synth-groundtruth/1", "preset", "seed", "frames", "fps", "width", "height",
 "identities": {identity_id: {skin_tone: "I".."VI", skin_tone_group: light|medium|dark,
                              hair_style, hair_color, glasses: bool, glasses_style, eye_color}},
 "media": {key: {"label": 1 fake | 0 real, "method": dataset's method name or "real",
                 "family": forgery function or null, "target": identity id, "source": donor id or null,
                 "attributes": target identity attributes, "compression", "media_type": video|frames,
                 "boxes": [[x0, y0, x1, y1] per frame], "mask": "deepgen_masks/....png" or null}}}
```

Two-person DFDC clips (every fourth original, and the fakes made from it, method
``two_person_swap``) also carry ``"faces": [{"target", "boxes", "swapped": bool}, ...]`` (image-left
person first) and ``"swapped_face"`` (index into ``faces``, null for reals); their ``boxes``,
``target`` and ``mask`` are the swapped face's (the left person's for reals).

``key`` is the media file's path relative to the root; for WildDeepfake sequences it is
``<folder>/<N>.tar.gz::<N>/<real|fake>/<sequence>``. Masks are grayscale PNG strips (frames
stacked vertically, see :func:`deepgen.synth.encode.read_mask_strip`), 0 outside the forged
region; reals have ``mask: null`` (all zero, see :func:`load_mask`).

Presets differ as the real datasets do: identity pools (disjoint: every preset and seed draws
its own people), skin-tone mix, lighting, backgrounds, resolution, compression and methods.
The DeeperForensics preset's real class (FF++ target videos in the real dataset) is written as
an FF++-layout subtree ``ffpp_reals/`` (pass it as the adapter's ``--ffpp-root``).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import string
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from deepgen import storage
from deepgen.errors import DeepgenError
from deepgen.synth import forgery as fg
from deepgen.synth.encode import CRF, read_mask_strip, write_mask_strip, write_mp4, write_png_tar
from deepgen.synth.face import (
    Clip,
    Identity,
    render_clip,
    render_group,
    sample_identity,
    sample_motion,
    sample_scene,
)

PRESETS = ("ffpp", "celebdf", "dfdc", "deeperforensics", "wilddeepfake")
GROUNDTRUTH = "deepgen_groundtruth.json"
MASK_DIR = "deepgen_masks"
FFPP_METHODS = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures", "FaceShifter")
FFPP_MASKED = ("Deepfakes", "Face2Face", "FaceSwap", "NeuralTextures")  # methods with masks/videos


@dataclass(frozen=True)
class Style:
    """How a preset's videos look: size, duration, people, lighting, backgrounds, noise, quality."""

    width: int
    height: int
    frames: int = 24
    fps: float = 12.0
    tone_weights: dict = field(default_factory=dict)
    glasses_rate: float = 0.25
    backgrounds: tuple[str, ...] = ("studio", "room", "outdoor", "newsroom")
    light_spread: float = 0.5
    light_tint: float = 0.08
    ambient: tuple[float, float] = (0.35, 0.5)
    noise: tuple[float, float] = (1.5, 4.0)
    face_scale: tuple[float, float] = (0.25, 0.3)
    motion: float = 1.0
    crf: int = 23


STYLES: dict[str, Style] = {
    # FF++: YouTube news/vlog footage, mostly frontal, moderate light, c23 by default
    "ffpp": Style(
        256,
        256,
        tone_weights={"I": 1.5, "II": 2, "III": 1.5, "IV": 1, "V": 0.6, "VI": 0.4},
        backgrounds=("newsroom", "studio", "room"),
        light_spread=0.4,
        noise=(1.5, 3.5),
    ),
    # Celeb-DF: interviews, higher resolution and quality, varied scenes
    "celebdf": Style(
        320,
        256,
        tone_weights={"I": 1, "II": 1.5, "III": 1.5, "IV": 1, "V": 0.8, "VI": 0.6},
        backgrounds=("room", "outdoor", "studio"),
        light_spread=0.6,
        noise=(1.0, 2.5),
        face_scale=(0.26, 0.31),
        crf=18,
    ),
    # DFDC: paid actors, diverse, hard lighting, low quality, landscape frames
    "dfdc": Style(
        320,
        192,
        tone_weights={t: 1 for t in ("I", "II", "III", "IV", "V", "VI")},
        backgrounds=("room", "outdoor"),
        light_spread=0.9,
        light_tint=0.22,
        ambient=(0.3, 0.5),
        noise=(3.0, 7.0),
        face_scale=(0.27, 0.32),
        motion=1.3,
        crf=30,
    ),
    # DeeperForensics: studio recordings, uniform light, high quality
    "deeperforensics": Style(
        256,
        256,
        tone_weights={t: 1 for t in ("I", "II", "III", "IV", "V", "VI")},
        backgrounds=("studio",),
        light_spread=0.35,
        ambient=(0.45, 0.55),
        noise=(1.0, 2.0),
        motion=0.7,
        crf=18,
    ),
    # WildDeepfake: internet videos, face-centred frames, heavy compression (applied per frame)
    "wilddeepfake": Style(
        224,
        224,
        tone_weights={"I": 1, "II": 1.5, "III": 1.5, "IV": 1, "V": 0.8, "VI": 0.6},
        backgrounds=("room", "outdoor", "newsroom", "studio"),
        light_spread=0.7,
        light_tint=0.15,
        noise=(2.0, 5.0),
        face_scale=(0.25, 0.3),
        crf=23,
    ),
}
_CODE = {p: i + 11 for i, p in enumerate(PRESETS)}
PAIR_OFFSET = 5000  # identity number of the second person in a two-person clip
TWO_PERSON_METHOD = "two_person_swap"


def load_groundtruth(root: str) -> dict:
    """Read the ground-truth sidecar of a synth tree (local path)."""
    with open(os.path.join(root, GROUNDTRUTH)) as f:
        return json.load(f)


def load_mask(root: str, entry: dict) -> np.ndarray:
    """Per-frame forged-region masks (T,H,W uint8) of one ground-truth media entry; zeros for reals."""
    gt = load_groundtruth(root)
    t = len(entry["boxes"])
    if not entry.get("mask"):
        return np.zeros((t, gt["height"], gt["width"]), np.uint8)
    return read_mask_strip(os.path.join(root, entry["mask"]), t)


class CorpusFiles:
    """What every corpus writer shares (procedural here, real photos in :mod:`deepgen.synth.photos`):
    media and text files under ``root`` and the ground-truth sidecar. Subclasses set ``preset``,
    ``root``, ``seed``, ``style``, ``media`` and ``written``."""

    preset: str
    root: str
    seed: int
    style: Style
    media: dict[str, dict]
    written: int

    def video(self, rel: str, frames: np.ndarray, crf: int) -> None:
        write_mp4(os.path.join(self.root, rel), frames, self.style.fps, crf)
        self.written += 1

    def write_text(self, rel: str, text: str) -> None:
        path = os.path.join(self.root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)

    def write_groundtruth(self, **records) -> None:
        """Write ``deepgen_groundtruth.json``: the corpus settings, ``records`` and every item's truth."""
        s = self.style
        gt = {
            "format": "deepgen-synth-groundtruth/1", "preset": self.preset, "seed": self.seed, "frames": s.frames,
            "fps": s.fps, "width": s.width, "height": s.height, **records, "media": dict(sorted(self.media.items())),
        }
        self.write_text(GROUNDTRUTH, json.dumps(gt, indent=1, sort_keys=True))


class _Tree(CorpusFiles):
    """Renders identities and clips for one preset and records every written item's ground truth."""

    def __init__(self, preset: str, root: str, seed: int, style: Style):
        self.preset, self.root, self.seed, self.style = preset, root, seed, style
        self.media: dict[str, dict] = {}
        self.identities: dict[str, dict] = {}
        self._clips: dict[tuple, Clip] = {}
        self._ids: dict[int, Identity] = {}
        self.written = 0

    def rng(self, *keys: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, _CODE[self.preset], *keys])

    def identity(self, k: int) -> Identity:
        """Identity number ``k`` of this preset's pool (distinct people per preset and seed)."""
        if k not in self._ids:
            s = self.style
            ident = sample_identity(
                self.rng(1, k),
                f"{self.preset}-s{self.seed}-id{k:04d}",
                s.tone_weights,
                s.glasses_rate,
            )
            self._ids[k] = ident
            self.identities[ident.id] = ident.attributes()
        return self._ids[k]

    def clip(self, k: int, video: int) -> Clip:
        """Video ``video`` of identity ``k`` (own motion, lighting, background, noise)."""
        key = (k, video)
        if key not in self._clips:
            s = self.style
            motion = sample_motion(
                self.rng(2, k, video), s.frames / s.fps, s.fps, s.face_scale, s.motion
            )
            scene = sample_scene(
                self.rng(3, k, video),
                s.width,
                s.height,
                s.backgrounds,
                s.light_spread,
                s.noise,
                s.light_tint,
                s.ambient,
            )
            self._clips[key] = render_clip(
                self.identity(k),
                motion,
                scene,
                s.frames,
                seed=int(self.rng(4, k, video).integers(2**31)),
            )
        return self._clips[key]

    def pair(self, k: int, video: int) -> list[Clip]:
        """Video ``video`` of identity ``k`` side by side with identity ``PAIR_OFFSET + k`` (one clip each)."""
        key = ("pair", k, video)
        if key not in self._clips:
            s = self.style
            scale = (s.face_scale[0] * 0.8, s.face_scale[1] * 0.8)
            motions = []
            for p, x in enumerate((0.3, 0.7)):
                m = sample_motion(self.rng(11, k, video, p), s.frames / s.fps, s.fps, scale, s.motion * 0.6)
                jitter = self.rng(12, k, video, p).uniform(-0.02, 0.02, 2)
                motions.append(replace(m, center=(x + float(jitter[0]), 0.5 + float(jitter[1]))))
            scene = sample_scene(
                self.rng(3, k, video), s.width, s.height, s.backgrounds, s.light_spread, s.noise,
                s.light_tint, s.ambient,
            )
            people = [self.identity(k), self.identity(PAIR_OFFSET + k)]
            self._clips[key] = render_group(
                people, motions, scene, s.frames, seed=int(self.rng(4, k, video, 2).integers(2**31))
            )
        return self._clips[key]

    def forge(self, family: str, clip: Clip, donor: Identity | None, key: int, **kw) -> fg.Forgery:
        seed = int(self.rng(5, key).integers(2**31))
        return fg.FAMILIES[family](clip, donor, seed, **kw)

    def record(
        self,
        key: str,
        clip: Clip,
        label: int,
        method: str,
        family: str | None,
        source: Identity | None,
        masks: np.ndarray | None,
        compression: str,
        media_type: str = "video",
        mask_name: str | None = None,
        **extra,
    ) -> None:
        mask_rel = None
        if masks is not None:
            mask_rel = f"{MASK_DIR}/{mask_name or os.path.splitext(key)[0]}.png"
            if not os.path.exists(
                os.path.join(self.root, mask_rel)
            ):  # shared by compression copies
                write_mask_strip(os.path.join(self.root, mask_rel), masks)
        self.media[key] = {
            "label": label,
            "method": method,
            "family": family,
            "target": clip.identity.id,
            "source": source.id if source else None,
            "attributes": clip.identity.attributes(),
            "compression": compression,
            "media_type": media_type,
            "boxes": np.round(clip.boxes, 1).tolist(),
            "mask": mask_rel,
            **extra,
        }

    def finish(self) -> None:
        self.write_groundtruth(identities=dict(sorted(self.identities.items())))


def _split3(n: int, rng: np.random.Generator, fractions=(0.7, 0.15, 0.15)) -> list[str]:
    """Assign ``n`` items to train/val/test (each non-empty when n >= 3), shuffled per ``rng``."""
    n_val = max(1 if n >= 3 else 0, int(round(n * fractions[1])))
    n_test = max(1 if n >= 2 else 0, int(round(n * fractions[2])))
    labels = ["test"] * n_test + ["val"] * n_val
    labels = labels + ["train"] * (n - len(labels))
    return [labels[i] for i in rng.permutation(n)]


def _ffpp(t: _Tree, videos: int, compressions: tuple[str, ...]) -> None:
    n_real = max(2, math.ceil(videos / 2))
    n_real += n_real % 2
    pairs = [(2 * i, 2 * i + 1) for i in range(n_real // 2)]
    slots = [(a, b) for a, b in pairs] + [(b, a) for a, b in pairs]
    combos = [
        (slots[s], FFPP_METHODS[(s + r) % len(FFPP_METHODS)])
        for r in range(len(FFPP_METHODS))
        for s in range(len(slots))
    ]
    combos = combos[: max(1, videos - n_real)]
    for i in range(n_real):
        clip = t.clip(i, 0)
        for comp in compressions:
            rel = f"original_sequences/youtube/{comp}/videos/{i:03d}.mp4"
            t.video(rel, clip.frames, CRF[comp])
            t.record(rel, clip, 0, "real", None, None, None, comp)
    families = {
        "Deepfakes": ("swap_blend", {"style": "deepfakes"}),
        "FaceSwap": ("swap_blend", {"style": "faceswap"}),
        "Face2Face": ("reenact", {}),
        "NeuralTextures": ("neural_textures", {}),
        "FaceShifter": ("swap_soft", {}),
    }
    for j, ((tgt, src), method) in enumerate(combos):
        family, kw = families[method]
        f = t.forge(family, t.clip(tgt, 0), t.identity(src), j, **kw)
        name = f"{tgt:03d}_{src:03d}"
        for comp in compressions:
            rel = f"manipulated_sequences/{method}/{comp}/videos/{name}.mp4"
            t.video(rel, f.frames, CRF[comp])
            t.record(
                rel,
                t.clip(tgt, 0),
                1,
                method,
                family,
                t.identity(src),
                f.masks,
                comp,
                mask_name=f"manipulated_sequences/{method}/{name}",
            )
        if method in FFPP_MASKED:
            t.video(
                f"manipulated_sequences/{method}/masks/videos/{name}.mp4",
                np.repeat(((f.masks > 0) * 255).astype(np.uint8)[..., None], 3, -1),
                23,
            )
    splits = _split3(len(pairs), t.rng(6))
    for part in ("train", "val", "test"):
        lst = [[f"{a:03d}", f"{b:03d}"] for (a, b), s in zip(pairs, splits) if s == part]
        t.write_text(f"splits/{part}.json", json.dumps(lst))


def _celebdf(t: _Tree, videos: int) -> None:
    n_real = max(2, math.ceil(videos / 2))
    n_fake = max(1, videos - n_real)
    n_yt = n_real // 3
    n_celeb_videos = n_real - n_yt
    n_celebs = max(2, math.ceil(n_celeb_videos / 2))
    real_items = []  # (rel, identity k, video)
    for v in range(n_celeb_videos):
        c, k = v % n_celebs, v // n_celebs
        real_items.append((f"Celeb-real/id{c}_{k:04d}.mp4", c, k))
    for n in range(n_yt):
        real_items.append((f"YouTube-real/{n:05d}.mp4", 1000 + n, 0))
    test: list[str] = []
    for i, (rel, c, k) in enumerate(real_items):
        clip = t.clip(c, k)
        t.video(rel, clip.frames, t.style.crf)
        t.record(rel, clip, 0, "real", None, None, None, f"crf{t.style.crf}")
        if i % 3 == 2:
            test.append(f"1 {rel}")
    for j in range(n_fake):
        _, c, k = real_items[j % n_celeb_videos]
        s = (c + 1 + j // n_celeb_videos) % n_celebs
        s = s if s != c else (c + 1) % n_celebs
        rel = f"Celeb-synthesis/id{c}_id{s}_{k:04d}.mp4"
        if rel in t.media:
            continue
        f = t.forge("swap_soft", t.clip(c, k), t.identity(s), j, feather=0.1, blur=0.4, jitter=0.3)
        t.video(rel, f.frames, t.style.crf)
        t.record(
            rel,
            t.clip(c, k),
            1,
            "Celeb-synthesis",
            "swap_soft",
            t.identity(s),
            f.masks,
            f"crf{t.style.crf}",
        )
        if j % 3 == 1:
            test.append(f"0 {rel}")
    t.write_text("List_of_testing_videos.txt", "\n".join(test) + "\n")


def _dfdc_name(rng: np.random.Generator, used: set[str]) -> str:
    while True:
        name = "".join(rng.choice(list(string.ascii_lowercase), 10)) + ".mp4"
        if name not in used:
            used.add(name)
            return name


def _dfdc(t: _Tree, videos: int) -> None:
    n_real = max(2, math.ceil(videos / 2))
    n_fake = max(1, videos - n_real)
    rng, used = t.rng(7), set()
    n_test_real = max(1, n_real // 4)
    reals = [
        (_dfdc_name(rng, used), "test" if i >= n_real - n_test_real else "train")
        for i in range(n_real)
    ]
    per_part = 40  # real DFDC parts hold ~1000-2500 videos; a fake sits in its original's part
    parts = {
        i: k // per_part
        for k, i in enumerate(i for i, (_, sp) in enumerate(reals) if sp == "train")
    }
    metadata: dict[int, dict] = {}
    labels = ["filename,label"]

    def place(name: str, tgt: int) -> str:
        return (
            f"test/{name}"
            if reals[tgt][1] == "test"
            else f"train/dfdc_train_part_{parts[tgt]}/{name}"
        )

    def faces_gt(clips: list[Clip], swapped: int | None) -> dict:
        return {
            "faces": [
                {"target": c.identity.id, "boxes": np.round(c.boxes, 1).tolist(), "swapped": p == swapped}
                for p, c in enumerate(clips)
            ],
            "swapped_face": swapped,
        }

    def two_person(i: int) -> bool:  # every fourth original shows two people side by side
        return i % 4 == 2

    for i, (name, split) in enumerate(reals):
        rel = place(name, i)
        extra = {}
        if two_person(i):
            clips = t.pair(i, 0)
            clip, extra = clips[0], faces_gt(clips, None)
        else:
            clip = t.clip(i, 0)
        t.video(rel, clip.frames, t.style.crf)
        t.record(rel, clip, 0, "real", None, None, None, f"crf{t.style.crf}", **extra)
        if split == "test":
            labels.append(f"{name},0")
        else:
            metadata.setdefault(parts[i], {})[name] = {
                "label": "REAL",
                "split": "train",
                "original": None,
            }
    mix = (("swap_blend", {"style": "deepfakes"}), ("swap_soft", {}), ("gan_upsample", {}))
    for j in range(n_fake):
        tgt = j % n_real
        src = (tgt + 1 + j // n_real) % n_real
        family, kw = mix[j % len(mix)]
        method, extra = family, {}
        if two_person(tgt):  # one of the two faces swapped, the other left real
            clips = t.pair(tgt, 0)
            swapped = int(t.rng(13, j).integers(2))
            target = clips[swapped]
            method, extra = TWO_PERSON_METHOD, faces_gt(clips, swapped)
        else:
            target = t.clip(tgt, 0)
        f = t.forge(family, target, t.identity(src), j, **kw)
        name = _dfdc_name(rng, used)
        rel = place(name, tgt)
        t.video(rel, f.frames, t.style.crf)
        t.record(
            rel,
            target,
            1,
            method,
            family,
            t.identity(src),
            f.masks,
            f"crf{t.style.crf}",
            original=reals[tgt][0],
            **extra,
        )
        if reals[tgt][1] == "test":
            labels.append(f"{name},1")
        else:
            metadata.setdefault(parts[tgt], {})[name] = {
                "label": "FAKE",
                "split": "train",
                "original": reals[tgt][0],
            }
    for part, meta in metadata.items():
        t.write_text(
            f"train/dfdc_train_part_{part}/metadata.json",
            json.dumps(meta, indent=1, sort_keys=True),
        )
    t.write_text("test/labels.csv", "\n".join(labels) + "\n")


def _deeperforensics(t: _Tree, videos: int) -> None:
    n_fake = max(1, math.ceil(videos / 2))
    n_real = max(1, videos - n_fake)
    actors = [f"{'M' if a % 2 == 0 else 'W'}{a + 100:03d}" for a in range(n_fake)]
    for i in range(n_real):
        clip = t.clip(i, 0)
        rel = f"ffpp_reals/original_sequences/youtube/c23/videos/{i:03d}.mp4"
        t.video(rel, clip.frames, CRF["c23"])
        t.record(rel, clip, 0, "real", None, None, None, "c23")
    names = []
    for j in range(n_fake):
        tgt, actor_k = j % n_real, 500 + j
        actor = t.identity(actor_k)
        base = t.forge("deeperforensics", t.clip(tgt, 0), actor, j)
        name = f"{tgt:03d}_{actors[j]}.mp4"
        names.append(name)
        variants = {
            "end_to_end": base.frames,
            **{f"end_to_end_level_{lv}": fr for lv, fr in fg.perturb_levels(base, j).items()},
        }
        for variant, frames in variants.items():
            rel = f"manipulated_videos/{variant}/{name}"
            t.video(rel, frames, t.style.crf)
            t.record(
                rel,
                t.clip(tgt, 0),
                1,
                "DF-VAE",
                "deeperforensics",
                actor,
                base.masks,
                f"crf{t.style.crf}",
                mask_name=f"manipulated_videos/{name[:-4]}",
                variant=variant,
            )
        if j < 4:
            src = t.clip(actor_k, 1)
            rel = f"source_videos/{actors[j]}/camera_front/{actors[j]}_camera_front.mp4"
            t.video(rel, src.frames, t.style.crf)
    splits = _split3(len(names), t.rng(8))
    for part in ("train", "val", "test"):
        t.write_text(
            f"lists/splits/{part}.txt",
            "".join(f"{n}\n" for n, s in zip(names, splits) if s == part),
        )


def _wild_degrade(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Internet-video quality: downscale, heavy JPEG, upscale (applied to reals and fakes alike)."""
    h, w = frames.shape[1:3]
    scale = rng.uniform(0.6, 0.85)
    q = [int(cv2.IMWRITE_JPEG_QUALITY), int(rng.integers(28, 50))]
    out = np.empty_like(frames)
    for i, f in enumerate(frames):
        small = cv2.resize(f, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA)
        _, buf = cv2.imencode(".jpg", small, q)
        out[i] = cv2.resize(
            cv2.imdecode(buf, cv2.IMREAD_UNCHANGED), (w, h), interpolation=cv2.INTER_LINEAR
        )
    return out


def _wilddeepfake(t: _Tree, videos: int) -> None:
    n_real = max(2, math.ceil(videos / 2))
    n_fake = max(2, videos - n_real)
    mix = (
        ("swap_blend", {"style": "deepfakes"}),
        ("reenact", {}),
        ("neural_textures", {}),
        ("swap_soft", {}),
        ("gan_upsample", {}),
    )
    archives: dict[tuple[str, int], dict[str, np.ndarray]] = {}
    counters: dict[str, int] = {}

    def add(
        cls: str,
        i: int,
        n_items: int,
        frames: np.ndarray,
        clip: Clip,
        label: int,
        method,
        family,
        source,
        masks,
    ):
        folder = f"{cls}_{'test' if i % 3 == 2 or (n_items >= 2 and i == n_items - 1) else 'train'}"
        k = counters.get(folder, 0)
        counters[folder] = k + 1
        n, seq = k // 2 + 1, k % 2  # two sequences per archive
        member = f"./{n}/{cls}/{seq}"
        archives.setdefault((folder, n), {})[member] = frames
        key = f"{folder}/{n}.tar.gz::{n}/{cls}/{seq}"
        t.record(
            key,
            clip,
            label,
            method,
            family,
            source,
            masks,
            "jpeg",
            media_type="frames",
            mask_name=f"{folder}/{n}/{cls}/{seq}",
        )

    for i in range(n_real):
        clip = t.clip(i, 0)
        add(
            "real",
            i,
            n_real,
            _wild_degrade(clip.frames, t.rng(9, i)),
            clip,
            0,
            "real",
            None,
            None,
            None,
        )
    for j in range(n_fake):
        tgt = 2000 + j  # fakes come from other videos than the reals, as in the wild
        family, kw = mix[j % len(mix)]
        clip = t.clip(tgt, 0)
        f = t.forge(family, clip, t.identity(3000 + j), j, **kw)
        add(
            "fake",
            j,
            n_fake,
            _wild_degrade(f.frames, t.rng(10, j)),
            clip,
            1,
            family,
            family,
            t.identity(3000 + j),
            f.masks,
        )
    for (folder, n), members in sorted(archives.items()):
        write_png_tar(os.path.join(t.root, folder, f"{n}.tar.gz"), members)
        t.written += 1


_WRITERS = {
    "ffpp": lambda t, videos, comps: _ffpp(t, videos, comps),
    "celebdf": lambda t, videos, comps: _celebdf(t, videos),
    "dfdc": lambda t, videos, comps: _dfdc(t, videos),
    "deeperforensics": lambda t, videos, comps: _deeperforensics(t, videos),
    "wilddeepfake": lambda t, videos, comps: _wilddeepfake(t, videos),
}


def corpus_style(preset: str, frames: int | None = None, size: int | None = None,
                 compressions: tuple[str, ...] = ()) -> Style:
    """``preset``'s style with the clip length ``frames`` and the shorter side ``size`` (even) overridden;
    an unknown preset or compression is one sentence."""
    if preset not in PRESETS:
        raise DeepgenError(f"unknown synth preset {preset!r}; choose one of {', '.join(PRESETS)}.")
    bad = [c for c in compressions if c not in CRF]
    if bad:
        raise DeepgenError(f"unknown compression {bad[0]!r}; choose from raw, c23, c40.")
    style = STYLES[preset]
    if frames is not None:
        style = replace(style, frames=max(2, int(frames)))
    if size is not None:
        k = size / min(style.width, style.height)
        style = replace(style, width=int(round(style.width * k / 2)) * 2, height=int(round(style.height * k / 2)) * 2)
    return style


def corpus_root(out: str, overwrite: bool) -> tuple[str, bool]:
    """Where a corpus renders, checked before any work: ``(root, remote)``, ``root`` being ``out`` itself
    or a temporary folder that is uploaded to an ``s3://`` ``out``. A non-empty local ``out`` is refused
    unless it is a synth tree and ``overwrite`` is set (:func:`clear_corpus_root` then replaces it)."""
    remote = storage.is_remote(out)
    root = tempfile.mkdtemp(prefix="deepgen-synth-") if remote else os.path.abspath(out)
    if not remote and os.path.isdir(root) and os.listdir(root):
        if not overwrite:
            raise DeepgenError(f"{out} is not empty; pass --overwrite to replace a previous synth tree or choose "
                               "another --out.")
        if not os.path.exists(os.path.join(root, GROUNDTRUTH)):
            raise DeepgenError(f"{out} is not empty and is not a synth tree; choose an empty --out.")
    return root, remote


def clear_corpus_root(root: str, remote: bool, inputs: tuple[str, ...] = ()) -> None:
    """Empty a previous synth tree at ``root`` (through the deletion policy) and create the folder."""
    if not remote and os.path.isdir(root) and os.listdir(root):
        storage.remove_owned(root, inputs=inputs, markers=[GROUNDTRUTH])
    os.makedirs(root, exist_ok=True)


@contextmanager
def staged_corpus(root: str, out: str, remote: bool) -> Iterator[None]:
    """Render into ``root``; on success upload it to a remote ``out``; always drop the temporary folder."""
    try:
        yield
        if remote:
            fs, path = storage.get_fs(out)
            fs.put(root.rstrip("/") + "/", path, recursive=True)
    finally:
        if remote:
            shutil.rmtree(root, ignore_errors=True)


def render_preset(
    preset: str,
    out: str,
    videos: int = 20,
    seed: int = 0,
    frames: int | None = None,
    size: int | None = None,
    compressions: tuple[str, ...] = ("c23",),
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> str:
    """Render ``preset``'s tree under ``out`` (local path or ``s3://``) and return ``out``.

    ``videos`` is the approximate number of media items (reals + fakes, roughly balanced);
    ``frames`` and ``size`` (shorter side, even) override the preset's clip length and resolution;
    ``compressions`` picks the FF++ compression folders (raw, c23, c40). Deterministic per ``seed``.
    """
    if videos < 1:
        raise DeepgenError(f"--videos must be at least 1, got {videos}.")
    style = corpus_style(preset, frames, size, tuple(compressions))
    log = log or (lambda msg: None)
    root, remote = corpus_root(out, overwrite)
    clear_corpus_root(root, remote)
    with staged_corpus(root, out, remote):
        t0 = time.time()
        tree = _Tree(preset, root, seed, style)
        _WRITERS[preset](tree, videos, tuple(compressions))
        tree.finish()
        counts: dict[str, list[int]] = {}
        for key, e in tree.media.items():
            counts.setdefault(os.path.dirname(key.split("::")[0]), [0, 0])[e["label"]] += 1
        for folder, (n_real, n_fake) in sorted(counts.items()):
            log(f"  {folder}/: {n_real} real, {n_fake} fake")
        log(
            f"{preset}: {len(tree.media)} media items, {tree.written} files, {GROUNDTRUTH}; {time.time() - t0:.1f}s"
        )
    return out
