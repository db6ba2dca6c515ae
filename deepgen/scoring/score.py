"""``deepgen score``: one scores table for a manifest (or media folder) and a checkpoint bundle."""

from __future__ import annotations

import time
from collections import Counter

from deepgen import storage
from deepgen.inference import ensemble_model_id
from deepgen.scoring.inputs import check_allowed, load_media_rows
from deepgen.scoring.pipeline import ScoreConfig, finish_rows, score_stream


def score(
    manifest: str,
    checkpoint: str | list[str],
    out: str,
    cfg: ScoreConfig | None = None,
    address: str | None = None,
    overwrite: bool = False,
    allowed_roots: list[str] | None = None,
    quiet: bool = False,
) -> dict:
    """Score every item of ``manifest`` with ``checkpoint`` (several: an equal-weight ensemble of their
    calibrated logits); write ``out`` (a table directory) atomically; progress on stderr unless ``quiet``."""
    from deepgen.models.bundle import load_bundle
    from deepgen.progress import Progress
    from deepgen.runtime import init_ray

    t0 = time.perf_counter()
    paths = [checkpoint] if isinstance(checkpoint, str) else list(checkpoint)
    storage.check_output_path(out, inputs=[manifest, *paths], overwrite=overwrite)  # before any work
    rows = load_media_rows(manifest)
    check_allowed(rows, allowed_roots)
    model_id = ensemble_model_id([load_bundle(p).model_id for p in paths])  # fails here, before any actor
    init_ray(address)
    cfg = cfg or ScoreConfig()
    with storage.atomic_dir(out, overwrite=overwrite, inputs=[manifest, *paths]) as tmp:
        t1 = time.perf_counter()
        tables = []
        with Progress(len(rows), "score", quiet=quiet) as progress:
            for batch in score_stream(rows, paths, cfg):
                tables.append(batch)
                progress.update(batch.num_rows)
        table = finish_rows(rows, tables)
        table = table.replace_schema_metadata({"seconds": f"{time.perf_counter() - t1:.3f}"})
        storage.write_table(table, storage.join(tmp, "part-00000.parquet"))
    statuses = Counter(table.column("status").to_pylist())
    scores = [s for s in table.column("score").to_pylist() if s is not None]
    return {
        "out": str(out),
        "model_id": model_id,
        "media": len(rows),
        "by_status": dict(sorted(statuses.items())),
        "flagged_fake": int(sum(s >= 0.5 for s in scores)),
        "seconds": round(time.perf_counter() - t0, 2),
        "videos_per_s": round(len(rows) / max(time.perf_counter() - t0, 1e-9), 3),
    }
