"""``deepgen score``: one scores table for a manifest (or media folder) and a checkpoint bundle."""

from __future__ import annotations

import sys
import time
from collections import Counter

import pyarrow as pa

from deepgen import storage
from deepgen.faces.media import check_options
from deepgen.inference import ensemble_model_id, load_bundles
from deepgen.scoring.inputs import check_allowed, load_media_rows
from deepgen.scoring.pipeline import ScoreConfig, finish_rows, score_stream


def domain_counts(table: pa.Table) -> dict:
    """How many scored items the domain check looked at and how many it flags as out of domain."""
    flags = [f for f in table.column("in_domain").to_pylist() if f is not None] if "in_domain" in table.column_names else []
    return {"checked": len(flags), "out_of_domain": int(sum(not f for f in flags))}


def domain_warning(counts: dict, share: float | None = None) -> str | None:
    """One warning line when more than ``share`` of the checked items are out of domain, else None."""
    from deepgen.evaluation.ood import WARN_SHARE

    share = WARN_SHARE if share is None else share
    n, bad = counts["checked"], counts["out_of_domain"]
    if not n or bad / n <= share:
        return None
    return (f"warning: {bad} of {n} scored items ({bad / n:.0%}) are out of the model's training domain "
            f"(ood_score > 1); treat their scores with caution.")


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
    from deepgen.progress import Progress
    from deepgen.runtime import init_ray

    t0 = time.perf_counter()
    cfg = cfg or ScoreConfig()
    check_options(cfg.frames, cfg.sampling, cfg.clip_len, margin=cfg.margin)  # before any bundle or Ray
    paths = [checkpoint] if isinstance(checkpoint, str) else list(checkpoint)
    storage.check_output_path(out, inputs=[manifest, *paths], overwrite=overwrite)  # before any work
    rows = load_media_rows(manifest)
    check_allowed(rows, allowed_roots)
    model_id = ensemble_model_id([b.model_id for b in load_bundles(paths)])  # fails here, before any actor
    init_ray(address)
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
    domain = domain_counts(table)
    warning = domain_warning(domain)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    return {
        "out": str(out),
        "model_id": model_id,
        "media": len(rows),
        "by_status": dict(sorted(statuses.items())),
        "flagged_fake": int(sum(s >= 0.5 for s in scores)),
        "out_of_domain": domain["out_of_domain"],
        "seconds": round(time.perf_counter() - t0, 2),
        "videos_per_s": round(len(rows) / max(time.perf_counter() - t0, 1e-9), 3),
    }


def score_file(path: str, checkpoint: str | list[str], cfg: ScoreConfig | None = None) -> dict:
    """Score one video or image file in this process (no manifest, no Ray): its scores row as a dict.

    The same stages as the batch pipeline run in turn (sample, detect, crop; model; aggregate).
    """
    import os

    from deepgen.scoring.inputs import IMAGE_EXTS, check_media_file, printable
    from deepgen.scoring.pipeline import CROPS_SCHEMA, FaceStage, ModelStage, extract_config

    cfg = cfg or ScoreConfig()
    check_options(cfg.frames, cfg.sampling, cfg.clip_len, margin=cfg.margin)  # before any bundle loads
    check_media_file(path)
    paths = [checkpoint] if isinstance(checkpoint, str) else list(checkpoint)
    load_bundles(paths)  # a bad checkpoint fails here with its one-sentence error
    p = storage.get_fs(path)[1]
    row = {"media_id": printable(os.path.basename(p.rstrip("/"))), "uri": str(path), "label": None, "dataset": None,
           "fingerprint": None, "media_type": "image" if p.lower().endswith(IMAGE_EXTS) else "video",
           "status": None, "error": None}
    found = FaceStage(extract_config(paths, cfg)).crops_row(row)
    # the name as text: a file name that is not UTF-8 still opens above, and is shown with \x escapes
    crops = pa.Table.from_pylist([{**found, "uri": printable(str(path))}], schema=CROPS_SCHEMA)
    model = ModelStage(paths[0] if len(paths) == 1 else paths, cfg.mc_passes, cfg.evidence, cfg.explain)
    return model(crops).to_pylist()[0]


def format_verdict(row: dict) -> str:
    """A few lines an analyst reads for one scored item: verdict, score, uncertainty, domain, tracks, status."""
    name = row["media_id"]
    if row.get("score") is None:
        return f"{name}: no score; status {row['status']} ({row.get('error') or 'no detail'})"
    verdict = "likely fake" if row["score"] >= 0.5 else "likely real"
    if row.get("in_domain") is None:
        domain = "domain not checked (the bundle records no domain check)"
    else:
        domain = (f"{'in domain' if row['in_domain'] else 'OUT OF DOMAIN: the model never saw media like this'} "
                  f"(ood_score {row['ood_score']:.2f}, threshold 1)")
    lines = [f"{name}: {verdict}, score {row['score']:.3f} (P(fake)), uncertainty {row['uncertainty']:.3f} nats",
             f"  {domain}",
             f"  status {row['status']}; {row['n_frames']} frames sampled, {row['n_faces']} faces in "
             f"{row['n_tracks']} track{'s' if row['n_tracks'] != 1 else ''}"]
    tracks: dict[int, list[tuple]] = {}
    for i, t, s, ts in zip(row.get("frame_indices") or [], row.get("frame_tracks") or [],
                           row.get("frame_scores") or [], row.get("frame_times") or []):
        tracks.setdefault(t, []).append((s, i, ts))
    for t, fr in sorted(tracks.items()):
        s, i, ts = max(fr)
        at = f"frame {i}" + (f" ({ts:.2f} s)" if ts is not None else "")
        lines.append(f"  track {t}: {len(fr)} frames, mean frame score {sum(f[0] for f in fr) / len(fr):.3f}, "
                     f"highest {s:.3f} at {at}")
    lines.append(f"  model {row['model_id']}" + (f"; decision point {row['operating_point']}"
                                                 if row.get("operating_point") else ""))
    return "\n".join(lines)
