"""Corpora whose people are real: face videos and forgeries made from a folder of real photos or videos.

:func:`render_photos` writes any of the five dataset layouts (as :func:`deepgen.synth.render_preset`
does) from ``DIR``: every real item films one real face (a camera path with zoom, drift and roll, a
crop, illumination drift, mirroring and mild landmark-driven expression warps), every fake item is a
real item forged frame by frame by one of :data:`PHOTO_FAMILIES`, with its mask in the ground truth:

- ``face_swap``: another person's face warped onto the target's landmarks, colour-transferred and
  blended (Poisson or feathered) inside a hull- or oval-shaped mask;
- ``reenactment``: mouth and eye regions warped to another expression and blended back;
- ``autoencoder``: the inner face (another person's) re-rendered at 64-128 px with a colour shift;
- ``neural_texture``: a high-frequency (texture) edit of the mouth region.

Landmarks jitter per frame (the blend boundary flickers as in per-frame deepfakes). People are split
train/val/test BY IDENTITY before anything is rendered, and forgeries only pair people of one split.
Identities come from ``DIR/identities.csv`` (``file,identity``, UTF-8), else one per sub-folder, else one
per file; they are stripped and case-folded (``P1 `` is ``p1``), and with several folders one name is one
person across them (``same_person`` joins two names of one person): :func:`photo_inputs`. Landmarks:
YuNet's 5 points (the project's detector) mapped onto a 68-point mean shape measured on real photos, or
dlib's 68-point model where ``dlib`` and ``face-recognition-models`` (the
``landmarks`` extra) are installed; that model's training data (iBUG 300-W) excludes commercial use,
so it stays optional (``landmarks="yunet"`` never touches it).
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from deepgen.augment.sbi import color_transfer
from deepgen.errors import DeepgenError
from deepgen.synth.encode import CRF, write_mask_strip, write_png_tar
from deepgen.synth.forgery import perturb_levels
from deepgen.synth.presets import (
    GROUNDTRUTH,
    MASK_DIR,
    CorpusFiles,
    Style,
    _split3,
    _wild_degrade,
    clear_corpus_root,
    corpus_root,
    corpus_style,
    staged_corpus,
)

PHOTO_FAMILIES = ("face_swap", "reenactment", "autoencoder", "neural_texture")
SWAP_FAMILIES = ("face_swap", "autoencoder")  # families that bring in another person's face
IMAGE_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_EXT = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
IDENTITIES_CSV = "identities.csv"
MAX_SIDE = 512  # sources are downscaled to this longest side (the layouts' frames are at most 320 px)
VIDEO_FRAMES = 48  # frames read from the start of a source video
JITTER = 0.02  # per-frame landmark jitter of the forgeries, x the eye distance (the blend boundary flickers)

# dlib/iBUG 68-point mean shape in the 112-px ArcFace template frame, measured with dlib's
# shape_predictor_68 on YuNet boxes over the 52 photos of ../shared/data/real_faces (each face
# aligned by its 5 points first). With 5 points only, it is fitted onto them by a similarity.
MEAN_SHAPE_112 = np.array([
    [17.1, 52.2], [17.8, 64.2], [19.0, 75.8], [20.8, 87.4], [24.4, 98.2], [30.6, 106.8], [38.6, 113.5],
    [47.0, 119.6], [56.5, 121.1], [65.9, 119.4], [74.7, 113.4], [83.0, 106.6], [89.5, 98.1], [93.3, 87.3],
    [95.1, 75.6], [96.2, 63.8], [97.1, 51.5], [22.7, 45.7], [28.0, 40.8], [34.9, 39.7], [41.9, 41.0],
    [48.8, 44.3], [62.2, 44.3], [69.5, 41.0], [76.9, 39.7], [84.1, 41.0], [89.9, 45.7], [55.6, 51.7],
    [55.6, 58.8], [55.6, 65.8], [55.6, 73.1], [48.1, 78.4], [51.8, 79.7], [55.8, 81.0], [59.7, 79.6],
    [63.4, 78.4], [31.0, 53.0], [35.4, 50.3], [40.5, 50.4], [45.1, 54.2], [40.2, 55.0], [35.2, 54.9],
    [66.9, 54.2], [71.3, 50.3], [76.5, 50.4], [81.1, 53.1], [76.8, 54.9], [71.8, 55.1], [39.3, 90.3],
    [45.8, 88.1], [51.8, 87.0], [56.1, 88.1], [60.4, 87.0], [66.5, 88.0], [73.2, 90.1], [66.8, 96.4],
    [60.8, 99.1], [56.0, 99.6], [51.5, 99.1], [45.6, 96.6], [41.8, 90.9], [51.7, 91.0], [56.1, 91.5],
    [60.6, 90.9], [70.8, 90.6], [60.6, 93.3], [56.1, 93.8], [51.6, 93.3],
], np.float32)  # fmt: skip
JAW, BROWS, EYE_L, EYE_R, MOUTH = range(0, 17), range(17, 27), range(36, 42), range(42, 48), range(48, 68)
# the 68 points of a mirrored face, renumbered so each index keeps its meaning (left jaw stays index 0)
FLIP68 = np.array([*range(16, -1, -1), *range(26, 16, -1), 27, 28, 29, 30, *range(35, 30, -1),
                   45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40,
                   54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55, 64, 63, 62, 61, 60, 67, 66, 65])
INNER = tuple(range(17, 68))  # brows, nose, eyes, mouth: what an autoencoder swap replaces


# ---------------------------------------------------------------- sources: people, photos, landmarks


@dataclass
class Person:
    """One real person of the source folder (quacks like :class:`deepgen.synth.face.Identity` for the ground truth)."""

    id: str
    sources: list[Source] = field(default_factory=list)

    def attributes(self) -> dict:
        """Real photos carry no annotated attributes; the subgroup columns say so."""
        return {"skin_tone": "unknown", "skin_tone_group": "unknown", "real_person": True}


@dataclass
class Source:
    """One photo (or the frames of one video) of a person: RGB images and 68 landmarks per image."""

    file: str  # as the ground truth records it (see :class:`PhotoInput`)
    person: str
    images: list[np.ndarray]
    points: list[np.ndarray]  # (68, 2) float32 per image

    def iod(self, i: int = 0) -> float:
        """Distance between the eye centres (pixels) in image ``i``."""
        p = self.points[i]
        return float(np.linalg.norm(p[list(EYE_L)].mean(0) - p[list(EYE_R)].mean(0)))


def dlib_predictor_path() -> str | None:
    """Path of dlib's 68-point model from ``face-recognition-models`` when it and ``dlib`` are installed."""
    if importlib.util.find_spec("dlib") is None:
        return None
    spec = importlib.util.find_spec("face_recognition_models")  # not imported: it needs pkg_resources
    if spec is None or not spec.submodule_search_locations:
        return None
    path = os.path.join(list(spec.submodule_search_locations)[0], "models", "shape_predictor_68_face_landmarks.dat")
    return path if os.path.exists(path) else None


def fit_mean_shape(five: np.ndarray) -> np.ndarray:
    """68 points from YuNet's 5: the measured mean shape placed by the similarity that best fits the 5."""
    from deepgen.faces.align import ARCFACE_112, apply, similarity_transform

    m = similarity_transform(ARCFACE_112, np.asarray(five, np.float32))
    return apply(m, MEAN_SHAPE_112).astype(np.float32)


class Landmarker:
    """Face + 68 landmarks per image: YuNet box and 5 points, then dlib's 68 points when available."""

    def __init__(self, mode: str = "auto"):
        from deepgen.faces.detect import get_detector

        if mode not in ("auto", "dlib", "yunet"):
            raise DeepgenError(f"landmarks {mode!r} is unknown; use auto, dlib or yunet.")
        self.detector = get_detector("yunet")
        self.predictor = None
        path = dlib_predictor_path() if mode in ("auto", "dlib") else None
        if mode == "dlib" and path is None:
            raise DeepgenError("dlib landmarks need the landmarks extra; run `pip install deepgen[landmarks]` "
                               "(dlib-bin, face-recognition-models: non-commercial model) or use --landmarks yunet.")
        if path:
            import dlib

            self.dlib, self.predictor = dlib, dlib.shape_predictor(path)
        self.name = "dlib68" if self.predictor is not None else "yunet5"

    def __call__(self, image: np.ndarray) -> np.ndarray | None:
        """(68, 2) landmarks of the largest face, or None when no face is found."""
        dets = [d for d in self.detector.detect([image])[0] if d.landmarks is not None]
        if not dets:
            return None
        d = dets[0]
        if self.predictor is None:
            return fit_mean_shape(d.landmarks)
        x0, y0, x1, y1 = (int(round(v)) for v in d.box)
        shape = self.predictor(image, self.dlib.rectangle(x0, y0, x1, y1))
        return np.array([[p.x, p.y] for p in shape.parts()], np.float32)


def normalise_identity(name: str) -> str:
    """One spelling per person: surrounding whitespace stripped, case folded (``P1 `` and ``p1`` are one person)."""
    return name.strip().casefold()


def _read_identities(path: str) -> dict[str, tuple[str, int]]:
    """``identities.csv`` (``file,identity``) as file -> (normalised identity, row number); a folder, a file
    that is not UTF-8 (a BOM is fine), a missing column or identity, or a file named twice as two people is
    one sentence."""
    if os.path.isdir(path):
        raise DeepgenError(f"{path} is a folder, but {IDENTITIES_CSV} must be a file of file,identity rows; "
                           "rename the folder.")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DeepgenError(f"{path} is not UTF-8 text (byte 0x{raw[e.start]:02x} at position {e.start}, such as a "
                           "Windows-1252 accent); save it as UTF-8.") from e
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [h.strip().casefold() for h in next(reader, [])]
    if "file" not in header or "identity" not in header:
        raise DeepgenError(f"{path} needs the header file,identity (one row per photo or video), but its first "
                           f"line reads {','.join(header) or '(nothing)'!r}; fix its header.")
    fi, ii = header.index("file"), header.index("identity")
    named: dict[str, tuple[str, int]] = {}
    for row_no, row in enumerate(reader, start=2):
        if not any(c.strip() for c in row):
            continue
        file = row[fi].strip() if fi < len(row) else ""
        who = normalise_identity(row[ii]) if ii < len(row) else ""
        if not file or not who:
            raise DeepgenError(f"row {row_no} of {path} has no {'file' if not file else 'identity'} "
                               f"({','.join(row)!r}); name the file and the person in every row.")
        if file in named and named[file][0] != who:
            raise DeepgenError(f"{path} lists {file} twice, as {named[file][0]!r} (row {named[file][1]}) and "
                               f"{who!r} (row {row_no}), so one person could land in train and test; keep one "
                               "row per file.")
        named.setdefault(file, (who, row_no))
    return named


def _identity_map(root: str, files: list[str]) -> dict[str, str]:
    """file (relative) -> normalised identity, from identities.csv, else the sub-folder, else the file itself."""
    path = os.path.join(root, IDENTITIES_CSV)
    if os.path.lexists(path):
        named = _read_identities(path)
        out = {}
        for f in files:
            hits = {k: named[k] for k in (f, os.path.basename(f)) if k in named}
            if not hits:
                missing = [f for f in files if f not in named and os.path.basename(f) not in named]
                raise DeepgenError(f"{path} names no identity for {missing[0]} ({len(missing)} file(s)); add a "
                                   "row for each photo or video.")
            if len({who for who, _ in hits.values()}) > 1:
                (a, (wa, ra)), (b, (wb, rb)) = hits.items()
                raise DeepgenError(f"{path} names {f} twice, as {wa!r} ({a}, row {ra}) and {wb!r} ({b}, row {rb}), "
                                   "so one person could land in train and test; keep one row per file.")
            out[f] = next(iter(hits.values()))[0]
        return out
    if any("/" in f for f in files):
        return {f: normalise_identity(f.split("/", 1)[0] if "/" in f else os.path.splitext(f)[0]) for f in files}
    return {f: normalise_identity(os.path.splitext(f)[0]) for f in files}


@dataclass
class PhotoInput:
    """One photo or video of the ``--photos`` folders: where to read it, its name in the ground truth
    (relative to its folder, or to the folders' common parent when there are several) and its person."""

    path: str
    file: str
    identity: str


def _same_person(pairs: Sequence[str], known: set[str]) -> dict[str, str]:
    """``NAME=OTHER`` pairs -> identity -> the one name of its person (the first of a chain)."""
    parent: dict[str, str] = {}

    def root(x: str) -> str:
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    for pair in pairs:
        a, sep, b = pair.partition("=")
        a, b = normalise_identity(a), normalise_identity(b)
        if not sep or not a or not b:
            raise DeepgenError(f"--same-person {pair!r} is not NAME=OTHER; write the two names of one person, "
                               "e.g. --same-person p9=leonardo_dicaprio.")
        unknown = [x for x in (a, b) if x not in known]
        if unknown:
            raise DeepgenError(f"--same-person {pair} names {unknown[0]!r}, whom no --photos folder lists; use a "
                               "name from identities.csv (or a sub-folder or file name).")
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[rb] = ra
    return {x: root(x) for x in parent}


def photo_inputs(photos: str | Sequence[str], same_person: Sequence[str] = ()) -> list[PhotoInput]:
    """Every photo and video of the ``--photos`` folders with its person, validated once: each folder
    exists and holds media, each folder's identities come from its ``identities.csv`` (else its sub-folders,
    else one per file), identities are normalised (:func:`normalise_identity`) and merged across folders
    (one name, one person), and ``same_person`` (``NAME=OTHER``) joins two names of one person."""
    folders = [photos] if isinstance(photos, str) else list(photos)
    if not folders:
        raise DeepgenError("--photos names no folder; pass a folder of face photos or videos.")
    real: list[str] = []
    for d in folders:
        if not os.path.isdir(d):
            raise DeepgenError(f"--photos {d} is not a folder; pass a folder of face photos or videos.")
        r = os.path.realpath(d)
        for d0, r0 in zip(folders, real):
            if r == r0 or r.startswith(r0 + os.sep) or r0.startswith(r + os.sep):
                raise DeepgenError(f"--photos {d} and --photos {d0} overlap (one is, or lies inside, the other); "
                                   "pass each folder once.")
        real.append(r)
    base = os.path.commonpath(real) if len(real) > 1 else None
    out: list[PhotoInput] = []
    for d, r in zip(folders, real):
        files = sorted(
            os.path.relpath(os.path.join(dd, n), d)
            for dd, _, names in os.walk(d)
            for n in names
            if n.lower().endswith(IMAGE_EXT + VIDEO_EXT) and not n.startswith(".")
        )
        if not files:
            raise DeepgenError(f"--photos {d} holds no photos or videos ({', '.join(IMAGE_EXT + VIDEO_EXT)}); "
                               "put face photos there.")
        who = _identity_map(d, files)
        prefix = os.path.relpath(r, base) if base is not None else ""
        out += [PhotoInput(os.path.join(d, f), os.path.join(prefix, f) if prefix else f, who[f]) for f in files]
    alias = _same_person(same_person, {p.identity for p in out})
    return [replace(p, identity=alias.get(p.identity, p.identity)) for p in out]


def _read_source(path: str) -> list[np.ndarray] | None:
    """RGB images of a photo (one) or video (up to VIDEO_FRAMES), downscaled to MAX_SIDE; None if unreadable."""
    images = []
    if path.lower().endswith(IMAGE_EXT):
        bgr = cv2.imread(path, cv2.IMREAD_COLOR)
        if bgr is not None:
            images = [cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)]
    else:
        try:
            import av

            with av.open(path) as c:
                for i, f in enumerate(c.decode(video=0)):
                    if i >= VIDEO_FRAMES:
                        break
                    images.append(f.to_ndarray(format="rgb24"))
        except Exception:  # any decoder error means the same to the user: this file cannot be read
            images = []
    if not images:
        return None
    out = []
    for im in images:
        s = MAX_SIDE / max(im.shape[:2])
        if s < 1:
            im = cv2.resize(im, (round(im.shape[1] * s), round(im.shape[0] * s)), interpolation=cv2.INTER_AREA)
        out.append(np.ascontiguousarray(im))
    return out


def load_people(photos: str | Sequence[str], landmarks: str = "auto", log: Callable[[str], None] | None = None,
                same_person: Sequence[str] = ()) -> tuple[list[Person], str]:
    """People with their detected faces from one or more folders of photos/videos (:func:`photo_inputs`),
    and the landmark model used.

    Files without a detectable face are left out (and counted in the log); an empty folder, an
    unreadable file or folders without any face is a one-sentence error.
    """
    log = log or (lambda msg: None)
    inputs = photo_inputs(photos, same_person)
    where = photos if isinstance(photos, str) else " and ".join(photos)
    mark = Landmarker(landmarks)
    people: dict[str, Person] = {}
    no_face = []
    for item in inputs:
        images = _read_source(item.path)
        if images is None:
            raise DeepgenError(f"{item.path} is not a readable image or video; replace or remove it.")
        kept = [(im, p) for im in images for p in [mark(im)] if p is not None]
        if not kept:
            no_face.append(item.file)
            continue
        person = people.setdefault(item.identity, Person(item.identity))
        person.sources.append(Source(item.file, item.identity, [k[0] for k in kept], [k[1] for k in kept]))
    if not people:
        raise DeepgenError(f"no face was found in any of the {len(inputs)} files in --photos {where}; use "
                           "photos or videos that show a face.")
    if no_face:
        log(f"  {len(no_face)} of {len(inputs)} files show no detectable face and are left out: "
            f"{', '.join(no_face[:5])}{' ...' if len(no_face) > 5 else ''}")
    if len(people) < 2:
        raise DeepgenError(f"--photos {where} shows only one person ({next(iter(people))}); a corpus split by "
                           "identity needs photos of at least 2 people (name them in identities.csv).")
    return [people[k] for k in sorted(people)], mark.name


def split_people(people: list[Person], rng: np.random.Generator) -> dict[str, str]:
    """person -> train/val/test (about 60/20/20, at least 2 people in val and test when there are 6 or more)."""
    n = len(people)
    if n >= 6:
        n_test = n_val = max(2, int(round(0.2 * n)))
        labels = ["test"] * n_test + ["val"] * n_val + ["train"] * (n - n_test - n_val)
        labels = [labels[i] for i in rng.permutation(n)]
    else:
        labels = _split3(n, rng, (0.6, 0.2, 0.2))
    return {p.id: s for p, s in zip(people, labels)}


# ---------------------------------------------------------------- real items: a camera on a real face


@dataclass
class Camera:
    """A real item's per-frame camera path and look (all smooth in time)."""

    base: np.ndarray  # 2x3 source -> frame similarity of frame 0
    zoom: tuple[float, float]  # final zoom factor, wobble amplitude
    drift: np.ndarray  # (2, 3): per axis amplitude (px), frequency (Hz), phase
    roll: tuple[float, float, float]  # amplitude (rad), frequency, phase
    mirror: bool
    gain: np.ndarray  # (3,) global colour gain
    light: tuple[float, float, float, float]  # illumination drift amplitude, frequency, phase, gradient
    expression: tuple[float, float, float, float, float, float]  # mouth amp, freq, phase; brow amp, freq, phase
    noise: float
    fps: float
    image_offset: int = 0  # first frame of a source video


@dataclass
class PhotoClip:
    """A real item: frames, noise-free frames (float), per-frame boxes and 68 landmarks, its person and camera."""

    frames: np.ndarray  # T,H,W,3 uint8 (what a real video shows)
    clean: np.ndarray  # T,H,W,3 float32 before camera noise
    noise: np.ndarray  # T,H,W,3 float32 camera noise
    boxes: np.ndarray  # T,4
    landmarks: np.ndarray  # T,68,2
    identity: Person
    source: Source
    camera: Camera
    matrices: np.ndarray  # T,2,3 source -> frame


def sample_camera(src: Source, style: Style, rng: np.random.Generator, motion: float = 1.0) -> Camera:
    """A random camera on ``src``'s face, sized and placed as ``style``'s faces are."""
    from deepgen.faces.align import similarity_transform

    w, h = style.width, style.height
    half = rng.uniform(*style.face_scale) * min(w, h)  # face half-height in frame pixels
    pts = src.points[0]
    chin_to_brow = float(np.linalg.norm(pts[8] - pts[list(BROWS)].mean(0)))
    scale = (2 * half * 0.75) / max(chin_to_brow, 1e-3)
    centre = np.array([w, h]) * (0.5 + rng.uniform(-0.06, 0.06, 2) * motion)  # the crop
    mean = MEAN_SHAPE_112
    tgt = (mean - mean.mean(0)) * (scale * chin_to_brow / float(np.linalg.norm(mean[8] - mean[list(BROWS)].mean(0))))
    base = similarity_transform(pts, tgt + centre)
    return Camera(
        base=base.astype(np.float32),
        zoom=(float(rng.uniform(-0.15, 0.15) * motion), float(rng.uniform(0, 0.03) * motion)),
        drift=np.stack([rng.uniform(0, 0.04, 2) * min(w, h) * motion, rng.uniform(0.1, 0.5, 2),
                        rng.uniform(0, 2 * np.pi, 2)], 1),
        roll=(float(rng.uniform(0, 0.09) * motion), float(rng.uniform(0.1, 0.4)), float(rng.uniform(0, 2 * np.pi))),
        mirror=bool(rng.random() < 0.5),
        gain=rng.uniform(0.9, 1.1, 3).astype(np.float32),
        light=(float(rng.uniform(0.02, 0.08)), float(rng.uniform(0.1, 0.4)), float(rng.uniform(0, 2 * np.pi)),
               float(rng.uniform(0, 0.15))),
        expression=(float(rng.uniform(0.03, 0.1)), float(rng.uniform(0.5, 2.0)), float(rng.uniform(0, 2 * np.pi)),
                    float(rng.uniform(0.0, 0.05)), float(rng.uniform(0.2, 0.8)), float(rng.uniform(0, 2 * np.pi))),
        noise=float(rng.uniform(*style.noise) * 0.6),
        fps=style.fps,
        image_offset=int(rng.integers(0, max(1, len(src.images)))),
    )


def camera_matrix(cam: Camera, t: int, shape: tuple[int, int], anchor: np.ndarray) -> np.ndarray:
    """The 2x3 source -> frame similarity at frame ``t``: base framing, zoom and roll about ``anchor``, drift, mirror."""
    h, w = shape
    tt = t / cam.fps
    z = 1 + cam.zoom[0] * min(1.0, tt / 2.0) + cam.zoom[1] * math.sin(2 * math.pi * 0.3 * tt)
    a = cam.roll[0] * math.sin(2 * math.pi * cam.roll[1] * tt + cam.roll[2])
    d = cam.drift[:, 0] * np.sin(2 * np.pi * cam.drift[:, 1] * tt + cam.drift[:, 2])
    r = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) * z
    m = np.asarray(cam.base, np.float64)
    lin = r @ m[:, :2]
    off = r @ (m[:, 2] - anchor) + anchor + d
    if cam.mirror:
        lin, off = np.array([[-1.0, 0], [0, 1]]) @ lin, np.array([w - 1 - off[0], off[1]])
    return np.hstack([lin, off[:, None]]).astype(np.float32)


def _apply(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return (pts @ m[:, :2].T + m[:, 2]).astype(np.float32)


def _window(shape, center, axes) -> np.ndarray:
    """Smooth bump (1 - r^2)^2 inside an ellipse, exactly 0 outside."""
    h, w = shape
    ys, xs = np.ogrid[0:h, 0:w]
    r2 = ((xs - center[0]) / max(axes[0], 1e-3)) ** 2 + ((ys - center[1]) / max(axes[1], 1e-3)) ** 2
    return (np.clip(1 - r2, 0, 1) ** 2).astype(np.float32)


def expression_field(lm: np.ndarray, shape: tuple[int, int], mouth: float, brow: float, eyes: float = 0.0
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Displacement (dx, dy) of a landmark-driven expression: mouth opening, brow raise, eye squint; and its support."""
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    iod = float(np.linalg.norm(lm[list(EYE_L)].mean(0) - lm[list(EYE_R)].mean(0)))
    dx, dy = np.zeros((h, w), np.float32), np.zeros((h, w), np.float32)
    mc = lm[list(MOUTH)].mean(0)
    mw = float(np.ptp(lm[list(MOUTH), 0]))
    wm = _window(shape, mc, (0.75 * mw + 2, 0.45 * iod + 2))
    dy += mouth * 0.9 * (ys - mc[1]) * wm  # open (>0) or close the mouth about its centre
    support = wm > 0
    for eye, brow_pts in ((EYE_L, range(17, 22)), (EYE_R, range(22, 27))):
        ec, bc = lm[list(eye)].mean(0), lm[list(brow_pts)].mean(0)
        wb = _window(shape, bc, (0.45 * iod + 2, 0.22 * iod + 2))
        dy += -brow * iod * wb
        we = _window(shape, ec, (0.3 * iod + 2, 0.18 * iod + 2))
        dy += eyes * (ys - ec[1]) * we
        support |= (wb > 0) | (we > 0)
    return dx, dy, support


def _shade(cam: Camera, t: int, shape: tuple[int, int]) -> np.ndarray:
    """Per-pixel, per-channel illumination of frame ``t``: colour gain, slow brightness drift, a moving gradient."""
    h, w = shape
    amp, f, ph, grad = cam.light
    tt = t / cam.fps
    g = 1 + amp * math.sin(2 * math.pi * f * tt + ph)
    ang = ph + 0.5 * tt
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = 1 + grad * ((xs / w - 0.5) * math.cos(ang) + (ys / h - 0.5) * math.sin(ang))
    return (ramp[..., None] * g * cam.gain).astype(np.float32)


def expression_at(cam: Camera, t: int) -> tuple[float, float]:
    """(mouth, brow) expression amounts of frame ``t`` (mild, smooth)."""
    ma, mf, mp, ba, bf, bp = cam.expression
    tt = t / cam.fps
    return ma * math.sin(2 * math.pi * mf * tt + mp), ba * max(0.0, math.sin(2 * math.pi * bf * tt + bp))


def render_view(src: Source, cam: Camera, t: int, shape: tuple[int, int], mouth: float, brow: float,
                eyes: float = 0.0, lm_jitter: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Noise-free frame ``t`` (float32), its 68 landmarks and the source -> frame matrix, at an expression."""
    h, w = shape
    i = (cam.image_offset + t) % len(src.images)
    m = camera_matrix(cam, t, shape, np.array([w / 2, h / 2]))
    img = cv2.warpAffine(src.images[i].astype(np.float32), m, (w, h), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REFLECT)
    lm = _apply(m, src.points[i])
    if cam.mirror:  # a mirror reverses the points' handedness: renumber them, or a similarity fit onto them fails
        lm = lm[FLIP68]
    drive = lm if lm_jitter is None else lm + lm_jitter
    dx, dy, _ = expression_field(drive, shape, mouth, brow, eyes)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    img = cv2.remap(img, xs - dx, ys - dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return img * _shade(cam, t, shape), lm, m


def _box(lm: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Face box (x0, y0, x1, y1) around the 68 landmarks with a forehead margin, clipped to the frame."""
    h, w = shape
    x0, y0 = lm.min(0)
    x1, y1 = lm.max(0)
    y0 -= 0.25 * (y1 - y0)
    return np.array([max(0, x0), max(0, y0), min(w, x1), min(h, y1)], np.float32)


def render_real(person: Person, src: Source, style: Style, rng: np.random.Generator) -> PhotoClip:
    """A real item: ``src`` filmed by a random camera for ``style.frames`` frames, with mild expressions."""
    cam = sample_camera(src, style, rng, style.motion)
    shape = (style.height, style.width)
    clean, lms, ms = [], [], []
    for t in range(style.frames):
        mouth, brow = expression_at(cam, t)
        img, lm, m = render_view(src, cam, t, shape, mouth, brow)
        clean.append(img)
        lms.append(lm)
        ms.append(m)
    clean = np.stack(clean)
    noise = rng.standard_normal(clean.shape, dtype=np.float32) * cam.noise
    frames = np.clip(clean + noise + 0.5, 0, 255).astype(np.uint8)
    lms = np.stack(lms)
    boxes = np.stack([_box(lm, shape) for lm in lms])
    return PhotoClip(frames, clean, noise, boxes, lms, person, src, cam, np.stack(ms))


# ---------------------------------------------------------------- fake items: forged frame by frame


@dataclass
class PhotoForgery:
    """Forged frames (T,H,W,3 uint8), masks (T,H,W uint8: every changed pixel > 0) and parameters."""

    frames: np.ndarray
    masks: np.ndarray
    family: str
    meta: dict = field(default_factory=dict)


def _jitter(clip: PhotoClip, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Per-frame landmark noise (T,68,2): independent per frame, so boundaries flicker; ``sigma`` x eye distance."""
    iod = np.linalg.norm(clip.landmarks[:, list(EYE_L)].mean(1) - clip.landmarks[:, list(EYE_R)].mean(1), axis=1)
    shift = rng.normal(0, sigma, (len(iod), 1, 2)) * iod[:, None, None]  # the whole face moves a little
    per_point = rng.normal(0, sigma * 0.5, clip.landmarks.shape) * iod[:, None, None]
    return (shift + per_point).astype(np.float32)


def _hard_mask(lm: np.ndarray, shape: tuple[int, int], kind: str, points=None) -> np.ndarray:
    """0/1 float mask: the convex hull of ``points`` (default jaw + brows) or the ellipse fitted to it."""
    pts = lm[list(points or (*JAW, *BROWS))]
    m = np.zeros(shape, np.float32)
    if kind == "oval":
        (cx, cy), (a, b), ang = cv2.fitEllipse(pts.astype(np.float32))
        cv2.ellipse(m, ((cx, cy), (a * 0.92, b * 0.92), ang), 1.0, -1, cv2.LINE_AA)
        m = (m > 0.5).astype(np.float32)
    else:
        hull = cv2.convexHull(np.round(pts).astype(np.int32))
        cv2.fillConvexPoly(m, hull, 1.0)
    return m


def _feather(mask: np.ndarray, sigma: float) -> np.ndarray:
    """Soften a 0/1 mask inwards (erode ~2 sigma, then blur), so alpha stays 0 outside the hard mask."""
    k = int(2 * round(2 * sigma) + 1)
    m = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    return cv2.GaussianBlur(m, (0, 0), sigma) * (mask > 0)


def _finish(clip: PhotoClip, t: int, face: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Frame ``t`` with ``face`` composited by ``alpha`` under the real item's own camera noise, and its mask."""
    a = alpha[..., None]
    out = clip.clean[t] * (1 - a) + face * a + clip.noise[t]
    frame = np.clip(out + 0.5, 0, 255).astype(np.uint8)
    frame[alpha <= 0] = clip.frames[t][alpha <= 0]  # untouched pixels are the real item's, bit for bit
    mask = np.round(alpha * 255)
    mask[(alpha > 0) & (mask < 1)] = 1
    return frame, mask.astype(np.uint8)


def _donor_face(donor: Source, lm: np.ndarray, shape: tuple[int, int], t: int) -> np.ndarray:
    """The donor's face warped onto landmarks ``lm`` (least-squares similarity over the 68 points)."""
    from deepgen.faces.align import similarity_transform

    i = t % len(donor.images)
    m = similarity_transform(donor.points[i], lm)
    return cv2.warpAffine(donor.images[i].astype(np.float32), m, (shape[1], shape[0]), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REFLECT)


def face_swap(clip: PhotoClip, donor: Source, rng: np.random.Generator) -> PhotoForgery:
    """Another person's face, landmark-warped, colour-transferred and Poisson- or feather-blended (hull or oval)."""
    shape = clip.frames.shape[1:3]
    kind = "hull" if rng.random() < 0.5 else "oval"
    blend = "poisson" if rng.random() < 0.5 else "feather"
    jit = _jitter(clip, rng, JITTER)
    frames, masks = np.empty_like(clip.frames), np.empty(clip.frames.shape[:3], np.uint8)
    for t in range(len(frames)):
        lm = clip.landmarks[t] + jit[t]
        hard = _hard_mask(lm, shape, kind)
        face = color_transfer(_donor_face(donor, lm, shape, t), clip.clean[t], hard)
        if blend == "poisson" and hard.sum() > 16:
            inner = cv2.erode(hard, np.ones((3, 3), np.uint8))  # seamlessClone leaves the mask's rim alone
            ys, xs = np.nonzero(inner)
            centre = (int((xs.min() + xs.max() + 1) // 2), int((ys.min() + ys.max() + 1) // 2))
            dst = np.clip(clip.clean[t] + 0.5, 0, 255).astype(np.uint8)
            try:
                cloned = cv2.seamlessClone(np.clip(face + 0.5, 0, 255).astype(np.uint8), dst,
                                           (inner * 255).astype(np.uint8), centre, cv2.NORMAL_CLONE)
                face, alpha = cloned.astype(np.float32), inner
            except cv2.error:  # a mask touching the frame border: fall back to feathering
                alpha = _feather(hard, max(0.7, 0.02 * _iod(lm)))
        else:
            alpha = _feather(hard, max(0.7, 0.04 * _iod(lm)))
        frames[t], masks[t] = _finish(clip, t, face, alpha)
    return PhotoForgery(frames, masks, "face_swap", {"mask": kind, "blend": blend, "donor": donor.person,
                                                     "donor_file": donor.file})


def _iod(lm: np.ndarray) -> float:
    return float(np.linalg.norm(lm[list(EYE_L)].mean(0) - lm[list(EYE_R)].mean(0)))


def reenactment(clip: PhotoClip, donor: Source | None, rng: np.random.Generator) -> PhotoForgery:
    """Mouth and eye regions re-rendered at another expression (a driver's) and blended back inside their support."""
    shape = clip.frames.shape[1:3]
    cam = clip.camera
    driver = (float(rng.uniform(0.15, 0.35)), float(rng.uniform(0.8, 2.5)), float(rng.uniform(0, 2 * np.pi)),
              float(rng.uniform(0.05, 0.12)), float(rng.uniform(0.3, 1.0)), float(rng.uniform(0, 2 * np.pi)))
    drv = replace(cam, expression=driver)
    jit = _jitter(clip, rng, JITTER)
    frames, masks = np.empty_like(clip.frames), np.empty(clip.frames.shape[:3], np.uint8)
    for t in range(len(frames)):
        mouth, brow = expression_at(drv, t)
        eyes = 0.15 * math.sin(2 * math.pi * driver[4] * t / cam.fps)
        face, lm, _ = render_view(clip.source, cam, t, shape, mouth, brow, eyes, lm_jitter=jit[t])
        face = cv2.GaussianBlur(face, (0, 0), 0.7)  # a re-rendered region is smoother than the camera image
        _, _, support = expression_field(lm + jit[t], shape, 1.0, 1.0, 1.0)
        alpha = _feather(support.astype(np.float32), max(0.7, 0.03 * _iod(lm)))
        frames[t], masks[t] = _finish(clip, t, face, alpha)
    return PhotoForgery(frames, masks, "reenactment", {"driver": [round(x, 3) for x in driver]})


def autoencoder(clip: PhotoClip, donor: Source, rng: np.random.Generator) -> PhotoForgery:
    """DeepFakes-like: the donor's inner face made at 64-128 px (an autoencoder's output size), colour-shifted, pasted."""
    shape = clip.frames.shape[1:3]
    res = int(rng.choice((64, 96, 128)))
    shift = rng.uniform(-10, 10, 3).astype(np.float32)
    gain = rng.uniform(0.93, 1.07, 3).astype(np.float32)
    jit = _jitter(clip, rng, 1.25 * JITTER)
    frames, masks = np.empty_like(clip.frames), np.empty(clip.frames.shape[:3], np.uint8)
    for t in range(len(frames)):
        lm = clip.landmarks[t] + jit[t]
        hard = _hard_mask(lm, shape, "hull", INNER)
        hard = cv2.dilate(hard, np.ones((3, 3), np.uint8), iterations=max(1, int(0.08 * _iod(lm))))
        face = color_transfer(_donor_face(donor, lm, shape, t), clip.clean[t], hard)
        ys, xs = np.nonzero(hard)
        x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        crop = cv2.resize(face[y0:y1, x0:x1], (res, res), interpolation=cv2.INTER_AREA)
        face[y0:y1, x0:x1] = cv2.resize(crop, (x1 - x0, y1 - y0), interpolation=cv2.INTER_LINEAR)
        face = face * gain + shift
        alpha = _feather(hard, max(0.7, 0.05 * _iod(lm)))
        frames[t], masks[t] = _finish(clip, t, face, alpha)
    return PhotoForgery(frames, masks, "autoencoder", {"resolution": res, "donor": donor.person,
                                                       "donor_file": donor.file, "shift": shift.round(1).tolist()})


def neural_texture(clip: PhotoClip, donor: Source | None, rng: np.random.Generator) -> PhotoForgery:
    """The mouth region's high frequencies replaced: smoothed texture, re-synthesised detail, a slight re-shaping."""
    shape = clip.frames.shape[1:3]
    sigma = float(rng.uniform(1.2, 2.2))
    keep = float(rng.uniform(0.0, 0.35))  # share of the real high-frequency detail left
    grain = float(rng.uniform(1.0, 3.0))
    talk = (float(rng.uniform(0.08, 0.2)), float(rng.uniform(1.5, 3.5)), float(rng.uniform(0, 2 * np.pi)))
    jit = _jitter(clip, rng, JITTER)
    frames, masks = np.empty_like(clip.frames), np.empty(clip.frames.shape[:3], np.uint8)
    for t in range(len(frames)):
        lm = clip.landmarks[t] + jit[t]
        mouth = talk[0] * math.sin(2 * math.pi * talk[1] * t / clip.camera.fps + talk[2])
        base, _, _ = render_view(clip.source, clip.camera, t, shape, expression_at(clip.camera, t)[0] + mouth,
                                 expression_at(clip.camera, t)[1])
        low = cv2.GaussianBlur(base, (0, 0), sigma)
        texture = cv2.GaussianBlur(rng.standard_normal(shape, dtype=np.float32), (0, 0), 0.8)[..., None] * grain
        face = low + keep * (base - low) + texture
        hard = np.zeros(shape, np.float32)
        mc = lm[list(MOUTH)].mean(0)
        mw = float(np.ptp(lm[list(MOUTH), 0]))
        cv2.ellipse(hard, (int(round(mc[0])), int(round(mc[1] + 0.05 * mw))),
                    (int(0.8 * mw + 3), int(0.5 * mw + 3)), 0, 0, 360, 1.0, -1)
        alpha = _feather(hard, max(0.7, 0.06 * mw))
        frames[t], masks[t] = _finish(clip, t, face, alpha)
    return PhotoForgery(frames, masks, "neural_texture", {"smooth": round(sigma, 2), "keep": round(keep, 2)})


FORGERS = {"face_swap": face_swap, "reenactment": reenactment, "autoencoder": autoencoder,
           "neural_texture": neural_texture}


# ---------------------------------------------------------------- the corpus: plan and layouts

# which families each layout's fakes come from (the real datasets' manipulation kinds)
LAYOUT_FAMILIES = {
    "ffpp": PHOTO_FAMILIES,
    "celebdf": SWAP_FAMILIES,
    "dfdc": PHOTO_FAMILIES,
    "deeperforensics": ("face_swap",),
    "wilddeepfake": PHOTO_FAMILIES,
}


@dataclass
class Item:
    """One planned media item: a real (family None) or a fake of real item ``target``."""

    index: int
    person: Person
    source: Source
    split: str
    family: str | None = None
    target: int | None = None  # index of the real item it forges
    donor: int | None = None  # index of the real item whose person (and photo) it brings in


def plan(people: list[Person], splits: dict[str, str], videos: int, families: tuple[str, ...],
         rng: np.random.Generator) -> tuple[list[Item], list[Item]]:
    """Real and fake items: reals share out the people of every split, fakes only pair people of one split;
    every split with people gets at least one real (two people's where the layout only swaps faces) and one
    fake where its people allow (:func:`planned_counts`)."""
    labels = sorted(set(splits[p.id] for p in people), key=lambda s: (("train", "val", "test") + (s,)).index(s))
    by_split = {s: [p for p in people if splits[p.id] == s] for s in labels}
    pair = swap_only(families)
    n_real, n_fake = planned_counts(videos, len(by_split), pair)
    quota = _share(n_real, {s: len(ps) for s, ps in by_split.items()})
    quota = {s: max(quota.get(s, 0), min(2 if pair else 1, len(ps))) for s, ps in by_split.items()}
    reals: list[Item] = []
    for s, ps in by_split.items():
        for k in range(quota[s]):
            person = ps[k % len(ps)]
            src = person.sources[(k // len(ps)) % len(person.sources)]
            reals.append(Item(len(reals), person, src, s))
    forgeable = {s: sum(r.split == s for r in reals) if len(ps) > 1 or not pair else 0 for s, ps in by_split.items()}
    fake_quota = _share(n_fake, forgeable) if any(forgeable.values()) else {}
    fakes: list[Item] = []
    for s in by_split:
        pool = [r for r in reals if r.split == s]
        for k in range(fake_quota.get(s, 0)):
            tgt = pool[k % len(pool)]
            family = families[(len(fakes) + k // len(pool)) % len(families)]
            others = [r for r in pool if r.person.id != tgt.person.id]
            if family in SWAP_FAMILIES and not others:  # one person in this split: no swap between identities
                family = next((f for f in families if f not in SWAP_FAMILIES), None)
                if family is None:
                    continue
            drivers = others or [r for r in pool if r.index != tgt.index] or [tgt]
            donor = drivers[int(rng.integers(len(drivers)))]
            fakes.append(Item(len(reals) + len(fakes), tgt.person, tgt.source, s, family, tgt.index, donor.index))
    return reals, fakes


def swap_only(families: tuple[str, ...]) -> bool:
    """Whether every family of a layout swaps in another person's face (a fake needs two people of a split)."""
    return all(f in SWAP_FAMILIES for f in families)


def planned_counts(videos: int, groups: int, pair: bool = False) -> tuple[int, int]:
    """(reals, fakes) for about ``videos`` items over ``groups`` identity groups (train/val/test): half real,
    and at least one real (two with ``pair``: :func:`swap_only`) and one fake in every group, so no group
    that has people is left empty."""
    n_real = max(2, groups * (2 if pair else 1), math.ceil(videos / 2))
    return n_real, max(1, groups, videos - n_real)


def _share(n: int, weights: dict[str, int]) -> dict[str, int]:
    """``n`` split in proportion to ``weights`` (every key with weight > 0 gets at least 1 when n allows)."""
    keys = [k for k, w in weights.items() if w > 0]
    total = sum(weights[k] for k in keys)
    exact = {k: n * weights[k] / total for k in keys}
    out = {k: max(1 if n >= len(keys) else 0, int(exact[k])) for k in keys}
    for k in sorted(keys, key=lambda k: exact[k] - int(exact[k]), reverse=True):
        if sum(out.values()) >= n:
            break
        out[k] += 1
    while sum(out.values()) > n:
        k = max(out, key=out.get)
        out[k] -= 1
    return out


class _Writer(CorpusFiles):
    """Renders planned items and writes media, masks and the ground-truth sidecar of one photo corpus."""

    def __init__(self, preset: str, root: str, seed: int, style: Style, photos: str | list[str],
                 landmark_model: str, splits: dict[str, str]):
        self.preset, self.root, self.seed, self.style = preset, root, seed, style
        self.photos, self.landmark_model, self.splits = photos, landmark_model, splits
        self.media: dict[str, dict] = {}
        self.clips: dict[int, PhotoClip] = {}
        self.written = 0

    def rng(self, *keys: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, 97, *keys])

    def clip(self, item: Item) -> PhotoClip:
        if item.index not in self.clips:
            self.clips[item.index] = render_real(item.person, item.source, self.style, self.rng(1, item.index))
        return self.clips[item.index]

    def forge(self, item: Item, reals: list[Item]) -> PhotoForgery:
        donor = reals[item.donor].source if item.donor is not None else None
        return FORGERS[item.family](self.clip(reals[item.target]), donor, self.rng(2, item.index))

    def record(self, key: str, item: Item, clip: PhotoClip, label: int, method: str, masks: np.ndarray | None,
               compression: str, donor: Item | None = None, media_type: str = "video",
               mask_name: str | None = None, **extra) -> None:
        mask_rel = None
        if masks is not None:
            mask_rel = f"{MASK_DIR}/{mask_name or os.path.splitext(key)[0]}.png"
            if not os.path.exists(os.path.join(self.root, mask_rel)):
                write_mask_strip(os.path.join(self.root, mask_rel), masks)
        self.media[key] = {
            "label": label, "method": method, "family": item.family, "target": item.person.id,
            "source": donor.person.id if donor is not None and item.family in SWAP_FAMILIES else None,
            "attributes": item.person.attributes(), "compression": compression, "media_type": media_type,
            "boxes": np.round(clip.boxes, 1).tolist(), "mask": mask_rel, "split": item.split,
            "photo": item.source.file, **extra,
        }

    def finish(self, people: list[Person]) -> None:
        self.write_groundtruth(
            source="photos", landmarks=self.landmark_model,
            photos=(os.path.abspath(self.photos) if isinstance(self.photos, str)
                    else [os.path.abspath(p) for p in self.photos]),
            families=list(PHOTO_FAMILIES), splits=dict(sorted(self.splits.items())),
            identities={p.id: p.attributes() for p in people},
        )


def _ffpp(w: _Writer, reals: list[Item], fakes: list[Item], compressions: tuple[str, ...]) -> None:
    """FF++ layout: a method folder per forgery family (the manifest's ``method`` is the family)."""
    for r in reals:
        for comp in compressions:
            rel = f"original_sequences/youtube/{comp}/videos/{r.index:03d}.mp4"
            w.video(rel, w.clip(r).frames, CRF[comp])
            w.record(rel, r, w.clip(r), 0, "real", None, comp)
    pairs = {r.split: [] for r in reals}
    for r in reals:
        pairs[r.split].append([f"{r.index:03d}", f"{r.index:03d}"])
    used = set()
    for f in fakes:
        name = f"{f.target:03d}_{f.donor:03d}"
        if (f.family, name) in used:
            continue
        used.add((f.family, name))
        forged = w.forge(f, reals)
        for comp in compressions:
            rel = f"manipulated_sequences/{f.family}/{comp}/videos/{name}.mp4"
            w.video(rel, forged.frames, CRF[comp])
            w.record(rel, f, w.clip(reals[f.target]), 1, f.family, forged.masks, comp, reals[f.donor],
                     mask_name=f"manipulated_sequences/{f.family}/{name}", forgery=forged.meta)
        w.video(f"manipulated_sequences/{f.family}/masks/videos/{name}.mp4",
                np.repeat(((forged.masks > 0) * 255).astype(np.uint8)[..., None], 3, -1), 23)
        pairs[f.split].append([f"{f.target:03d}", f"{f.donor:03d}"])
    for part in ("train", "val", "test"):
        w.write_text(f"splits/{part}.json", json.dumps(pairs.get(part, [])))


def _celebdf(w: _Writer, reals: list[Item], fakes: list[Item]) -> None:
    """Celeb-DF layout: ``Celeb-real/id<P>_<k>``, ``Celeb-synthesis/id<P>_id<Q>_<k>``; test people listed."""
    pid = {p: i for i, p in enumerate(sorted({r.person.id for r in reals}))}
    names, count, test = {}, {}, []
    crf = w.style.crf
    for r in reals:
        k = count[r.person.id] = count.get(r.person.id, -1) + 1
        names[r.index] = k
        rel = f"Celeb-real/id{pid[r.person.id]}_{k:04d}.mp4"
        w.video(rel, w.clip(r).frames, crf)
        w.record(rel, r, w.clip(r), 0, "real", None, f"crf{crf}")
        if r.split == "test":
            test.append(f"1 {rel}")
    for f in fakes:
        d = reals[f.donor]
        rel = f"Celeb-synthesis/id{pid[f.person.id]}_id{pid[d.person.id]}_{names[f.target]:04d}.mp4"
        if rel in w.media:
            continue
        forged = w.forge(f, reals)
        w.video(rel, forged.frames, crf)
        w.record(rel, f, w.clip(reals[f.target]), 1, "Celeb-synthesis", forged.masks, f"crf{crf}", d,
                 forgery=forged.meta)
        if f.split == "test":
            test.append(f"0 {rel}")
    w.write_text("List_of_testing_videos.txt", "\n".join(test) + "\n")


def _dfdc(w: _Writer, reals: list[Item], fakes: list[Item]) -> None:
    """DFDC layout: test people under ``test/`` (labels.csv), the rest in one training part whose metadata
    marks the validation people's videos ``split: val`` (the adapter may still move a training person's
    video to val, since it groups by original video, as for the real DFDC)."""
    crf, meta, labels = w.style.crf, {}, ["filename,label"]
    name = {it.index: f"{'r' if it.family is None else 'f'}{it.index:05d}x{w.seed % 1000:03d}.mp4"
            for it in (*reals, *fakes)}

    def place(it: Item) -> str:
        return f"test/{name[it.index]}" if it.split == "test" else f"train/dfdc_train_part_0/{name[it.index]}"

    for r in reals:
        w.video(place(r), w.clip(r).frames, crf)
        w.record(place(r), r, w.clip(r), 0, "real", None, f"crf{crf}")
        if r.split == "test":
            labels.append(f"{name[r.index]},0")
        else:
            meta[name[r.index]] = {"label": "REAL", "split": r.split, "original": None}
    for f in fakes:
        forged = w.forge(f, reals)
        w.video(place(f), forged.frames, crf)
        w.record(place(f), f, w.clip(reals[f.target]), 1, f.family, forged.masks, f"crf{crf}", reals[f.donor],
                 original=name[f.target], forgery=forged.meta)
        if f.split == "test":
            labels.append(f"{name[f.index]},1")
        else:
            meta[name[f.index]] = {"label": "FAKE", "split": f.split, "original": name[f.target]}
    if meta:
        w.write_text("train/dfdc_train_part_0/metadata.json", json.dumps(meta, indent=1, sort_keys=True))
    w.write_text("test/labels.csv", "\n".join(labels) + "\n")


def _deeperforensics(w: _Writer, reals: list[Item], fakes: list[Item]) -> None:
    """DeeperForensics layout: reals as an FF++ subtree ``ffpp_reals/``, swaps at every perturbation level."""
    for r in reals:
        rel = f"ffpp_reals/original_sequences/youtube/c23/videos/{r.index:03d}.mp4"
        w.video(rel, w.clip(r).frames, CRF["c23"])
        w.record(rel, r, w.clip(r), 0, "real", None, "c23")
    lists: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for f in fakes:
        d = reals[f.donor]
        name = f"{f.target:03d}_{'M' if f.index % 2 == 0 else 'W'}{100 + f.donor:03d}.mp4"
        if any(name in v for v in lists.values()):
            continue
        forged = w.forge(f, reals)
        variants = {"end_to_end": forged.frames}
        variants.update({f"end_to_end_level_{lv}": fr for lv, fr in
                         perturb_levels(_as_forgery(forged), f.index).items()})
        for variant, frames in variants.items():
            rel = f"manipulated_videos/{variant}/{name}"
            w.video(rel, frames, w.style.crf)
            w.record(rel, f, w.clip(reals[f.target]), 1, "DF-VAE", forged.masks, f"crf{w.style.crf}", d,
                     mask_name=f"manipulated_videos/{name[:-4]}", variant=variant, forgery=forged.meta)
        lists[f.split].append(name)
    for part, names in lists.items():
        w.write_text(f"lists/splits/{part}.txt", "".join(f"{n}\n" for n in names))


def _as_forgery(f: PhotoForgery):
    from deepgen.synth.forgery import Forgery

    return Forgery(f.frames, f.masks, f.family, f.meta)


def _wilddeepfake(w: _Writer, reals: list[Item], fakes: list[Item]) -> None:
    """WildDeepfake layout: degraded frame sequences in ``{real,fake}_{train,test}/N.tar.gz``, one person an
    archive (test people in the test folders, validation people with training's: the layout has no val)."""
    groups: dict[tuple[str, str], list[Item]] = {}
    for it in (*reals, *fakes):
        folder = f"{'real' if it.family is None else 'fake'}_{'test' if it.split == 'test' else 'train'}"
        groups.setdefault((folder, it.person.id), []).append(it)
    numbers = {}
    for folder in sorted({fo for fo, _ in groups}):
        for i, person in enumerate(sorted(p for fo, p in groups if fo == folder)):
            numbers[(folder, person)] = i + 1
    for (folder, person), items in sorted(groups.items()):
        n, cls, members = numbers[(folder, person)], folder.split("_")[0], {}
        for seq, it in enumerate(items):
            if it.family is None:
                frames, masks, clip, donor, meta = w.clip(it).frames, None, w.clip(it), None, {}
            else:
                forged = w.forge(it, reals)
                frames, masks, clip, donor = forged.frames, forged.masks, w.clip(reals[it.target]), reals[it.donor]
                meta = {"forgery": forged.meta}
            members[f"./{n}/{cls}/{seq}"] = _wild_degrade(frames, w.rng(3, it.index))
            w.record(f"{folder}/{n}.tar.gz::{n}/{cls}/{seq}", it, clip, 0 if it.family is None else 1,
                     it.family or "real", masks, "jpeg", donor, media_type="frames",
                     mask_name=f"{folder}/{n}/{cls}/{seq}", **meta)
        write_png_tar(os.path.join(w.root, folder, f"{n}.tar.gz"), members)
        w.written += 1


def render_photos(photos: str | Sequence[str], preset: str, out: str, videos: int = 20, seed: int = 0,
                  frames: int | None = None, size: int | None = None, compressions: tuple[str, ...] = ("c23",),
                  overwrite: bool = False, landmarks: str = "auto", splits: dict[str, str] | None = None,
                  log: Callable[[str], None] | None = None, same_person: Sequence[str] = ()) -> str:
    """Write ``preset``'s layout under ``out`` (local or ``s3://``) with real people from ``photos`` (one
    folder or several, people merged by name and ``same_person``: :func:`photo_inputs`); returns ``out``.

    ``videos`` is the approximate number of media items (half real, at least a real and a fake for each
    split: :func:`planned_counts`); ``frames``/``size`` override the
    preset's clip length and shorter side; ``splits`` (person -> a group name) replaces the seeded
    train/val/test identity split: forgeries pair people of one group only, and groups other than
    train/val/test (the benchmark's folds over people, e.g. ``fold0``) are recorded in the ground
    truth's ``split`` for the caller to assign. Deterministic per ``seed``.
    """
    if videos < 2:
        raise DeepgenError(f"--videos must be at least 2 with --photos (a real and a fake), got {videos}.")
    log = log or (lambda msg: None)
    style = corpus_style(preset, frames, size, tuple(compressions))
    root, remote = corpus_root(out, overwrite)
    t0 = time.time()
    folders = [photos] if isinstance(photos, str) else list(photos)
    people, model = load_people(photos if isinstance(photos, str) else folders, landmarks, log, same_person)
    pair = swap_only(LAYOUT_FAMILIES[preset])
    need_people, need_videos = (6 if pair else 3), sum(planned_counts(0, 3, pair))
    why = f" (--preset {preset} only swaps the faces of two people of one split)" if pair else ""
    if splits is None:
        splits = split_people(people, np.random.default_rng([seed, 98]))
        if len(people) < need_people:
            log(f"only {len(people)} people: a fake in each of train, val and test needs photos of at least "
                f"{need_people} people and --videos {need_videos}{why}, so some splits hold only reals.")
    else:
        unknown = [p.id for p in people if not splits.get(p.id)]
        if unknown:
            raise DeepgenError(f"the split names no side for person {unknown[0]}; give every person of the "
                               "photos a side.")
    reals, fakes = plan(people, splits, videos, LAYOUT_FAMILIES[preset], np.random.default_rng([seed, 99]))
    if not fakes:
        raise DeepgenError(f"no split of these {len(people)} people holds two of them, so no fake can be made"
                           f"{why}; pass photos of at least {need_people} people and --videos {need_videos}.")
    groups = len({splits[p.id] for p in people})
    if len(reals) + len(fakes) > videos:
        each = "two reals and a fake" if pair else "a real and a fake"
        log(f"--videos {videos} is fewer than {each} for each of the {groups} splits; rendering "
            f"{len(reals) + len(fakes)} media items.")
    log(f"{preset} from {len(people)} real people ({model} landmarks): "
        + ", ".join(f"{s} {sum(v == s for v in splits.values())}" for s in sorted(set(splits.values()))))
    clear_corpus_root(root, remote, inputs=tuple(folders))
    with staged_corpus(root, out, remote):
        w = _Writer(preset, root, seed, style, photos if isinstance(photos, str) else folders, model, splits)
        if preset == "ffpp":
            _ffpp(w, reals, fakes, tuple(compressions))
        else:
            {"celebdf": _celebdf, "dfdc": _dfdc, "deeperforensics": _deeperforensics,
             "wilddeepfake": _wilddeepfake}[preset](w, reals, fakes)
        w.finish(people)
        n_fake = sum(e["label"] for e in w.media.values())
        log(f"{preset}: {len(w.media)} media items ({len(w.media) - n_fake} real, {n_fake} fake), {w.written} "
            f"files, {GROUNDTRUTH}; {time.time() - t0:.1f}s")
    return out
