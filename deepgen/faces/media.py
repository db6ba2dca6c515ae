"""Per-media extraction: manifest row in, face rows (faces contract) and one status row out.

Shared by the extraction pipeline and by scoring; it never raises for bad media.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np

from deepgen.errors import DeepgenError
from deepgen.faces.align import refine_landmarks
from deepgen.faces.crop import crop_face, encode_image
from deepgen.faces.detect import Detection, get_detector
from deepgen.faces.track import iou, track_faces
from deepgen.video import DEFAULT_SAMPLING, MediaError, check_sampling, run_positions, sample_frames

CARRIED = ("label", "dataset", "method", "split", "source_id")


@dataclass(frozen=True)
class ExtractConfig:
    """How faces are sampled, detected, cropped and encoded."""

    frames: int = 32
    sampling: str = DEFAULT_SAMPLING  # clips (runs of clip_len frames spread over the video; deepgen.video.clip_runs) | uniform
    clip_len: int = 8
    size: int = 224
    margin: float = 0.3
    detector: str = "yunet"
    all_faces: bool = False
    max_side: int = 640
    image_format: str = "jpeg"
    quality: int = 95
    align: bool = False  # warp crops onto the 5-point ArcFace template (deepgen.faces.align)
    align_passes: int = 8  # with align: re-detect the 5 landmarks on the aligned crop up to this many times
    predictor_path: str | None = None
    detect_batch: int = 8
    size_hints: bool = True  # main-track mode: search near the last face's size (Haar) or place (YuNet, clips) first
    threads: int = 0  # decoder threads; 0 = codec default, 1 inside Ray actors
    carry: tuple[str, ...] = ()  # extra manifest columns copied onto every face row (e.g. skin_tone)
    min_track_share: float = 0.3  # keep tracks seen in >= this share of sampled frames (see faces.track)

    def as_dict(self) -> dict:
        return asdict(self)


# The status of an item that failed for a reason outside it: an option, the environment (access, memory)
# or a decoder bug. Every other status is the item's own; rescoring records only those, so an item with
# this status is tried again by the next run instead of being kept as failed.
NOT_THE_ITEMS = "error"


def failure_reason(e: Exception) -> str:
    """One line for an unexpected failure: its type and message."""
    return f"{type(e).__name__}: {' '.join(str(e).split())[:160]}"


def check_options(frames: int, sampling: str = DEFAULT_SAMPLING, clip_len: int = 8, size: int | None = None,
                  margin: float | None = None) -> None:
    """The one check of sampling and crop options, shared by extract, score and rescore before any bundle
    loads or Ray starts; ``size`` / ``margin`` of None are not checked (scoring takes them from the bundle)."""
    check_sampling(frames, sampling, clip_len)
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 16):
        raise DeepgenError(f"--size is {size!r}; crop faces to 16 pixels or more.")
    if margin is not None and not (isinstance(margin, (int, float)) and margin >= 0):  # NaN fails too
        raise DeepgenError(f"--margin is {margin!r}; give 0 or more (0.3 adds 30% around the face).")


def status_row(row: dict, status: str, error: str | None = None, n_frames: int = 0, n_faces: int = 0,
               seconds: float = 0.0, clips_off_key: int | None = None) -> dict:
    return {
        "media_id": row.get("media_id"), "uri": row.get("uri"), "status": status, "error": error,
        "n_frames": int(n_frames), "n_faces": int(n_faces),
        "label": row.get("label"), "dataset": row.get("dataset"), "seconds": float(seconds),
        "clips_off_key": clips_off_key,
    }


def detect_frames(det, frames: list[np.ndarray], cfg: ExtractConfig,
                  follows: list[bool] | None = None) -> list[list[Detection]]:
    """Detect faces per frame, in blocks; for the main track, a found face's size narrows the next search.

    Haar then scans only scales near the last face (several times less work). A hinted search that
    finds nothing falls back to a full search; faces of very different size are only looked for
    then, which is why ``all_faces`` mode always searches in full. With ``follows`` (frame i comes
    straight after frame i-1, as inside a clips run) each run costs YuNet a full search on its first frame and a
    search around that face on its last; the frames between are interpolated (:func:`_run_faces`).
    """
    if follows and not cfg.all_faces and cfg.size_hints and getattr(det, "supports_near", False):
        out: list[list[Detection]] = []
        i = 0
        while i < len(frames):
            j = i  # frames i..j are one run of consecutive frames
            while j + 1 < len(frames) and follows[j + 1]:
                j += 1
            out += _run_faces(det, frames[i : j + 1])
            i = j + 1
        return out
    if cfg.all_faces or not cfg.size_hints or not getattr(det, "supports_size_hint", False):
        out = []
        for i in range(0, len(frames), max(1, cfg.detect_batch)):
            out.extend(det.detect(frames[i : i + cfg.detect_batch]))
        return out
    out, hint = [], None
    for frame in frames:
        found = det.detect([frame], size_hint=hint)[0] if hint else []
        if not found:
            found = det.detect([frame])[0]
        out.append(found)
        hint = max(found[0].box[2] - found[0].box[0], found[0].box[3] - found[0].box[1]) if found else None
    return out


RUN_IOU = 0.3  # a run's end face overlapping its start face this much (moved under about half its size): interpolated


def _run_faces(det, frames: list[np.ndarray]) -> list[list[Detection]]:
    """Faces of one run of consecutive frames: a full search on its first frame and a search around each
    of its faces on its last; when every face is found again and moved little (IoU >= RUN_IOU), the frames
    between get each face interpolated between its ends (box, landmarks, score), else each frame is
    searched again: around the face before it when there is one face, in full when there are several."""
    first = det.detect([frames[0]])[0]
    if len(frames) == 1:
        return [first]
    ends = [_same_face(det.detect_near(frames[-1], f.box), f) for f in first]
    if first and all(e is not None for e in ends):
        n = len(frames) - 1
        return [first, *([between(a, b, k / n) for a, b in zip(first, ends)] for k in range(1, n)), ends]
    if len(first) > 1:
        return [first, *det.detect(frames[1:])]
    out = [first]
    for frame in frames[1:]:
        found = det.detect_near(frame, out[-1][0].box) if out[-1] else []
        out.append(found or det.detect([frame])[0])
    return out


def _same_face(found: list[Detection], face: Detection) -> Detection | None:
    """The detection in ``found`` overlapping ``face`` most, when it overlaps at least RUN_IOU."""
    best = max(found, key=lambda d: iou(d.box, face.box), default=None)
    return best if best is not None and iou(best.box, face.box) >= RUN_IOU else None


def between(a: Detection, b: Detection, t: float) -> Detection:
    """The face a fraction ``t`` of the way from ``a`` to ``b``: box, landmarks and score interpolated."""
    box = tuple(float((1 - t) * x + t * y) for x, y in zip(a.box, b.box))
    lm = None
    if a.landmarks is not None and b.landmarks is not None and a.landmarks.shape == b.landmarks.shape:
        lm = ((1 - t) * a.landmarks + t * b.landmarks).astype(np.float32)
    return Detection(box, float((1 - t) * a.score + t * b.score), lm)


def extract_media(row: dict, cfg: ExtractConfig, detector=None) -> tuple[list[dict], dict]:
    """Sample, detect, track and crop the faces of one manifest row.

    Every face row carries ``track_id`` (0..k-1, largest track first; see :mod:`deepgen.faces.track`).

    Returns (face rows per FACES_SCHEMA, status row with status ok|no_face|decode_error|unreadable|
    missing|too_large, or ``error`` when the failure is not the item's (see :data:`NOT_THE_ITEMS`), error,
    n_frames sampled, n_faces kept).
    """
    t0 = time.perf_counter()
    try:
        sampled = sample_frames(row["uri"], cfg.frames, cfg.max_side, row.get("media_type") or "video",
                                threads=cfg.threads, sampling=cfg.sampling, clip_len=cfg.clip_len)
    except MediaError as e:
        return [], status_row(row, e.status, e.reason, seconds=time.perf_counter() - t0)
    except Exception as e:  # an option, the environment or a decoder bug, not the item: it must not kill the run
        return [], status_row(row, "error", failure_reason(e), seconds=time.perf_counter() - t0)
    det = detector or get_detector(cfg.detector, cfg.predictor_path)
    frames = sampled.frames
    clip_of = run_positions(sampled.indices, sampled.runs)
    follows = [bool(pos) for _, pos in clip_of] if sampled.runs else None
    dets = detect_frames(det, frames, cfg, follows)
    kept = track_faces(dets, all_faces=cfg.all_faces, min_share=cfg.min_track_share)
    inv = 1.0 / sampled.scale
    faces = []
    carried = {k: row.get(k) for k in CARRIED + tuple(cfg.carry)}
    for t, track_id, d in kept:
        if cfg.align and cfg.align_passes and d.landmarks is not None and len(d.landmarks) == 5:
            refined = refine_landmarks(frames[t], d.landmarks, lambda img: det.detect([img])[0], cfg.size,
                                       cfg.margin, cfg.align_passes)
            d = d if refined is None else Detection(d.box, d.score, refined)  # stored, so training re-aligns alike
        crop = crop_face(frames[t], d.box, cfg.size, cfg.margin, d.landmarks, cfg.align)
        orig = d.scaled(inv)
        faces.append({
            "media_id": row["media_id"],
            "frame_index": int(sampled.indices[t]),
            "track_id": int(track_id),
            "image": encode_image(crop, cfg.image_format, cfg.quality),
            "box": [float(v) for v in orig.box],
            "landmarks": None if orig.landmarks is None else np.asarray(orig.landmarks, np.float32).ravel().tolist(),
            "det_score": float(d.score),
            "clip_index": clip_of[t][0],
            "clip_pos": clip_of[t][1],
            **carried,
        })
    faces.sort(key=lambda f: (f["frame_index"], f["track_id"]))
    status = "ok" if faces else "no_face"
    err = None if faces else f"no face found in {len(frames)} sampled frames"
    off_key = None if sampled.runs is None else int(sampled.off_key)
    return faces, {**status_row(row, status, err, len(frames), len(faces), time.perf_counter() - t0, off_key),
                   "fps": float(sampled.fps or 0.0) or None}
