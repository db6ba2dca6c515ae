"""Generic adapter for any collection: ``ROOT/real/**`` and ``ROOT/fake/**``, or a CSV of path,label.

Folder form: every video or image under ``real/`` (label 0) and ``fake/`` (label 1);
``fake/<method>/...`` names the method, files directly in ``fake/`` get ``method = "unknown"``.
CSV form (``root`` ends in ``.csv``): columns ``path,label`` (label 1/0 or fake/real) with paths
relative to the CSV's folder, absolute, or ``s3://``; optional columns ``split``, ``method``,
``source_id``, ``media_type``, ``compression`` are kept. Without a split, items are split
deterministically by file stem (so ``real/001.mp4`` and ``fake/001.mp4`` share one), or all go
to ``split`` when given (e.g. ``test`` for incoming media).
"""

from __future__ import annotations

import csv
import io
import posixpath

import pyarrow as pa

from deepgen.datasets.records import Record, record, to_table
from deepgen.datasets.splits import DEFAULT_FRACTIONS, assign_splits
from deepgen.datasets.tree import is_image, is_video, list_tree, stem
from deepgen.errors import DeepgenError
from deepgen.schema import SPLITS
from deepgen.storage import get_fs, is_remote, to_uri

LAYOUT = "ROOT/real/** and ROOT/fake/** (videos or images), or a CSV file with columns path,label"
LABELS = {"1": 1, "0": 0, "fake": 1, "real": 0, "1.0": 1, "0.0": 0}


def _media_type(path: str) -> str | None:
    return "video" if is_video(path) else "image" if is_image(path) else None


def _check_split(split: str | None) -> None:
    if split is not None and split not in SPLITS:
        raise DeepgenError(f"unknown split {split!r}; use train, val or test.")


def _from_csv(csv_uri: str, name: str, split: str | None) -> pa.Table:
    fs, path = get_fs(csv_uri)
    try:
        with fs.open(path, "rb") as f:
            text = f.read().decode("utf-8-sig")
    except FileNotFoundError as e:
        raise DeepgenError(f"the label file {csv_uri} is missing; expected {LAYOUT}.") from e
    reader = csv.DictReader(io.StringIO(text))
    cols = {c.strip() for c in reader.fieldnames or []}
    if not {"path", "label"} <= cols:
        raise DeepgenError(f"{csv_uri} lacks the columns path,label; expected {LAYOUT}.")
    base = posixpath.dirname(path)
    rows = []
    for n, row in enumerate(reader, 2):
        row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
        p = row["path"].replace("\\", "/")
        if row["label"].lower() not in LABELS:
            raise DeepgenError(f"line {n} of {csv_uri} has label {row['label']!r}; use 1/fake or 0/real.")
        label = LABELS[row["label"].lower()]
        if "://" in p:
            uri, rel = p, p.split("://", 1)[1]
        elif p.startswith("/"):
            uri, rel = p, p.lstrip("/")
        else:
            full = posixpath.normpath(posixpath.join(base, p))
            uri = to_uri(fs, full) if is_remote(csv_uri) else full
            rel = posixpath.normpath(p)
        rows.append((rel, uri, label, row))
    groups = assign_splits((r[3].get("source_id") or stem(r[0]) for r in rows), DEFAULT_FRACTIONS, salt=name)
    records = [
        Record(
            media_id=f"{name}/{rel}",
            uri=uri,
            label=label,
            dataset=name,
            method=row.get("method") or ("unknown" if label else "real"),
            split=split or row.get("split") or groups[row.get("source_id") or stem(rel)],
            source_id=row.get("source_id") or stem(rel),
            compression=row.get("compression") or "unknown",
            media_type=row.get("media_type") or _media_type(rel) or "video",
        )
        for rel, uri, label, row in rows
    ]
    return to_table(records, csv_uri, LAYOUT)


def build(root: str, name: str = "folder", split: str | None = None) -> pa.Table:
    """Manifest of a real/fake folder tree or a path,label CSV; ``name`` becomes the dataset column."""
    _check_split(split)
    if str(root).lower().endswith(".csv"):
        return _from_csv(str(root), name, split)
    tree = list_tree(root, LAYOUT)
    items = []
    for rel in tree.files:
        top, _, inner = rel.partition("/")
        kind = _media_type(rel)
        if top not in ("real", "fake") or not inner or kind is None:
            continue
        method = "real" if top == "real" else (inner.split("/", 1)[0] if "/" in inner else "unknown")
        items.append((rel, 1 if top == "fake" else 0, method, kind))
    if not items:
        raise DeepgenError(f"found no videos or images under {root}/real or {root}/fake; expected {LAYOUT}.")
    groups = assign_splits((stem(r[0]) for r in items), DEFAULT_FRACTIONS, salt=name)
    records = [
        record(tree, name, rel, label, method, split or groups[stem(rel)], stem(rel), media_type=kind)
        for rel, label, method, kind in items
    ]
    return to_table(records, root, LAYOUT)
