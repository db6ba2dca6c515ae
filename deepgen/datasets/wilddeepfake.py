"""WildDeepfake adapter and frame-sequence reader.

Layout: ``{real,fake}_{train,test}/N.tar.gz`` (folder names also written with a space, e.g.
``fake train``), each archive holding ``./N/{real|fake}/<sequence>/<frame>.png``; or the same
archives extracted in place (``fake_train/N/fake/<sequence>/<frame>.png``). One media item per
sequence (``media_type = "frames"``); an extracted folder ``<class>/N/`` wins over ``N.tar.gz``.
Test folders are the test split; training archives go to train/val deterministically by archive.
WildDeepfake does not name the manipulation, so fakes get ``method = "unknown"``.

URIs of sequences:

* extracted: the sequence folder, e.g. ``/data/wdf/fake_train/12/fake/3`` or ``s3://b/wdf/...``;
* inside an archive: ``<archive uri>#<member folder>``, e.g.
  ``s3://b/wdf/fake train/12.tar.gz#12/fake/3``, where the member folder is the archive path of
  the sequence without a leading ``./``.

:func:`read_frame_sequence` and :func:`list_frames` read both kinds, local or ``s3://``.
"""

from __future__ import annotations

import posixpath
import re
import tarfile
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa

from deepgen.datasets.records import Record, to_table
from deepgen.datasets.splits import assign_splits
from deepgen.datasets.tree import ARCHIVE_EXTS, Tree, is_archive, is_image, list_tree, stem
from deepgen.errors import DeepgenError
from deepgen.storage import get_fs

DATASET = "wilddeepfake"
LAYOUT = (
    "the WildDeepfake layout {real,fake}_{train,test}/N.tar.gz (or 'real train' etc.) holding "
    "./N/{real|fake}/<sequence>/<frame>.png, or those archives extracted in place"
)
CLASS_DIR = re.compile(r"^(real|fake)[ _-]?(train|test)$", re.IGNORECASE)
TRAIN_VAL = {"train": 0.9, "val": 0.1}
FAKE_METHOD = "unknown"


def _member(name: str) -> str:
    """Archive member name without ``./`` or ``/`` at the front."""
    while name.startswith("./"):
        name = name[2:]
    return name.lstrip("/")


def _natural(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def split_uri(uri: str) -> tuple[str | None, str]:
    """``(archive uri, member folder)`` for an archive sequence URI, else ``(None, uri)``."""
    head, sep, tail = str(uri).rpartition("#")
    if sep and head.lower().endswith(ARCHIVE_EXTS):
        return head, tail.strip("/")
    return None, str(uri)


def _open_archive(archive_uri: str):
    fs, path = get_fs(archive_uri)
    return fs.open(path, "rb")


def iter_archive_sequences(archive_uri: str) -> Iterator[tuple[str, list[tuple[str, bytes]]]]:
    """Yield ``(member folder, [(frame name, bytes), ...])`` for every sequence in one archive."""
    seqs: dict[str, list[tuple[str, bytes]]] = {}
    try:
        with _open_archive(archive_uri) as f, tarfile.open(fileobj=f, mode="r|*") as tar:
            for m in tar:
                name = _member(m.name)
                if m.isfile() and is_image(name):
                    data = tar.extractfile(m).read()
                    seqs.setdefault(posixpath.dirname(name), []).append((posixpath.basename(name), data))
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise DeepgenError(f"cannot read the archive {archive_uri} ({e}); re-download it.") from e
    for prefix in sorted(seqs, key=_natural):
        yield prefix, sorted(seqs[prefix], key=lambda x: _natural(x[0]))


def _archive_sequence(archive_uri: str, prefix: str) -> list[tuple[str, bytes]]:
    """The frames of one member folder, reading (streamed) only that folder's members into memory.

    A member over ``deepgen.video.MAX_ENCODED_BYTES`` raises ``MediaError`` (status ``too_large``)
    before a byte of it is read.
    """
    from deepgen.video import check_encoded_size

    frames: list[tuple[str, bytes]] = []
    uri = f"{archive_uri}#{prefix}"
    try:
        with _open_archive(archive_uri) as f, tarfile.open(fileobj=f, mode="r|*") as tar:
            for m in tar:
                name = _member(m.name)
                if m.isfile() and is_image(name) and posixpath.dirname(name) == prefix:
                    check_encoded_size(m.size, uri, f"archive member {name}")
                    frames.append((posixpath.basename(name), tar.extractfile(m).read()))
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise DeepgenError(f"cannot read the archive {archive_uri} ({e}); re-download it.") from e
    return sorted(frames, key=lambda x: _natural(x[0]))


def _archive_members(archive_uri: str) -> dict[str, int]:
    """Member folder -> frame count, read from the archive's headers."""
    counts: dict[str, int] = {}
    try:
        with _open_archive(archive_uri) as f, tarfile.open(fileobj=f, mode="r|*") as tar:
            for m in tar:
                name = _member(m.name)
                if m.isfile() and is_image(name):
                    d = posixpath.dirname(name)
                    counts[d] = counts.get(d, 0) + 1
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise DeepgenError(f"cannot read the WildDeepfake archive {archive_uri} ({e}); re-download it.") from e
    return counts


def list_frames(uri: str) -> list[tuple[str, bytes]]:
    """``[(frame name, encoded bytes), ...]`` of one sequence, in natural frame order.

    A missing archive or folder raises ``FileNotFoundError``; a sequence without frames or an
    unreadable archive raises :class:`DeepgenError`; a frame over the size limit raises
    :class:`deepgen.video.MediaError` with status ``too_large`` (never read into memory).
    """
    from deepgen.video import check_encoded_size

    archive, prefix = split_uri(uri)
    if archive is not None:
        frames = _archive_sequence(archive, prefix)
    else:
        fs, path = get_fs(uri)
        path = path.rstrip("/")
        if not fs.exists(path):
            raise FileNotFoundError(uri)
        found = fs.find(path, detail=True)
        names = [p for p in found if posixpath.dirname(p) == path and is_image(p)]
        for p in names:
            check_encoded_size(int(found[p].get("size") or 0), uri, f"frame {posixpath.basename(p)}")
        data = fs.cat(names) if names else {}
        frames = sorted(((posixpath.basename(p), data[p]) for p in names), key=lambda x: _natural(x[0]))
    if not frames:
        raise DeepgenError(f"{uri} holds no frames; expected a folder (or archive member folder) of image files.")
    return frames


def read_frame_sequence(uri: str) -> list[bytes]:
    """Encoded frames (PNG/JPEG bytes) of one sequence, in frame order; see :func:`list_frames`."""
    return [data for _, data in list_frames(uri)]


def _class_records(tree: Tree, cls: str, split: str) -> list[tuple[str, str, str, str]]:
    """(media path, uri, archive id, split) of each sequence in one class folder."""
    out = []
    extracted: dict[str, set[str]] = {}
    for rel in tree.under(cls):
        inner = rel[len(cls) + 1 :]
        if "/" in inner and is_image(rel):
            extracted.setdefault(inner.split("/", 1)[0], set()).add(posixpath.dirname(rel))
    for n, seq_dirs in extracted.items():
        out += [(d, tree.uri(d), n, split) for d in seq_dirs]
    archives = [
        rel
        for rel in tree.under(cls)
        if "/" not in rel[len(cls) + 1 :] and is_archive(rel) and stem(rel) not in extracted
    ]
    uris = [tree.uri(rel) for rel in archives]
    with ThreadPoolExecutor(max_workers=8) as pool:  # archives are read whole: overlap the I/O
        members = list(pool.map(_archive_members, uris))
    for rel, archive_uri, prefixes in zip(archives, uris, members):
        out += [(f"{cls}/{p}", f"{archive_uri}#{p}", stem(rel), split) for p in prefixes]
    return out


def build(root: str) -> pa.Table:
    """Manifest of a WildDeepfake tree: one ``frames`` item per sequence, archives read directly."""
    tree = list_tree(root, LAYOUT)
    classes = [(d, CLASS_DIR.match(d)) for d in tree.top_dirs()]
    classes = [(d, m.group(1).lower(), m.group(2).lower()) for d, m in classes if m]
    if not classes:
        raise DeepgenError(f"{root} has no real_train/fake_train/real_test/fake_test folders; expected {LAYOUT}.")
    items = []
    for cls, kind, split in classes:
        label = 1 if kind == "fake" else 0
        for media, uri, n, s in _class_records(tree, cls, split):
            items.append((media, uri, label, f"{kind}_{split}/{n}", s))
    groups = assign_splits((src for *_, src, s in items if s == "train"), TRAIN_VAL, salt=DATASET)
    records = [
        Record(
            media_id=f"{DATASET}/{media}",
            uri=uri,
            label=label,
            dataset=DATASET,
            method=FAKE_METHOD if label else "real",
            split=groups[src] if s == "train" else s,
            source_id=src,
            compression="unknown",
            media_type="frames",
        )
        for media, uri, label, src, s in items
    ]
    return to_table(records, root, LAYOUT)
