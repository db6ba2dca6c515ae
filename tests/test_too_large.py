"""Media over the size limits become ``too_large`` status rows, never an out-of-memory crash."""

from __future__ import annotations

import gzip
import io
import struct
import tarfile
import zlib

import cv2
import numpy as np
import pytest

from deepgen import video
from deepgen.datasets.wilddeepfake import read_frame_sequence
from deepgen.faces.media import ExtractConfig, extract_media
from deepgen.schema import MEDIA_STATUSES


def _png_1bit(width: int, height: int) -> bytes:
    """A valid 1-bit grayscale PNG of ``width`` x ``height`` (small to store, huge once decoded)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _row(uri: str, media_type: str) -> dict:
    return {"media_id": f"t/{media_type}", "uri": uri, "media_type": media_type, "label": 0, "dataset": "t"}


CFG = ExtractConfig(frames=4, size=48)


def test_status_is_part_of_the_contract():
    assert "too_large" in MEDIA_STATUSES


def test_image_over_the_pixel_limit(tmp_path):
    path = tmp_path / "huge.png"
    path.write_bytes(_png_1bit(12_000, 10_000))  # 120 MP, about 20 kB on disk
    faces, status = extract_media(_row(str(path), "image"), CFG)
    assert faces == [] and status["status"] == "too_large"
    assert "120 MP" in status["error"] and "DEEPGEN_MAX_IMAGE_PIXELS" in status["error"]
    seq = tmp_path / "seq"
    seq.mkdir()
    (seq / "000.png").write_bytes(path.read_bytes())
    assert extract_media(_row(str(seq), "frames"), CFG)[1]["status"] == "too_large"


def test_files_and_members_over_the_byte_limit(tmp_path, monkeypatch):
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), np.full((64, 64, 3), 128, np.uint8))
    assert extract_media(_row(str(small), "image"), CFG)[1]["status"] == "no_face"
    monkeypatch.setattr(video, "MAX_ENCODED_BYTES", 100)  # the limit is configurable
    status = extract_media(_row(str(small), "image"), CFG)[1]
    assert status["status"] == "too_large" and "MiB limit" in status["error"]


def test_archive_member_over_the_limit_is_never_read(tmp_path):
    """A WildDeepfake member whose header says 3 GiB: a status row, before any of it is read."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        ok = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
        info = tarfile.TarInfo("./1/fake/0/0.png")
        info.size = len(ok)
        tar.addfile(info, io.BytesIO(ok))
    big = tarfile.TarInfo("./1/fake/0/1.png")
    big.size = 3 << 30
    data = buf.getvalue().rstrip(b"\x00")  # drop the end-of-archive blocks; append only the huge member's header
    data += b"\x00" * (-len(data) % 512) + big.tobuf(format=tarfile.GNU_FORMAT) + b"\x00" * 4096
    archive = tmp_path / "1.tar.gz"
    archive.write_bytes(gzip.compress(data))
    uri = f"{archive}#1/fake/0"
    with pytest.raises(video.MediaError) as e:
        read_frame_sequence(uri)
    assert e.value.status == "too_large"
    faces, status = extract_media(_row(uri, "frames"), CFG)
    assert faces == [] and status["status"] == "too_large" and "archive member 1/fake/0/1.png" in status["error"]
