"""Paths and ``s3://`` URIs through one interface, with atomic table writes.

Every function takes a local path or a URI. S3 credentials and endpoint come from the usual
AWS environment variables; ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``) selects a
non-AWS endpoint such as a local test server.
"""

from __future__ import annotations

import os
import posixpath
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from deepgen.errors import DeepgenError

SUCCESS_MARKER = "_SUCCESS"


def is_remote(uri: str) -> bool:
    return "://" in str(uri) and not str(uri).startswith("file://")


def get_fs(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """Return the filesystem for ``uri`` and the path inside it."""
    uri = str(uri)
    if uri.startswith("s3://"):
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        kwargs = {"client_kwargs": {"endpoint_url": endpoint}} if endpoint else {}
        fs = fsspec.filesystem("s3", **kwargs)
        return fs, uri[len("s3://") :].rstrip("/")
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    return fsspec.filesystem("file"), os.path.abspath(uri)


def join(base: str, *parts: str) -> str:
    """Join path parts, keeping the ``s3://`` scheme intact."""
    base = str(base)
    if is_remote(base):
        return posixpath.join(base.rstrip("/"), *parts)
    return os.path.join(base, *parts)


def to_uri(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """Turn a filesystem path back into a URI users can pass around."""
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return f"s3://{path}" if protocol in ("s3", "s3a") else path


def exists(uri: str) -> bool:
    fs, path = get_fs(uri)
    return fs.exists(path)


def read_bytes(uri: str) -> bytes:
    fs, path = get_fs(uri)
    with fs.open(path, "rb") as f:
        return f.read()


def write_bytes(uri: str, data: bytes) -> None:
    """Write a small file atomically where the filesystem allows (rename locally, one PUT on S3)."""
    fs, path = get_fs(uri)
    if is_remote(uri):
        with fs.open(path, "wb") as f:
            f.write(data)
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def read_table(uri: str, columns: list[str] | None = None) -> pa.Table:
    """Read a Parquet file or a table directory (written by :func:`write_table`)."""
    fs, path = get_fs(uri)
    if not fs.exists(path):
        raise DeepgenError(f"{uri} does not exist; check the path or create it first.")
    if fs.isdir(path):
        files = sorted(
            p for p in fs.find(path) if p.endswith(".parquet") and "/.tmp-" not in p and "/_" not in p[len(path):]
        )
        if not files:
            raise DeepgenError(f"{uri} holds no Parquet files; point at a table written by deepgen.")
        return pa.concat_tables(
            [pq.read_table(f, filesystem=fs, columns=columns) for f in files], promote_options="default"
        )
    return pq.read_table(path, filesystem=fs, columns=columns)


def write_table(table: pa.Table, uri: str) -> None:
    """Write one Parquet file atomically (temp file, then rename or single PUT)."""
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    write_bytes(uri, sink.getvalue().to_pybytes())


def table_complete(uri: str) -> bool:
    """True when a table directory was committed (its ``_SUCCESS`` marker exists)."""
    return exists(join(uri, SUCCESS_MARKER))


@contextmanager
def atomic_dir(uri: str, overwrite: bool = False) -> Iterator[str]:
    """Yield a temporary directory URI; on success move its contents into ``uri`` and commit.

    A killed run leaves only a ``.tmp-*`` sibling, never a partial table at ``uri``. An existing
    output is refused unless ``overwrite`` is set.
    """
    fs, path = get_fs(uri)
    if fs.exists(path) and (fs.isfile(path) or fs.ls(path)):
        if not overwrite:
            raise DeepgenError(f"{uri} already exists; pass --overwrite to replace it or choose another output.")
    parent, name = posixpath.split(path.rstrip("/")) if is_remote(uri) else os.path.split(path.rstrip("/"))
    tmp_path = (posixpath if is_remote(uri) else os.path).join(parent, f".tmp-{name}-{uuid.uuid4().hex[:8]}")
    tmp_uri = to_uri(fs, tmp_path)
    if not is_remote(uri):
        os.makedirs(tmp_path, exist_ok=True)
    try:
        yield tmp_uri
        if fs.exists(path):
            fs.rm(path, recursive=True)
        if is_remote(uri):
            # object stores have no directory rename: copy each object, then commit with the marker last
            # (fs.mv(recursive=True) also tries to copy the pseudo-directory key itself and fails)
            fs.invalidate_cache()
            for src in fs.find(tmp_path):
                fs.copy(src, path + src[len(tmp_path):])
            fs.touch(posixpath.join(path, SUCCESS_MARKER))
        else:
            fs.touch(os.path.join(tmp_path, SUCCESS_MARKER))
            os.replace(tmp_path, path)
    finally:
        if fs.exists(tmp_path):
            fs.rm(tmp_path, recursive=True)


def run_storage(uri: str):
    """Ray Train/Tune ``storage_path`` and ``storage_filesystem`` for a local path or ``s3://`` URI
    (an fsspec-backed pyarrow filesystem, so endpoints and credentials apply as everywhere else)."""
    if not is_remote(uri):
        return os.path.abspath(uri), None
    import pyarrow.fs as pafs

    fs, path = get_fs(uri)
    return path, pafs.PyFileSystem(pafs.FSSpecHandler(fs))
