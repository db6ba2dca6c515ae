"""What the benchmarks share below them: stamped, reusable corpora and the per-video scores of crops.

A stamp (``deepgen_benchmark.json``) records what a corpus or a run was made with, so a rerun with the
same settings reuses it instead of rendering, extracting or training again.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

import numpy as np
import pandas as pd

STAMP = "deepgen_benchmark.json"  # the settings a corpus, faces table or run was made with


def read_stamp(path: str) -> dict | None:
    """The stamp stored in folder ``path``, or None when it has none (or an unreadable one)."""
    try:
        with open(os.path.join(path, STAMP)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_stamp(path: str, stamp: dict) -> None:
    """Store ``stamp`` in folder ``path`` (floats for numpy scalars)."""
    with open(os.path.join(path, STAMP), "w") as f:
        json.dump(stamp, f, default=float)


def prepared_corpus(out: str, name: str, stamp: dict, render: Callable[[str, str], None], frames: int,
                    crop_size: int, log: Callable[[str], None], label: str | None = None) -> tuple[str, str]:
    """Render (or reuse) corpus ``name`` under ``out`` and extract its ``crop_size`` faces; returns (root, faces).

    ``render(root, manifest)`` writes the corpus and its manifest; it runs only when the corpus under
    ``out/data/name`` lacks this ``stamp``, and extraction only when the faces lack it.
    """
    from deepgen.faces.extract import extract_faces
    from deepgen.storage import table_complete

    root, fdir = os.path.join(out, "data", name), os.path.join(out, f"faces-{crop_size}", name)
    manifest = os.path.join(out, "manifests", f"{name}.parquet")
    fresh = not (os.path.exists(manifest) and read_stamp(root) == stamp)
    if fresh or not table_complete(fdir) or read_stamp(fdir) != stamp:
        t = time.perf_counter()
        if fresh:
            render(root, manifest)
            write_stamp(root, stamp)
        # a benchmark's few frames a video (4-6), spread evenly: every figure in the README was measured so
        s = extract_faces(manifest, fdir, frames=frames, size=crop_size, overwrite=True, sampling="uniform")
        write_stamp(fdir, stamp)
        log(f"  {label or name:16s} {s['media']} media, {s['faces_written']} faces, {s['by_status']} "
            f"({time.perf_counter() - t:.0f}s)")
    return root, fdir


def video_scores(bundle, crops: list[np.ndarray], df: pd.DataFrame) -> pd.DataFrame:
    """Per-video logit and calibrated score through the one inference path (indexed by media_id)."""
    from deepgen.inference import aggregate_media, bundle_predict

    frames = df[[c for c in ("media_id", "track_id") if c in df.columns]].assign(
        logit=bundle_predict(bundle, crops, batch_size=256)["logit"])
    return aggregate_media(frames, bundle.temperature).set_index("media_id")
