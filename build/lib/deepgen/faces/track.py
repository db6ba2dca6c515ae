"""Keep the main face track across sampled frames: greedy IoU linking, then the largest track."""

from __future__ import annotations

from deepgen.faces.detect import Detection


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def build_tracks(dets: list[list[Detection]], min_iou: float = 0.2) -> list[list[tuple[int, Detection]]]:
    """Link detections frame to frame (largest faces first) into tracks of (frame position, detection)."""
    tracks: list[list[tuple[int, Detection]]] = []
    for t, frame_dets in enumerate(dets):
        taken: set[int] = set()
        for d in sorted(frame_dets, key=lambda d: -d.area):
            best, best_iou = None, min_iou
            for k, tr in enumerate(tracks):
                if k in taken:
                    continue
                v = iou(tr[-1][1].box, d.box)
                if v >= best_iou:
                    best, best_iou = k, v
            if best is None:
                tracks.append([(t, d)])
                taken.add(len(tracks) - 1)
            else:
                tracks[best].append((t, d))
                taken.add(best)
    return tracks


def select_faces(
    dets: list[list[Detection]], all_faces: bool = False, min_iou: float = 0.2
) -> list[tuple[int, Detection]]:
    """Faces to keep as (frame position, detection): the main track, or every face with ``all_faces``.

    The main track is the one with the largest summed face area (size times persistence), so a
    one-frame false positive does not beat a face seen in every frame.
    """
    if all_faces:
        return [(t, d) for t, fd in enumerate(dets) for d in fd]
    tracks = build_tracks(dets, min_iou)
    if not tracks:
        return []
    return max(tracks, key=lambda tr: sum(d.area for _, d in tr))
