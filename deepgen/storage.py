"""Paths and ``s3://`` URIs through one interface, with atomic table writes.

Every function takes a local path or a URI. S3 credentials and endpoint come from the usual
AWS environment variables; ``AWS_ENDPOINT_URL`` (or ``AWS_ENDPOINT_URL_S3``) selects a
non-AWS endpoint such as a local test server.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import fsspec
import pyarrow as pa
import pyarrow.parquet as pq

from deepgen.errors import DeepgenError

SUCCESS_MARKER = "_SUCCESS"
# What deepgen writes into every ``_SUCCESS`` marker: the owner stamp :func:`owned_by_deepgen` looks for
# (an empty ``_SUCCESS`` is what Spark/Hadoop write, so it proves nothing).
OWNER_STAMP = b'{"written_by": "deepgen"}\n'


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


def remote_error(uri: str, e: BaseException) -> DeepgenError | None:
    """The one-sentence error for a failed S3 call on ``uri`` (no credentials, endpoint unreachable,
    access denied), or None when ``e`` is not one of those."""
    name = type(e).__name__
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or "AWS S3"
    if name in ("NoCredentialsError", "PartialCredentialsError", "CredentialRetrievalError"):
        return DeepgenError(f"{uri} could not be read: no S3 credentials were found; set AWS_ACCESS_KEY_ID and "
                            "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) and try again.")
    if name in ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError", "ReadTimeoutError",
                "ProxyConnectionError", "SSLError", "ConnectionError"):
        return DeepgenError(f"{uri} could not be reached: the S3 endpoint {endpoint} did not answer; check "
                            "AWS_ENDPOINT_URL and the network, then try again.")
    if isinstance(e, PermissionError) or name == "ClientError" and "AccessDenied" in str(e):
        return DeepgenError(f"{uri} could not be read: access denied ({e}); check the S3 credentials and "
                            "the bucket's permissions.")
    if name == "ClientError" and ("NoSuchBucket" in str(e) or "InvalidBucketName" in str(e)):
        return DeepgenError(f"{uri} names a bucket that does not exist; check the bucket name.")
    return None


@contextmanager
def remote_errors(uri: str) -> Iterator[None]:
    """Turn S3 credential and connection failures on ``uri`` into one-sentence :class:`DeepgenError`."""
    try:
        yield
    except DeepgenError:
        raise
    except Exception as e:
        err = remote_error(uri, e) if is_remote(uri) else None
        if err is None:
            raise
        raise err from e


def exists(uri: str) -> bool:
    """Whether ``uri`` exists; on S3 a missing credential or endpoint is an error, not ``False``."""
    fs, path = get_fs(uri)
    if not is_remote(uri):
        return fs.exists(path)
    with remote_errors(uri):
        if "/" not in path.strip("/"):  # a bucket
            try:
                fs.ls(path)
                return True
            except FileNotFoundError:
                return False
        try:
            fs.info(path)
            return True
        except FileNotFoundError:
            return False


def read_bytes(uri: str) -> bytes:
    fs, path = get_fs(uri)
    with remote_errors(uri), fs.open(path, "rb") as f:
        return f.read()


def write_bytes(uri: str, data: bytes) -> None:
    """Write a small file atomically where the filesystem allows (rename locally, one PUT on S3)."""
    fs, path = get_fs(uri)
    if is_remote(uri):
        with remote_errors(uri), fs.open(path, "wb") as f:
            f.write(data)
        return
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _s3_call(uri: str, method: str, **kwargs) -> dict:
    """One raw S3 call on the object ``uri`` (conditional writes and versioned reads), awaited on the
    filesystem's own event loop: s3fs's client is aiobotocore's, whose methods return coroutines. A
    streamed ``Body`` is read there too and returned as bytes. Errors stay botocore's ``ClientError``
    (with its code), not s3fs's translation, so a failed precondition can be told apart."""
    from fsspec.asyn import sync

    fs, path = get_fs(uri)
    bucket, _, key = path.partition("/")

    async def call() -> dict:
        await fs.set_session()
        client = await fs.get_s3(bucket)
        resp = await getattr(client, method)(Bucket=bucket, Key=key, **kwargs)
        if "Body" in resp:
            body = resp["Body"]
            try:
                resp = {**resp, "Body": await body.read()}
            finally:
                body.close()
        return resp

    with remote_errors(uri):
        return sync(fs.loop, call)


def _precondition_failed(e: Exception) -> bool:
    resp = getattr(e, "response", None) or {}
    code = str(resp.get("Error", {}).get("Code", ""))
    status = resp.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409") or status in (409, 412)


def create_exclusive(uri: str, data: bytes) -> str | None:
    """Create the file ``uri`` holding ``data`` only if it does not exist yet; its version (see
    :func:`read_versioned`) when this call created it, else None. Atomic, and whole when visible:
    locally the content is written to a private file and hard-linked into place (``link`` fails if
    ``uri`` exists), on S3 a conditional PUT (``If-None-Match: *``)."""
    if is_remote(uri):
        try:
            etag = _s3_call(uri, "put_object", Body=data, IfNoneMatch="*")["ETag"]
            get_fs(uri)[0].invalidate_cache()
            return str(etag)
        except Exception as e:
            if _precondition_failed(e):
                return None
            raise
    fs, path = get_fs(uri)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)
    except FileExistsError:
        return None
    finally:
        os.remove(tmp)
    return hashlib.sha256(data).hexdigest()[:16]


def read_versioned(uri: str) -> tuple[bytes, str] | None:
    """The bytes of ``uri`` and a version tag for :func:`replace_if_version` (the ETag on S3, a content
    hash locally), or None when it does not exist."""
    if is_remote(uri):
        try:
            resp = _s3_call(uri, "get_object")
        except Exception as e:
            if type(e).__name__ in ("NoSuchKey",) or "NoSuchKey" in str(e) or "404" in str(e):
                return None
            raise
        return resp["Body"], str(resp["ETag"])
    _, path = get_fs(uri)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return None
    return data, hashlib.sha256(data).hexdigest()[:16]


@contextmanager
def _local_cas_lock(path: str) -> Iterator[None]:
    """Serialise compare-and-swap on the local file ``path`` across processes: an exclusive ``flock`` on
    ``<path>.lock``, which the kernel releases when its holder dies, so a killed writer wedges nothing.

    The holder removes ``<path>.lock`` before unlocking, so none is left behind; a waiter that wakes on a
    removed file takes the lock again on the new one. A holder killed (``kill -9``) inside the lock leaves
    its ``.lock`` file: harmless (it is not held) and removed by the next compare-and-swap on ``path``.
    """
    import fcntl

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    name = f"{path}.lock"
    while True:
        lock = open(name, "a")
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if os.stat(name).st_ino == os.fstat(lock.fileno()).st_ino:
                break  # locked the file that is still there under the name
        except FileNotFoundError:
            pass  # removed by the previous holder while this one waited: lock the next one
        lock.close()
    try:
        yield
    finally:
        try:
            os.remove(name)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
            lock.close()


def replace_if_version(uri: str, data: bytes, version: str) -> str | None:
    """Replace ``uri`` with ``data`` only if it is still at ``version`` (compare-and-swap); the new
    version on success, None when someone else changed or removed it first.

    S3: a conditional PUT (``If-Match: <ETag>``). Locally: the check and the atomic rename run under
    an exclusive ``flock`` (:func:`_local_cas_lock`).
    """
    if is_remote(uri):
        try:
            return str(_s3_call(uri, "put_object", Body=data, IfMatch=version)["ETag"])
        except Exception as e:
            if _precondition_failed(e) or "NoSuchKey" in str(e):
                return None
            raise
    with _local_cas_lock(get_fs(uri)[1]):
        current = read_versioned(uri)
        if current is None or current[1] != version:
            return None
        write_bytes(uri, data)
    return hashlib.sha256(data).hexdigest()[:16]


def delete_if_version(uri: str, version: str) -> None:
    """Delete the small file ``uri`` if it is still at ``version`` (leases release only their own)."""
    if is_remote(uri):
        try:
            _s3_call(uri, "delete_object", IfMatch=version)
        except Exception as e:
            if not (_precondition_failed(e) or "NoSuchKey" in str(e)):
                raise
        return
    _, path = get_fs(uri)
    with _local_cas_lock(path):
        current = read_versioned(uri)
        if current is not None and current[1] == version:
            os.remove(path)


def read_table(uri: str, columns: list[str] | None = None) -> pa.Table:
    """Read a Parquet file or a table directory (written by :func:`write_table`)."""
    fs, path = get_fs(uri)
    if not exists(uri):
        raise DeepgenError(f"{uri} does not exist; check the path or create it first.")
    with remote_errors(uri):
        return _read_table(fs, path, uri, columns)


def _read_table(fs, path: str, uri: str, columns: list[str] | None) -> pa.Table:
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


# ---------------------------------------------------------------------------------------------------
# Deletion policy: the one place that decides what deepgen may replace or remove.
# ---------------------------------------------------------------------------------------------------


def _local_real(path: str) -> str:
    return os.path.realpath(os.path.abspath(os.path.expanduser(path)))


def _norm_key(uri: str) -> str:
    """A comparable form of ``uri``: the real absolute path locally, ``s3://bucket/key`` without a trailing slash."""
    uri = str(uri)
    if is_remote(uri):
        scheme, _, rest = uri.partition("://")
        return f"{scheme}://{posixpath.normpath('/' + rest).lstrip('/')}".rstrip("/")
    return _local_real(uri[len("file://"):] if uri.startswith("file://") else uri)


def _is_ancestor(parent: str, child: str) -> bool:
    """True when ``child`` is ``parent`` or lies under it (both normalised keys)."""
    sep = "/" if "://" in parent or os.sep == "/" else os.sep
    return child == parent or child.startswith(parent.rstrip(sep) + sep)


def protected_reason(uri: str, inputs: Iterable[str] = ()) -> str | None:
    """Why ``uri`` may never be an output that deepgen replaces: ``/``, the working directory, home, a
    bucket root, or an ancestor of (or the same place as) an input; None when it may be."""
    key = _norm_key(uri)
    if is_remote(uri):
        if "/" not in key.split("://", 1)[1]:
            return "it is a whole bucket"
    else:
        if key == os.path.dirname(key):  # "/" (or a drive root)
            return "it is the filesystem root"
        if key == _local_real(os.getcwd()):
            return "it is the working directory"
        if key == _local_real("~"):
            return "it is your home directory"
        if _is_ancestor(key, _local_real(os.getcwd())):
            return "it holds the working directory"
        if _is_ancestor(key, _local_real("~")):
            return "it holds your home directory"
    for src in inputs:
        if src is None or is_remote(src) != is_remote(uri):
            continue
        if _is_ancestor(key, _norm_key(src)):
            return f"it is or holds the input {src}"
    return None


def lies_under(child: str, parent: str) -> bool:
    """True when ``child`` is ``parent`` or lies inside it (local paths resolved, ``s3://`` keys normalised),
    e.g. an output folder inside an input table that is read recursively."""
    if is_remote(child) != is_remote(parent):
        return False
    return _is_ancestor(_norm_key(parent), _norm_key(child))


def owned_by_deepgen(uri: str, markers: Iterable[str] = ()) -> bool:
    """True when ``uri`` is a directory deepgen wrote: its ``_SUCCESS`` carries deepgen's stamp, or one
    of the caller's own settings files (``markers``, e.g. an extraction's ``settings.json``) is there."""
    marker = join(uri, SUCCESS_MARKER)
    if exists(marker) and read_bytes(marker).strip().startswith(OWNER_STAMP.strip()[:-1]):
        return True
    return any(exists(join(uri, m)) for m in markers)


def _holds_files(fs, path: str) -> bool:
    with remote_errors(to_uri(fs, path)):
        return fs.isfile(path) or bool(fs.find(path))


def check_output_path(uri: str, inputs: Iterable[str] = (), overwrite: bool = False,
                      markers: Iterable[str] = (), flag: str = "--overwrite") -> None:
    """Refuse an output deepgen must not write over, before any work starts.

    Never ``/``, the working directory, home, a bucket root or an ancestor of an input. An existing,
    non-empty output is refused without ``overwrite``, and with it unless deepgen wrote it
    (:func:`owned_by_deepgen`). A missing or empty output is fine.
    """
    reason = protected_reason(uri, inputs)
    if reason:
        raise DeepgenError(f"{uri} cannot be an output because {reason}; choose a new folder for the output.")
    fs, path = get_fs(uri)
    if not exists(uri) or not _holds_files(fs, path):
        return
    if not overwrite:
        raise DeepgenError(f"{uri} already exists; pass {flag} to replace it or choose another output.")
    if fs.isfile(path) or not owned_by_deepgen(uri, markers):
        raise DeepgenError(f"{uri} was not written by deepgen (no deepgen marker in it), so {flag} will not "
                           "delete it; choose another output or move it away yourself.")


def remove_owned(uri: str, inputs: Iterable[str] = (), markers: Iterable[str] = ()) -> None:
    """Delete the directory ``uri`` only if deepgen wrote it (or it holds no file at all) and it is not a
    protected place (:func:`protected_reason`); anything else is refused in one sentence."""
    reason = protected_reason(uri, inputs)
    if reason:
        raise DeepgenError(f"refusing to delete {uri} because {reason}; remove it yourself if you mean it.")
    fs, path = get_fs(uri)
    if not exists(uri):
        return
    if _holds_files(fs, path) and (fs.isfile(path) or not owned_by_deepgen(uri, markers)):
        raise DeepgenError(f"refusing to delete {uri}: it was not written by deepgen (no deepgen marker in it); "
                           "move it away yourself or choose another output.")
    with remote_errors(uri):
        fs.rm(path, recursive=True)


def _remove_own_temp(fs, path: str) -> None:
    """Remove a temporary directory this very process created under a fresh random name."""
    if fs.exists(path):
        fs.rm(path, recursive=True)


def write_marker(uri: str) -> None:
    """Write the ``_SUCCESS`` marker with deepgen's owner stamp into the directory ``uri``."""
    write_bytes(join(uri, SUCCESS_MARKER), OWNER_STAMP)


@contextmanager
def atomic_dir(uri: str, overwrite: bool = False, inputs: Iterable[str] = (),
               markers: Iterable[str] = ()) -> Iterator[str]:
    """Yield a temporary directory URI; on success move its contents into ``uri`` and commit.

    A killed run leaves only a ``.tmp-*`` sibling, never a partial table at ``uri``. An existing
    output is refused unless ``overwrite`` is set and deepgen wrote it (:func:`check_output_path`).
    """
    check_output_path(uri, inputs, overwrite, markers)
    fs, path = get_fs(uri)
    parent, name = posixpath.split(path.rstrip("/")) if is_remote(uri) else os.path.split(path.rstrip("/"))
    tmp_path = (posixpath if is_remote(uri) else os.path).join(parent, f".tmp-{name}-{uuid.uuid4().hex[:8]}")
    tmp_uri = to_uri(fs, tmp_path)
    if not is_remote(uri):
        os.makedirs(tmp_path, exist_ok=True)
    try:
        yield tmp_uri
        if exists(uri):  # checked above; checked again in case it appeared meanwhile
            remove_owned(uri, inputs, markers)
        if is_remote(uri):
            # object stores have no directory rename: copy each object, then commit with the marker last
            # (fs.mv(recursive=True) also tries to copy the pseudo-directory key itself and fails)
            fs.invalidate_cache()
            with remote_errors(uri):
                for src in fs.find(tmp_path):
                    fs.copy(src, path + src[len(tmp_path):])
            write_marker(uri)
        else:
            write_marker(tmp_uri)
            os.replace(tmp_path, path)
    finally:
        _remove_own_temp(fs, tmp_path)


def run_storage(uri: str):
    """Ray Train/Tune ``storage_path`` and ``storage_filesystem`` for a local path or ``s3://`` URI
    (an fsspec-backed pyarrow filesystem, so endpoints and credentials apply as everywhere else)."""
    if not is_remote(uri):
        return os.path.abspath(uri), None
    import pyarrow.fs as pafs

    fs, path = get_fs(uri)
    return path, pafs.PyFileSystem(pafs.FSSpecHandler(fs))
