"""Manifest -> faces table on Ray Data: one video per row, actors with a detector loaded once.

Each actor call handles a few videos and writes their face rows as one Parquet shard straight into
the run's work directory ``OUT.partial/faces`` (encoded crops only, never frames); only small status
rows travel back to the driver. The driver commits them in chunks (``OUT.partial/status/chunk-*.parquet``,
one atomic write each, only for actor batches whose every row arrived), so a killed run keeps its
committed chunks and ``resume=True`` extracts only the rest (and tries again items whose attempt failed for
a reason outside them, status ``error``). When every item has its status row the
output is published atomically: ``OUT/faces``, ``OUT/status``, ``OUT/extract.json`` and ``_SUCCESS``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
import time
import uuid
from collections import Counter

import pyarrow as pa
import pyarrow.parquet as pq

from deepgen.errors import DeepgenError
from deepgen.faces.detect import DETECTORS
from deepgen.faces.media import NOT_THE_ITEMS, ExtractConfig, check_options, extract_media
from deepgen.schema import FACES_SCHEMA, MANIFEST_COLUMNS, validate_manifest
from deepgen.storage import (
    atomic_dir,
    check_output_path,
    exists,
    get_fs,
    is_remote,
    join,
    read_bytes,
    read_table,
    remove_owned,
    write_bytes,
    write_table,
)
from deepgen.video import DEFAULT_SAMPLING

PARTIAL_SUFFIX = ".partial"
SETTINGS = "settings.json"
EXTRACT_JSON = "extract.json"

STATUS_SCHEMA = pa.schema(
    [
        ("media_id", pa.string()),
        ("uri", pa.string()),
        ("status", pa.string()),
        ("error", pa.string()),
        ("n_frames", pa.int32()),
        ("n_faces", pa.int32()),
        ("label", pa.int8()),
        ("dataset", pa.string()),
        ("seconds", pa.float64()),
        ("shard", pa.string()),
        ("clips_off_key", pa.int32()),  # --sampling clips: runs not starting at a keyframe (GOP too long); else null
    ]
)
# what the actors return: status rows plus the actor batch they came from (a chunk commits whole batches only)
BATCH_SCHEMA = pa.schema(list(STATUS_SCHEMA) + [pa.field("batch", pa.string()), pa.field("batch_n", pa.int32())])


def faces_schema(carry: tuple[str, ...] = ()) -> pa.Schema:
    """The faces contract plus any extra manifest columns carried along (as strings)."""
    return pa.schema(list(FACES_SCHEMA) + [pa.field(c, pa.string()) for c in carry])


def faces_table(rows: list[dict], carry: tuple[str, ...] = ()) -> pa.Table:
    for r in rows:
        for c in carry:
            r[c] = None if r.get(c) is None else str(r[c])
    return pa.Table.from_pylist(rows, schema=faces_schema(carry))


class ExtractActor:
    """Ray Data callable class: detector built once per actor; writes one faces shard per batch."""

    def __init__(self, cfg: ExtractConfig, faces_dir: str):
        import cv2

        from deepgen.faces.detect import get_detector

        cv2.setNumThreads(1)
        self.cfg, self.faces_dir = cfg, faces_dir
        self.detector = get_detector(cfg.detector, cfg.predictor_path)

    def __call__(self, batch: dict) -> pa.Table:
        rows = [dict(zip(batch, vals)) for vals in zip(*batch.values())]
        faces, statuses = [], []
        for row in rows:
            f, s = extract_media(row, self.cfg, self.detector)
            faces.extend(f)
            statuses.append(s)
        # name from content so a retried task overwrites its shard instead of duplicating it
        key = hashlib.sha1("\n".join(sorted(str(r["media_id"]) for r in rows)).encode()).hexdigest()[:16]
        shard = None
        if faces:
            shard = f"part-{key}.parquet"
            write_table(faces_table(faces, self.cfg.carry), join(self.faces_dir, shard))
        for s in statuses:
            s["shard"] = shard if s["n_faces"] else None
            s["batch"], s["batch_n"] = key, len(rows)
        return pa.Table.from_pylist(statuses, schema=BATCH_SCHEMA)


def extract_faces(
    manifest_uri: str,
    out_uri: str,
    frames: int = 32,
    size: int = 224,
    margin: float = 0.3,
    detector: str = "yunet",
    all_faces: bool = False,
    address: str | None = None,
    overwrite: bool = False,
    num_workers: int | None = None,
    batch_size: int = 4,
    resume: bool = False,
    chunk_size: int = 256,
    quiet: bool = False,
    **cfg_kwargs,
) -> dict:
    """Extract face crops for every manifest item into ``out_uri``/faces and ``out_uri``/status.

    Work is committed in chunks of about ``chunk_size`` items under ``out_uri + ".partial"``; with
    ``resume`` a killed run continues from its last committed chunk (same settings and manifest only),
    and items committed with status ``error`` (not the item's fault) are extracted again. Progress lines
    go to stderr unless ``quiet``. Returns a summary: counts by status, faces written, seconds, and the
    output URIs.
    """
    import ray

    from deepgen.progress import Progress, progress_enabled
    from deepgen.runtime import init_ray, map_actors

    if detector not in DETECTORS:
        raise DeepgenError(f"detector {detector!r} is unknown; choose one of {', '.join(DETECTORS)}.")
    if cfg_kwargs.get("image_format", "jpeg") not in ("jpeg", "jpg", "png"):
        raise DeepgenError(f"image format {cfg_kwargs['image_format']!r} is unknown; use jpeg or png.")
    check_options(frames, cfg_kwargs.get("sampling", DEFAULT_SAMPLING), cfg_kwargs.get("clip_len", 8), size, margin)
    if chunk_size < 1:
        raise DeepgenError(f"chunk size {chunk_size} is too small; pass --chunk-size 1 or more.")
    cfg = ExtractConfig(frames=frames, size=size, margin=margin, detector=detector, all_faces=all_faces,
                        threads=1, **cfg_kwargs)
    if detector == "dlib":  # fail on the driver, before any worker starts
        from deepgen.faces.detect import DlibDetector

        DlibDetector(cfg.predictor_path)
    manifest = validate_manifest(read_table(manifest_uri), where=str(manifest_uri))
    check_output_path(out_uri, inputs=[manifest_uri], overwrite=overwrite, markers=[EXTRACT_JSON])
    check_output_path(partial_uri(out_uri), inputs=[manifest_uri], overwrite=True, markers=[SETTINGS])
    carry = tuple(c for c in manifest.column_names if c not in MANIFEST_COLUMNS)
    cfg = dataclasses.replace(cfg, carry=carry)
    rows = manifest.select(["media_id", "uri", "media_type", "label", "dataset", "method", "split",
                            "source_id", *carry]).to_pylist()
    partial = partial_uri(out_uri)
    settings = {"config": json.loads(json.dumps(cfg.as_dict())), "manifest": manifest_fingerprint(rows)}
    statuses = _open_partial(partial, settings, out_uri, resume=resume, overwrite=overwrite)
    retried = sum(s["status"] == NOT_THE_ITEMS for s in statuses)
    statuses = [s for s in statuses if s["status"] != NOT_THE_ITEMS]  # not the item's fault: try it again
    if retried and progress_enabled(quiet):
        print(f"extract: retrying {retried} item(s) whose earlier attempt failed for a reason outside the item "
              f"(status {NOT_THE_ITEMS!r})", file=sys.stderr)
    faces_dir = join(partial, "faces")
    done = {s["media_id"] for s in statuses}
    todo = [r for r in rows if r["media_id"] not in done]
    resumed = len(done)
    t0 = time.perf_counter()
    workers = 1
    if todo:
        init_ray(address)  # before the progress clock starts: the rate is the pipeline's, not Ray's start-up
    with Progress(len(rows), "extract", quiet=quiet, start=resumed) as progress:
        if todo:
            workers = num_workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
            workers = max(1, min(workers, len(todo)))
            ds = ray.data.from_items(todo, override_num_blocks=min(len(todo), MAX_BLOCKS))
            ds = map_actors(ds, ExtractActor, fn_constructor_kwargs={"cfg": cfg, "faces_dir": faces_dir},
                            batch_size=batch_size, batch_format="numpy",
                            compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=1)
            committer = _ChunkCommitter(partial, chunk_size, done)
            for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
                progress.update(committer.add(batch.to_pylist()))
            committer.flush()
            statuses.extend(committer.committed)
    statuses = _check_complete(rows, statuses)
    _publish(out_uri, partial, statuses, cfg, overwrite=overwrite)
    counts = Counter(s["status"] for s in statuses)
    return {
        "out": str(out_uri),
        "faces": join(str(out_uri), "faces"),
        "status": join(str(out_uri), "status"),
        "media": len(rows),
        "faces_written": int(sum(s["n_faces"] for s in statuses)),
        "frames_sampled": int(sum(s["n_frames"] for s in statuses)),
        "by_status": dict(sorted(counts.items())),
        "seconds": round(time.perf_counter() - t0, 3),
        "workers": workers,
        "resumed_items": resumed,
    }


MAX_BLOCKS = 2000  # input blocks: enough to balance the actors, few enough to keep the driver small
COMMIT_EVERY_S = 60.0  # commit a chunk at least this often, even when it is smaller than chunk_size


def partial_uri(out_uri: str) -> str:
    """The work directory of an extraction into ``out_uri``: its sibling ``OUT.partial``."""
    return str(out_uri).rstrip("/") + PARTIAL_SUFFIX


def manifest_fingerprint(rows: list[dict]) -> str:
    """A hash of the manifest rows an extraction reads (ids, URIs and every carried column)."""
    h = hashlib.sha256()
    for r in rows:
        h.update(json.dumps(r, sort_keys=True, default=str).encode())
        h.update(b"\n")
    return h.hexdigest()[:32]


def _settings_diff(old: dict, new: dict) -> list[str]:
    """Human-readable differences between two runs' settings (``frames 6 -> 8``, ``manifest``)."""
    diffs = []
    a, b = old.get("config", {}), new.get("config", {})
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            diffs.append(f"{k} {a.get(k)!r} -> {b.get(k)!r}")
    if old.get("manifest") != new.get("manifest"):
        diffs.append("the manifest's rows")
    return diffs


def _open_partial(partial: str, settings: dict, out_uri: str, resume: bool, overwrite: bool) -> list[dict]:
    """Prepare ``OUT.partial``: fresh (after removing an old one when allowed) or, resuming, its committed rows."""
    fs, path = get_fs(partial)
    fs.invalidate_cache()
    has_partial = exists(join(partial, SETTINGS))  # no settings: killed before any work, start afresh
    if has_partial and resume:
        old = json.loads(read_bytes(join(partial, SETTINGS)))
        diffs = _settings_diff(old, settings)
        if diffs:
            raise DeepgenError(
                f"cannot resume {out_uri}: its interrupted run used other settings ({'; '.join(diffs)}); "
                "rerun with the same options and manifest, or pass --overwrite to start over."
            )
        return _committed_rows(partial)
    if fs.exists(path):
        if has_partial and not overwrite:
            raise DeepgenError(f"{partial} holds an interrupted extraction; pass --resume to continue it or "
                               "--overwrite to start over.")
        remove_owned(partial, markers=[SETTINGS])  # only a work directory deepgen wrote (or an empty one)
    write_bytes(join(partial, SETTINGS), json.dumps(settings, indent=2).encode())  # first: marks it as ours
    if not is_remote(partial):
        os.makedirs(os.path.join(path, "faces"), exist_ok=True)
    return []


def _committed_rows(partial: str) -> list[dict]:
    """The status rows of every committed chunk (each chunk file is one atomic write)."""
    fs, path = get_fs(join(partial, "status"))
    fs.invalidate_cache()
    if not fs.exists(path):
        return []
    rows: dict[str, dict] = {}
    for f in sorted(p for p in fs.find(path) if p.endswith(".parquet") and "/.tmp-" not in p):
        for r in pq.read_table(f, filesystem=fs).to_pylist():
            old = rows.get(r["media_id"])
            if old is None or old["status"] == NOT_THE_ITEMS:  # a retry's row replaces a failed attempt's
                rows[r["media_id"]] = r
    return list(rows.values())


class _ChunkCommitter:
    """Collect status rows from the stream; commit whole actor batches in chunks of about ``chunk_size``."""

    def __init__(self, partial: str, chunk_size: int, done: set[str]):
        self.partial, self.chunk_size = partial, chunk_size
        self.seen = set(done)
        self.open: dict[str, list[dict]] = {}  # actor batch -> rows received so far
        self.ready: list[dict] = []
        self.committed: list[dict] = []
        self.run = uuid.uuid4().hex[:8]
        self.n_chunks = 0
        self.last = time.perf_counter()

    def add(self, rows: list[dict]) -> int:
        """Take streamed status rows; returns how many new items they finish (for progress)."""
        new = 0
        for r in rows:
            if r["media_id"] in self.seen:  # a retried task's repeat
                continue
            self.seen.add(r["media_id"])
            new += 1
            got = self.open.setdefault(r["batch"], [])
            got.append(r)
            if len(got) >= r["batch_n"]:
                self.ready.extend(self.open.pop(r["batch"]))
        if len(self.ready) >= self.chunk_size or (self.ready and time.perf_counter() - self.last > COMMIT_EVERY_S):
            self._commit()
        return new

    def _commit(self) -> None:
        rows = [{k: v for k, v in r.items() if k not in ("batch", "batch_n")} for r in self.ready]
        name = f"chunk-{self.run}-{self.n_chunks:05d}.parquet"
        write_table(pa.Table.from_pylist(rows, schema=STATUS_SCHEMA), join(self.partial, "status", name))
        self.committed.extend(rows)
        self.ready, self.n_chunks, self.last = [], self.n_chunks + 1, time.perf_counter()

    def flush(self) -> None:
        """At the end of the stream: commit every row still held (a batch short of rows was deduplicated)."""
        self.ready.extend(r for rows in self.open.values() for r in rows)
        self.open = {}
        if self.ready:
            self._commit()


def _publish(out_uri: str, partial: str, statuses: list[dict], cfg: ExtractConfig, overwrite: bool) -> None:
    """Assemble the committed chunks into ``out_uri`` atomically, then remove the work directory."""
    pfs, ppath = get_fs(join(partial, "faces"))
    shards = sorted({s["shard"] for s in statuses if s["shard"]})
    with atomic_dir(out_uri, overwrite=overwrite, markers=[EXTRACT_JSON]) as tmp:
        faces_dir = join(tmp, "faces")
        tfs, tpath = get_fs(faces_dir)
        tfs.makedirs(tpath, exist_ok=True)
        for shard in shards:
            src, dst = join(ppath, shard), join(tpath, shard)
            if is_remote(partial):
                pfs.copy(src, dst)
            else:
                try:
                    os.link(src, dst)  # the partial stays whole until the output is committed
                except OSError:
                    pfs.copy(src, dst)
        status_table = pa.Table.from_pylist(statuses, schema=STATUS_SCHEMA).drop_columns(["shard"])
        write_table(status_table, join(tmp, "status", "part-00000.parquet"))
        write_bytes(join(tmp, EXTRACT_JSON), json.dumps(extract_settings(cfg, statuses), indent=2).encode())
        if not shards:
            write_table(faces_table([], cfg.carry), join(faces_dir, "part-empty.parquet"))
    remove_owned(partial, markers=[SETTINGS])


def extract_settings(cfg: ExtractConfig, statuses: list[dict]) -> dict:
    """What ``extract.json`` records: the settings, and under clips sampling how often runs could not
    start at a keyframe (GOPs longer than the video allows), so a reader knows the frames cost more."""
    out = cfg.as_dict()
    if cfg.sampling == "clips":
        off = [s for s in statuses if s.get("clips_off_key")]
        out["clips_fallback"] = {
            "media": len(off),
            "runs": int(sum(s["clips_off_key"] for s in off)),
            "note": "runs that could not start at a keyframe (GOPs longer than the video allows) "
                    "follow straight on from the run before them",
            "examples": [s["media_id"] for s in off[:5]],
        }
    return out


def read_extract_config(out_uri: str) -> dict | None:
    """The extraction settings (``ExtractConfig.as_dict()``) of an extract output, or None if it has none."""
    uri = join(str(out_uri), EXTRACT_JSON)
    if not exists(uri):
        return None
    return json.loads(read_bytes(uri))


def _check_complete(rows: list[dict], statuses: list[dict]) -> list[dict]:
    """One status row per manifest item, in manifest order (a retried batch may repeat rows)."""
    by_id = {s["media_id"]: s for s in statuses}
    missing = [r["media_id"] for r in rows if r["media_id"] not in by_id]
    if missing:
        raise RuntimeError(f"extraction lost {len(missing)} media item(s), e.g. {missing[0]}")
    return [by_id[r["media_id"]] for r in rows]


def read_faces(uri: str, columns: list[str] | None = None) -> pa.Table:
    """The faces table of an :func:`extract_faces` output directory (its ``faces/``), or a faces table path."""
    from deepgen.storage import exists

    inner = join(str(uri), "faces")
    return read_table(inner if exists(inner) else str(uri), columns=columns)


def read_status(out_uri: str) -> pa.Table:
    """The per-media status table written by :func:`extract_faces`."""
    return read_table(join(str(out_uri), "status"))
