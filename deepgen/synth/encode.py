"""Writing synth media: H.264 MP4 through PyAV (x264 CRF levels), PNG frames in tar.gz, mask strips.

- :data:`CRF` maps FF++ compression names to x264 CRF: ``raw``/``c0`` = 0, ``c23`` = 23, ``c40`` = 40.
- :func:`write_mp4` / :func:`read_mp4` encode and decode RGB uint8 frames (yuv420p, even sizes).
- :func:`write_png_tar` packs frame sequences WildDeepfake-style (``./N/{real|fake}/<seq>/<i>.png``),
  byte-identical for identical input (fixed tar and gzip headers).
- :func:`write_mask_strip` / :func:`read_mask_strip`: per-frame masks as ONE grayscale PNG with the
  T frames stacked vertically (frame t = rows ``t*H:(t+1)*H``).
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import av
import cv2
import numpy as np

CRF = {"raw": 0, "c0": 0, "c23": 23, "c40": 40}
# mbtree off: its lookahead made the output differ between runs on identical frames (measured)
X264_OPTIONS = {"preset": "veryfast", "threads": "1", "x264-params": "mbtree=0"}


_ON_WRITTEN: list[Callable[[int], None]] = []  # progress hooks: called with the media items just written


@contextmanager
def on_media_written(callback: Callable[[int], None]) -> Iterator[None]:
    """Call ``callback(n)`` after each video (n = 1) or frame archive (n = its sequences) is written."""
    _ON_WRITTEN.append(callback)
    try:
        yield
    finally:
        _ON_WRITTEN.remove(callback)


def _written(n: int) -> None:
    for callback in list(_ON_WRITTEN):
        callback(n)


def write_mp4(path: str, frames: np.ndarray, fps: float = 12.0, crf: int = 23) -> None:
    """Encode RGB uint8 frames (T,H,W,3, even H and W) as H.264 (libx264, yuv420p) at ``crf``."""
    t, h, w = frames.shape[:3]
    if h % 2 or w % 2:
        raise ValueError(f"H.264 yuv420p needs even frame sizes, got {w}x{h}")
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with av.open(path, "w", format="mp4") as c:
        s = c.add_stream("libx264", rate=int(round(fps)))
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {**X264_OPTIONS, "crf": str(int(crf))}
        for i, f in enumerate(frames):
            vf = _yuv_frame(f)
            vf.pts = i
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    _written(1)


def _yuv_frame(rgb: np.ndarray) -> av.VideoFrame:
    """A yuv420p frame (BT.601 limited range, as decoders assume) with its row padding filled.

    Converting here keeps swscale out of the encode path and no uninitialised byte reaches x264.
    """
    h, w = rgb.shape[:2]
    yuv = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YUV_I420)
    q = h // 4
    planes = (yuv[:h], yuv[h : h + q].reshape(h // 2, w // 2), yuv[h + q :].reshape(h // 2, w // 2))
    vf = av.VideoFrame(w, h, "yuv420p")
    for plane, data in zip(vf.planes, planes):
        buf = np.empty((data.shape[0], plane.line_size), np.uint8)
        buf[:, : data.shape[1]] = data
        buf[:, data.shape[1] :] = data[:, -1:]
        plane.update(buf.tobytes())
    return vf


def read_mp4(path: str) -> np.ndarray:
    """Decode every frame of a video as RGB uint8 (T,H,W,3)."""
    with av.open(path) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def encode_png(frame: np.ndarray) -> bytes:
    """PNG bytes of an RGB (H,W,3) or grayscale (H,W) uint8 image."""
    img = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR) if frame.ndim == 3 else frame
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def decode_png(data: bytes) -> np.ndarray:
    """RGB (or grayscale) uint8 array from PNG bytes."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if img.ndim == 3 else img


def write_png_tar(path: str, members: dict[str, np.ndarray]) -> None:
    """Write a deterministic tar.gz: ``members`` maps ``./N/<cls>/<seq>`` to frames (T,H,W,3).

    Frame i of a sequence becomes ``<member>/<i>.png``; directories get their own entries.
    """
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as tar:
        dirs: set[str] = set()

        def add(name: str, data: bytes | None) -> None:
            info = tarfile.TarInfo(name)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))

        for member in sorted(members):
            parts = member.split("/")
            for i in range(2, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    add(d, None)
            for i, f in enumerate(members[member]):
                add(f"{member}/{i}.png", encode_png(f))
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb") as fh, gzip.GzipFile(fileobj=fh, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw.getvalue())
    _written(len(members))


def write_mask_strip(path: str, masks: np.ndarray) -> None:
    """Store masks (T,H,W uint8) as one grayscale PNG with the frames stacked vertically."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb") as f:
        f.write(encode_png(masks.reshape(-1, masks.shape[2])))


def read_mask_strip(path: str, frames: int) -> np.ndarray:
    """Read a mask strip back as (T,H,W) uint8."""
    with open(path, "rb") as f:
        img = decode_png(f.read())
    return img.reshape(frames, -1, img.shape[1])
