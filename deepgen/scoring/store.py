"""The results store for nightly rescoring: dated, per-model partitions keyed by content fingerprint.

Layout (local directory or ``s3://`` prefix)::

    STORE/scores/model_id=<id>/date=<YYYY-MM-DD>/part-<run>-<n>.parquet   one file per committed chunk
    STORE/runs/<date>-<run>.json                                          run summaries

Every chunk is one atomic write (rename locally, one PUT on S3), so a killed run loses at most
the chunk in flight and never leaves a half-written file; the next run skips every
``(media_id, fingerprint)`` already present for the model and so scores each item exactly once.
Runs that overlap take turns through a lease per store and model (:mod:`deepgen.scoring.lease`), and
every reader deduplicates on ``(media_id, fingerprint, model_id)`` (:func:`dedupe_scores`).
"""

from __future__ import annotations

import os
import posixpath
from collections import defaultdict

import pyarrow as pa
import pyarrow.parquet as pq

from deepgen import storage
from deepgen.schema import dedupe_scores


def fingerprints(uris: list[str]) -> list[str]:
    """Content fingerprint per URI: ``size:mtime_ns`` locally, the ETag on S3, ``missing`` if absent.

    Listing is done once per parent directory rather than once per file, which matters on S3.
    """
    by_parent: dict[str, list[int]] = defaultdict(list)
    for i, uri in enumerate(uris):
        base = uri.split("#", 1)[0]
        parent = posixpath.dirname(base) if storage.is_remote(base) else os.path.dirname(os.path.abspath(base))
        by_parent[parent].append(i)
    out = ["missing"] * len(uris)
    for parent, idx in by_parent.items():
        fs, ppath = storage.get_fs(parent)
        try:
            listing = {e["name"].rstrip("/"): e for e in fs.ls(ppath, detail=True)}
        except (FileNotFoundError, NotADirectoryError, PermissionError, OSError):
            continue
        for i in idx:
            _, path = storage.get_fs(uris[i].split("#", 1)[0])
            entry = listing.get(path.rstrip("/"))
            if entry is None:
                continue
            etag = entry.get("ETag") or entry.get("etag")
            if etag:
                out[i] = f"etag:{str(etag).strip(chr(34))}"
            else:
                mtime = entry.get("mtime") or entry.get("LastModified") or entry.get("created") or 0
                mtime = getattr(mtime, "timestamp", lambda m=mtime: m)()
                out[i] = f"{entry.get('size', 0)}:{int(float(mtime) * 1e9)}"
            if "#" in uris[i]:
                out[i] += "#" + uris[i].split("#", 1)[1]
    return out


def model_prefix(store: str, model_id: str) -> str:
    return storage.join(store, "scores", f"model_id={model_id}")


def read_scores(store: str, model_id: str, date: str | None = None) -> pa.Table | None:
    """All committed score rows of one model (optionally one date), or None when there are none."""
    prefix = model_prefix(store, model_id)
    if date:
        prefix = storage.join(prefix, f"date={date}")
    fs, path = storage.get_fs(prefix)
    if not fs.exists(path):
        return None
    with storage.remote_errors(prefix):
        files = sorted(p for p in fs.find(path) if p.endswith(".parquet") and "/.tmp-" not in p and ".tmp-" not in
                       p.rsplit("/", 1)[-1])
        if not files:
            return None
        table = pa.concat_tables([pq.read_table(f, filesystem=fs) for f in files], promote_options="default")
    return dedupe_scores(table)


def scored_keys(store: str, model_id: str) -> set[tuple[str, str]]:
    """The ``(media_id, fingerprint)`` pairs this model has already scored."""
    table = read_scores(store, model_id)
    if table is None:
        return set()
    cols = table.select(["media_id", "fingerprint"]).to_pydict()
    return set(zip(cols["media_id"], cols["fingerprint"]))


def write_chunk(store: str, model_id: str, date: str, run_id: str, index: int, table: pa.Table) -> str:
    """Commit one chunk of score rows atomically; returns its URI."""
    uri = storage.join(model_prefix(store, model_id), f"date={date}", f"part-{run_id}-{index:05d}.parquet")
    storage.write_table(table, uri)
    return uri
