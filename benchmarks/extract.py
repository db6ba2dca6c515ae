"""Face extraction throughput and memory, in one run on one corpus.

Rows: (a) naive loop (cv2.VideoCapture decodes every frame, Haar on the sampled ones, one process);
(b) extract_media in one process (GOP-skipping decode, only sampled frames converted), once per
detector (YuNet, the default, and Haar side by side: videos/s and the share of sampled frames with
a face, also on a "hard" copy of the corpus: half-size frames of faces rolled by +-30 degrees);
(c) the Ray Data pipeline on all cores. Then peak RSS of the Ray pipeline (driver + every Ray
process) at 1x and 4x corpus, each in a fresh subprocess (``--skip-ray`` leaves (c) out).

    .venv/bin/python benchmarks/extract.py [--videos 12] [--frames 150] [--sample 32] [--skip-ray]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deepgen.faces import ExtractConfig, crop_face, encode_image, extract_media, get_detector  # noqa: E402
from deepgen.faces.track import select_faces  # noqa: E402
from deepgen.schema import MANIFEST_SCHEMA  # noqa: E402
from deepgen.storage import write_table  # noqa: E402
from deepgen.testing.faces import face_frames, load_rgb, write_video  # noqa: E402
from deepgen.video import uniform_indices  # noqa: E402

FACES_DIR = Path(os.environ.get("DEEPGEN_FACES_DIR", ROOT.parent / "shared" / "data" / "real_faces"))


def _rolled(photo, i: int):
    """The photo rolled by +30 or -30 degrees (alternating with ``i``), borders reflected."""
    import cv2

    h, w = photo.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 30 if i % 2 == 0 else -30, 1.0)
    return cv2.warpAffine(photo, m, (w, h), borderMode=cv2.BORDER_REFLECT)


def make_corpus(folder: Path, n: int, n_frames: int, w: int, h: int, hard: bool = False) -> list[dict]:
    """``n`` H.264 clips (2 s GOPs) of real face photos drifting over a background.

    ``hard``: half-size frames, faces rolled by +-30 degrees, stronger compression (crf 32).
    """
    photos = sorted(FACES_DIR.glob("*.jpg"))
    if not photos:
        raise SystemExit(f"{FACES_DIR} holds no face photos; the benchmark corpus is made from them.")
    rows = []
    for i in range(n):
        path = folder / f"{'h' if hard else 'v'}{i:03d}.mp4"
        photo = load_rgb(photos[i % len(photos)])
        if hard:
            frames = face_frames(_rolled(photo, i), n_frames, w // 2 // 2 * 2, h // 2 // 2 * 2, seed=i)
            write_video(str(path), frames, fps=25, crf=32, gop=50)
            rows.append({"media_id": f"bench/{path.name}", "uri": str(path), "media_type": "video"})
            continue
        frames = face_frames(photo, n_frames, w, h, seed=i)
        write_video(str(path), frames, fps=25, crf=23, gop=50)
        rows.append({"media_id": f"bench/v{i:03d}.mp4", "uri": str(path), "label": i % 2, "dataset": "bench",
                     "method": "real", "split": "test", "source_id": str(i), "compression": "c23",
                     "media_type": "video"})
    return rows


def cv2_sampled_frames(uri: str, n: int, max_side: int) -> list:
    """The seed-style decode: cv2 reads every frame, keeps ``n`` uniformly sampled ones (RGB, resized)."""
    import cv2

    cap = cv2.VideoCapture(uri)
    want = set(uniform_indices(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), n))
    frames, i = [], 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        if i in want:
            rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            s = min(1.0, max_side / max(rgb.shape[:2]))
            frames.append(cv2.resize(rgb, None, fx=s, fy=s, interpolation=cv2.INTER_AREA) if s < 1 else rgb)
        i += 1
    cap.release()
    return frames


def naive(rows: list[dict], cfg: ExtractConfig) -> tuple[int, int]:
    """The seed-style loop: decode every frame with cv2, detect and crop on the sampled ones."""

    det = get_detector("haar")
    n_faces = n_frames = 0
    for row in rows:
        frames = cv2_sampled_frames(row["uri"], cfg.frames, cfg.max_side)
        kept = select_faces(det.detect(frames))
        for t, d in kept:
            encode_image(crop_face(frames[t], d.box, cfg.size, cfg.margin))
        n_faces += len(kept)
        n_frames += len(frames)
    return n_frames, n_faces


def single_one_thread(rows: list[dict], cfg: ExtractConfig) -> tuple[int, int]:
    """extract_media as a Ray actor runs it: one OpenCV thread, one decoder thread."""
    import dataclasses

    import cv2

    before = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        return single(rows, dataclasses.replace(cfg, threads=1))
    finally:
        cv2.setNumThreads(before)


def decode_cv2(rows: list[dict], cfg: ExtractConfig) -> tuple[int, int]:
    """Decode only: cv2 reads every frame, keeps the sampled ones (no detection)."""
    import cv2

    n = 0
    for row in rows:
        cap = cv2.VideoCapture(row["uri"])
        want = set(uniform_indices(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), cfg.frames))
        i = 0
        while True:
            ok, bgr = cap.read()
            if not ok:
                break
            n += i in want
            i += 1
        cap.release()
    return n, 0


def decode_pyav(rows: list[dict], cfg: ExtractConfig) -> tuple[int, int]:
    """Decode only: sample_frames (GOP skipping, sampled frames converted at reduced size)."""
    from deepgen.video import sample_frames

    return sum(len(sample_frames(r["uri"], cfg.frames, cfg.max_side).frames) for r in rows), 0


def single(rows: list[dict], cfg: ExtractConfig) -> tuple[int, int]:
    """extract_media in this process with ``cfg``'s detector: (frames sampled, faces kept)."""
    det = get_detector(cfg.detector)
    n_frames = n_faces = 0
    for row in rows:
        _, st = extract_media(row, cfg, det)
        n_frames += st["n_frames"]
        n_faces += st["n_faces"]
    return n_frames, n_faces


def with_detector(name: str):
    """A single-process row running extract_media (one OpenCV thread, as in Ray) with detector ``name``."""
    import dataclasses

    def run(rows: list[dict], cfg: ExtractConfig) -> tuple[int, int]:
        return single_one_thread(rows, dataclasses.replace(cfg, detector=name))

    return run


RAY_CHILD = r"""
import json, os, sys, threading, time
sys.path.insert(0, sys.argv[4])
sys.path.insert(0, os.path.join(sys.argv[4], "benchmarks"))
os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
from extract import tree_rss
peak = {"total": 0, "workers": 0}
stop = False
def poll():
    while not stop:
        total, workers = tree_rss(os.getpid())
        peak["total"] = max(peak["total"], total)
        peak["workers"] = max(peak["workers"], workers)
        time.sleep(0.1)
th = threading.Thread(target=poll, daemon=True); th.start()
from deepgen.faces.extract import extract_faces
t = time.perf_counter()
s = extract_faces(sys.argv[1], sys.argv[2], frames=int(sys.argv[3]), size=224, overwrite=True)
s["wall"] = time.perf_counter() - t  # includes starting the embedded Ray
stop = True; th.join()
s.update(peak_total_mb=peak["total"] / 2**20, peak_worker_mb=peak["workers"] / 2**20)
print("RESULT " + json.dumps(s))
"""


def tree_rss(root: int) -> tuple[int, int]:
    """(summed RSS of ``root`` and all its descendants, largest RSS among Ray worker processes), bytes."""
    parent, rss, name = {}, {}, {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
            with open(f"/proc/{d}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        pid = int(d)
        parent[pid], rss[pid], name[pid] = int(fields[1]), int(fields[21]) * os.sysconf("SC_PAGE_SIZE"), cmd
    keep, frontier = {root}, [root]
    while frontier:
        kids = [p for p, pp in parent.items() if pp in frontier and p not in keep]
        keep.update(kids)
        frontier = kids
    total = sum(rss.get(p, 0) for p in keep)
    workers = max((rss[p] for p in keep if name.get(p, "").startswith("ray::")), default=0)
    return total, workers


def ray_run(manifest: str, out: str, frames: int) -> dict:
    """Run the Ray pipeline in a fresh process (own embedded Ray) and sample RSS of its whole tree."""
    return run_child(RAY_CHILD, manifest, out, str(frames), str(ROOT))


def run_child(code: str, *args: str) -> dict:
    """Run ``code`` in a fresh Python (its own embedded Ray); return the JSON it prints after ``RESULT``."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    res = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
    line = next((ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"Ray run failed:\n{res.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def corpus_parser(doc: str) -> argparse.ArgumentParser:
    """The corpus options both benchmarks share."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=12)
    ap.add_argument("--frames", type=int, default=150, help="frames per clip (25 fps)")
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--sample", type=int, default=32, help="frames sampled per clip")
    return ap


def write_manifests(rows: list[dict], folder: Path) -> tuple[str, str]:
    """Manifests of the corpus at 1x and 4x (each clip listed four times under new media ids)."""
    m1, m4 = str(folder / "m1.parquet"), str(folder / "m4.parquet")
    write_table(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), m1)
    rows4 = [dict(r, media_id=f"{r['media_id']}#{k}") for k in range(4) for r in rows]
    write_table(pa.Table.from_pylist(rows4, schema=MANIFEST_SCHEMA), m4)
    return m1, m4


def main() -> None:
    ap = corpus_parser(__doc__)
    ap.add_argument("--repeats", type=int, default=2, help="single-process repetitions (best is kept)")
    ap.add_argument("--skip-ray", action="store_true", help="leave out the Ray pipeline rows and RSS")
    a = ap.parse_args()
    cfg = ExtractConfig(frames=a.sample)
    with tempfile.TemporaryDirectory(prefix="deepgen-bench-") as tmp:
        tmp = Path(tmp)
        t = time.perf_counter()
        rows = make_corpus(tmp, a.videos, a.frames, a.width, a.height)
        print(f"corpus: {a.videos} clips, {a.frames} frames {a.width}x{a.height} H.264 (GOP 50), "
              f"{a.sample} sampled per clip; made in {time.perf_counter() - t:.1f}s; cpu cores: {os.cpu_count()}")
        m1, m4 = write_manifests(rows, tmp)
        hard = make_corpus(tmp, a.videos, a.frames, a.width, a.height, hard=True)

        detector_rows = []  # (detector, corpus, seconds, videos, frames, faces)
        for name in ("yunet", "haar"):
            run = with_detector(name)
            run(rows[:1], cfg)  # warm up
            for corpus, items in (("plain", rows), ("hard", hard)):
                best = float("inf")
                for _ in range(a.repeats):
                    t = time.perf_counter()
                    nf, nface = run(items, cfg)
                    best = min(best, time.perf_counter() - t)
                detector_rows.append((name, corpus, best, len(items), nf, nface))
        print(f"\n{'detector (extract_media, 1 process, 1 thread)':48s} {'corpus':>6s} {'sec':>7s} "
              f"{'videos/s':>9s} {'frames/s':>9s} {'face frames':>11s}")
        for name, corpus, dt, nv, nf, nface in detector_rows:
            print(f"{name:48s} {corpus:>6s} {dt:7.2f} {nv / dt:9.2f} {nf / dt:9.1f} {nface / max(nf, 1):10.1%}")
        if a.skip_ray:
            return

        results = []
        single_process = (("(a) naive loop: cv2 decodes all, 1 proc", naive),
                          ("(b) extract_media, 1 process", single),
                          ("(b1) extract_media, 1 process, 1 thread", single_one_thread),
                          ("    decode only: cv2 every frame", decode_cv2),
                          ("    decode only: sample_frames (GOP skip)", decode_pyav))
        for _, fn in single_process:
            fn(rows[:1], cfg)  # warm up (detector load, imports)
        best_time: dict[str, float] = {}
        counts: dict[str, tuple[int, int]] = {}
        for _ in range(a.repeats):  # alternate and keep the best: the machine may be shared
            for name, fn in single_process:
                t = time.perf_counter()
                counts[name] = fn(rows, cfg)
                best_time[name] = min(best_time.get(name, float("inf")), time.perf_counter() - t)
        for name, _ in single_process:
            results.append((name, best_time[name], len(rows), *counts[name], None))
        r1 = ray_run(m1, str(tmp / "out1"), a.sample)
        r4 = ray_run(m4, str(tmp / "out4"), a.sample)
        for r, tag in ((r1, "1x"), (r4, "4x")):
            results.append((f"(c) Ray Data {tag}, {r['workers']} actors, pipeline", r["seconds"], r["media"],
                            r["frames_sampled"], r["faces_written"], None))
            results.append(("    same, incl. embedded Ray start", r["wall"], r["media"],
                            r["frames_sampled"], r["faces_written"], None))

        print(f"\n{'pipeline':48s} {'sec':>7s} {'videos':>6s} {'videos/s':>9s} {'frames/s':>9s} {'faces':>6s}")
        for name, dt, nv, nf, nface, _ in results:
            print(f"{name:48s} {dt:7.2f} {nv:6d} {nv / dt:9.2f} {nf / dt:9.1f} {nface:6d}")
        ray_rate = r4["media"] / r4["seconds"]
        print(f"\nRay pipeline (4x corpus, {r4['workers']} actors) vs one process:")
        for i in (1, 2):
            print(f"  / {results[i][0].strip():42s} {ray_rate / (results[i][2] / results[i][1]):.2f}x")
        print("\npeak RSS of the Ray pipeline (driver + raylet/GCS + all workers, sampled every 0.1 s):")
        print(f"  1x corpus ({r1['media']:3d} clips): total {r1['peak_total_mb']:7.0f} MB, "
              f"largest worker {r1['peak_worker_mb']:5.0f} MB")
        print(f"  4x corpus ({r4['media']:3d} clips): total {r4['peak_total_mb']:7.0f} MB, "
              f"largest worker {r4['peak_worker_mb']:5.0f} MB")
        print(f"  ratio 4x/1x: total {r4['peak_total_mb'] / r1['peak_total_mb']:.2f}, "
              f"largest worker {r4['peak_worker_mb'] / r1['peak_worker_mb']:.2f}")
        print(f"\nload average during run: {os.getloadavg()[0]:.1f} (shared machine)")


if __name__ == "__main__":
    main()
