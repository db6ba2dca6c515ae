"""Decode media and sample frames uniformly, decoding only what the samples need, resized early.

Videos are demuxed packet by packet; a GOP (keyframe to keyframe) is decoded only when a sampled
frame falls inside it, and only up to its last sampled frame. Only sampled frames are converted,
straight to the reduced size, so no full-resolution RGB array is ever built.
"""

from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from deepgen.errors import DeepgenError
from deepgen.storage import get_fs, is_remote

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
# Leading bytes of container formats: a file that starts like media but fails to open is damaged.
_MEDIA_MAGIC = (b"ftyp", b"\x1a\x45\xdf\xa3", b"RIFF", b"OggS", b"FLV", b"\x00\x00\x01\xba")


# Size limits: media over them become ``too_large`` status rows instead of exhausting a worker's memory.
MAX_IMAGE_PIXELS = int(os.environ.get("DEEPGEN_MAX_IMAGE_PIXELS", 100_000_000))  # per image or video frame
MAX_ENCODED_BYTES = int(os.environ.get("DEEPGEN_MAX_ENCODED_BYTES", 2 << 30))  # per image file or archive member


class MediaError(DeepgenError):
    """A media item that cannot be used; ``status`` is missing, unreadable, decode_error or too_large."""

    def __init__(self, status: str, uri: str, reason: str):
        self.status, self.uri, self.reason = status, uri, reason
        super().__init__(f"{uri}: {reason}")


def check_encoded_size(n_bytes: int, uri: str, what: str = "image") -> None:
    """Raise ``too_large`` when one encoded image (file or archive member) is over ``MAX_ENCODED_BYTES``."""
    if n_bytes > MAX_ENCODED_BYTES:
        raise MediaError("too_large", uri, f"{what} is {n_bytes / 2**20:.0f} MiB, over the "
                         f"{MAX_ENCODED_BYTES / 2**20:.0f} MiB limit (raise DEEPGEN_MAX_ENCODED_BYTES to read it)")


def check_pixels(width: int, height: int, uri: str) -> None:
    """Raise ``too_large`` when an image or video frame has more than ``MAX_IMAGE_PIXELS`` pixels."""
    if width * height > MAX_IMAGE_PIXELS:
        raise MediaError("too_large", uri, f"frames are {width}x{height} ({width * height / 1e6:.0f} MP), over the "
                         f"{MAX_IMAGE_PIXELS / 1e6:.0f} MP limit (raise DEEPGEN_MAX_IMAGE_PIXELS to read it)")


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from an encoded image's header, without decoding it; None if the header is unknown."""
    import io
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's decompression-bomb warning: the caller decides
            with Image.open(io.BytesIO(data)) as im:
                return im.size
    except Image.DecompressionBombError:
        return (1 << 16, 1 << 16)  # over PIL's own hard limit: surely over ours
    except Exception:
        return None


@dataclass
class SampledFrames:
    """Sampled RGB uint8 frames (resized to ``max_side``) with their indices in the source."""

    frames: list[np.ndarray]
    indices: list[int]
    width: int  # original width
    height: int  # original height
    fps: float
    n_decoded: int  # frames the decoder produced (work done), not frames returned
    n_total: int = 0  # frames in the media as far as known
    scale: float = field(default=1.0)  # returned frame size / original size


def target_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """Size with the longest side at most ``max_side`` (even numbers, aspect kept)."""
    s = min(1.0, max_side / max(width, height))
    return max(2, int(round(width * s / 2)) * 2), max(2, int(round(height * s / 2)) * 2)


def uniform_indices(n_total: int, n: int) -> list[int]:
    """``n`` indices spread evenly over ``range(n_total)`` (all of them when there are fewer)."""
    if n_total <= 0:
        return []
    if n_total <= n:
        return list(range(n_total))
    return sorted({int(round(x)) for x in np.linspace(0, n_total - 1, n)})


def sample_frames(
    uri: str, n_frames: int = 32, max_side: int = 640, media_type: str = "video", threads: int = 0
) -> SampledFrames:
    """Sample ``n_frames`` frames uniformly from a video, frame folder/sequence or image.

    Raises :class:`MediaError` (status missing|unreadable|decode_error) for media that can't be used.
    """
    uri = str(uri)
    if media_type == "video":
        return _sample_video(uri, n_frames, max_side, threads)
    if media_type == "frames":
        return _sample_sequence(uri, n_frames, max_side)
    if media_type == "image":
        data = _read_all(uri, max_bytes=MAX_ENCODED_BYTES)
        frame = _decode_image(data, uri)
        h, w = frame.shape[:2]
        return _resized([frame], [0], w, h, 0.0, 1, 1, max_side)
    raise DeepgenError(f"media_type {media_type!r} of {uri} is unknown; use video, frames or image.")


# ---------------------------------------------------------------- opening


def _open(uri: str, max_bytes: int | None = None):
    """Open ``uri`` for binary reading, mapping absence, emptiness and (over ``max_bytes``) size to MediaError."""
    fs, path = get_fs(uri)
    try:
        info = fs.info(path)
    except FileNotFoundError:
        raise MediaError("missing", uri, "no such file or key") from None
    except OSError as e:  # permission denied, unreachable endpoint
        raise MediaError("unreadable", uri, f"cannot be accessed ({_why(e)})") from None
    if info.get("type") == "directory":
        raise MediaError("unreadable", uri, "is a directory, not a media file")
    if not info.get("size"):
        raise MediaError("unreadable", uri, "is empty (zero bytes)")
    if max_bytes is not None:
        check_encoded_size(int(info["size"]), uri)
    if is_remote(uri):
        return fs.open(path, "rb", block_size=8 * 1024 * 1024, cache_type="readahead")
    return open(path, "rb")


def _read_all(uri: str, max_bytes: int | None = None) -> bytes:
    with _open(uri, max_bytes) as f:
        return f.read()


def _decode_image(data: bytes, uri: str) -> np.ndarray:
    import cv2

    size = image_size(data)
    if size is not None:
        check_pixels(*size, uri)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise MediaError("unreadable", uri, "is not a decodable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _resized(frames, indices, w, h, fps, n_decoded, n_total, max_side) -> SampledFrames:
    import cv2

    tw, th = target_size(w, h, max_side)
    if (tw, th) != (w, h) and max(w, h) > max_side:
        frames = [cv2.resize(f, (tw, th), interpolation=cv2.INTER_AREA) for f in frames]
    else:
        tw, th = w, h
    return SampledFrames(frames, indices, w, h, fps, n_decoded, n_total, tw / w)


# ---------------------------------------------------------------- frame sequences


def _sample_sequence(uri: str, n_frames: int, max_side: int) -> SampledFrames:
    """A folder of images, or a tar sequence ``<archive uri>#<member prefix>``."""
    if "#" in uri:
        blobs = _read_tar_sequence(uri)
        idx = uniform_indices(len(blobs), n_frames)
        datas = [blobs[i] for i in idx]
    else:
        fs, path = get_fs(uri)
        if not fs.exists(path):
            raise MediaError("missing", uri, "no such folder or key prefix")
        if not fs.isdir(path):
            raise MediaError("unreadable", uri, "is not a folder of frames")
        found = fs.find(path, detail=True)
        files = sorted(p for p in found if p.lower().endswith(IMAGE_EXTS))
        idx = uniform_indices(len(files), n_frames)
        for i in idx:
            check_encoded_size(int(found[files[i]].get("size") or 0), uri, f"frame {posixpath.basename(files[i])}")
        datas = [fs.cat_file(files[i]) for i in idx]
    if not datas:
        raise MediaError("decode_error", uri, "holds no image frames")
    frames = [_decode_image(d, uri) for d in datas]
    h, w = frames[0].shape[:2]
    frames = [f if f.shape[:2] == (h, w) else _fit(f, w, h) for f in frames]
    return _resized(frames, idx, w, h, 0.0, len(frames), len(blobs) if "#" in uri else len(files), max_side)


def _fit(frame: np.ndarray, w: int, h: int) -> np.ndarray:
    import cv2

    return cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)


def _read_tar_sequence(uri: str) -> list[bytes]:
    try:
        from deepgen.datasets.wilddeepfake import read_frame_sequence
    except ImportError:
        read_frame_sequence = _tar_frames
    try:
        return list(read_frame_sequence(uri))
    except MediaError:
        raise
    except (FileNotFoundError, DeepgenError) as e:
        archive = uri.split("#", 1)[0]
        fs, path = get_fs(archive)
        status = "missing" if not fs.exists(path) else "unreadable"
        raise MediaError(status, uri, str(e).splitlines()[0] if str(e) else "cannot read sequence") from None
    except Exception as e:  # tarfile.ReadError, EOFError, zlib errors
        raise MediaError("unreadable", uri, f"cannot read frame archive ({type(e).__name__})") from None


def _tar_frames(uri: str) -> list[bytes]:
    """Frames of one sequence inside a tar(.gz): members under the prefix, sorted by name."""
    import tarfile

    archive, prefix = uri.split("#", 1)
    prefix = posixpath.normpath(prefix.lstrip("./"))
    with _open(archive) as f, tarfile.open(fileobj=f, mode="r:*") as tar:
        out = []
        for m in tar:
            name = posixpath.normpath(m.name.lstrip("./"))
            if m.isfile() and name.startswith(prefix + "/") and name.lower().endswith(IMAGE_EXTS):
                check_encoded_size(m.size, uri, f"archive member {name}")
                out.append((name, tar.extractfile(m).read()))
    return [d for _, d in sorted(out)]


# ---------------------------------------------------------------- video


def _sample_video(uri: str, n_frames: int, max_side: int, threads: int) -> SampledFrames:
    import av

    f = _open(uri)
    try:
        head = f.read(16)
        f.seek(0)
        try:
            container = av.open(f, mode="r")
        except (av.FFmpegError, ValueError, OSError) as e:
            if any(m in head[:12] for m in _MEDIA_MAGIC):
                raise MediaError("decode_error", uri, f"damaged or truncated media ({_why(e)})") from None
            raise MediaError("unreadable", uri, "is not a media file") from None
        with container:
            return _decode_video(container, uri, n_frames, max_side, threads)
    finally:
        f.close()


def _why(e: Exception) -> str:
    msg = getattr(e, "strerror", None) or str(e)
    return " ".join(str(msg).split())[:120]


def _decode_video(container, uri: str, n_frames: int, max_side: int, threads: int) -> SampledFrames:
    import av

    if not container.streams.video:
        raise MediaError("decode_error", uri, "has no video stream")
    stream = container.streams.video[0]
    ctx = stream.codec_context
    if ctx is None or stream.codec is None or not ctx.width:
        raise MediaError("decode_error", uri, "uses a video codec this build cannot decode")
    if threads == 1:  # one CPU per Ray actor: no decoder threads
        ctx.thread_count = 1
    else:
        ctx.thread_type = "AUTO"
        if threads:
            ctx.thread_count = threads
    w, h = ctx.width, ctx.height
    check_pixels(w, h, uri)
    rate = stream.average_rate or stream.guessed_rate or Fraction(25)
    fps = float(rate)
    tb = stream.time_base or Fraction(1, 1000)
    start = stream.start_time or 0
    n_total = stream.frames or 0
    if not n_total and stream.duration:
        n_total = int(round(float(stream.duration * tb) * fps))
    if not n_total and container.duration:
        n_total = int(round(container.duration / 1e6 * fps))
    if not n_total:  # unknown length: count packets (demux only, no decoding), then rewind
        n_total = sum(1 for p in container.demux(stream) if p.size)
        container.seek(0)
    targets = uniform_indices(n_total, n_frames)
    tw, th = target_size(w, h, max_side) if max(w, h) > max_side else (w, h)

    def index_of(frame) -> int:
        pts = frame.pts if frame.pts is not None else frame.dts
        if pts is None:
            return -1
        return int(round(float((pts - start) * tb) * fps))

    wanted = set(targets)
    got: dict[int, np.ndarray] = {}
    n_decoded = 0

    def decode(packets: list, lo: int, hi: int) -> None:
        """Decode a GOP's packets until every wanted index in [lo, hi] is produced."""
        nonlocal n_decoded
        need = {i for i in wanted if lo <= i <= hi and i not in got}
        if not need:
            return
        for p in [*packets, None]:  # None drains frames the decoder still holds back
            for frame in ctx.decode(p):
                n_decoded += 1
                i = index_of(frame)
                if i in wanted and i not in got:
                    got[i] = frame.reformat(
                        width=tw, height=th, format="rgb24", interpolation="AREA"
                    ).to_ndarray()
                    need.discard(i)
            if not need:
                break
        ctx.flush_buffers()

    gop: list = []
    lo = hi = 0
    try:
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            pts = packet.pts if packet.pts is not None else packet.dts
            i = int(round(float((pts - start) * tb) * fps)) if pts is not None else hi
            if packet.is_keyframe and gop:
                decode(gop, lo, hi)
                gop = []
                if len(got) == len(wanted):
                    break
            if not gop:
                lo = hi = i
            lo, hi = min(lo, i), max(hi, i)
            gop.append(packet)
        if gop:
            decode(gop, lo, max(hi, max(wanted, default=0)))
    except av.FFmpegError as e:
        if not got:
            raise MediaError("decode_error", uri, f"stream cannot be decoded ({_why(e)})") from None
    except (ValueError, OSError, EOFError) as e:
        if not got:
            raise MediaError("decode_error", uri, f"stream cannot be decoded ({_why(e)})") from None
    if not got:
        raise MediaError("decode_error", uri, "has no decodable frames")
    idx = sorted(got)
    return SampledFrames([got[i] for i in idx], idx, w, h, fps, n_decoded, n_total, tw / w)

