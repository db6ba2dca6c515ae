"""Decode media and sample frames, decoding only what the samples need, resized early.

Two samplings. ``uniform``: frames spread evenly; videos are demuxed packet by packet and a GOP
(keyframe to keyframe) is decoded only when a sampled frame falls inside it, up to its last sampled
frame. ``clips``: runs of ``clip_len`` consecutive frames, each starting at a keyframe, spread over
the video (:func:`clip_runs`); the decoder seeks to each run's keyframe and decodes only the run.
Only sampled frames are converted, straight to the reduced size, so no full-resolution RGB array
is ever built.

A frame's index is its rank in presentation order (by timestamp, so variable frame rates give the
requested count), or its place in the decoder's output for raw streams without timestamps. Where
seeking fails or lands off a keyframe (raw ``.h264``, some MPEG-TS), clips decode forward instead.
Frames come out upright: the stream's display matrix (phones store portrait video sideways) is
applied by :func:`upright`.
"""

from __future__ import annotations

import errno
import os
import posixpath
import re
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
    """A media item that cannot be used; ``status`` is missing, unreadable, decode_error or too_large, or
    error where the cause is outside the item (it cannot be accessed now)."""

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
    except Image.DecompressionBombError:  # over PIL's own limit: read the true size from the header alone
        return _header_size(data)
    except Exception:
        return None


def _header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) as the first PIL format plugin that accepts ``data`` reads it from the header,
    without PIL's decompression-bomb check (``Image.open`` applies that check after the same plugin call)."""
    import io

    from PIL import Image

    Image.init()
    for fmt in Image.ID:
        factory, accept = Image.OPEN[fmt]
        if accept and not accept(data[:16]):
            continue
        try:
            return factory(io.BytesIO(data), None).size
        except Exception:
            continue
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
    runs: list[tuple[int, int]] | None = None  # clips sampling: (start, length) of each run; None under uniform
    off_key: int = 0  # clips sampling: runs that could not start at a keyframe (GOPs too long)


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


SAMPLINGS = ("uniform", "clips")
# clips: as accurate as uniform with the same bundles (README, "clips against uniform") and 1.4-3x cheaper
DEFAULT_SAMPLING = "clips"


def check_sampling(frames: int, sampling: str = DEFAULT_SAMPLING, clip_len: int = 8) -> None:
    """Refuse sampling options no media could satisfy, in one sentence naming the option (run before any work:
    an item sampled with them would fail through no fault of its own)."""
    def whole(v) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    if not whole(frames) or frames < 1:
        raise DeepgenError(f"--frames is {frames!r}; sample 1 or more frames per video.")
    if sampling not in SAMPLINGS:
        raise DeepgenError(f"--sampling {sampling!r} is unknown; use {' or '.join(SAMPLINGS)}.")
    if not whole(clip_len) or clip_len < 1:
        raise DeepgenError(f"--clip-len is {clip_len!r}; give 1 or more frames per run.")


def clip_runs(keyframes, n_total: int, n: int, clip_len: int) -> tuple[list[tuple[int, int]], int]:
    """Plan ``n`` frames of ``range(n_total)`` as runs ``(start, length)`` of ``clip_len`` consecutive
    frames (the last run shorter when ``clip_len`` does not divide ``n``), spread evenly over the whole
    video, each starting at a keyframe when one lies near its even spot (within half the spacing).

    A run with no keyframe near its spot (GOPs longer than the spacing) starts at the spot itself, so
    the runs cover the video whatever its GOP; it is decoded forward from the keyframe before it, with
    the frames in between that no other frame refers to skipped (see :class:`_Decoder`). The second
    value counts those runs. Runs are sorted and never overlap. Shared by frame extraction, the GPU
    stage and temporal models.
    """
    if n_total <= 0 or n <= 0:
        return [], 0
    n = min(n, n_total)
    t = max(1, min(clip_len, n))
    lengths = [t] * (n // t) + ([n % t] if n % t else [])
    m = len(lengths)
    slack = n_total - n
    near = n_total / m / 2  # a keyframe this close to a run's spot wins
    keys = sorted({int(k) for k in keyframes if 0 <= k < n_total})
    runs, off_key, lo = [], 0, 0
    for i, length in enumerate(lengths):
        spot = sum(lengths[:i]) + (round(i * slack / (m - 1)) if m > 1 else slack // 2)
        hi = n_total - sum(lengths[i:])  # room left for this run and the ones after it
        free = [k for k in keys if lo <= k <= hi]
        key = min(free, key=lambda k: (abs(k - spot), k)) if free else None
        if key is not None and abs(key - spot) <= near:
            start = key
        else:
            start = min(max(spot, lo), hi)
            off_key += 1
        runs.append((start, length))
        lo = start + length
    return runs, off_key


def run_positions(indices: list[int], runs: list[tuple[int, int]] | None) -> list[tuple[int | None, int | None]]:
    """(run number, position in the run) of each frame index; (None, None) without runs or outside them."""
    out = []
    for i in indices:
        hit = (None, None)
        for c, (start, length) in enumerate(runs or ()):
            if start <= i < start + length:
                hit = (c, i - start)
                break
        out.append(hit)
    return out


def sample_frames(
    uri: str, n_frames: int = 32, max_side: int = 640, media_type: str = "video", threads: int = 0,
    sampling: str = DEFAULT_SAMPLING, clip_len: int = 8,
) -> SampledFrames:
    """Sample ``n_frames`` frames from a video, frame folder/sequence or image: spread evenly
    (``uniform``) or as keyframe-anchored runs of ``clip_len`` frames (``clips``, see :func:`clip_runs`).

    Raises :class:`MediaError` (status missing|unreadable|decode_error) for media that can't be used.
    """
    uri = str(uri)
    check_sampling(n_frames, sampling, clip_len)
    clips = clip_len if sampling == "clips" else 0
    if media_type == "video":
        return _sample_video(uri, n_frames, max_side, threads, clips)
    if media_type == "frames":
        return _sample_sequence(uri, n_frames, max_side, clips)
    if media_type == "image":
        data = _read_all(uri, max_bytes=MAX_ENCODED_BYTES)
        frame = _decode_image(data, uri)
        h, w = frame.shape[:2]
        out = _resized([frame], [0], w, h, 0.0, 1, 1, max_side)
        out.runs = [(0, 1)] if clips else None
        return out
    raise DeepgenError(f"media_type {media_type!r} of {uri} is unknown; use video, frames or image.")


# ---------------------------------------------------------------- opening


def _open(uri: str, max_bytes: int | None = None):
    """Open ``uri`` for binary reading, mapping absence, emptiness and (over ``max_bytes``) size to MediaError."""
    fs, path = get_fs(uri)
    try:
        info = fs.info(path)
    except FileNotFoundError:
        raise MediaError("missing", uri, "no such file or key") from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise MediaError("unreadable", uri, "is a symlink loop; point the link at a real file") from None
        # permission denied, unreachable endpoint: the environment's doing, so status error (tried again)
        raise MediaError("error", uri, f"cannot be accessed ({_why(e)}); fix the access and run again") from None
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
    # what was decoded, whatever its name says: formats PIL cannot read (Radiance HDR, ...) skip the header check
    check_pixels(img.shape[1], img.shape[0], uri)
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


def _sequence_indices(n_total: int, n_frames: int, clips: int) -> tuple[list[int], list | None]:
    """Uniform indices, or (``clips`` > 0) the frames of runs of that length: every image is a keyframe."""
    if not clips:
        return uniform_indices(n_total, n_frames), None
    runs, _ = clip_runs(range(n_total), n_total, n_frames, clips)
    return [s + j for s, length in runs for j in range(length)], runs


def _sample_sequence(uri: str, n_frames: int, max_side: int, clips: int = 0) -> SampledFrames:
    """A folder of images, or a tar sequence ``<archive uri>#<member prefix>``."""
    if "#" in uri:
        blobs = _read_tar_sequence(uri)
        idx, runs = _sequence_indices(len(blobs), n_frames, clips)
        datas = [blobs[i] for i in idx]
    else:
        fs, path = get_fs(uri)
        if not fs.exists(path):
            raise MediaError("missing", uri, "no such folder or key prefix")
        if not fs.isdir(path):
            raise MediaError("unreadable", uri, "is not a folder of frames")
        found = fs.find(path, detail=True)
        files = sorted(p for p in found if p.lower().endswith(IMAGE_EXTS))
        idx, runs = _sequence_indices(len(files), n_frames, clips)
        for i in idx:
            check_encoded_size(int(found[files[i]].get("size") or 0), uri, f"frame {posixpath.basename(files[i])}")
        datas = [fs.cat_file(files[i]) for i in idx]
    if not datas:
        raise MediaError("decode_error", uri, "holds no image frames")
    frames = [_decode_image(d, uri) for d in datas]
    h, w = frames[0].shape[:2]
    frames = [f if f.shape[:2] == (h, w) else _fit(f, w, h) for f in frames]
    out = _resized(frames, idx, w, h, 0.0, len(frames), len(blobs) if "#" in uri else len(files), max_side)
    out.runs = runs
    return out


def _fit(frame: np.ndarray, w: int, h: int) -> np.ndarray:
    import cv2

    return cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA)


def _read_tar_sequence(uri: str) -> list[bytes]:
    try:
        frames = _tar_frames(uri)
    except MediaError:
        raise
    except FileNotFoundError:
        raise MediaError("missing", uri, "no such frame archive") from None
    except Exception as e:  # tarfile.ReadError, EOFError, zlib errors
        raise MediaError("unreadable", uri, f"cannot read frame archive ({type(e).__name__})") from None
    if not frames:
        raise MediaError("unreadable", uri, "holds no frames; expected an archive member folder of image files")
    return frames


def natural_key(name: str) -> list:
    """Sort key that orders ``frame2`` before ``frame10``."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _tar_frames(uri: str) -> list[bytes]:
    """Frames of one sequence inside a tar(.gz): the image members of the member folder, in natural order.

    Streamed: only that folder's members are read into memory (datasets' WildDeepfake reader alike).
    """
    import tarfile

    archive, prefix = uri.split("#", 1)
    prefix = posixpath.normpath(prefix.strip("/").lstrip("./"))
    with _open(archive) as f, tarfile.open(fileobj=f, mode="r|*") as tar:
        out = []
        for m in tar:
            name = posixpath.normpath(m.name.lstrip("./"))
            if m.isfile() and posixpath.dirname(name) == prefix and name.lower().endswith(IMAGE_EXTS):
                check_encoded_size(m.size, uri, f"archive member {name}")
                out.append((posixpath.basename(name), tar.extractfile(m).read()))
    return [d for _, d in sorted(out, key=lambda x: natural_key(x[0]))]


# ---------------------------------------------------------------- video


def _sample_video(uri: str, n_frames: int, max_side: int, threads: int, clips: int = 0) -> SampledFrames:
    import contextlib

    import av

    f = _open(uri)
    with f, contextlib.ExitStack() as opened:
        head = f.read(16)

        def reopen():
            """A fresh demuxer from the file's start (raw streams such as .h264 cannot seek back)."""
            f.seek(0)
            return opened.enter_context(av.open(f, mode="r"))

        try:
            container = reopen()
        except (av.FFmpegError, ValueError, OSError) as e:
            if any(m in head[:12] for m in _MEDIA_MAGIC):
                raise MediaError("decode_error", uri, f"damaged or truncated media ({_why(e)})") from None
            raise MediaError("unreadable", uri, "is not a media file") from None
        return _decode_video(container, reopen, uri, n_frames, max_side, threads, clips)


def _why(e: Exception) -> str:
    msg = getattr(e, "strerror", None) or str(e)
    return " ".join(str(msg).split())[:120]


def _configure(ctx, threads: int) -> None:
    if threads == 1:  # one CPU per Ray actor: no decoder threads
        ctx.thread_count = 1
    else:
        ctx.thread_type = "AUTO"
        if threads:
            ctx.thread_count = threads


def _decode_video(container, reopen, uri: str, n_frames: int, max_side: int, threads: int,
                  clips: int = 0) -> SampledFrames:
    import av

    if not container.streams.video:
        raise MediaError("decode_error", uri, "has no video stream")
    stream = container.streams.video[0]
    ctx = stream.codec_context
    if ctx is None or stream.codec is None or not ctx.width:
        raise MediaError("decode_error", uri, "uses a video codec this build cannot decode")
    w, h = ctx.width, ctx.height
    check_pixels(w, h, uri)
    fps = float(stream.average_rate or stream.guessed_rate or Fraction(25))
    tw, th = target_size(w, h, max_side) if max(w, h) > max_side else (w, h)
    dec = _Decoder(tw, th, threads)
    n_total, runs, off_key = 0, None, 0
    try:
        if clips:
            n_total, runs, off_key = dec.clips(container, reopen, n_frames, clips)
        else:
            n_total = dec.uniform(container, reopen, n_frames)
    except (av.FFmpegError, ValueError, OSError, EOFError) as e:
        if not dec.got:
            raise MediaError("decode_error", uri, f"stream cannot be decoded ({_why(e)})") from None
    if not dec.got:
        raise MediaError("decode_error", uri, "has no decodable frames")
    idx = sorted(dec.got)
    if dec.quarter_turns % 2:  # shown turned a quarter: the size a player shows
        w, h, tw, th = h, w, th, tw
    return SampledFrames([dec.got[i] for i in idx], idx, w, h, fps, dec.n_decoded, n_total or len(idx), tw / w,
                         runs, off_key)


def upright(frame, width: int, height: int) -> tuple[np.ndarray, int]:
    """A decoded frame as RGB at ``width`` x ``height`` (its stored size), turned the way its display
    matrix says players show it (phones store portrait video sideways); also the quarter turns applied."""
    rgb = frame.reformat(width=width, height=height, format="rgb24", interpolation="AREA").to_ndarray()
    turns = int(round((getattr(frame, "rotation", 0) or 0) / 90)) % 4  # counter-clockwise, as PyAV reports it
    return (np.ascontiguousarray(np.rot90(rgb, turns)) if turns else rgb), turns


class _Decoder:
    """Decodes one video's sampled frames into ``got`` (frame index -> upright RGB) as they come.

    A frame's index is its rank in presentation order: the rank of its timestamp among the packets'
    (exact under variable frame rates), or its place in the decoder's output where packets carry no
    timestamps (raw elementary streams, decoded from the start).
    """

    def __init__(self, width: int, height: int, threads: int):
        self.size, self.threads = (width, height), threads
        self.got: dict[int, np.ndarray] = {}
        self.n_decoded = 0
        self.quarter_turns = 0
        self.skipping: dict[int, bool] = {}  # id(codec context) -> skipping non-reference frames now

    def skip_unless(self, ctx, wanted: bool) -> None:
        """Before a packet goes in: decode it when its frame is wanted, else only if other frames refer to it
        (``skip_frame`` NONREF; a decoder that cannot skip decodes it, and the frame is dropped as before).
        Frames kept are bit-exact either way: a skipped frame is one no other frame is predicted from."""
        if self.skipping.get(id(ctx)) != (not wanted):
            ctx.skip_frame = "DEFAULT" if wanted else "NONREF"
            self.skipping[id(ctx)] = not wanted

    def keep(self, i: int, frame) -> None:
        self.got[i], self.quarter_turns = upright(frame, *self.size)

    def uniform(self, container, reopen, n_frames: int) -> int:
        """Frames spread evenly; a GOP is decoded only when a sampled frame falls in it. Returns the count."""
        import bisect

        stream = container.streams.video[0]
        n_total = stream.frames or 0
        if not n_total:  # no frame count in the header (MKV, WebM, MPEG-TS): count packets, demux only
            n_total = sum(1 for p in container.demux(stream) if p.size)
            container = reopen()
            stream = container.streams.video[0]
        wanted = set(uniform_indices(n_total, n_frames))
        ctx = stream.codec_context
        _configure(ctx, self.threads)
        seen: list[int] = []  # timestamps of the packets demuxed so far, sorted
        gop: list = []
        for packet in container.demux(stream):
            if not packet.size:
                continue
            t = packet.pts if packet.pts is not None else packet.dts
            if t is None:  # no timestamps: decode from the start, frames counted in output order
                self.forward(reopen(), wanted)
                return n_total
            if packet.is_keyframe and gop:
                self._gop(ctx, gop, seen, wanted, last=False)
                gop = []
                if wanted <= self.got.keys():
                    break
            bisect.insort(seen, int(t))
            gop.append(packet)
        if gop:
            self._gop(ctx, gop, seen, wanted, last=True)
        return n_total

    def _gop(self, ctx, packets: list, seen: list[int], wanted: set[int], last: bool) -> None:
        """Decode a GOP's packets until every wanted frame in it is produced (the last GOP: all the rest)."""
        import bisect

        stamps = [int(p.pts if p.pts is not None else p.dts) for p in packets]
        lo, hi = bisect.bisect_left(seen, min(stamps)), bisect.bisect_left(seen, max(stamps))
        need = {i for i in wanted if (lo <= i and (last or i <= hi)) and i not in self.got}
        if not need:
            return
        for p, t in [*zip(packets, stamps), (None, None)]:  # None drains frames the decoder still holds back
            self.skip_unless(ctx, p is None or bisect.bisect_left(seen, t) in need)
            for frame in ctx.decode(p):
                self.n_decoded += 1
                t = frame.pts if frame.pts is not None else frame.dts
                i = bisect.bisect_left(seen, t) if t is not None else -1
                if i in need and i < len(seen) and seen[i] == t:
                    self.keep(i, frame)
                    need.discard(i)
            if not need:
                break
        ctx.flush_buffers()

    def clips(self, container, reopen, n_frames: int, clip_len: int) -> tuple[int, list, int]:
        """Runs of :func:`clip_runs`: a seek to the keyframe at or before each run, then forward to the
        run's frames, skipping the unreferenced frames between; where seeking fails or lands off a
        keyframe (raw streams, some MPEG-TS), the frames left are decoded forward from the start.
        Returns (frame count, runs, runs off a keyframe)."""
        stamps, keys = _scan(container, container.streams.video[0])
        n_total = len(stamps)
        runs, off_key = clip_runs(keys, n_total, n_frames, clip_len)
        wanted = {s + j for s, length in runs for j in range(length)}
        timed = None not in stamps
        rank = {t: i for i, t in enumerate(sorted(stamps))} if timed else None
        if timed:
            self._seek_runs(reopen(), sorted(stamps), keys, runs, rank)
        if not wanted <= self.got.keys():
            self.forward(reopen(), wanted, rank)
        return n_total, runs, off_key

    def _seek_runs(self, container, pts: list[int], keys: list[int], runs: list, rank: dict) -> None:
        """Seek to each run's keyframe and decode its frames; stop at the first seek that fails."""
        import bisect

        import av

        stream = container.streams.video[0]
        ctx = stream.codec_context
        _configure(ctx, self.threads)
        groups: dict[int, set[int]] = {}  # keyframe to seek to -> frames wanted from it on
        for start, length in runs:
            k = keys[max(0, bisect.bisect_right(keys, start) - 1)] if keys else 0
            groups.setdefault(k, set()).update(range(start, start + length))
        for k in sorted(groups):
            need = groups[k] - self.got.keys()
            last = max(need, default=0) + REORDER_SLACK  # past this, a wanted frame never came: give up
            try:
                container.seek(pts[k], stream=stream, backward=True, any_frame=False)
            except (av.FFmpegError, OSError):
                return
            ctx.flush_buffers()
            first = True
            for p in _packets_then_drain(container, stream):
                if first and p is not None:
                    first = False
                    if not p.is_keyframe:  # the seek landed past the keyframe: seeking is unreliable here
                        ctx.flush_buffers()
                        return
                self.skip_unless(ctx, p is None or rank.get(_stamp(p)) in need)
                for frame in ctx.decode(p):
                    self.n_decoded += 1
                    t = frame.pts if frame.pts is not None else frame.dts
                    i = rank.get(int(t)) if t is not None else None
                    if i in need:
                        self.keep(i, frame)
                        need.discard(i)
                    elif i is not None and i > last:
                        need.clear()
                if not need:
                    break
            ctx.flush_buffers()

    def forward(self, container, wanted: set[int], rank: dict | None = None) -> None:
        """Decode from the start until every wanted frame not yet kept is produced."""
        stream = container.streams.video[0]
        ctx = stream.codec_context
        _configure(ctx, self.threads)
        need = set(wanted) - self.got.keys()
        order = 0
        for p in _packets_then_drain(container, stream):
            if not need:
                break
            if rank is not None:  # frames known by timestamp: skip the unreferenced ones not wanted
                self.skip_unless(ctx, p is None or rank.get(_stamp(p)) in need)
            for frame in ctx.decode(p):
                self.n_decoded += 1
                if rank is None:
                    i, order = order, order + 1
                else:
                    t = frame.pts if frame.pts is not None else frame.dts
                    i = rank.get(int(t)) if t is not None else None
                if i in need:
                    self.keep(i, frame)
                    need.discard(i)


REORDER_SLACK = 32  # frames a decoder may run ahead of the presentation order (B-frame reordering)


@dataclass
class PacketScan:
    """A video stream's frames in presentation order, from one demux pass (no decoding)."""

    pts: list[int]  # presentation timestamps, sorted: frame i has pts[i]
    keyframes: list[int]  # frame indices of the keyframes


def _scan(container, stream) -> tuple[list, list[int]]:
    """Each packet's timestamp (None where it has none) in demux order, and the keyframes' frame indices
    (ranks of their timestamps; without timestamps, their places in demux order). Demux only."""
    stamps, key_stamps, key_places = [], [], []
    for p in container.demux(stream):
        if p.size == 0:
            continue
        t = p.pts if p.pts is not None else p.dts
        if p.is_keyframe:
            key_places.append(len(stamps))
            if t is not None:
                key_stamps.append(int(t))
        stamps.append(None if t is None else int(t))
    if None in stamps:
        return stamps, key_places
    rank = {t: i for i, t in enumerate(sorted(set(stamps)))}
    stamps = sorted(set(stamps))
    return stamps, sorted({rank[t] for t in key_stamps})


def scan_packets(container, stream) -> PacketScan | None:
    """Demux the stream once (packets only, nothing decoded) for its frame timestamps and keyframes.

    Exact under variable frame rates (frames are ranked by timestamp). Leaves the container at its end.
    None when packets lack timestamps.
    """
    stamps, keys = _scan(container, stream)
    return None if None in stamps else PacketScan(stamps, keys)


def _stamp(packet) -> int | None:
    """A packet's presentation timestamp (its decode timestamp where it has none)."""
    t = packet.pts if packet.pts is not None else packet.dts
    return None if t is None else int(t)


def _packets_then_drain(container, stream):
    """The stream's packets from the current position, then None (drains the decoder at the end)."""
    for p in container.demux(stream):
        if p.size:
            yield p
    yield None
