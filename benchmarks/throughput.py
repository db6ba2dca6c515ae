"""Wall-clock throughput of ``extract`` (and ``score`` with ``--bundle``), ``uniform`` against ``clips``,
in one run: 10 s 25 fps H.264 clips of a face photo filmed with a slow roll and zoom, half with a
keyframe every second (GOP 25), half with one keyframe (GOP 250, as many uploads), at 1080p and 360p.

Each (size, command, sampling) runs in a fresh Python with its own embedded Ray on every core, so
"Ray start included" is the whole call, "excluded" starts the clock once Ray is up. The corpus is a
few encoded clips linked many times over (what is measured is decoding and detection, not the disk).
Also reported: faces per video and the span of each video the sampled frames cover
((last - first + 1) / frames in the video), by GOP.

    .venv/bin/python benchmarks/throughput.py [--videos 80] [--distinct 4] [--sizes 1080p,360p] [--bundle B]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from decode import FACES_DIR, SIZES, roll_zoom_frames, write_clip  # noqa: E402
from extract import run_child  # noqa: E402

from deepgen.schema import MANIFEST_SCHEMA  # noqa: E402
from deepgen.testing.faces import load_rgb  # noqa: E402

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
sys.path.insert(0, sys.argv[5])
from deepgen.runtime import init_ray
import ray
init_ray(None)
cores = int(ray.cluster_resources().get("CPU", 1))
t1 = time.perf_counter()
command, manifest, out, sampling = sys.argv[1:5]
bundle = sys.argv[6] if len(sys.argv) > 6 else None
if command == "extract":
    from deepgen.faces.extract import extract_faces
    s = extract_faces(manifest, out, frames=32, size=224, sampling=sampling, clip_len=8, quiet=True)
    ok = s["by_status"].get("ok", 0)
    faces = s["faces_written"]
else:
    from deepgen.scoring import ScoreConfig, score
    from deepgen.storage import read_table
    score(manifest, bundle, out, ScoreConfig(frames=32, sampling=sampling, clip_len=8), quiet=True)
    rows = read_table(out).select(["status", "n_faces"]).to_pylist()
    ok = sum(r["status"] == "ok" for r in rows)
    faces = sum(r["n_faces"] or 0 for r in rows)
t2 = time.perf_counter()
ray.shutdown()
print("RESULT " + json.dumps({"with_start": t2 - t0, "without_start": t2 - t1, "cores": cores, "ok": ok,
                              "faces": faces}))
"""


def make_corpus(tmp: Path, size: str, videos: int, distinct: int) -> tuple[str, dict[str, int]]:
    """A manifest of ``videos`` items linking ``distinct`` encoded clips per GOP (half GOP 25, half 250)."""
    import pyarrow as pa

    from deepgen.storage import write_table

    w, h = SIZES[size]
    photos = sorted(FACES_DIR.glob("*.jpg"))
    rows, gop_of = [], {}
    for gop in (25, 250):
        clips = [write_clip(str(tmp / f"{size}-g{gop}-{i}.mp4"), roll_zoom_frames(
            load_rgb(photos[i % len(photos)]), 250, w, h, seed=i), w, h, gop) for i in range(distinct)]
        for k in range(videos // 2):
            link = tmp / f"{size}-g{gop}-v{k}.mp4"
            os.symlink(clips[k % distinct], link)
            mid = f"{size}/g{gop}/{k}"
            gop_of[mid] = gop
            rows.append({"media_id": mid, "uri": str(link), "label": k % 2, "dataset": "bench", "method": "real",
                         "split": "test", "source_id": str(k), "compression": "c23", "media_type": "video"})
    manifest = str(tmp / f"{size}.parquet")
    write_table(pa.Table.from_pylist(rows, schema=MANIFEST_SCHEMA), manifest)
    return manifest, gop_of


def spans(faces_dir: str, gop_of: dict[str, int], n_total: int = 250) -> dict[int, float]:
    """Mean span covered by the faces' frames, by GOP."""
    import pandas as pd

    from deepgen.faces.extract import read_faces

    df = read_faces(faces_dir).select(["media_id", "frame_index"]).to_pandas()
    g = df.groupby("media_id")["frame_index"].agg(["min", "max"])
    g["span"] = (g["max"] - g["min"] + 1) / n_total
    g["gop"] = [gop_of[m] for m in g.index]
    return {int(k): float(v) for k, v in pd.Series(g.groupby("gop")["span"].mean()).items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", type=int, default=80)
    ap.add_argument("--distinct", type=int, default=4, help="encoded clips per GOP and size (linked to --videos)")
    ap.add_argument("--sizes", default="1080p,360p")
    ap.add_argument("--bundle", default=None, help="also time `score` with this bundle")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="deepgen-tput-") as tmp:
        tmp = Path(tmp)
        for size in a.sizes.split(","):
            t = time.perf_counter()
            manifest, gop_of = make_corpus(tmp, size, a.videos, a.distinct)
            print(f"{size}: {a.videos} clips ({a.distinct} distinct per GOP) made in {time.perf_counter() - t:.0f}s",
                  file=sys.stderr, flush=True)
            commands = ["extract"] + (["score"] if a.bundle else [])
            for command in commands:
                for sampling in ("uniform", "clips"):
                    out = str(tmp / f"{size}-{command}-{sampling}")
                    args = [command, manifest, out, sampling, str(ROOT)] + ([a.bundle] if a.bundle else [])
                    r = run_child(CHILD, *args)
                    r.update(size=size, command=command, sampling=sampling, videos=a.videos)
                    if command == "extract":
                        r["span"] = spans(out, gop_of)
                    results.append(r)
                    print(json.dumps(r), file=sys.stderr, flush=True)
    print(table(results))
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=2))


def table(results: list[dict]) -> str:
    """The README table: wall seconds, videos/s per core with and without Ray's start, the speed-up of
    clips over uniform in the same run, faces per video, span covered by GOP."""
    out = ["| size | command | sampling | wall s (Ray start incl.) | videos/s/core incl. / excl. start | "
           "clips speed-up incl. / excl. | faces/video | span GOP 25 / GOP 250 |", "|---|---|---|---|---|---|---|---|"]
    base = {(r["size"], r["command"]): r for r in results if r["sampling"] == "uniform"}
    for r in results:
        n, c = r["videos"], r["cores"]
        u = base[(r["size"], r["command"])]
        speed = (f"{u['with_start'] / r['with_start']:.2f}× / {u['without_start'] / r['without_start']:.2f}×"
                 if r["sampling"] == "clips" else "")
        span = r.get("span", {})
        out.append(f"| {r['size']} | {r['command']} | {r['sampling']} | {r['with_start']:.1f} | "
                   f"{n / r['with_start'] / c:.2f} / {n / r['without_start'] / c:.2f} | {speed} | "
                   f"{r['faces'] / max(1, r['ok']):.1f} | "
                   + (f"{span.get(25, float('nan')):.2f} / {span.get(250, float('nan')):.2f}" if span else "")
                   + " |")
    return "\n".join(out)


if __name__ == "__main__":
    main()
