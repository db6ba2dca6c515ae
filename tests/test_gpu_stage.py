"""The fused GPU scoring stage, run on the CPU (torchcodec's CPU decoder, the same actor code):
the same scores as the CPU path, bad media as status rows, and the PyAV fallback."""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pytest

from deepgen.faces.media import ExtractConfig
from deepgen.testing.faces import face_frames, load_rgb, noise_frames, write_bad_inputs, write_video

pytest.importorskip("torch")


def _torchcodec_loads() -> bool:
    try:
        from torchcodec.decoders import VideoDecoder  # noqa: F401
    except Exception:
        return False
    return True


@pytest.fixture(scope="module")
def media(real_faces_dir, tmp_path_factory):
    d = tmp_path_factory.mktemp("gpu_media")
    rows = []
    for i, name in enumerate(["img1.jpg", "img10.jpg"]):
        frames = face_frames(load_rgb(real_faces_dir / name), 12, 160, 120, seed=i)
        rows.append({"media_id": f"v{i}", "uri": write_video(str(d / f"v{i}.mp4"), frames, gop=4),
                     "media_type": "video", "label": i, "dataset": "t"})
    rows.append({"media_id": "noise", "uri": write_video(str(d / "n.mp4"), noise_frames(6, 64, 48)),
                 "media_type": "video", "label": 0, "dataset": "t"})
    zoo = write_bad_inputs(str(d / "zoo"))
    rows.append({"media_id": "trunc", "uri": zoo["truncated"], "media_type": "video", "label": 0, "dataset": "t"})
    rows.append({"media_id": "gone", "uri": str(d / "absent.mp4"), "media_type": "video", "label": 0,
                 "dataset": "t"})
    return rows


def _score(stage, rows: list[dict]) -> dict:
    keep = ("media_id", "uri", "media_type", "label", "dataset", "fingerprint", "status", "error")
    table = pa.Table.from_pylist([{k: r.get(k) for k in keep} for r in rows])
    return {r["media_id"]: r for r in stage(table).to_pylist()}


@pytest.mark.parametrize("sampling", ["uniform", "clips"])
def test_gpu_stage_on_cpu_scores_like_the_cpu_path(media, tiny_bundle, sampling):
    if not _torchcodec_loads():
        pytest.skip("torchcodec (or the system FFmpeg it needs) cannot load")
    from deepgen.scoring.pipeline import CpuStage, GpuStage

    cfg = ExtractConfig(frames=6, size=48, threads=1, sampling=sampling, clip_len=3)
    gpu = GpuStage(cfg, tiny_bundle, 0, False, in_flight=2)
    assert gpu.faces.device == "cpu" and gpu.faces.decoder_cls is not None
    assert gpu.faces.decode(media[0]["uri"], "video").decoder == "torchcodec-cpu"
    # the CPU path with lossless crops: the fused stage hands its crops to the model without re-encoding
    cpu = CpuStage(ExtractConfig(frames=6, size=48, threads=1, sampling=sampling, clip_len=3, image_format="png"),
                   tiny_bundle, 0, False)
    got, want = _score(gpu, media), _score(cpu, media)
    assert list(got) == [r["media_id"] for r in media]
    for m in got:
        g, w = got[m], want[m]
        assert (g["status"], g["n_frames"], g["n_faces"], g["n_tracks"]) == (
            w["status"], w["n_frames"], w["n_faces"], w["n_tracks"]), m
    assert [got[m]["status"] for m in got] == ["ok", "ok", "no_face", "decode_error", "missing"]
    for m in ("v0", "v1"):
        assert got[m]["n_faces"] == 6
        assert abs(got[m]["score"] - want[m]["score"]) < 1e-4 and abs(got[m]["logit"] - want[m]["logit"]) < 1e-4
        assert np.allclose(got[m]["features"], want[m]["features"], atol=1e-3)
    # the model inputs themselves: crops cut on the device match the CPU path's to one grey level
    from deepgen.faces.crop import decode_image
    from deepgen.faces.media import extract_media

    for row in media[:2]:
        _, crops, tracks = gpu.faces.faces(row)
        faces, _ = extract_media(row, cpu.faces.cfg, cpu.faces.detector)
        ref = np.stack([decode_image(f["image"]) for f in faces]).astype(int)
        diff = np.abs(crops.permute(0, 2, 3, 1).numpy().astype(int) - ref)
        assert crops.shape == (6, 3, 48, 48) and tracks == [f["track_id"] for f in faces]
        assert diff.max() <= 1 and diff.mean() < 0.25  # area averaging in float32 vs OpenCV: rounding only


def test_gpu_stage_falls_back_to_pyav_with_one_log_line(media, tiny_bundle, caplog, monkeypatch):
    from deepgen.scoring import gpu
    from deepgen.scoring.pipeline import CpuStage, GpuStage

    monkeypatch.setattr(gpu, "_said", set())
    with caplog.at_level(logging.WARNING, logger="deepgen.scoring.gpu"):
        monkeypatch.setitem(__import__("sys").modules, "torchcodec.decoders", None)
        stage = GpuStage(ExtractConfig(frames=4, size=48, threads=1), tiny_bundle, 0, False, in_flight=2)
        again = gpu.DeviceFaces(ExtractConfig(frames=4, size=48, threads=1))
    assert stage.faces.decoder_cls is None and again.decoder_cls is None
    lines = [r.getMessage() for r in caplog.records if r.name == "deepgen.scoring.gpu"]
    assert len(lines) == 1 and "decodes with PyAV on the CPU" in lines[0]
    assert stage.faces.decode(media[0]["uri"], "video").decoder == "pyav"
    cpu = CpuStage(ExtractConfig(frames=4, size=48, threads=1, image_format="png"), tiny_bundle, 0, False)
    got, want = _score(stage, media[:2]), _score(cpu, media[:2])
    for m in got:
        assert got[m]["n_faces"] == want[m]["n_faces"] == 4
        assert abs(got[m]["score"] - want[m]["score"]) < 1e-4


def test_device_resize_is_area_averaging():
    import cv2
    import torch

    from deepgen.scoring.gpu import resize_frames

    img = np.random.default_rng(0).integers(0, 256, (3, 97, 131), dtype=np.uint8)
    got = resize_frames(torch.from_numpy(img)[None], 48, 36)[0].permute(1, 2, 0).numpy().astype(int)
    want = cv2.resize(img.transpose(1, 2, 0), (48, 36), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(got - want).max() <= 1 and np.mean(got != want) < 0.01


def test_score_with_gpu_decode_runs_the_fused_stage_through_ray(ray_session, media, tiny_bundle):
    """``deepgen score --gpu-decode`` on a CPU-only cluster: the fused stage on CPU actors, one row per
    item in input order, the same rows as the stage called in this process."""
    if not _torchcodec_loads():
        pytest.skip("torchcodec (or the system FFmpeg it needs) cannot load")
    from deepgen.scoring.pipeline import GpuStage, ScoreConfig, score_table_rows

    cfg = ScoreConfig(frames=4, gpu_decode=True, face_workers=1, model_batch=2)
    fused = score_table_rows(media, tiny_bundle, cfg).to_pylist()
    assert [r["media_id"] for r in fused] == [r["media_id"] for r in media]
    assert [r["status"] for r in fused] == ["ok", "ok", "no_face", "decode_error", "missing"]
    assert [r["n_faces"] for r in fused] == [4, 4, 0, 0, 0]
    local = _score(GpuStage(ExtractConfig(frames=4, size=48, threads=1), tiny_bundle, 0, False), media)
    for r in fused[:2]:
        assert abs(r["score"] - local[r["media_id"]]["score"]) < 1e-9
