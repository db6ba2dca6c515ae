"""Manifest -> faces table on Ray Data: one video per row, actors with a detector loaded once.

Each actor call handles a few videos and writes their face rows as one Parquet shard straight into
the output's temporary directory (encoded crops only, never frames); only small status rows travel
back to the driver, which writes the status table and commits both atomically.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections import Counter

import pyarrow as pa

from deepgen.errors import DeepgenError
from deepgen.faces.detect import DETECTORS
from deepgen.faces.media import ExtractConfig, extract_media
from deepgen.schema import FACES_SCHEMA, MANIFEST_COLUMNS, validate_manifest
from deepgen.storage import atomic_dir, get_fs, join, read_table, write_table

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
    ]
)


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
        shard = None
        if faces:
            # name from content so a retried task overwrites its shard instead of duplicating it
            key = hashlib.sha1("\n".join(sorted(str(r["media_id"]) for r in rows)).encode()).hexdigest()
            shard = f"part-{key[:16]}.parquet"
            write_table(faces_table(faces, self.cfg.carry), join(self.faces_dir, shard))
        for s in statuses:
            s["shard"] = shard if s["n_faces"] else None
        return pa.Table.from_pylist(statuses, schema=STATUS_SCHEMA)


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
    **cfg_kwargs,
) -> dict:
    """Extract face crops for every manifest item into ``out_uri``/faces and ``out_uri``/status.

    Returns a summary: counts by status, faces written, seconds, and the output URIs.
    """
    import ray

    from deepgen.runtime import init_ray

    if detector not in DETECTORS:
        raise DeepgenError(f"detector {detector!r} is unknown; choose one of {', '.join(DETECTORS)}.")
    if cfg_kwargs.get("image_format", "jpeg") not in ("jpeg", "jpg", "png"):
        raise DeepgenError(f"image format {cfg_kwargs['image_format']!r} is unknown; use jpeg or png.")
    if frames < 1 or size < 16 or margin < 0:
        raise DeepgenError("--frames must be >= 1, --size >= 16 and --margin >= 0; fix the option values.")
    cfg = ExtractConfig(frames=frames, size=size, margin=margin, detector=detector, all_faces=all_faces,
                        threads=1, **cfg_kwargs)
    if detector == "dlib":  # fail on the driver, before any worker starts
        from deepgen.faces.detect import DlibDetector

        DlibDetector(cfg.predictor_path)
    manifest = validate_manifest(read_table(manifest_uri), where=str(manifest_uri))
    fs, path = get_fs(out_uri)
    if not overwrite and fs.exists(path) and (fs.isfile(path) or fs.ls(path)):
        raise DeepgenError(f"{out_uri} already exists; pass --overwrite to replace it or choose another output.")
    carry = tuple(c for c in manifest.column_names if c not in MANIFEST_COLUMNS)
    cfg = dataclasses.replace(cfg, carry=carry)
    rows = manifest.select(["media_id", "uri", "media_type", "label", "dataset", "method", "split",
                            "source_id", *carry]).to_pylist()
    init_ray(address)
    t0 = time.perf_counter()
    workers = num_workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
    workers = max(1, min(workers, len(rows)))
    statuses: list[dict] = []
    with atomic_dir(out_uri, overwrite=overwrite) as tmp:
        faces_dir = join(tmp, "faces")
        tfs, tpath = get_fs(faces_dir)
        tfs.makedirs(tpath, exist_ok=True)
        if rows:
            ds = ray.data.from_items(rows, override_num_blocks=len(rows))
            ds = ds.map_batches(
                ExtractActor,
                fn_constructor_kwargs={"cfg": cfg, "faces_dir": faces_dir},
                batch_size=batch_size,
                batch_format="numpy",
                compute=ray.data.ActorPoolStrategy(size=workers),
                num_cpus=1,
            )
            for batch in ds.iter_batches(batch_size=256, batch_format="pyarrow"):
                statuses.extend(batch.to_pylist())
        statuses = _check_complete(rows, statuses)
        _drop_orphans(faces_dir, {s["shard"] for s in statuses if s["shard"]})
        status_table = pa.Table.from_pylist(statuses, schema=STATUS_SCHEMA).drop_columns(["shard"])
        write_table(status_table, join(tmp, "status", "part-00000.parquet"))
        if not any(s["n_faces"] for s in statuses):
            write_table(faces_table([], carry), join(faces_dir, "part-empty.parquet"))
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
    }


def _check_complete(rows: list[dict], statuses: list[dict]) -> list[dict]:
    """One status row per manifest item, in manifest order (a retried batch may repeat rows)."""
    by_id = {s["media_id"]: s for s in statuses}
    missing = [r["media_id"] for r in rows if r["media_id"] not in by_id]
    if missing:
        raise RuntimeError(f"extraction lost {len(missing)} media item(s), e.g. {missing[0]}")
    return [by_id[r["media_id"]] for r in rows]


def _drop_orphans(faces_dir: str, keep: set[str]) -> None:
    """Remove shards no status row points at (left by a task that was retried differently)."""
    fs, path = get_fs(faces_dir)
    for p in fs.ls(path, detail=False):
        name = p.rstrip("/").rsplit("/", 1)[-1]
        if name.endswith(".parquet") and name not in keep:
            fs.rm(p)


def read_faces(uri: str, columns: list[str] | None = None) -> pa.Table:
    """The faces table of an :func:`extract_faces` output directory (its ``faces/``), or a faces table path."""
    from deepgen.storage import exists

    inner = join(str(uri), "faces")
    return read_table(inner if exists(inner) else str(uri), columns=columns)


def read_status(out_uri: str) -> pa.Table:
    """The per-media status table written by :func:`extract_faces`."""
    return read_table(join(str(out_uri), "status"))
