"""Square face crops with margin (clipped at frame borders), optional 5-point alignment, and encoding."""

from __future__ import annotations

import numpy as np


def crop_box(box: tuple[float, ...], width: int, height: int, margin: float) -> tuple[int, int, int, int]:
    """Square box around ``box`` enlarged by ``margin`` per side fraction, shifted inside the frame."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * (1.0 + margin)
    side = min(side, width, height)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    left = min(max(cx - side / 2, 0.0), width - side)
    top = min(max(cy - side / 2, 0.0), height - side)
    return int(round(left)), int(round(top)), int(round(left + side)), int(round(top + side))


def crop_face(
    frame: np.ndarray, box: tuple[float, ...], size: int = 224, margin: float = 0.3,
    landmarks: np.ndarray | None = None, align: bool = False,
) -> np.ndarray:
    """A ``size`` x ``size`` RGB crop of the face in ``frame`` (box in ``frame`` pixels).

    With ``align`` and 5 (YuNet) or 68 (dlib) landmarks, the crop is the similarity warp onto the
    ArcFace template (:mod:`deepgen.faces.align`); without usable landmarks it is the box crop.
    """
    import cv2

    h, w = frame.shape[:2]
    if align and landmarks is not None:
        from deepgen.faces.align import align_face

        aligned = align_face(frame, landmarks, size, margin)
        if aligned is not None:
            return aligned[0]
    x0, y0, x1, y1 = crop_box(box, w, h, margin)
    patch = frame[y0:y1, x0:x1]
    if patch.size == 0:
        patch = frame
    interp = cv2.INTER_AREA if patch.shape[0] > size else cv2.INTER_LINEAR
    return cv2.resize(patch, (size, size), interpolation=interp)


def encode_image(img: np.ndarray, fmt: str = "jpeg", quality: int = 95) -> bytes:
    """Encode an RGB image as JPEG (``quality``) or PNG bytes."""
    import cv2

    bgr = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    if fmt in ("jpeg", "jpg"):
        ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    elif fmt == "png":
        ok, buf = cv2.imencode(".png", bgr)
    else:
        from deepgen.errors import DeepgenError

        raise DeepgenError(f"image format {fmt!r} is unknown; use jpeg or png.")
    if not ok:
        raise ValueError("image encoding failed")
    return buf.tobytes()


def decode_image(data: bytes) -> np.ndarray:
    """Decode JPEG/PNG bytes to an RGB uint8 array."""
    import cv2

    return cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
