"""The four data contracts (../shared/DESIGN.md): column names, Arrow types and validation.

Label convention everywhere: ``label = 1`` is fake, ``0`` real; every score is P(fake).
"""

from __future__ import annotations

import pyarrow as pa

from deepgen.errors import DeepgenError

MANIFEST_SCHEMA = pa.schema(
    [
        ("media_id", pa.string()),  # "<dataset>/<relative path>", unique
        ("uri", pa.string()),  # local path or s3://...
        ("label", pa.int8()),  # 1 fake, 0 real
        ("dataset", pa.string()),
        ("method", pa.string()),  # "real" or the manipulation name
        ("split", pa.string()),  # train|val|test
        ("source_id", pa.string()),
        ("compression", pa.string()),  # raw|c23|c40|unknown
        ("media_type", pa.string()),  # video|frames|image
    ]
)
MANIFEST_COLUMNS = MANIFEST_SCHEMA.names

FACES_SCHEMA = pa.schema(
    [
        ("media_id", pa.string()),
        ("frame_index", pa.int32()),
        ("track_id", pa.int32()),  # one id per face followed across the sampled frames, 0 = largest track
        ("image", pa.binary()),  # encoded JPEG/PNG bytes of the crop
        ("box", pa.list_(pa.float32(), 4)),  # x0, y0, x1, y1 in original-frame pixels
        ("landmarks", pa.list_(pa.float32())),  # nullable, flattened (x, y) pairs in original-frame pixels: 5 (YuNet) or 68 (dlib)
        ("det_score", pa.float32()),
        ("label", pa.int8()),
        ("dataset", pa.string()),
        ("method", pa.string()),
        ("split", pa.string()),
        ("source_id", pa.string()),
        ("clip_index", pa.int32()),  # nullable: under --sampling clips, the run (0..) the frame belongs to
        ("clip_pos", pa.int32()),  # nullable: the frame's position in its run (0..clip_len-1)
    ]
)
FACES_COLUMNS = FACES_SCHEMA.names

SCORES_SCHEMA = pa.schema(
    [
        ("media_id", pa.string()),
        ("uri", pa.string()),
        ("score", pa.float64()),  # calibrated P(fake)
        ("logit", pa.float64()),
        ("uncertainty", pa.float64()),
        ("n_frames", pa.int32()),
        ("n_faces", pa.int32()),
        ("n_tracks", pa.int32()),  # face tracks followed across the sampled frames
        ("status", pa.string()),  # ok|no_face|decode_error|unreadable|missing|rejected
        ("error", pa.string()),
        ("model_id", pa.string()),
        ("scored_at", pa.timestamp("us", tz="UTC")),
        ("label", pa.int8()),
        ("dataset", pa.string()),
        ("ood_score", pa.float64()),  # distance to the bundle's training features, in threshold units
        ("in_domain", pa.bool_()),  # ood_score <= 1; null without a score or a domain check
    ]
)
SCORES_COLUMNS = SCORES_SCHEMA.names

MEDIA_STATUSES = ("ok", "no_face", "decode_error", "unreadable", "missing", "rejected", "too_large")
SPLITS = ("train", "val", "test")
MEDIA_TYPES = ("video", "frames", "image")


def validate_manifest(table: pa.Table, where: str = "manifest") -> pa.Table:
    """Check a manifest table against the contract and return it cast to the contract schema."""
    missing = [c for c in MANIFEST_COLUMNS if c not in table.column_names]
    if missing:
        raise DeepgenError(
            f"{where} lacks the column(s) {', '.join(missing)}; "
            "write it with `deepgen manifest` or add them (see DESIGN.md, manifest contract)."
        )
    table = table.select(MANIFEST_COLUMNS + [c for c in table.column_names if c not in MANIFEST_COLUMNS])
    for col in ("media_id", "uri"):
        values = table.column(col).to_pylist()
        bad = next((i for i, v in enumerate(values) if not isinstance(v, str) or not v.strip()), None)
        if bad is not None:
            raise DeepgenError(f"{where} row {bad} has {col} {values[bad]!r}; every row needs a non-empty {col} "
                               "string, so fill it in or drop the row.")
    ids = table.column("media_id").to_pylist()
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dup = next(i for i in ids if i in seen or seen.add(i))
        raise DeepgenError(
            f"{where} has duplicate media_id {dup!r}; media_id must be unique, so deduplicate the manifest."
        )
    labels = set(table.column("label").to_pylist())
    if not labels <= {0, 1}:
        raise DeepgenError(f"{where} has labels {sorted(labels, key=str)}; use 1 for fake and 0 for real.")
    splits = set(table.column("split").to_pylist())
    if not splits <= set(SPLITS):
        raise DeepgenError(f"{where} has splits {sorted(splits, key=str)}; use only train, val and test.")
    cols = [table.column(n).cast(MANIFEST_SCHEMA.field(n).type) for n in MANIFEST_COLUMNS]
    extra = [c for c in table.column_names if c not in MANIFEST_COLUMNS]
    return pa.table(cols + [table.column(c) for c in extra], names=MANIFEST_COLUMNS + extra)


def dedupe_scores(table: pa.Table) -> pa.Table:
    """One row per ``(media_id, fingerprint, model_id)``: the earliest scored, so a store that two
    overlapping runs (before leases) wrote twice still reads as if each item was scored once."""
    keys = [c for c in ("media_id", "fingerprint", "model_id") if c in table.column_names]
    if not keys or table.num_rows == 0:
        return table
    cols = table.select(keys).to_pydict()
    stamps = table.column("scored_at").to_pylist() if "scored_at" in table.column_names else [None] * table.num_rows
    order = sorted(range(table.num_rows), key=lambda i: (stamps[i] is None, stamps[i] or 0, i))
    seen: set[tuple] = set()
    keep = []
    for i in order:
        key = tuple(cols[k][i] for k in keys)
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return table if len(keep) == table.num_rows else table.take(sorted(keep))
