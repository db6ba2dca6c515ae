"""One recursive listing of a dataset root (local or ``s3://``), shared by every adapter.

A :class:`Tree` holds the relative POSIX paths of all files under the root, obtained with a
single ``fs.find`` call (one paginated LIST on S3, no stat per file), and turns them back into
URIs. Hidden entries (a path part starting with ``.``) are ignored.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, field

import fsspec

from deepgen.errors import DeepgenError
from deepgen.storage import get_fs, is_remote, to_uri

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".flv", ".wmv")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
ARCHIVE_EXTS = (".tar.gz", ".tgz", ".tar")


def is_video(path: str) -> bool:
    return path.lower().endswith(VIDEO_EXTS)


def is_image(path: str) -> bool:
    return path.lower().endswith(IMAGE_EXTS)


def is_archive(path: str) -> bool:
    return path.lower().endswith(ARCHIVE_EXTS)


def stem(path: str) -> str:
    """File name without directory and extension (``a/b/000_003.mp4`` -> ``000_003``)."""
    name = posixpath.basename(path)
    for ext in ARCHIVE_EXTS:
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return posixpath.splitext(name)[0]


@dataclass
class Tree:
    """Files under a dataset root, as sorted relative POSIX paths."""

    root: str
    fs: fsspec.AbstractFileSystem
    base: str
    files: list[str] = field(default_factory=list)

    def uri(self, rel: str) -> str:
        """URI (local absolute path or ``s3://``) of a relative path."""
        return to_uri(self.fs, posixpath.join(self.base, rel))

    def under(self, prefix: str) -> list[str]:
        """Relative paths of the files below the folder ``prefix``."""
        prefix = prefix.rstrip("/") + "/"
        return [f for f in self.files if f.startswith(prefix)]

    def top_dirs(self) -> list[str]:
        """Names of the first-level folders that hold files."""
        return sorted({f.split("/", 1)[0] for f in self.files if "/" in f})

    def open(self, rel: str, mode: str = "rb"):
        return self.fs.open(posixpath.join(self.base, rel), mode)

    def read_text(self, rel: str) -> str:
        with self.open(rel, "rb") as f:
            return f.read().decode("utf-8-sig")


def list_tree(root: str, layout: str) -> Tree:
    """List every file under ``root`` once; an unreadable or empty root is a one-line error.

    ``layout`` describes the expected layout for the error message.
    """
    root = str(root)
    try:
        fs, base = get_fs(root)
        if not is_remote(root):
            base = base.replace("\\", "/")
        fs.invalidate_cache(base)
        found = fs.find(base)
    except Exception as e:  # any failure to list (permissions, credentials, bucket) is one line
        raise DeepgenError(f"cannot read the dataset root {root} ({e}); expected {layout}.") from e
    cut = len(base.rstrip("/")) + 1
    files = sorted(
        rel
        for rel in (p[cut:] for p in found if not p.endswith("/"))
        if rel and not any(part.startswith(".") for part in rel.split("/"))
    )
    if not files:
        raise DeepgenError(f"the dataset root {root} is missing or holds no files; expected {layout}.")
    return Tree(root=root, fs=fs, base=base.rstrip("/"), files=files)
