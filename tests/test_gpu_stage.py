"""The fused GPU scoring stage, run on the CPU (torchcodec's CPU decoder, the same actor code):
the same rows as the CPU path (scores, timeline, clip positions, top crops, heat maps, temporal
fusion, aligned crops), bad media as status rows, and the PyAV fallback."""

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


EXACT = ("media_id", "uri", "label", "dataset", "fingerprint", "status", "error", "n_frames", "n_faces", "n_tracks",
         "model_id", "operating_point", "in_domain", "frame_indices", "frame_times", "frame_tracks",
         "heatmap_frames", "heatmap_kind")


def _same_rows(got: dict, want: dict, crop_levels: int = 1) -> None:
    """The CPU path's rows, column for column: indices, times, tracks and statuses exactly, numbers to 1e-4,
    the encoded top crops decoded within ``crop_levels`` grey levels, heat maps for the same frames."""
    from deepgen.faces.crop import decode_image

    assert list(got) == list(want)
    for m, g in got.items():
        w = want[m]
        assert set(g) == set(w), m
        for c in EXACT:
            assert g[c] == w[c], (m, c)
        for c in ("score", "logit", "uncertainty", "ood_score", "mutual_info", "temporal_score", "features",
                  "frame_scores", "frequency_score", "boundary_score"):
            assert (g[c] is None) == (w[c] is None), (m, c)
            if g[c] is not None:
                assert np.allclose(g[c], w[c], atol=1e-4, rtol=0, equal_nan=True), (m, c)
        for c in ("face_crops", "heatmaps"):
            assert len(g[c] or []) == len(w[c] or []), (m, c)
        for a, b in zip(g["face_crops"] or [], w["face_crops"] or []):
            assert np.abs(decode_image(a).astype(int) - decode_image(b).astype(int)).max() <= crop_levels, m
        for a, b in zip(g["heatmaps"] or [], w["heatmaps"] or []):  # overlays: crop and map within a few levels
            assert np.abs(decode_image(a).astype(int) - decode_image(b).astype(int)).mean() < 1.0, m


def _stages(bundle: str, explain: int = 0, **kw):
    """The fused GPU stage and the CPU path with the same options; both keep PNG crops (lossless), since
    the CPU path scores its stored crops and the fused stage the crops it cut."""
    from deepgen.scoring.pipeline import CpuStage, GpuStage

    gpu = GpuStage(ExtractConfig(threads=1, image_format="png", **kw), bundle, 0, False, explain, in_flight=2)
    cpu = CpuStage(ExtractConfig(threads=1, image_format="png", **kw), bundle, 0, False, explain)
    return gpu, cpu


@pytest.mark.parametrize("sampling", ["uniform", "clips"])
def test_gpu_stage_on_cpu_gives_the_cpu_paths_rows(media, tiny_bundle, sampling):
    if not _torchcodec_loads():
        pytest.skip("torchcodec (or the system FFmpeg it needs) cannot load")
    gpu, cpu = _stages(tiny_bundle, explain=2, frames=6, size=48, sampling=sampling, clip_len=3)
    assert gpu.faces.device == "cpu" and gpu.faces.decoder_cls is not None
    assert gpu.faces.decode(media[0]["uri"], "video").decoder == "torchcodec-cpu"
    got, want = _score(gpu, media), _score(cpu, media)
    assert [got[m]["status"] for m in got] == ["ok", "ok", "no_face", "decode_error", "missing"]
    _same_rows(got, want)
    for m in ("v0", "v1"):
        g = got[m]
        assert g["n_faces"] == 6 and len(g["frame_indices"]) == len(g["frame_scores"]) == 6
        assert np.allclose(g["frame_times"], np.array(g["frame_indices"]) / 25) and len(g["face_crops"]) == 1
    assert sum(len(got[m]["heatmaps"] or []) for m in got) >= 2  # the tiny model flags at least one item
    # what feeds the model and the timeline: the CPU path's crops rows, crops cut on the device
    from deepgen.faces.crop import decode_image

    for row in media:
        fields, crops = gpu.faces.faces(row)
        ref = cpu.faces.crops_row(row)
        assert fields == {k: ref[k] for k in fields}, row["media_id"]
        if sampling == "clips" and crops is not None:  # runs of 3 from keyframes: clip positions 0, 1, 2
            assert sorted(set(fields["clip_pos"])) == [0, 1, 2] and None not in fields["clip_index"]
        if crops is None:
            continue
        diff = np.abs(crops.permute(0, 2, 3, 1).numpy().astype(int)
                      - np.stack([decode_image(b) for b in ref["crops"]]).astype(int))
        assert crops.shape == (6, 3, 48, 48)
        assert diff.max() <= 1 and diff.mean() < 0.25  # enlarged: float bilinear vs OpenCV's fixed point


def test_align_warps_on_the_device_like_the_cpu_path(media, tiny_bundle):
    """``--align`` crops: landmarks refined on the small frame as on the CPU path, the similarity warp on the
    device. Measured on these videos: identical to the CPU path's crops (max and mean difference 0)."""
    if not _torchcodec_loads():
        pytest.skip("torchcodec (or the system FFmpeg it needs) cannot load")
    gpu, cpu = _stages(tiny_bundle, frames=4, size=48, align=True)
    got, want = _score(gpu, media[:3]), _score(cpu, media[:3])
    _same_rows(got, want, crop_levels=0)
    from deepgen.faces.crop import decode_image

    for row in media[:2]:
        fields, crops = gpu.faces.faces(row)
        ref = cpu.faces.crops_row(row)
        diff = np.abs(crops.permute(0, 2, 3, 1).numpy().astype(int)
                      - np.stack([decode_image(b) for b in ref["crops"]]).astype(int))
        assert fields["frame_indices"] == ref["frame_indices"] and crops.shape == (4, 3, 48, 48)
        assert diff.max() == 0  # the warp replays OpenCV's bit for bit on the same frame


def test_device_warp_is_opencvs_bit_for_bit():
    import cv2
    import torch

    from deepgen.scoring.gpu import warp_affine

    rng = np.random.default_rng(0)
    for size, scale in ((48, 0.4), (64, 1.7), (40, 0.9)):  # shrinking, enlarging, reaching past the border
        img = rng.integers(0, 256, (71, 93, 3), dtype=np.uint8)
        a = rng.uniform(-0.6, 0.6)
        m = np.array([[scale * np.cos(a), -scale * np.sin(a), rng.uniform(-30, 5)],
                      [scale * np.sin(a), scale * np.cos(a), rng.uniform(-30, 5)]])
        want = cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        got = warp_affine(torch.from_numpy(img).permute(2, 0, 1), m, size).permute(1, 2, 0).numpy()
        assert np.array_equal(got, want), (size, scale)


@pytest.mark.parametrize("align", [False, True])
def test_video_larger_than_the_sampling_size_is_cropped_like_the_cpu_path(real_faces_dir, tmp_path, tiny_bundle,
                                                                          align):
    """Above the sampling size (here 800x600 against 320) both paths cut the crops from the shrunk frame (the
    crops training saw): the device's area shrink against swscale's, so crops within a few grey levels."""
    if not _torchcodec_loads():
        pytest.skip("torchcodec (or the system FFmpeg it needs) cannot load")
    frames = face_frames(load_rgb(real_faces_dir / "img1.jpg"), 8, 800, 600, seed=3)
    row = {"media_id": "big", "uri": write_video(str(tmp_path / "big.mp4"), frames, gop=4), "media_type": "video",
           "label": 1, "dataset": "t"}
    gpu, cpu = _stages(tiny_bundle, frames=4, size=48, max_side=320, align=align)
    got, want = _score(gpu, [row])["big"], _score(cpu, [row])["big"]
    assert got["status"] == want["status"] == "ok" and got["frame_indices"] == want["frame_indices"]
    assert abs(got["score"] - want["score"]) < 0.02
    from deepgen.faces.crop import decode_image

    a, b = (decode_image(r["face_crops"][0]).astype(int) for r in (got, want))
    assert np.abs(a - b).mean() < 2.0


@pytest.fixture(scope="module")
def temporal_bundle(tmp_path_factory) -> str:
    """An untrained tiny temporal bundle (clips of 3) with its fusion temperatures."""
    import torch

    from deepgen.models import ModelConfig, create_detector
    from deepgen.models.bundle import save_bundle

    torch.manual_seed(0)
    model = create_detector(ModelConfig(arch="temporal", image_size=48, clip_len=3, temporal_dim=16))
    out = str(tmp_path_factory.mktemp("tbundle") / "temporal")
    save_bundle(out, model, temperature=1.5, reference=np.random.default_rng(0).normal(size=(16, model.num_features)),
                datasets=["t"], extras={"temporal": {"frame_temperature": 1.5, "temporal_temperature": 0.7,
                                                     "fusion_temperature": 1.3}})
    return out


def test_gpu_stage_fuses_a_temporal_bundle_like_the_cpu_path(media, temporal_bundle):
    """Clip positions reach temporal fusion as on the CPU path. Aligned crops, which are the CPU path's bit for
    bit, keep this untrained head (it turns a 1e-5 change of a feature into 1e-3 of a score) out of it."""
    if not _torchcodec_loads():
        pytest.skip("torchcodec (or the system FFmpeg it needs) cannot load")
    gpu, cpu = _stages(temporal_bundle, frames=6, size=48, sampling="clips", clip_len=3, align=True)
    got, want = _score(gpu, media[:2]), _score(cpu, media[:2])
    _same_rows(got, want, crop_levels=0)
    assert all(got[m]["temporal_score"] is not None for m in got)


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
        assert got[m]["frame_times"] == want[m]["frame_times"] and got[m]["frame_indices"] == want[m]["frame_indices"]


def test_device_frames_carry_the_cpu_paths_frame_rate(tmp_path):
    """Frame times are index / rate on both paths; torchcodec's own rate of a variable-rate MP4 (60) is not
    the one the CPU path reads (28.4), so the stage reads it as the CPU path does."""
    if not _torchcodec_loads():
        pytest.skip("torchcodec (or the system FFmpeg it needs) cannot load")
    from deepgen.scoring.gpu import DeviceFaces
    from deepgen.video import sample_frames

    frames = noise_frames(6, 32, 24)
    faces = DeviceFaces(ExtractConfig(frames=3))
    for name, kw in (("cfr.mp4", {"fps": 30}), ("vfr.mp4", {"durations_ms": [33, 50, 17]}),
                     ("vfr.mkv", {"durations_ms": [40, 20]})):
        uri = write_video(str(tmp_path / name), frames, **kw)
        got = faces.decode(uri, "video")
        assert got.decoder == "torchcodec-cpu" and got.fps == sample_frames(uri, 3, 640).fps, name


def test_device_resize_is_area_averaging():
    import cv2
    import torch

    from deepgen.scoring.gpu import resize_frames

    img = np.random.default_rng(0).integers(0, 256, (3, 97, 131), dtype=np.uint8)
    got = resize_frames(torch.from_numpy(img)[None], 48, 36)[0].permute(1, 2, 0).numpy().astype(int)
    want = cv2.resize(img.transpose(1, 2, 0), (48, 36), interpolation=cv2.INTER_AREA).astype(int)
    assert np.abs(got - want).max() <= 1 and np.mean(got != want) < 0.01
    half = resize_frames(torch.from_numpy(img[:, :96, :130])[None], 65, 48)[0].permute(1, 2, 0).numpy()
    assert np.array_equal(half, cv2.resize(img[:, :96, :130].transpose(1, 2, 0), (65, 48), interpolation=cv2.INTER_AREA))


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
        assert r["frame_indices"] == local[r["media_id"]]["frame_indices"] and len(r["face_crops"]) == 1
