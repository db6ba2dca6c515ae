"""Small media made by code for tests and benchmarks: face videos, a faceless video, bad inputs."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterable

import numpy as np


def write_video(path: str, frames: Iterable[np.ndarray], fps: int = 25, codec: str = "libx264",
                crf: int = 18, gop: int | None = None, preset: str = "veryfast", fmt: str | None = None,
                durations_ms: list[int] | None = None, rotation: int = 0) -> str:
    """Encode RGB frames (any iterable, so long clips need not sit in memory) with PyAV, in the container
    ``fmt`` (default: by the file name; ``mpegts``, ``h264`` for a raw stream); with ``gop`` a keyframe
    exactly every ``gop`` frames (x264: no scene-cut keyframes); ``durations_ms`` (cycled) makes it
    variable-rate; ``rotation`` writes a display matrix (counter-clockwise degrees, as phones do)."""
    from fractions import Fraction

    import av

    frames = iter(frames)
    first = next(frames)
    h, w = first.shape[:2]
    with av.open(path, "w", format=fmt) as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        if codec == "libx264":
            s.options = {"crf": str(crf), "preset": preset,
                         **({"x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"} if gop else {})}
        if gop:
            s.codec_context.gop_size = gop
        if rotation:
            s.set_display_rotation(rotation)
        if durations_ms:
            s.codec_context.time_base = Fraction(1, 1000)
        t = 0
        for i, f in enumerate(itertools.chain([first], frames)):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            if durations_ms:
                frame.pts, frame.time_base = t, Fraction(1, 1000)
                t += durations_ms[i % len(durations_ms)]
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


MARK_BITS, MARK_CELL = 8, 8  # a frame's index written as 8 black/white cells of 8 px along its top


def marked_frame(i: int, w: int = 64, h: int = 48) -> np.ndarray:
    """A frame that carries its own index ``i`` (:func:`read_mark` reads it back after a lossy codec)."""
    f = np.full((h, w, 3), 90, np.uint8)
    f[MARK_CELL:, :] = (i * 7) % 200 + 20  # the picture changes a little, like a real video
    for b in range(MARK_BITS):
        f[0:MARK_CELL, b * MARK_CELL : (b + 1) * MARK_CELL] = 255 if (i >> b) & 1 else 0
    return f


def read_mark(frame: np.ndarray) -> int:
    """The index :func:`marked_frame` wrote into ``frame``."""
    return sum(1 << b for b in range(MARK_BITS) if frame[MARK_CELL // 2, int((b + 0.5) * MARK_CELL)].mean() > 128)


def background(w: int, h: int, seed: int = 0) -> np.ndarray:
    """A smooth coloured background with mild texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(40, 200, 3).astype(np.float32)
    grad = (xx / max(w, 1))[..., None] * rng.uniform(-40, 40, 3) + (yy / max(h, 1))[..., None] * rng.uniform(-40, 40, 3)
    img = base + grad + rng.normal(0, 3, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def face_frames(face: np.ndarray, n: int, w: int, h: int, face_h: float = 0.6, seed: int = 0) -> list[np.ndarray]:
    """``n`` frames of ``face`` (an RGB photo) pasted on a background, drifting slowly."""
    import cv2

    bg = background(w, h, seed)
    fh = int(h * face_h)
    fw = int(face.shape[1] * fh / face.shape[0])
    if fw > w * 0.9:
        fw = int(w * 0.9)
        fh = int(face.shape[0] * fw / face.shape[1])
    photo = cv2.resize(face, (fw, fh), interpolation=cv2.INTER_AREA)
    out = []
    for i in range(n):
        dx = int(round((w - fw) / 2 + 0.04 * w * np.sin(i / 4)))
        dy = int(round((h - fh) / 2))
        f = bg.copy()
        f[dy : dy + fh, dx : dx + fw] = photo
        out.append(f)
    return out


def zoom_frames(photo: np.ndarray, n: int, side: int = 240, zoom: float = 0.02) -> list[np.ndarray]:
    """``n`` frames of a still photo (longer side ``side``, even sizes) with a slow zoom of ``zoom`` per frame."""
    import cv2

    h, w = photo.shape[:2]
    k = side / max(h, w)
    img = cv2.resize(photo, (max(2, int(w * k) // 2 * 2), max(2, int(h * k) // 2 * 2)), interpolation=cv2.INTER_AREA)
    hh, ww = img.shape[:2]
    return [cv2.warpAffine(img, cv2.getRotationMatrix2D((ww / 2, hh / 2), 0, 1 + zoom * t), (ww, hh),
                           borderMode=cv2.BORDER_REFLECT) for t in range(n)]


def noise_frames(n: int, w: int, h: int, seed: int = 0) -> list[np.ndarray]:
    """Frames of smooth random noise, with no face in them."""
    import cv2

    rng = np.random.default_rng(seed)
    return [cv2.GaussianBlur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), (9, 9), 3) for _ in range(n)]


def load_rgb(path: str) -> np.ndarray:
    import cv2

    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def write_bad_inputs(folder: str) -> dict[str, str]:
    """The bad-input zoo: name -> path of a zero-byte, truncated, text, audio-only and unknown-codec .mp4."""
    import av

    os.makedirs(folder, exist_ok=True)
    paths = {k: os.path.join(folder, f"{k}.mp4") for k in ("empty", "truncated", "text", "audio_only", "bad_codec")}
    open(paths["empty"], "wb").close()
    with open(paths["text"], "w") as f:
        f.write("this is not a video\n" * 20)
    good = write_video(os.path.join(folder, "_good.mp4"), noise_frames(30, 160, 120, seed=5))
    data = open(good, "rb").read()
    with open(paths["truncated"], "wb") as f:
        f.write(data[: len(data) // 2])
    with av.open(paths["audio_only"], "w") as c:
        s = c.add_stream("aac", rate=16000)
        fr = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
        fr.sample_rate = 16000
        for i in range(8):
            fr.pts = i * 1024
            for p in s.encode(fr):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    # an MP4 whose video sample entry names a codec no decoder knows ('avc1' -> 'zzz1')
    with open(paths["bad_codec"], "wb") as f:
        f.write(data.replace(b"avc1", b"zzz1").replace(b"avcC", b"zzzC"))
    os.remove(good)
    return paths
