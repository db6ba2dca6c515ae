"""Decode cost of frame sampling: ``uniform`` against keyframe-anchored ``clips``, and where extraction
time goes, on 1080p and 360p H.264 clips at GOPs of 25 and 250 frames (one thread, as a Ray actor).
All times are CPU seconds of the one thread (``time.process_time``), so they hold on a shared machine;
on an idle core they equal wall time.

Per setting: frames decoded and seconds per video for decoding every frame, ``uniform`` and ``clips``
sampling; the keyframe index by a demux pass against a ``skip_frame`` keyframes-only decode;
``extract_media`` (YuNet) with both samplings, split into decode, colour conversion (+ resize),
detection, crop, encode and the rest; and the limit ``frames needed / decode fps + detection`` beside
the measured figure. NVDEC (torchcodec on CUDA) rows run only where a GPU and torchcodec are present.

    .venv/bin/python benchmarks/decode.py [--videos 2] [--frames 32] [--clip-len 8] [--json OUT]
    .venv/bin/python benchmarks/decode.py --stages N   # ds.stats() of the two-stage scoring topology on CPU
    .venv/bin/python benchmarks/decode.py --skip-modes  # what skipping more between the runs would cost in pixels

``--skip-modes`` decodes the frames ``clips`` keeps with the frames between its runs skipped by each
``skip_frame`` mode (NONREF ships; BIDIR also skips the B-frames other frames refer to) and reports
CPU s/video, frames decoded and how far the kept frames are from decoding every frame.

``--stages N`` runs the pipeline the GPU path uses (FaceStage actors -> ModelStage actor, here with
``num_gpus=0``) over N 360p clips and prints Ray Data's per-operator stats, to see where actors wait.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deepgen.faces import ExtractConfig, extract_media, get_detector  # noqa: E402
from deepgen.testing.faces import background, load_rgb, write_video  # noqa: E402
from deepgen.video import sample_frames  # noqa: E402

FACES_DIR = Path(os.environ.get("DEEPGEN_FACES_DIR", ROOT.parent / "shared" / "data" / "real_faces"))
SIZES = {"1080p": (1920, 1080), "360p": (640, 360)}


def roll_zoom_frames(photo: np.ndarray, n: int, w: int, h: int, seed: int = 0):
    """A face photo on a background, filmed with a slow roll (+-8 degrees) and a 15% zoom."""
    import cv2

    bg = background(w, h, seed)
    fh = int(h * 0.55)
    fw = int(photo.shape[1] * fh / photo.shape[0])
    base = bg.copy()
    y, x = (h - fh) // 2, (w - fw) // 2
    base[y : y + fh, x : x + fw] = cv2.resize(photo, (fw, fh), interpolation=cv2.INTER_AREA)
    for i in range(n):
        m = cv2.getRotationMatrix2D((w / 2, h / 2), 8 * np.sin(i / 40 + seed), 1.0 + 0.15 * i / n)
        yield cv2.warpAffine(base, m, (w, h), borderMode=cv2.BORDER_REFLECT)


def write_clip(path: str, frames, w: int, h: int, gop: int, fps: int = 25) -> str:
    """H.264 (x264 veryfast, crf 23) with keyframes exactly every ``gop`` frames (no scene cuts)."""
    return write_video(path, frames, fps=fps, crf=23, gop=gop)


def decode_all(uri: str) -> int:
    """Decode every frame, one thread, nothing converted: the full-stream cost."""
    import av

    with av.open(uri) as c:
        c.streams.video[0].codec_context.thread_count = 1
        return sum(1 for _ in c.decode(video=0))


def keyframes_demux(uri: str) -> int:
    """Keyframes from one demux pass over the packets (no decoding): what ``clips`` uses."""
    import av

    from deepgen.video import scan_packets

    with av.open(uri) as c:
        return len(scan_packets(c, c.streams.video[0]).keyframes)


def keyframes_skip_frame(uri: str) -> int:
    """Keyframes from a decode pass that skips every non-keyframe (``skip_frame=NONKEY``)."""
    import av

    with av.open(uri) as c:
        ctx = c.streams.video[0].codec_context
        ctx.thread_count = 1
        ctx.skip_frame = "NONKEY"
        return sum(1 for _ in c.decode(video=0))


def decode_kept(uri: str, wanted: set[int], mode: str) -> tuple[int, dict]:
    """Decode from the start with ``skip_frame`` = ``mode`` on every packet whose frame is not in ``wanted``
    (presentation ranks); returns (frames decoded, {rank: RGB frame}) for the wanted frames."""
    import av

    with av.open(uri) as c:
        stream = c.streams.video[0]
        ctx = stream.codec_context
        ctx.thread_count = 1
        packets = [p for p in c.demux(stream) if p.size]
        rank = {t: i for i, t in enumerate(sorted(p.pts for p in packets))}
        n, got = 0, {}
        for p in [*packets, None]:  # None drains the frames the decoder holds back
            ctx.skip_frame = "DEFAULT" if p is None or rank[p.pts] in wanted else mode
            for f in ctx.decode(p):
                n += 1
                if rank[f.pts] in wanted:
                    got[rank[f.pts]] = f.to_ndarray(format="rgb24")
        return n, got


def skip_modes(uris: list[str], frames: int, clip_len: int) -> list[dict]:
    """Per skip_frame mode: CPU s/video, frames decoded, and the largest mean |difference| of a kept frame
    (grey levels) against the same frame decoded with nothing skipped."""
    wanted = {u: set(sample_frames(u, frames, 640, threads=1, sampling="clips", clip_len=clip_len).indices)
              for u in uris}
    rows, exact = [], None
    for mode in ("DEFAULT", "NONREF", "BIDIR"):  # DEFAULT first: its frames are the reference
        s, out = timed(lambda u, mode=mode: decode_kept(u, wanted[u], mode), uris)
        exact = exact or [got for _, got in out]
        diff = max(float(np.abs(got[i].astype(np.int16) - ref[i]).mean()) if i in got else float("inf")
                   for (_, got), ref in zip(out, exact) for i in ref)
        rows.append({"mode": mode, "s": s, "decoded": float(np.mean([n for n, _ in out])), "max_mean_diff": diff})
    return rows


CLOCK = time.process_time  # CPU seconds of this process: the work, steady however loaded the machine is


def timed(fn, uris: list[str]) -> tuple[float, list]:
    """CPU seconds per item of ``fn`` over ``uris`` (best of two passes) and the results."""
    best, out = float("inf"), []
    for _ in range(2):
        t = CLOCK()
        out = [fn(u) for u in uris]
        best = min(best, (CLOCK() - t) / len(uris))
    return best, out


def breakdown(uris: list[str], cfg: ExtractConfig, det) -> dict:
    """Seconds per video of extract_media, split by profiling: decode, colour conversion, detection,
    crop, encode, the rest (demux, seeks, tracking). Profiling adds a little to each part."""
    rows = [{"media_id": u, "uri": u, "media_type": "video"} for u in uris]
    for r in rows:
        extract_media(r, cfg, det)  # warm
    prof = cProfile.Profile(CLOCK)
    t = CLOCK()
    prof.enable()
    faces = [extract_media(r, cfg, det)[1]["n_faces"] for r in rows]
    prof.disable()
    total = (CLOCK() - t) / len(rows)
    stats = pstats.Stats(prof).stats

    def part(name: str, file_part: str = "", cumulative: bool = False) -> float:
        s = sum(v[3 if cumulative else 2] for k, v in stats.items() if k[2] == name and file_part in k[0])
        return s / len(rows)

    out = {
        "decode": part("<method 'decode' of 'av.codec.context.CodecContext' objects>"),
        "colour conversion": part("<method 'reformat' of 'av.video.frame.VideoFrame' objects>")
        + part("<method 'to_ndarray' of 'av.video.frame.VideoFrame' objects>"),
        "detection": part("detect_frames", "media.py", cumulative=True),
        "crop": part("crop_face", "crop.py", cumulative=True),
        "encode": part("encode_image", "crop.py", cumulative=True),
    }
    out["rest"] = max(0.0, total - sum(out.values()))
    out["total"] = total
    out["faces"] = float(np.mean(faces))
    return out


def nvdec_rows(uris: list[str], frames: int, clip_len: int) -> dict:
    """torchcodec decoding on CUDA (NVDEC) of the clips' frames; 'not measured' without a GPU."""
    try:
        import torch

        if not torch.cuda.is_available():
            return {"nvdec": "not measured (no GPU on this machine)"}
        from torchcodec.decoders import VideoDecoder
    except Exception as e:  # torchcodec or FFmpeg missing
        return {"nvdec": f"not measured ({type(e).__name__}: torchcodec unavailable)"}
    from deepgen.video import clip_runs

    def run(uri: str) -> int:
        d = VideoDecoder(uri, device="cuda", seek_mode="exact")
        n_total = d.metadata.num_frames
        runs, _ = clip_runs(d.metadata.key_frame_indices if hasattr(d.metadata, "key_frame_indices") else [0],
                            n_total, frames, clip_len)
        idx = [s + j for s, length in runs for j in range(length)]
        d.get_frames_at(indices=idx)
        torch.cuda.synchronize()
        return len(idx)

    run(uris[0])  # warm: CUDA context and decoder start-up
    t = time.perf_counter()
    for u in uris:
        run(u)
    s = (time.perf_counter() - t) / len(uris)
    return {"nvdec": f"{s:.3f} wall s/video on {torch.cuda.get_device_name(0)}"}


def stage_stats(n: int, frames: int) -> None:
    """The GPU path's two operators on CPU (one FaceStage actor per spare core, one ModelStage actor)."""
    import ray

    from deepgen.models import ModelConfig, create_detector
    from deepgen.models.bundle import save_bundle
    from deepgen.runtime import init_ray, map_actors
    from deepgen.scoring.pipeline import FaceStage, ModelStage

    photos = sorted(FACES_DIR.glob("*.jpg"))
    with tempfile.TemporaryDirectory() as tmp:
        items = [{"media_id": f"v{i}", "uri": write_clip(f"{tmp}/v{i}.mp4", roll_zoom_frames(
            load_rgb(photos[i % len(photos)]), 100, 640, 360, seed=i), 640, 360, 25), "media_type": "video",
            "label": 0, "dataset": "b", "fingerprint": None, "status": None, "error": None} for i in range(n)]
        bundle = f"{tmp}/bundle"
        model = create_detector(ModelConfig(image_size=64))
        save_bundle(bundle, model, temperature=1.0,
                    reference=np.zeros((8, model.num_features)), datasets=["b"])
        init_ray(None)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        face_workers = max(1, cpus - 1)
        cfg = ExtractConfig(frames=frames, size=64, threads=1)
        ds = ray.data.from_items(items, override_num_blocks=min(n, 16 * face_workers))
        ds = map_actors(ds, FaceStage, fn_constructor_kwargs={"cfg": cfg}, batch_size=1, batch_format="pyarrow",
                        compute=ray.data.ActorPoolStrategy(size=face_workers), num_cpus=1)
        ds = map_actors(ds, ModelStage, fn_constructor_kwargs={"checkpoint": bundle, "mc_passes": 0,
                                                               "evidence": False},
                        batch_size=8, batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=1), num_cpus=1)
        t = time.perf_counter()
        rows = sum(b.num_rows for b in ds.iter_batches(batch_size=64, batch_format="pyarrow"))
        print(f"{rows} rows in {time.perf_counter() - t:.1f} s on {cpus} CPUs ({face_workers} face actors)")
        print(ds.stats())


def main() -> None:
    import cv2

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", type=int, default=2, help="clips per setting")
    ap.add_argument("--seconds", type=float, default=10.0, help="clip length at 25 fps")
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--clip-len", type=int, default=8)
    ap.add_argument("--sizes", default="1080p,360p")
    ap.add_argument("--gops", default="25,250")
    ap.add_argument("--json", default=None, help="also write the results here")
    ap.add_argument("--stages", type=int, default=0, help="only: ds.stats() of the two-stage topology on N clips")
    ap.add_argument("--skip-modes", action="store_true", help="only: clips' kept frames under each skip_frame mode")
    args = ap.parse_args()
    if args.stages:
        return stage_stats(args.stages, args.frames)
    photos = sorted(FACES_DIR.glob("*.jpg"))
    if not photos:
        raise SystemExit(f"{FACES_DIR} holds no face photos; the benchmark clips are made from them.")
    cv2.setNumThreads(1)
    det = get_detector("yunet")
    n = int(round(args.seconds * 25))
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes.split(","):
            w, h = SIZES[size]
            for gop in (int(g) for g in args.gops.split(",")):
                uris = [write_clip(f"{tmp}/{size}-g{gop}-{i}.mp4", roll_zoom_frames(load_rgb(photos[i % len(photos)]),
                                   n, w, h, seed=i), w, h, gop) for i in range(args.videos)]
                if args.skip_modes:
                    results += [{"size": size, "gop": gop, **m} for m in skip_modes(uris, args.frames, args.clip_len)]
                    continue
                r = {"size": size, "gop": gop, "frames_per_video": n}
                r["all_s"], counts = timed(decode_all, uris)
                r["decode_fps"] = counts[0] / r["all_s"]
                r["keys_demux_s"], _ = timed(keyframes_demux, uris)
                r["keys_skip_frame_s"], _ = timed(keyframes_skip_frame, uris)
                for samp in ("uniform", "clips"):
                    s, got = timed(lambda u, samp=samp: sample_frames(u, args.frames, 640, threads=1, sampling=samp,
                                                                      clip_len=args.clip_len), uris)
                    r[f"{samp}_sample_s"] = s
                    r[f"{samp}_decoded"] = float(np.mean([g.n_decoded for g in got]))
                    cfg = ExtractConfig(frames=args.frames, threads=1, sampling=samp, clip_len=args.clip_len)
                    r[f"{samp}_extract"] = breakdown(uris, cfg, det)
                c = r["clips_extract"]
                need = r["clips_decoded"]
                r["clips_limit_s"] = need / r["decode_fps"] + c["detection"]
                r.update(nvdec_rows(uris, args.frames, args.clip_len))
                results.append(r)
                print(json.dumps(r), file=sys.stderr, flush=True)
    print(skip_table(results, args) if args.skip_modes else table(results, args))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


def skip_table(results: list[dict], args) -> str:
    """The README table of --skip-modes."""
    out = [f"CPU seconds per video, one thread; the {args.frames} frames clips of {args.clip_len} keep.", "",
           "| clip | GOP | skip_frame between runs | frames decoded | s/video | speed-up over NONREF | "
           "kept frames: largest mean difference (grey levels) |", "|---|---|---|---|---|---|---|"]
    base = {(r["size"], r["gop"]): r["s"] for r in results if r["mode"] == "NONREF"}
    for r in results:
        out.append(f"| {r['size']} | {r['gop']} | {r['mode']} | {r['decoded']:.0f} | {r['s']:.3f} | "
                   f"{base[r['size'], r['gop']] / r['s']:.2f}x | {r['max_mean_diff']:.3f} |")
    return "\n".join(out)


def table(results: list[dict], args) -> str:
    """The README tables: sampling cost, then where clips extraction time goes."""
    out = [f"CPU seconds per video, one thread; {args.frames} frames, clips of {args.clip_len}.", "",
           "| clip | GOP | decode all: frames, s | keyframes: demux / skip_frame s | uniform: decoded, s | "
           "clips: decoded, s | extract uniform s (videos/s) | extract clips s (videos/s) | clips limit s | "
           "NVDEC |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        u, c = r["uniform_extract"], r["clips_extract"]
        out.append(
            f"| {r['size']} | {r['gop']} | {r['frames_per_video']}, {r['all_s']:.3f} | "
            f"{r['keys_demux_s']:.4f} / {r['keys_skip_frame_s']:.4f} | {r['uniform_decoded']:.0f}, "
            f"{r['uniform_sample_s']:.3f} | {r['clips_decoded']:.0f}, {r['clips_sample_s']:.3f} | "
            f"{u['total']:.3f} ({1 / u['total']:.2f}) | {c['total']:.3f} ({1 / c['total']:.2f}) | "
            f"{r['clips_limit_s']:.3f} | {r['nvdec']} |")
    out += ["", "Where extraction time goes (CPU s/video; share of the total):", "",
            "| clip | GOP | sampling | decode | colour conversion | detection | crop | encode | rest | total |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for samp in ("uniform", "clips"):
            e = r[f"{samp}_extract"]
            parts = " | ".join(f"{e[k]:.3f} ({e[k] / e['total']:.0%})"
                               for k in ("decode", "colour conversion", "detection", "crop", "encode", "rest"))
            out.append(f"| {r['size']} | {r['gop']} | {samp} | {parts} | {e['total']:.3f} |")
    return "\n".join(out)


if __name__ == "__main__":
    main()
