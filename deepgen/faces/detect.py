"""Face detectors behind one small interface: ``detect(frames) -> list[list[Detection]]``.

YuNet (default; libfacedetection's CNN from the ``yuface`` wheel, CPU, 5 landmarks), OpenCV Haar
(ships with opencv, no landmarks) and dlib HOG with optional 68-point landmarks. Frames are RGB
uint8; boxes and landmarks come back in the input frames' pixel coordinates.

``yuface`` has wheels only for CPython 3.10/3.11 on Linux x86_64; elsewhere ``get_detector("yunet")``
warns once and falls back to Haar.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from deepgen.errors import DeepgenError

DETECTORS = ("yunet", "haar", "dlib")
YUNET_INPUT_LIMIT = 960  # yuface warns (and degrades) above this side


@dataclass
class Detection:
    """One face: box (x0, y0, x1, y1) in frame pixels, a score, and optional (5|68, 2) landmarks."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray | None = None

    @property
    def area(self) -> float:
        """Box area in pixels."""
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])

    def scaled(self, s: float) -> Detection:
        """The same face with box and landmarks multiplied by ``s``."""
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


class YuNetDetector:
    """YuNet CNN (libfacedetection via ``yuface``): boxes, confidence and 5 landmarks per face.

    Landmarks are (x, y) of the image-left eye, image-right eye, nose tip, image-left and
    image-right mouth corner (the ArcFace template's order). Frames are downscaled so their longest
    side is at most ``max_side`` (the CNN's cost grows with pixels; yuface itself degrades above
    960 px); a frame where nothing is found is searched once more at ``retry_side`` (upscaled when
    the frame is small, since YuNet misses faces under ~20 px). Score = confidence in [0, 1].
    ``threads`` caps yuface's OpenMP threads (1: one detector per core, as Ray actors run it; on a busy
    machine OpenMP's spinning helper threads make a call 10x slower).
    """

    name = "yunet"
    supports_size_hint = False
    supports_near = True  # detect_near: follow a face into the next consecutive frame cheaply

    def __init__(self, max_side: int = 320, retry_side: int = 640, conf: float = 0.5, threads: int = 1):
        try:
            import yuface
        except ImportError:
            raise  # get_detector turns a missing wheel into a warning and the Haar fallback
        except Exception as e:  # a broken wheel (e.g. a shared library that does not load)
            raise DeepgenError(
                f"the yunet detector failed to load ({type(e).__name__}); reinstall it with "
                "`pip install yuface` or use --detector haar."
            ) from None
        self.yuface = yuface
        self.max_side = min(int(max_side), YUNET_INPUT_LIMIT)
        self.retry_side = min(int(retry_side), YUNET_INPUT_LIMIT)
        self.conf = float(conf)
        self._omp = _yuface_openmp(yuface)
        self.threads = int(threads)

    def _run(self, bgr: np.ndarray, s: float) -> list[Detection]:
        import cv2

        h, w = bgr.shape[:2]
        if s != 1.0:
            interp = cv2.INTER_AREA if s < 1.0 else cv2.INTER_LINEAR
            bgr = cv2.resize(bgr, (max(1, round(w * s)), max(1, round(h * s))), interpolation=interp)
        if self._omp is not None and self.threads > 0:
            self._omp.omp_set_num_threads(self.threads)  # per calling thread; spinning helpers hurt on busy CPUs
        try:
            res = np.asarray(self.yuface.c_detect(np.ascontiguousarray(bgr)), np.float32).reshape(-1, 16)
        except Exception as e:
            raise DeepgenError(
                f"the yunet detector failed on a {w}x{h} frame ({type(e).__name__}: {e}); reinstall "
                "yuface or use --detector haar."
            ) from None
        sx, sy = bgr.shape[1] / w, bgr.shape[0] / h  # exact per-axis scale after rounding
        dets = []
        for r in res[res[:, 0] > self.conf * 100]:
            x, y, bw, bh = r[1:5]
            box = (max(0.0, x / sx), max(0.0, y / sy), min(float(w), (x + bw) / sx), min(float(h), (y + bh) / sy))
            if box[2] - box[0] < 2 or box[3] - box[1] < 2:
                continue
            lm = (r[5:15].reshape(5, 2) + 0.5) / (sx, sy) - 0.5  # cv2.resize's pixel-centre mapping
            dets.append(Detection(box, float(r[0]) / 100.0, lm.astype(np.float32)))
        return dets

    def detect(self, frames: list[np.ndarray]) -> list[list[Detection]]:
        """Faces per frame (largest first), boxes clipped to the frame, with 5 landmarks each."""
        import cv2

        out = []
        for frame in frames:
            bgr = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR)
            side = max(frame.shape[:2])
            s = min(1.0, self.max_side / side)
            dets = self._run(bgr, s)
            s2 = self.retry_side / side
            if not dets and s2 > 1.2 * s:
                dets = self._run(bgr, s2)
            out.append(sorted(dets, key=lambda d: -d.area))
        return out


    def detect_near(self, frame: np.ndarray, box: tuple[float, ...], side: int = 144) -> list[Detection]:
        """Faces in the square region three times the size of ``box`` (the face in the frame just
        before), searched at ``side`` pixels (the face at about 48 px, never upscaled): about a third of
        a full search's work on a 640x360 frame."""
        import cv2

        h, w = frame.shape[:2]
        half = 1.5 * max(box[2] - box[0], box[3] - box[1])
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        x0, y0 = int(max(0, cx - half)), int(max(0, cy - half))
        x1, y1 = int(min(w, cx + half)), int(min(h, cy + half))
        if x1 - x0 < 8 or y1 - y0 < 8:
            return []
        roi = cv2.cvtColor(np.ascontiguousarray(frame[y0:y1, x0:x1]), cv2.COLOR_RGB2BGR)
        dets = self._run(roi, min(1.0, side / max(roi.shape[:2])))
        off = np.array([x0, y0], np.float32)
        moved = [Detection((d.box[0] + x0, d.box[1] + y0, d.box[2] + x0, d.box[3] + y0), d.score,
                           None if d.landmarks is None else d.landmarks + off) for d in dets]
        return sorted(moved, key=lambda d: -d.area)


def _yuface_openmp(yuface):
    """The OpenMP runtime bundled with the yuface wheel (ctypes), or None."""
    import ctypes
    import glob
    import os

    for path in glob.glob(os.path.join(os.path.dirname(yuface.__file__), "..", "yuface.libs", "libgomp*.so*")):
        try:
            return ctypes.CDLL(path)
        except OSError:
            return None
    return None


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
        """Faces per frame (largest first), with 68 landmarks when a predictor is loaded."""
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


YUNET_MISSING = (
    "the yunet detector needs the yuface package, which has wheels only for CPython 3.10/3.11 on "
    "Linux x86_64; falling back to the Haar detector (run `pip install yuface` on such a Python, or "
    "pass --detector haar to silence this)."
)


@lru_cache(maxsize=4)
def get_detector(name: str = "yunet", predictor_path: str | None = None):
    """The detector called ``name`` (yunet|haar|dlib), built once per process.

    ``yunet`` without the ``yuface`` package warns once and returns the Haar detector.
    """
    if name == "yunet":
        try:
            return YuNetDetector()
        except ImportError:
            warnings.warn(YUNET_MISSING, RuntimeWarning, stacklevel=2)
            return HaarDetector()
    if name == "haar":
        return HaarDetector()
    if name == "dlib":
        return DlibDetector(predictor_path)
    raise DeepgenError(f"detector {name!r} is unknown; choose one of {', '.join(DETECTORS)}.")
