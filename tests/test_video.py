"""Frame sampling: exact indices, skipped decoding, early resize, frames/images, typed media errors."""

from __future__ import annotations

import io
import os
import tarfile

import cv2
import numpy as np
import pytest

from deepgen.storage import get_fs
from deepgen.testing.faces import write_bad_inputs, write_video
from deepgen.video import MediaError, sample_frames, uniform_indices

BITS, CELL = 9, 24


def marked_frames(n: int, w: int = 320, h: int = 240) -> list[np.ndarray]:
    """Frames that carry their own index as a row of black/white cells."""
    out = []
    for i in range(n):
        f = np.full((h, w, 3), 90, np.uint8)
        for b in range(BITS):
            f[0:CELL, b * CELL : (b + 1) * CELL] = 255 if (i >> b) & 1 else 0
        out.append(f)
    return out


def read_mark(frame: np.ndarray, scale: float = 1.0) -> int:
    c = CELL * scale
    return sum(1 << b for b in range(BITS) if frame[int(c / 2), int((b + 0.5) * c)].mean() > 128)


@pytest.mark.parametrize("gop", [10, 250])
def test_sampled_frames_are_the_uniform_indices(tmp_path, gop):
    path = write_video(str(tmp_path / "m.mp4"), marked_frames(120), gop=gop)
    s = sample_frames(path, n_frames=8, max_side=640, sampling="uniform")
    assert s.indices == uniform_indices(120, 8) == [0, 17, 34, 51, 68, 85, 102, 119]
    assert [read_mark(f) for f in s.frames] == s.indices
    assert (s.width, s.height, s.fps, s.n_total) == (320, 240, 25.0, 120)
    assert all(f.dtype == np.uint8 and f.shape == (240, 320, 3) for f in s.frames)


def test_short_gops_skip_decoding(tmp_path):
    path = write_video(str(tmp_path / "m.mp4"), marked_frames(200), gop=10)
    s = sample_frames(path, n_frames=4, max_side=640, sampling="uniform")
    assert [read_mark(f) for f in s.frames] == s.indices == uniform_indices(200, 4)
    assert s.n_decoded < 100  # only GOPs holding a sample, up to the sample


def test_more_samples_than_frames_returns_every_frame(tmp_path):
    path = write_video(str(tmp_path / "m.mp4"), marked_frames(5))
    s = sample_frames(path, n_frames=32)
    assert s.indices == [0, 1, 2, 3, 4] and [read_mark(f) for f in s.frames] == s.indices


def test_4k_frames_come_back_resized(tmp_path):
    frames = [cv2.resize(f, (3840, 2160), interpolation=cv2.INTER_NEAREST) for f in marked_frames(3)]
    path = write_video(str(tmp_path / "uhd.mp4"), frames, crf=30)
    s = sample_frames(path, n_frames=3, max_side=640)
    assert (s.width, s.height) == (3840, 2160)
    assert len(s.frames) == 3 and all(f.shape == (360, 640, 3) for f in s.frames)
    assert [read_mark(f, scale=640 / 3840 * 12) for f in s.frames] == [0, 1, 2]


def test_bad_inputs_map_to_typed_statuses(tmp_path):
    paths = write_bad_inputs(str(tmp_path / "zoo"))
    expected = {"empty": "unreadable", "text": "unreadable", "truncated": "decode_error",
                "audio_only": "decode_error", "bad_codec": "decode_error"}
    for name, status in expected.items():
        with pytest.raises(MediaError) as e:
            sample_frames(paths[name])
        assert e.value.status == status, name
        assert "\n" not in str(e.value) and paths[name] in str(e.value)
    with pytest.raises(MediaError) as e:
        sample_frames(str(tmp_path / "absent.mp4"))
    assert e.value.status == "missing"


def test_frame_folder_and_image(tmp_path):
    folder = tmp_path / "seq"
    folder.mkdir()
    for i, f in enumerate(marked_frames(10)):
        cv2.imwrite(str(folder / f"{i:04d}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    s = sample_frames(str(folder), n_frames=4, media_type="frames", sampling="uniform")
    assert s.indices == [0, 3, 6, 9] and [read_mark(f) for f in s.frames] == s.indices
    one = sample_frames(str(folder / "0007.png"), media_type="image", max_side=160)
    assert one.indices == [0] and one.frames[0].shape == (120, 160, 3) and (one.width, one.height) == (320, 240)
    with pytest.raises(MediaError) as e:
        sample_frames(str(tmp_path / "nothing"), media_type="frames")
    assert e.value.status == "missing"
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(MediaError) as e:
        sample_frames(str(tmp_path / "junk.png"), media_type="image")
    assert e.value.status == "unreadable"


def test_tar_frame_sequence(tmp_path):
    tar_path = tmp_path / "1.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tar:
        for i, f in enumerate(marked_frames(6)):
            ok, buf = cv2.imencode(".png", cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
            info = tarfile.TarInfo(f"./1/fake/seq_a/{i}.png")
            info.size = len(buf)
            tar.addfile(info, io.BytesIO(buf.tobytes()))
    s = sample_frames(f"{tar_path}#1/fake/seq_a", n_frames=3, media_type="frames", sampling="uniform")
    assert s.indices == uniform_indices(6, 3) and [read_mark(f) for f in s.frames] == s.indices


def test_s3_video_and_missing_key(tmp_path, s3_bucket):
    path = write_video(str(tmp_path / "m.mp4"), marked_frames(40), gop=10)
    fs, key = get_fs(f"{s3_bucket}/videos/m.mp4")
    fs.put(path, key)
    s = sample_frames(f"{s3_bucket}/videos/m.mp4", n_frames=5, sampling="uniform")
    assert [read_mark(f) for f in s.frames] == s.indices == uniform_indices(40, 5)
    with pytest.raises(MediaError) as e:
        sample_frames(f"{s3_bucket}/videos/absent.mp4")
    assert e.value.status == "missing"
    assert os.path.exists(path)
