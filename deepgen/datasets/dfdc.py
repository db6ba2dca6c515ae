"""DFDC (Deepfake Detection Challenge) adapter.

Layout: ``train/dfdc_train_part_N/metadata.json`` maps each video file name in that folder to
``{"label": "REAL"|"FAKE", "split": "train", "original": <source file>}`` (``original`` may be
missing or null); the released test set is ``test/labels.csv`` with columns ``filename,label``
(1 = fake) beside its videos. Training videos are grouped by their original (a real is its own
original) and whole groups go to train or val, so a fake and its original share a split; a
metadata ``split`` of ``val`` or ``test`` is honoured for the whole group. DFDC does not name
the manipulation, so fakes get ``method = "unknown"``.
"""

from __future__ import annotations

import csv
import io
import json
import posixpath

import pyarrow as pa

from deepgen.datasets.records import Record, record, to_table
from deepgen.datasets.splits import assign_splits
from deepgen.datasets.tree import Tree, is_video, list_tree, stem
from deepgen.errors import DeepgenError

DATASET = "dfdc"
LAYOUT = (
    "the DFDC layout train/dfdc_train_part_N/{metadata.json,*.mp4} and/or test/{labels.csv,*.mp4}"
)
TRAIN_VAL = {"train": 0.85, "val": 0.15}
FAKE_METHOD = "unknown"


def _part_dirs(tree: Tree) -> set[str]:
    """Folders with a metadata.json, plus video folders that should have one (train/<part>/)."""
    parts = {posixpath.dirname(f) for f in tree.files if posixpath.basename(f) == "metadata.json"}
    for f in tree.files:
        d = posixpath.dirname(f)
        if is_video(f) and (d.count("/") == 1 and d.startswith("train/") or posixpath.basename(d).startswith("dfdc_train_part")):
            parts.add(d)
    return parts


def _train_records(tree: Tree, files: set[str]) -> list[Record]:
    entries = []  # (rel, label, group, meta split)
    for part in sorted(_part_dirs(tree)):
        meta = posixpath.join(part, "metadata.json") if part else "metadata.json"
        if meta not in files:
            raise DeepgenError(f"the DFDC label file {tree.uri(meta)} is missing; expected {LAYOUT}.")
        try:
            data = json.loads(tree.read_text(meta))
            items = sorted(data.items())
        except (ValueError, AttributeError) as e:
            raise DeepgenError(f"{tree.uri(meta)} is not a DFDC metadata.json object; restore the original file.") from e
        for name, entry in items:
            rel = posixpath.join(part, name) if part else name
            if rel not in files:
                continue  # listed but not downloaded
            label = str((entry or {}).get("label", "")).upper()
            if label not in ("REAL", "FAKE"):
                raise DeepgenError(f"{tree.uri(meta)} gives {name} the label {label or 'nothing'}; expected REAL or FAKE.")
            original = entry.get("original") if label == "FAKE" else None
            group = str(original) if original else name
            entries.append((rel, 1 if label == "FAKE" else 0, group, str(entry.get("split") or "train")))

    forced: dict[str, str] = {}
    for _, _, group, split in entries:
        if split in ("val", "test") and forced.get(group) != "test":
            forced[group] = split
    rest = assign_splits((g for _, _, g, _ in entries if g not in forced), TRAIN_VAL, salt=DATASET)
    return [
        record(tree, DATASET, rel, label, FAKE_METHOD if label else "real", forced.get(group) or rest[group], stem(group))
        for rel, label, group, _ in entries
    ]


def _test_records(tree: Tree, files: set[str]) -> list[Record]:
    test_videos = [f for f in tree.files if f.split("/")[0] == "test" and is_video(f)]
    csv_rel = "test/labels.csv"
    if csv_rel not in files:
        if test_videos:
            raise DeepgenError(f"the DFDC label file {tree.uri(csv_rel)} is missing; expected {LAYOUT}.")
        return []
    by_name = {posixpath.basename(f): f for f in test_videos}
    reader = csv.DictReader(io.StringIO(tree.read_text(csv_rel)))
    if not reader.fieldnames or not {"filename", "label"} <= {c.strip() for c in reader.fieldnames}:
        raise DeepgenError(f"{tree.uri(csv_rel)} lacks the columns filename,label; expected {LAYOUT}.")
    records = []
    for row in reader:
        row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
        rel = by_name.get(posixpath.basename(row["filename"]))
        if rel is None:
            continue  # listed but not downloaded
        try:
            label = int(float(row["label"]))
        except ValueError as e:
            raise DeepgenError(f"{tree.uri(csv_rel)} gives {row['filename']} the label {row['label']!r}; use 1 for fake, 0 for real.") from e
        records.append(
            record(tree, DATASET, rel, label, FAKE_METHOD if label else "real", "test", stem(rel))
        )
    return records


def build(root: str) -> pa.Table:
    """Manifest of a DFDC tree (training parts with metadata.json, and the labelled test set)."""
    tree = list_tree(root, LAYOUT)
    files = set(tree.files)
    if not _part_dirs(tree) and "test" not in tree.top_dirs():
        raise DeepgenError(f"{root} does not look like DFDC (no train/ parts or test/ folder); expected {LAYOUT}.")
    return to_table(_train_records(tree, files) + _test_records(tree, files), root, LAYOUT)
