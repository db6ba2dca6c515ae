"""What scoring reads: a manifest Parquet, or a folder / ``s3://`` prefix of media files."""

from __future__ import annotations

import errno
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
    name = printable((posixpath if storage.is_remote(source) else os.path).basename(path.rstrip("/")) or "incoming")
    rows = []
    for p in files:
        rel = printable(p[len(path):].lstrip("/"))
        rows.append({"media_id": f"{name}/{rel}", "uri": printable(storage.to_uri(fs, p)),
                     "media_type": "image" if p.lower().endswith(IMAGE_EXTS) else "video", "label": None,
                     "dataset": name})
        if printable(p) != p:  # tables hold UTF-8 text only, so this name cannot travel: a status row
            rows[-1].update(status="unreadable",
                            error=f"its file name {rel} is not valid UTF-8; rename the file to score it")
    return rows


def printable(name: str) -> str:
    """``name`` as valid UTF-8 text: bytes of a file name that are not UTF-8 shown as ``\\xff`` escapes."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def check_media_file(path: str) -> None:
    """Refuse, in one sentence, a path that is not one readable file: absent, a folder, a symlink loop."""
    fs, p = storage.get_fs(path)
    if not storage.is_remote(path) and os.path.islink(p):
        try:
            os.stat(p)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise DeepgenError(f"{printable(path)} is a symlink loop; point the link at a real file.") from None
            raise DeepgenError(f"{printable(path)} is a symlink to {printable(os.readlink(p))}, which does not "
                               "exist; point the link at a real file.") from None
    if not storage.exists(path):
        raise DeepgenError(f"{printable(path)} does not exist; pass a video or image file (or --manifest for many).")
    if fs.isdir(p):
        raise DeepgenError(f"{printable(path)} is a folder; pass one video or image file, or score the folder with "
                           "--manifest.")


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

