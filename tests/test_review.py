"""`deepgen review`: the static page renders in real headless Chromium (Debian's package), from s3://,
with its images, no remote URL, and names that stay text."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from deepgen.cli import main
from deepgen.storage import write_table

CHROMIUM = "/usr/bin/chromium"
ITEMS = 240
EVIL = "<script>document.body.setAttribute('data-pwned','1')</script><img src=x onerror=alert(1)>.mp4"


def _scores_table() -> pa.Table:
    """A scores table of ITEMS rows as `deepgen score` writes them: crops, heat maps, timelines, failures."""
    import cv2

    from deepgen.models.explain import overlay_png
    from deepgen.scoring.pipeline import scores_schema
    from deepgen.testing.toyfaces import toy_faces_table

    faces = toy_faces_table(n_per_class=8, size=48, seed=0, dataset="toy").column("image").to_pylist()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:48, 0:48]
    rows = []
    for i in range(ITEMS):
        failed = i % 20 == 19
        name = EVIL if i == 3 else f"set{i % 3}/video_{i:04d}.mp4"
        row = {"media_id": name, "uri": f"/data/{i}.mp4", "dataset": f"set{i % 3}", "model_id": "m",
               "status": "decode_error" if failed else "ok", "error": "moov atom not found" if failed else None,
               "n_frames": 0 if failed else 8, "n_faces": 0 if failed else 8, "n_tracks": 0 if failed else 1 + (i % 7 == 0)}
        if not failed:
            s = rng.uniform(0, 1, 8)
            crop = cv2.imdecode(np.frombuffer(faces[i % len(faces)], np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
            heat = np.exp(-((xx - rng.uniform(10, 38)) ** 2 + (yy - 24) ** 2) / 120.0)
            ood = float(rng.uniform(0.3, 1.6))
            row.update(score=float(s.max()), logit=0.0, uncertainty=float(rng.uniform(0, 0.69)), ood_score=ood,
                       in_domain=ood <= 1, frame_indices=list(range(0, 32, 4)), frame_times=[j / 25 for j in range(0, 32, 4)],
                       frame_tracks=[0] * 8, frame_scores=s.tolist(), face_crops=[faces[i % len(faces)]],
                       heatmaps=[overlay_png(crop, heat)], heatmap_frames=[int(np.argmax(s)) * 4], heatmap_kind="gradcam")
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=scores_schema())


def _chromium(args: list[str], profile: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run headless Chromium with a fresh profile and the network features off; stop it by PID on timeout."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # its own process group: only the browser this test started
        proc.communicate()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="chromium is not installed (apt-get install chromium)")
def test_review_page_renders_in_chromium(s3_bucket, tmp_path, capsys):
    scores = f"{s3_bucket}/scores/run1"
    write_table(_scores_table(), f"{scores}/part-00000.parquet")
    out = tmp_path / "review"
    main(["review", "--scores", scores, "--out", str(out), "--top", str(ITEMS), "--page-size", str(ITEMS)])
    html = (out / "index.html").read_text()
    assert not re.search(r"(?i)\b(?:https?|ftp|wss?)://|(?:src|href)\s*=\s*[\"']?//", html)  # no remote URL
    assert "<script>document" not in html  # the evil name is data, never markup

    t0 = time.perf_counter()
    dom = _chromium(["--dump-dom", (out / "index.html").as_uri()], tmp_path / "profile").stdout
    wall = time.perf_counter() - t0
    m = re.search(r'id="rendered"[^>]*data-rows="(\d+)"[^>]*data-images="(\d+)"[^>]*data-ms="(\d+)"', dom)
    assert m, dom[:2000]
    rows, images, ms = map(int, m.groups())
    expected = 2 * sum(1 for i in range(ITEMS) if i % 20 != 19)  # a crop and a heat map per scored item
    assert rows == ITEMS and images == expected
    assert ms < 10000, f"page took {ms} ms to render {rows} rows and {images} images"  # ~0.7 s measured
    assert "&lt;script&gt;document.body.setAttribute" in dom and not re.search(r"<body[^>]*data-pwned", dom)
    assert dom.count("OUT (") >= 1 and "decode_error" in dom and "moov atom not found" in dom
    print(f"review: {rows} rows, {images} images rendered in {ms} ms (browser start to DOM dump {wall:.1f} s)")

    shot = tmp_path / "review.png"
    _chromium(["--window-size=1400,900", f"--screenshot={shot}", (out / "index.html").as_uri()], tmp_path / "p2")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20000
    if os.environ.get("DEEPGEN_UPDATE_DOCS"):  # the README's screenshot: DEEPGEN_UPDATE_DOCS=1 pytest tests/test_review.py
        shutil.copy(shot, Path(__file__).resolve().parents[1] / "docs" / "review.png")
