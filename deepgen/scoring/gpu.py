"""Faces for the fused GPU scoring stage: decode on the device, detect on small frames, crop on the device.

torchcodec decodes the sampled frames straight onto the GPU (NVDEC); they are shrunk there to the
sampling size, YuNet finds the faces on those small frames on the CPU (and, with ``align``, refines
their landmarks there as the CPU path does), and the crops are cut on the GPU from the small frames,
as the CPU path cuts them and training saw them: box crops by area averaging, aligned crops by a warp
that replays OpenCV's bit for bit (:func:`warp_affine`). Nothing but the small frames leaves the device; the crops go to the model as one
uint8 tensor, and only the few crops a score row keeps (each track's top crop, ``--explain``'s) are
copied back to be encoded. Each crop carries what the CPU path's carries (frame index, clip position,
track) and each item its frame rate, so the rows are the CPU path's; on video no larger than the
sampling size the crops are too, and on larger video within the shrink's rounding (the device's exact
area filter against swscale's).
Several videos are in flight per actor (threads), so several NVDEC engines work at once. Where
torchcodec (or its FFmpeg, or NVDEC) is missing, PyAV decodes on the CPU instead, announced by one log
line; on a CPU-only machine the same code runs with torchcodec's CPU decoder. The fused actor itself
is :class:`deepgen.scoring.pipeline.GpuStage`. Both decoders turn frames upright by the stream's
display matrix (torchcodec >= 0.17 itself, on every device; PyAV in :func:`deepgen.video.upright`), so
phone video stored sideways is cropped as players show it.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from deepgen.faces.align import alignment_matrix, refine_landmarks
from deepgen.faces.crop import crop_box
from deepgen.faces.detect import Detection
from deepgen.faces.media import NOT_THE_ITEMS, ExtractConfig, detect_frames, failure_reason
from deepgen.faces.track import track_faces
from deepgen.video import (
    MediaError,
    check_pixels,
    clip_runs,
    run_positions,
    sample_frames,
    target_size,
    uniform_indices,
)

log = logging.getLogger(__name__)
_said: set[str] = set()


def _say_once(msg: str, level: int = logging.WARNING) -> None:
    """One log line per process for a fallback or a difference from the CPU path, however many videos hit it."""
    if msg not in _said:
        _said.add(msg)
        log.log(level, msg)


def torchcodec_decoder():
    """torchcodec's ``VideoDecoder`` class, or None (with one log line) when it or FFmpeg cannot load."""
    try:
        from torchcodec.decoders import VideoDecoder
    except Exception as e:  # not installed, or the system FFmpeg libraries are missing
        _say_once(f"torchcodec unavailable ({type(e).__name__}); the GPU stage decodes with PyAV on the CPU")
        return None
    return VideoDecoder


@dataclass
class DeviceFrames:
    """Sampled frames of one media item as a uint8 (N, 3, H, W) tensor on the device."""

    frames: object  # torch.Tensor
    indices: list[int]
    decoder: str  # torchcodec-cuda | torchcodec-cpu | pyav
    runs: list[tuple[int, int]] | None = None  # clips sampling: (start, length) of each run
    fps: float | None = None  # the frame rate the CPU path records (None: unknown, as for images)


def stream_fps(src) -> float | None:
    """A video's frame rate as the CPU path reads it (PyAV's average rate, else its guessed rate, else 25),
    so both paths give frames the same times; None when PyAV cannot open it. A file object is rewound."""
    import av

    try:
        with av.open(src) as c:
            s = c.streams.video[0]
            return float(s.average_rate or s.guessed_rate or Fraction(25))
    except Exception:
        return None
    finally:
        if hasattr(src, "seek"):
            src.seek(0)


def area_weights(n_in: int, n_out: int):
    """(n_out, n_in) matrix of box-filter (area) weights: row i averages input span [i*s, (i+1)*s)."""
    import torch

    s = n_in / n_out
    lo = torch.arange(n_out, dtype=torch.float64) * s
    hi = lo + s
    edges = torch.arange(n_in + 1, dtype=torch.float64)
    overlap = (torch.minimum(hi[:, None], edges[None, 1:]) - torch.maximum(lo[:, None], edges[None, :-1])).clamp_(min=0)
    return (overlap / s).float()


def resize_frames(x, width: int, height: int):
    """Resize uint8 (N, 3, H, W) on its device: area (box) filter when shrinking, bilinear when growing.

    The shrink is two small matrix products (exact area averaging, as OpenCV's INTER_AREA);
    the result is rounded back to uint8, halves up where OpenCV's own 2x2 shortcut rounds them so (an
    exact halving) and to even elsewhere, as OpenCV does: shrunk crops are then OpenCV's, bit for bit.
    """
    import torch
    import torch.nn.functional as F

    n, c, h, w = x.shape
    if (h, w) == (height, width):
        return x
    halving = (h, w) == (2 * height, 2 * width)
    out = []
    for i in range(0, n, 8):  # a few frames at a time: a 1080p frame is 25 MB as float32
        chunk = x[i : i + 8].float()
        if height > h or width > w:
            y = F.interpolate(chunk, size=(height, width), mode="bilinear", align_corners=False)
        else:
            wy = area_weights(h, height).to(x.device)
            wx = area_weights(w, width).to(x.device)
            y = torch.matmul(wy, torch.matmul(chunk, wx.T))
        y = y.add_(0.5).floor_() if halving else y.round_()
        out.append(y.clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


def _cv_inverse(m: np.ndarray) -> np.ndarray:
    """The inverse of a 2x3 affine as ``cv2.warpAffine`` computes it (same float64 operations, same order)."""
    a = np.asarray(m, np.float64).ravel().copy()
    d = a[0] * a[4] - a[1] * a[3]
    d = 1.0 / d if d != 0 else 0.0
    a[0], a[4] = a[4] * d, a[0] * d
    a[1] *= -d
    a[3] *= -d
    a[2], a[5] = -a[0] * a[2] - a[1] * a[5], -a[3] * a[2] - a[4] * a[5]
    return a


def _reflect(i, n: int):
    """OpenCV's BORDER_REFLECT of indices ``i`` into ``range(n)`` (fedcba|abcdef|fedcba)."""
    import torch

    if n == 1:
        return torch.zeros_like(i)
    p = torch.remainder(i, 2 * n)
    return torch.where(p < n, p, 2 * n - 1 - p)


def warp_affine(frame, m: np.ndarray, size: int):
    """``cv2.warpAffine(frame, m, (size, size), INTER_LINEAR, BORDER_REFLECT)`` of a uint8 (3, H, W) tensor, on
    its device and bit-exact: OpenCV's inverse map, 1/32-pixel fixed-point coordinates and integer weights.

    The per-row and per-column coordinate terms are rounded on the host in float64 exactly as OpenCV
    rounds them; everything per pixel is integer arithmetic, so the device cannot change a bit.
    """
    import torch

    a = _cv_inverse(m)
    r = np.arange(size, dtype=np.float64)
    ab = 1 << 10  # OpenCV's AB_BITS; coordinates keep 5 fractional bits (INTER_BITS)
    dev = frame.device

    def ints(v):
        return torch.from_numpy(np.rint(v).astype(np.int64)).to(dev)  # cvRound: half to even

    x = (ints((a[1] * r + a[2]) * ab)[:, None] + 16 + ints(a[0] * r * ab)[None, :]) >> 5
    y = (ints((a[4] * r + a[5]) * ab)[:, None] + 16 + ints(a[3] * r * ab)[None, :]) >> 5
    _, h, w = frame.shape
    x0, y0 = x >> 5, y >> 5
    fx, fy = (x & 31).int(), (y & 31).int()
    xa, xb = _reflect(x0, w), _reflect(x0 + 1, w)
    ya, yb = _reflect(y0, h), _reflect(y0 + 1, h)

    def at(yy, xx):
        return frame[:, yy, xx].int()

    top = at(ya, xa) * (32 - fx) + at(ya, xb) * fx
    bottom = at(yb, xa) * (32 - fx) + at(yb, xb) * fx
    return ((top * (32 - fy) + bottom * fy + 512) >> 10).clamp_(0, 255).to(torch.uint8)


class DeviceFaces:
    """Per media item: sampled frames on the device, faces found on small frames, crops cut on the device."""

    def __init__(self, cfg: ExtractConfig, device: str = "cpu", in_flight: int = 4):
        import cv2

        from deepgen.faces.detect import get_detector

        cv2.setNumThreads(1)
        self.cfg, self.device = cfg, device
        self.detector = get_detector(cfg.detector, cfg.predictor_path)
        self.decoder_cls = torchcodec_decoder()
        self.pool = ThreadPoolExecutor(max(1, in_flight))
        self.detecting = threading.Lock()  # decoding runs in parallel; one detector call at a time

    def decode(self, uri: str, media_type: str) -> DeviceFrames:
        """The sampled frames at full resolution on the device (torchcodec; PyAV where it cannot)."""
        import torch

        if media_type == "video" and self.decoder_cls is not None:
            try:
                return self._torchcodec(uri)
            except MediaError:
                raise
            except Exception as e:  # PyAV below gives bad media their status (missing, decode_error, ...)
                log.debug("torchcodec could not decode %s (%s); trying PyAV", uri, e)
        s = sample_frames(uri, self.cfg.frames, 1 << 30, media_type, threads=1, sampling=self.cfg.sampling,
                          clip_len=self.cfg.clip_len)
        x = torch.from_numpy(np.stack(s.frames)).permute(0, 3, 1, 2).contiguous().to(self.device)
        return DeviceFrames(x, s.indices, "pyav", s.runs, float(s.fps or 0.0) or None)

    def _torchcodec(self, uri: str) -> DeviceFrames:
        from deepgen.storage import is_remote
        from deepgen.video import _open

        src = _open(uri)  # missing / empty files get their status here
        if not is_remote(uri):
            src.close()
            src = uri
        fps = stream_fps(src)
        kw = {"num_ffmpeg_threads": 1} if self.device == "cpu" else {}
        dec = self.decoder_cls(src, device=self.device, seek_mode="exact", **kw)
        if self.device != "cpu" and getattr(dec, "cpu_fallback", None):
            _say_once(f"torchcodec decodes on the CPU, not NVDEC ({dec.cpu_fallback}); check the GPU's FFmpeg")
        meta = dec.metadata
        check_pixels(meta.width, meta.height, uri)
        n_total = int(meta.num_frames or 0)
        if self.cfg.sampling == "clips":
            keys = dec._get_key_frame_indices().tolist() if hasattr(dec, "_get_key_frame_indices") else [0]
            runs, _ = clip_runs(keys, n_total, self.cfg.frames, self.cfg.clip_len)
            idx = [a + j for a, length in runs for j in range(length)]
        else:
            runs, idx = None, uniform_indices(n_total, self.cfg.frames)
        if not idx:
            raise MediaError("decode_error", uri, "has no decodable frames")
        batch = dec.get_frames_at(indices=idx)
        fps = fps or meta.average_fps_from_header or meta.average_fps
        return DeviceFrames(batch.data, idx, f"torchcodec-{'cpu' if self.device == 'cpu' else 'cuda'}", runs,
                            float(fps or 0.0) or None)

    @staticmethod
    def status(status: str | None, error: str | None, n_frames: int = 0, fps: float | None = None) -> dict:
        """The fields of an item without crops (CROPS_SCHEMA's, less ``crops``)."""
        return {"status": status, "error": error, "n_frames": n_frames, "fps": fps, "track_ids": [],
                "frame_indices": [], "clip_index": [], "clip_pos": []}

    def faces(self, row: dict) -> tuple[dict, object | None]:
        """One media item's crops-row fields (CROPS_SCHEMA's but ``crops``: status, error, n_frames, fps, and per
        crop its track, frame index and clip position, as the CPU path gives them) and its uint8 crops
        (M, 3, S, S) on the device, in the CPU path's order (frame, then track); None without faces."""
        import torch

        cfg = self.cfg
        try:
            got = self.decode(str(row["uri"]), row.get("media_type") or "video")
        except MediaError as e:
            return self.status(e.status, e.reason), None
        except Exception as e:  # an option, the environment or a decoder bug: not the item's fault
            return self.status(NOT_THE_ITEMS, failure_reason(e)), None
        full = got.frames
        _, _, h, w = full.shape
        tw, th = target_size(w, h, cfg.max_side) if max(w, h) > cfg.max_side else (w, h)
        small = resize_frames(full, tw, th)  # crops are cut from it, as the CPU path cuts them (and training did)
        frames = list(small.permute(0, 2, 3, 1).cpu().numpy())
        clip_of = run_positions(got.indices, got.runs)
        follows = [bool(pos) for _, pos in clip_of] if got.runs else None
        with self.detecting:
            dets = detect_frames(self.detector, frames, cfg, follows)
        kept = track_faces(dets, all_faces=cfg.all_faces, min_share=cfg.min_track_share)
        n = len(frames)
        if not kept:
            return self.status("no_face", f"no face found in {n} sampled frames", n, got.fps), None
        crops = []
        for t, _, d in kept:
            crop = None
            if cfg.align and d.landmarks is not None:
                points = d.landmarks
                if cfg.align_passes and len(points) == 5:  # as the CPU path: refined on the small frame
                    with self.detecting:
                        refined = refine_landmarks(frames[t], points, lambda img: self.detector.detect([img])[0],
                                                   cfg.size, cfg.margin, cfg.align_passes)
                    points = points if refined is None else refined
                crop = self.align(small[t], points)
            if crop is None:  # no alignment asked, or the landmarks cannot align: the box crop, as crop_face
                crop = self.crop(small[t], Detection(d.box, d.score))
            crops.append(crop)
        return {**self.status("ok", None, n, got.fps), "track_ids": [int(k) for _, k, _ in kept],
                "frame_indices": [int(got.indices[t]) for t, _, _ in kept],
                "clip_index": [clip_of[t][0] for t, _, _ in kept],
                "clip_pos": [clip_of[t][1] for t, _, _ in kept]}, torch.stack(crops)

    def align(self, small, landmarks):
        """The aligned crop (the similarity warp onto the template, :mod:`deepgen.faces.align`) of the face whose
        landmarks were found on ``small``, warped on the device from that small frame, as the CPU path warps
        it; None when the landmarks cannot align."""
        m = alignment_matrix(landmarks, self.cfg.size, self.cfg.margin)  # small-frame pixels -> crop pixels
        return None if m is None else warp_affine(small, m, self.cfg.size)

    def crop(self, frame, det: Detection):
        """The face's square crop, ``cfg.size`` pixels, cut from a full-resolution (3, H, W) frame."""
        _, h, w = frame.shape
        x0, y0, x1, y1 = crop_box(det.box, w, h, self.cfg.margin)
        patch = frame[:, y0:y1, x0:x1]
        if patch.numel() == 0:
            patch = frame
        return resize_frames(patch[None], self.cfg.size, self.cfg.size)[0]

    def map(self, rows: list[dict]) -> list[tuple[dict, object | None]]:
        """:meth:`faces` of several media items at once (in flight together), in order."""
        return list(self.pool.map(self.faces, rows))
