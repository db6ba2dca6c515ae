"""What scoring reads: a manifest Parquet, or a folder / ``s3://`` prefix of media files."""

from __future__ import annotations

import os
import posixpath

from deepgen import storage
from deepgen.errors import DeepgenError

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
REQUIRED = ("media_id", "uri")


def load_media_rows(source: str) -> list[dict]:
    """Rows with at least ``media_id`` and ``uri`` from a manifest, or one row per media file under a prefix."""
    fs, path = storage.get_fs(source)
    if not storage.exists(source):
        raise DeepgenError(f"{source} does not exist; pass a manifest Parquet or a folder/prefix of media.")
    with storage.remote_errors(source):
        return _load_media_rows(source, fs, path)


def _load_media_rows(source: str, fs, path: str) -> list[dict]:
    if fs.isfile(path) and path.endswith(".parquet") or fs.isdir(path) and _is_table_dir(fs, path):
        table = storage.read_table(source)
        missing = [c for c in REQUIRED if c not in table.column_names]
        if missing:
            raise DeepgenError(
                f"manifest {source} lacks the column(s) {', '.join(missing)}; "
                "add them or build it with `deepgen manifest`."
            )
        rows = table.to_pylist()
        seen: set[str] = set()
        for i, r in enumerate(rows):
            for col in REQUIRED:
                if not isinstance(r[col], str) or not r[col].strip():
                    raise DeepgenError(
                        f"manifest {source} row {i} has {col} {r[col]!r}; every row needs a non-empty {col} "
                        "string, so fill it in or drop the row."
                    )
            label = r.get("label")
            if label is not None and (isinstance(label, bool) or label not in (0, 1)):
                raise DeepgenError(
                    f"manifest {source} row {i} ({r['media_id']}) has label {label!r}; use 1 for fake, 0 for "
                    "real or leave it empty."
                )
            if r["media_id"] in seen:
                raise DeepgenError(
                    f"manifest {source} has duplicate media_id {r['media_id']!r}; media_id must be unique, "
                    "so deduplicate it."
                )
            seen.add(r["media_id"])
        return rows
    if fs.isfile(path):
        raise DeepgenError(f"{source} is neither a Parquet manifest nor a folder of media; pass one of those.")
    files = sorted(p for p in fs.find(path) if p.lower().endswith(VIDEO_EXTS + IMAGE_EXTS))
    name = (posixpath if storage.is_remote(source) else os.path).basename(path.rstrip("/")) or "incoming"
    return [
        {
            "media_id": f"{name}/{p[len(path):].lstrip('/')}",
            "uri": storage.to_uri(fs, p),
            "media_type": "image" if p.lower().endswith(IMAGE_EXTS) else "video",
            "label": None,
            "dataset": name,
        }
        for p in files
    ]


def _is_table_dir(fs, path: str) -> bool:
    names = [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)]
    parquet = [n for n in names if n.endswith(".parquet")]
    return bool(parquet) and len(parquet) == len([n for n in names if not n.startswith(("_", "."))])


def check_allowed(rows: list[dict], allowed_roots: list[str] | None) -> None:
    """Mark rows whose URI is outside every allowed prefix as ``rejected`` (they are never read)."""
    if not allowed_roots:
        return
    roots = [_norm(r) for r in allowed_roots]
    for r in rows:
        uri = _norm(r["uri"])
        if not any(uri == root or uri.startswith(root.rstrip("/") + "/") for root in roots):
            r["status"], r["error"] = "rejected", f"{r['uri']} is outside the allowed roots"


def _norm(uri: str) -> str:
    uri = str(uri)
    if storage.is_remote(uri):
        return uri
    return os.path.realpath(uri[len("file://"):] if uri.startswith("file://") else uri)

