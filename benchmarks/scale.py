"""Corpus-scale check: extract and score at N = 1k and 10k items; items/s and driver peak RSS at each N.

A few small clips are made once and hard-linked N times (distinct files and media ids, no extra disk),
so only the number of items changes between runs. Each stage runs in a fresh process with its own
embedded Ray; the driver's peak RSS is that process's resident set sampled every 0.1 s (Ray's own
processes excluded).
Targets: RSS at the largest N <= 1.3x RSS at the smallest, and items/s at the largest N >= at the smallest.

    .venv/bin/python benchmarks/scale.py [--sizes 1000 10000] [--clips 4] [--frames 24] [--sample 8]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from extract import corpus_parser, make_corpus, run_child  # noqa: E402
from score import make_bundle  # noqa: E402

from deepgen.schema import MANIFEST_SCHEMA  # noqa: E402
from deepgen.storage import write_table  # noqa: E402

# the driver's resident set, sampled every 0.1 s (ru_maxrss also counts transient pages of Ray's start-up)
RSS_POLL = r"""
import os, threading, time
peak = [0]
def _poll():
    page = os.sysconf("SC_PAGE_SIZE")
    while True:
        with open("/proc/self/statm") as f:
            peak[0] = max(peak[0], int(f.read().split()[1]) * page)
        time.sleep(0.1)
threading.Thread(target=_poll, daemon=True).start()
"""

EXTRACT_CHILD = RSS_POLL + r"""
import json, sys, time
sys.path.insert(0, sys.argv[4])
from deepgen.faces.extract import extract_faces
t = time.perf_counter()
s = extract_faces(sys.argv[1], sys.argv[2], frames=int(sys.argv[3]), size=112, overwrite=True, quiet=True)
s["wall"] = time.perf_counter() - t
s["driver_peak_mb"] = peak[0] / 2**20
print("RESULT " + json.dumps(s))
"""

SCORE_CHILD = RSS_POLL + r"""
import json, sys, time
sys.path.insert(0, sys.argv[5])
from deepgen.runtime import init_ray
from deepgen.scoring import ScoreConfig, score
init_ray(None)
s = score(sys.argv[1], sys.argv[2], sys.argv[3], ScoreConfig(frames=int(sys.argv[4])), overwrite=True, quiet=True)
s["driver_peak_mb"] = peak[0] / 2**20
print("RESULT " + json.dumps(s))
"""


def linked_manifest(rows: list[dict], folder: Path, n: int) -> str:
    """A manifest of ``n`` items: hard links to the clips of ``rows`` (round robin), each its own media id."""
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for i in range(n):
        src = rows[i % len(rows)]
        path = folder / f"{i:06d}.mp4"
        if not path.exists():
            os.link(src["uri"], path)
        items.append(dict(src, media_id=f"scale/{i:06d}.mp4", uri=str(path), source_id=str(i)))
    uri = str(folder / "manifest.parquet")
    write_table(pa.Table.from_pylist(items, schema=MANIFEST_SCHEMA), uri)
    return uri


def main() -> None:
    ap = corpus_parser(__doc__)
    ap.set_defaults(videos=4, frames=24, width=320, height=240, sample=8)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000], help="corpus sizes N (items)")
    ap.add_argument("--stages", nargs="+", choices=["extract", "score"], default=["extract", "score"])
    ap.add_argument("--image-size", type=int, default=64, help="scoring model input size")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="deepgen-scale-") as tmp:
        tmp = Path(tmp)
        (tmp / "clips").mkdir()
        rows = make_corpus(tmp / "clips", a.videos, a.frames, a.width, a.height)
        bundle = make_bundle(str(tmp / "bundle"), "test_efficientnet", a.image_size) if "score" in a.stages else ""
        print(f"clips: {a.videos} x {a.frames} frames {a.width}x{a.height}, {a.sample} sampled; hard-linked to "
              f"N = {', '.join(map(str, a.sizes))}; cores {os.cpu_count()}", flush=True)
        results: dict[tuple[str, int], dict] = {}
        for n in a.sizes:
            manifest = linked_manifest(rows, tmp / f"n{n}", n)
            for stage in a.stages:
                t = time.perf_counter()
                if stage == "extract":
                    r = run_child(EXTRACT_CHILD, manifest, str(tmp / f"faces{n}"), str(a.sample), str(ROOT))
                else:
                    r = run_child(SCORE_CHILD, manifest, bundle, str(tmp / f"scores{n}"), str(a.sample), str(ROOT))
                r["items_per_s"] = r["media"] / r["seconds"]
                results[(stage, n)] = r
                print(f"{stage:8s} N={n:6d}: {r['items_per_s']:6.1f} items/s, driver peak RSS "
                      f"{r['driver_peak_mb']:6.0f} MB ({time.perf_counter() - t:.0f}s incl. Ray start)", flush=True)
        print("\n| stage | N | items/s | driver peak RSS (MB) |\n|---|---:|---:|---:|")
        for (stage, n), r in results.items():
            print(f"| {stage} | {n} | {r['items_per_s']:.1f} | {r['driver_peak_mb']:.0f} |")
        lo, hi = min(a.sizes), max(a.sizes)
        for stage in a.stages:
            if lo == hi:
                break
            r_lo, r_hi = results[(stage, lo)], results[(stage, hi)]
            rss, rate = r_hi["driver_peak_mb"] / r_lo["driver_peak_mb"], r_hi["items_per_s"] / r_lo["items_per_s"]
            print(f"{stage}: RSS {hi}/{lo} = {rss:.2f} (target <= 1.3: {'ok' if rss <= 1.3 else 'MISSED'}), "
                  f"items/s {hi}/{lo} = {rate:.2f} (target >= 1: {'ok' if rate >= 1 else 'MISSED'})")
        print(f"load average: {os.getloadavg()[0]:.1f} (shared machine)")


if __name__ == "__main__":
    main()
