"""Nightly rescoring: score only what this model has not scored yet, in dated partitions.

Items are keyed by ``media_id`` plus a content fingerprint (size + mtime, or the S3 ETag), so a
changed file is scored again and a new model scores everything. Results are committed in chunks as
they stream out of the pipeline; a run killed at any point and started again scores each item
exactly once (idempotent: a second run over the same input adds nothing), also when two runs overlap
(they take turns through a lease per store and model). Only outcomes that belong to the item are
recorded: an item failed by an option, the environment or a decoder bug (status ``error``) is left
out, so the next run tries it again instead of keeping it as failed for good.
"""

from __future__ import annotations

import json
import re
import sys
import time
import uuid
from collections import Counter
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from deepgen import storage
from deepgen.errors import DeepgenError
from deepgen.faces.media import NOT_THE_ITEMS, check_options
from deepgen.inference import ensemble_model_id, load_bundles
from deepgen.scoring import store
from deepgen.scoring.inputs import check_allowed, load_media_rows
from deepgen.scoring.lease import Lease
from deepgen.scoring.pipeline import ScoreConfig, score_stream
from deepgen.scoring.score import domain_counts, domain_warning


def rescore(
    incoming: str,
    checkpoint: str | list[str],
    store_uri: str,
    cfg: ScoreConfig | None = None,
    address: str | None = None,
    allowed_roots: list[str] | None = None,
    date: str | None = None,
    chunk_size: int = 32,
    alpha: float = 0.01,
    quiet: bool = False,
    lease_wait_s: float = 600.0,
) -> dict:
    """Score the new or changed items of ``incoming`` into ``store_uri``; write and return the run summary.

    Progress lines (items scored of those to do) go to stderr unless ``quiet``. Runs on the same store and
    model take turns: one waits up to ``lease_wait_s`` for another's lease (:mod:`deepgen.scoring.lease`).
    """
    from deepgen.progress import Progress
    from deepgen.runtime import init_ray

    t0 = time.perf_counter()
    cfg = cfg or ScoreConfig()
    check_options(cfg.frames, cfg.sampling, cfg.clip_len, margin=cfg.margin)  # before any bundle, lease or Ray
    date = check_date(date) if date is not None else datetime.now(timezone.utc).strftime("%Y-%m-%d")
    run_id = f"{datetime.now(timezone.utc).strftime('%H%M%S')}-{uuid.uuid4().hex[:6]}"
    rows = load_media_rows(incoming)
    check_allowed(rows, allowed_roots)
    for r, fp in zip(rows, store.fingerprints([r["uri"] for r in rows])):
        r["fingerprint"] = fp
    paths = [checkpoint] if isinstance(checkpoint, str) else list(checkpoint)
    bundles = load_bundles(paths)  # a bad bundle fails here in one sentence, before any actor
    model_id = ensemble_model_id([b.model_id for b in bundles])  # a new model (or member) rescores everything
    written = 0
    outside: list[str] = []  # errors of items failed by something outside them: not recorded, tried next run
    run_domain = {"checked": 0, "out_of_domain": 0}
    # one run at a time per store and model: what is done is read only once the lease is held
    with Lease(store_uri, model_id, wait_s=lease_wait_s) as lease:
        done = store.scored_keys(store_uri, model_id)
        todo = [r for r in rows if (r["media_id"], r["fingerprint"]) not in done]
        if todo:
            init_ray(address)
            pending: list[pa.Table] = []
            n_pending = 0
            progress = Progress(len(todo), "rescore", quiet=quiet)
            for batch in score_stream(todo, paths, cfg, batch_rows=chunk_size):
                progress.update(batch.num_rows)
                theirs = pc.fill_null(pc.not_equal(batch.column("status"), NOT_THE_ITEMS), True)
                outside += batch.filter(pc.invert(theirs)).column("error").to_pylist()
                batch = batch.filter(theirs)
                if not batch.num_rows:
                    continue
                for k, v in domain_counts(batch).items():
                    run_domain[k] += v
                pending.append(batch)
                n_pending += batch.num_rows
                if n_pending >= chunk_size:
                    _commit(lease, store_uri, model_id, date, run_id, written, pending)
                    written, pending, n_pending = written + 1, [], 0
            if pending:
                _commit(lease, store_uri, model_id, date, run_id, written, pending)
                written += 1
            progress.close()
    warning = domain_warning(run_domain)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    if outside:
        print(f"warning: {len(outside)} items failed for a reason outside them (status error, e.g. {outside[0]}); "
              "they are not recorded, so the next run tries them again.", file=sys.stderr, flush=True)
    summary = run_summary(store_uri, model_id, bundles[0].reference, date, alpha=alpha)
    summary.update({
        "run_id": run_id, "incoming": str(incoming), "items_seen": len(rows), "items_scored": len(todo) - len(outside),
        "items_not_recorded": len(outside),
        "already_scored": len(rows) - len(todo), "chunks_written": written, "lease_wait_s": round(lease.waited_s, 2),
        "run_out_of_domain": run_domain["out_of_domain"],
        "seconds": round(time.perf_counter() - t0, 2),
    })
    storage.write_bytes(storage.join(store_uri, "runs", f"{date}-{run_id}.json"),
                        json.dumps(summary, indent=2, default=str).encode())
    return summary


def check_date(date: str) -> str:
    """A partition date: ``YYYY-MM-DD`` and a real calendar day, nothing else (it becomes a path)."""
    if not isinstance(date, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", date):
        raise DeepgenError(f"--date {date!r} is not a date; give it as YYYY-MM-DD, e.g. 2024-05-31.")
    try:
        datetime.strptime(date, "%Y-%m-%d")
    except ValueError as e:
        raise DeepgenError(f"--date {date!r} is not a calendar day; give a real date as YYYY-MM-DD.") from e
    return date


def _commit(lease: Lease, store_uri: str, model_id: str, date: str, run_id: str, index: int,
            pending: list[pa.Table]) -> None:
    """Write one chunk, but only while this run still holds the lease (a run stalled past its expiry
    may have been overtaken; it stops rather than write rows twice)."""
    lease.renew()
    if not lease.held:
        raise DeepgenError(f"this rescore lost its lease {lease.uri} (it stalled longer than the lease lasts and "
                           "another run took over); its committed chunks are kept, so rerun it to finish.")
    store.write_chunk(store_uri, model_id, date, run_id, index, pa.concat_tables(pending))


def run_summary(store_uri: str, model_id: str, reference: dict, date: str, alpha: float = 0.01,
                bins: int = 10) -> dict:
    """Counts by status, score histogram, share flagged fake and the MMD shift test of one date's
    features against ``reference`` (the checkpoint's training feature statistics)."""
    from deepgen.evaluation.shift import shift_report

    table = store.read_scores(store_uri, model_id, date)
    out: dict = {"model_id": model_id, "date": date, "store": str(store_uri)}
    if table is None:
        return {**out, "rows": 0, "by_status": {}, "shift": None, "alarm": False}
    statuses = Counter(table.column("status").to_pylist())
    scores = np.array([s for s in table.column("score").to_pylist() if s is not None], dtype=float)
    hist, edges = np.histogram(scores, bins=bins, range=(0.0, 1.0))
    out.update({
        "rows": table.num_rows,
        "by_status": dict(sorted(statuses.items())),
        "score_histogram": {"edges": edges.round(3).tolist(), "counts": hist.tolist()},
        "share_flagged_fake": float((scores >= 0.5).mean()) if len(scores) else None,
        "out_of_domain": domain_counts(table)["out_of_domain"],
    })
    feats = [f for f in table.column("features").to_pylist() if f is not None]
    shift = None
    if len(feats) >= 5 and reference:
        shift = shift_report(reference, np.asarray(feats, dtype=np.float64), alpha=alpha,
                             n_permutations=500, seed=0)
    out["shift"] = shift
    out["alarm"] = bool(shift and shift.get("shift_detected"))
    return out
