"""Face detectors behind one small interface: ``detect(frames) -> list[list[Detection]]``.

OpenCV Haar (default, ships with opencv) and dlib HOG with optional 68-point landmarks.
Frames are RGB uint8; boxes come back in the input frames' pixel coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from deepgen.errors import DeepgenError

DETECTORS = ("haar", "dlib")


@dataclass
class Detection:
    """One face: box (x0, y0, x1, y1) in frame pixels, a score, and optional (68, 2) landmarks."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray | None = None

    @property
    def area(self) -> float:
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])

    def scaled(self, s: float) -> Detection:
        lm = None if self.landmarks is None else self.landmarks * s
        return Detection(tuple(float(v * s) for v in self.box), self.score, lm)


def _gray_small(frame: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Grayscale copy with the longest side at most ``max_side``; returns it and the scale used."""
    import cv2

    gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    h, w = gray.shape
    s = min(1.0, max_side / max(h, w))
    if s < 1.0:
        gray = cv2.resize(gray, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    return gray, s


class HaarDetector:
    """OpenCV frontal-face Haar cascade on downscaled grayscale frames; score = level weight."""

    name = "haar"
    supports_size_hint = True
    hint_range = 1.5  # with a size hint, scan face sizes within this factor of it

    def __init__(self, max_side: int = 320, scale_factor: float = 1.1, min_neighbors: int = 5,
                 min_face_frac: float = 0.08):
        import cv2

        path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
        self.cascade = cv2.CascadeClassifier(path)
        if self.cascade.empty():
            raise DeepgenError(f"the Haar cascade {path} failed to load; reinstall opencv-python-headless.")
        self.max_side, self.scale_factor = max_side, scale_factor
        self.min_neighbors, self.min_face_frac = min_neighbors, min_face_frac

    def detect(self, frames: list[np.ndarray], size_hint: float | None = None) -> list[list[Detection]]:
        """Faces per frame; ``size_hint`` (expected face side in frame pixels) scans only nearby scales."""
        import cv2

        out = []
        for frame in frames:
            gray, s = _gray_small(frame, self.max_side)
            gray = cv2.equalizeHist(gray)
            m = max(16, int(self.min_face_frac * min(gray.shape)))
            big = (0, 0)
            if size_hint:
                m = max(m, int(size_hint * s / self.hint_range))
                big = (int(size_hint * s * self.hint_range) + 1,) * 2
            boxes, _, weights = self.cascade.detectMultiScale3(
                gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
                minSize=(m, m), maxSize=big, outputRejectLevels=True,
            )
            dets = [
                Detection((x / s, y / s, (x + w) / s, (y + h) / s), float(sc))
                for (x, y, w, h), sc in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(weights).ravel())
            ]
            out.append(sorted(dets, key=lambda d: -d.area))
        return out


class DlibDetector:
    """dlib HOG face detector, with 68-point landmarks when a shape predictor file is given."""

    name = "dlib"

    def __init__(self, predictor_path: str | None = None, upsample: int = 0, max_side: int = 480):
        try:
            import dlib
        except ImportError:
            raise DeepgenError(
                "the dlib detector needs dlib; run `pip install deepgen[landmarks]` or use --detector haar."
            ) from None
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = None
        if predictor_path:
            from deepgen.storage import exists

            if not exists(predictor_path):
                raise DeepgenError(
                    f"landmark predictor {predictor_path} does not exist; download "
                    "shape_predictor_68_face_landmarks.dat and pass its path."
                )
            self.predictor = dlib.shape_predictor(str(predictor_path))
        self.dlib, self.upsample, self.max_side = dlib, upsample, max_side

    def detect(self, frames: list[np.ndarray]) -> list[list[Detection]]:
        out = []
        for frame in frames:
            gray, s = _gray_small(frame, self.max_side)
            rects, scores, _ = self.detector.run(gray, self.upsample, 0.0)
            dets = []
            for r, sc in zip(rects, scores):
                lm = None
                if self.predictor is not None:
                    shape = self.predictor(gray, r)
                    lm = np.array([[p.x, p.y] for p in shape.parts()], np.float32) / s
                box = (r.left() / s, r.top() / s, r.right() / s, r.bottom() / s)
                dets.append(Detection(box, float(sc), lm))
            out.append(sorted(dets, key=lambda d: -d.area))
        return out


@lru_cache(maxsize=4)
def get_detector(name: str = "haar", predictor_path: str | None = None):
    """The detector called ``name`` (haar|dlib), built once per process."""
    if name == "haar":
        return HaarDetector()
    if name == "dlib":
        return DlibDetector(predictor_path)
    raise DeepgenError(f"detector {name!r} is unknown; choose one of {', '.join(DETECTORS)}.")
