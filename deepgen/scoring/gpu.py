"""Faces for the fused GPU scoring stage: decode on the device, detect on small frames, crop on the device.

torchcodec decodes the sampled frames straight onto the GPU (NVDEC); they are shrunk there to the
sampling size, YuNet finds the faces on those small frames on the CPU, and the crops are cut on the
GPU from the full-resolution frames. Nothing but the small frames leaves the device; the crops go to
the model as one uint8 tensor. Several videos are in flight per actor (threads), so several NVDEC
engines work at once. Where torchcodec (or its FFmpeg, or NVDEC) is missing, PyAV decodes on the CPU
instead, announced by one log line; on a CPU-only machine the same code runs with torchcodec's CPU
decoder. The fused actor itself is :class:`deepgen.scoring.pipeline.GpuStage`. Both decoders turn
frames upright by the stream's display matrix (torchcodec >= 0.17 itself, on every device; PyAV in
:func:`deepgen.video.upright`), so phone video stored sideways is cropped as players show it.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from deepgen.faces.crop import crop_box, crop_face
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


def _say_once(msg: str) -> None:
    """One log line per process for a fallback, however many videos hit it."""
    if msg not in _said:
        _said.add(msg)
        log.warning(msg)


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
    the result is rounded back to uint8.
    """
    import torch
    import torch.nn.functional as F

    n, c, h, w = x.shape
    if (h, w) == (height, width):
        return x
    out = []
    for i in range(0, n, 8):  # a few frames at a time: a 1080p frame is 25 MB as float32
        chunk = x[i : i + 8].float()
        if height > h or width > w:
            y = F.interpolate(chunk, size=(height, width), mode="bilinear", align_corners=False)
        else:
            wy = area_weights(h, height).to(x.device)
            wx = area_weights(w, width).to(x.device)
            y = torch.matmul(wy, torch.matmul(chunk, wx.T))
        out.append(y.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(out)


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
        return DeviceFrames(x, s.indices, "pyav", s.runs)

    def _torchcodec(self, uri: str) -> DeviceFrames:
        from deepgen.storage import is_remote
        from deepgen.video import _open

        src = _open(uri)  # missing / empty files get their status here
        if not is_remote(uri):
            src.close()
            src = uri
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
        return DeviceFrames(batch.data, idx, f"torchcodec-{'cpu' if self.device == 'cpu' else 'cuda'}", runs)

    def faces(self, row: dict) -> tuple[dict, object | None, list[int]]:
        """(status fields, uint8 crops (M, 3, S, S) on the device or None, track ids) of one media item."""
        import torch

        cfg = self.cfg
        try:
            got = self.decode(str(row["uri"]), row.get("media_type") or "video")
        except MediaError as e:
            return {"status": e.status, "error": e.reason, "n_frames": 0}, None, []
        except Exception as e:  # an option, the environment or a decoder bug: not the item's fault
            return {"status": NOT_THE_ITEMS, "error": failure_reason(e), "n_frames": 0}, None, []
        full = got.frames
        _, _, h, w = full.shape
        tw, th = target_size(w, h, cfg.max_side) if max(w, h) > cfg.max_side else (w, h)
        small = resize_frames(full, tw, th).permute(0, 2, 3, 1).cpu().numpy()
        frames = list(small)
        follows = [bool(pos) for _, pos in run_positions(got.indices, got.runs)] if got.runs else None
        with self.detecting:
            dets = detect_frames(self.detector, frames, cfg, follows)
        kept = track_faces(dets, all_faces=cfg.all_faces, min_share=cfg.min_track_share)
        n = len(frames)
        if not kept:
            return {"status": "no_face", "error": f"no face found in {n} sampled frames", "n_frames": n}, None, []
        crops, tracks = [], []
        inv = w / tw
        for t, track_id, d in kept:
            if cfg.align and d.landmarks is not None:  # similarity warp: cut on the CPU from the small frame
                img = crop_face(frames[t], d.box, cfg.size, cfg.margin, d.landmarks, True)
                crops.append(torch.from_numpy(img).permute(2, 0, 1).to(full.device))
            else:
                crops.append(self.crop(full[t], Detection(d.box, d.score).scaled(inv)))
            tracks.append(int(track_id))
        return {"status": "ok", "error": None, "n_frames": n}, torch.stack(crops), tracks

    def crop(self, frame, det: Detection):
        """The face's square crop, ``cfg.size`` pixels, cut from a full-resolution (3, H, W) frame."""
        _, h, w = frame.shape
        x0, y0, x1, y1 = crop_box(det.box, w, h, self.cfg.margin)
        patch = frame[:, y0:y1, x0:x1]
        if patch.numel() == 0:
            patch = frame
        return resize_frames(patch[None], self.cfg.size, self.cfg.size)[0]

    def map(self, rows: list[dict]) -> list[tuple[dict, object | None, list[int]]]:
        """:meth:`faces` of several media items at once (in flight together), in order."""
        return list(self.pool.map(self.faces, rows))
