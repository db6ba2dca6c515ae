"""Follow every face across the sampled frames, and decide which tracks extraction keeps.

Linking is greedy per frame: each detection (largest first) joins the best-matching open track,
scored by box IoU with the track's last box, among tracks whose face size is within
``max_size_ratio`` and which were last seen at most ``max_gap`` sampled frames ago (so a face the
detector misses for a frame or two keeps its track). A detection whose IoU is low but whose centre is
within half a face side of the track's last box still matches (a fast-moving face between sparse samples).

Kept by default: every track seen in at least ``min_share`` (30%) of the sampled frames; when none
is, the main track (largest summed box area: size times persistence). One-frame false positives
are dropped, every real face is kept. Track ids number the kept tracks 0..k-1 by size (detections),
largest first. ``all_faces`` keeps every detection, short tracks included.
"""

from __future__ import annotations

import math

from deepgen.faces.detect import Detection

Track = list[tuple[int, Detection]]


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _affinity(a: Detection, b: Detection, min_iou: float, max_size_ratio: float) -> float | None:
    """Match score of detection ``b`` following ``a`` (higher is better), or None when they can't link."""
    sa, sb = math.sqrt(max(a.area, 1e-9)), math.sqrt(max(b.area, 1e-9))
    if max(sa, sb) / min(sa, sb) > max_size_ratio:
        return None
    v = iou(a.box, b.box)
    if v >= min_iou:
        return v
    ca = ((a.box[0] + a.box[2]) / 2, (a.box[1] + a.box[3]) / 2)
    cb = ((b.box[0] + b.box[2]) / 2, (b.box[1] + b.box[3]) / 2)
    dist = math.hypot(ca[0] - cb[0], ca[1] - cb[1])
    return v * 0.5 if dist <= 0.5 * (sa + sb) / 2 else None


def build_tracks(dets: list[list[Detection]], min_iou: float = 0.2, max_gap: int = 2,
                 max_size_ratio: float = 1.6) -> list[Track]:
    """Link detections frame to frame (largest faces first) into tracks of (frame position, detection)."""
    tracks: list[Track] = []
    for t, frame_dets in enumerate(dets):
        taken: set[int] = set()
        for d in sorted(frame_dets, key=lambda d: -d.area):
            best, best_score = None, -1.0
            for k, tr in enumerate(tracks):
                last_t, last = tr[-1]
                if k in taken or t - last_t > max_gap + 1:
                    continue
                score = _affinity(last, d, min_iou, max_size_ratio)
                if score is not None and score > best_score:
                    best, best_score = k, score
            if best is None:
                tracks.append([(t, d)])
                taken.add(len(tracks) - 1)
            else:
                tracks[best].append((t, d))
                taken.add(best)
    return tracks


def _order(tracks: list[Track]) -> list[Track]:
    """Tracks by size (detections), then summed area, largest first; then by first frame."""
    return sorted(tracks, key=lambda tr: (-len(tr), -sum(d.area for _, d in tr), tr[0][0]))


def track_faces(dets: list[list[Detection]], all_faces: bool = False, min_share: float = 0.3,
                min_iou: float = 0.2, max_gap: int = 2) -> list[tuple[int, int, Detection]]:
    """Kept faces as (frame position, track id, detection), in frame order then track id.

    Default: tracks seen in >= ``min_share`` of the sampled frames (else the main track);
    ``all_faces``: every detection, every track.
    """
    tracks = build_tracks(dets, min_iou, max_gap)
    if not tracks:
        return []
    if not all_faces:
        need = max(1, math.ceil(min_share * len(dets) - 1e-9))
        kept = [tr for tr in tracks if len(tr) >= need]
        tracks = kept or [max(tracks, key=lambda tr: sum(d.area for _, d in tr))]
    out = [(t, k, d) for k, tr in enumerate(_order(tracks)) for t, d in tr]
    return sorted(out, key=lambda x: (x[0], x[1]))


def select_faces(
    dets: list[list[Detection]], all_faces: bool = False, min_iou: float = 0.2
) -> list[tuple[int, Detection]]:
    """Faces to keep as (frame position, detection): every persistent track, or every face with ``all_faces``.

    See :func:`track_faces` (which also gives each face its track id); a one-frame false positive
    does not survive next to a face seen in every frame.
    """
    return [(t, d) for t, _, d in track_faces(dets, all_faces=all_faces, min_iou=min_iou)]
