"""Celeb-DF (v1/v2) adapter.

Layout: ``Celeb-real/id0_0000.mp4`` and ``YouTube-real/00000.mp4`` (real),
``Celeb-synthesis/id0_id1_0000.mp4`` (fake: target id0's video with id1's face), and
``List_of_testing_videos.txt`` whose lines are ``<label> <relative path>`` with **1 = real,
0 = fake** (the opposite of deepgen's convention; converted here). Listed videos are the test
split; the rest go to train/val deterministically by target identity. An extra ``videos/``
level (``videos/Celeb-real/...`` or ``Celeb-real/videos/...``) is accepted.
"""

from __future__ import annotations

import pyarrow as pa

from deepgen.datasets.records import record, to_table
from deepgen.datasets.splits import assign_splits
from deepgen.datasets.tree import is_video, list_tree, stem
from deepgen.errors import DeepgenError

DATASET = "celebdf"
LIST_FILE = "List_of_testing_videos.txt"
LAYOUT = (
    "the Celeb-DF layout Celeb-real/id0_0000.mp4, YouTube-real/00000.mp4, Celeb-synthesis/id0_id1_0000.mp4 "
    f"and {LIST_FILE} (optionally under an extra videos/ level)"
)
FOLDERS = {"Celeb-real": (0, "real"), "YouTube-real": (0, "real"), "Celeb-synthesis": (1, "Celeb-synthesis")}
TRAIN_VAL = {"train": 0.85, "val": 0.15}


def canonical(rel: str) -> str:
    """Relative path without ``videos/`` levels, as the test list writes it."""
    return "/".join(p for p in rel.split("/") if p != "videos")


def _identities(folder: str, name: str) -> tuple[str, str]:
    """(group for splitting, source_id) of a video: target identity, and target+source ids."""
    parts = name.split("_")
    if folder == "YouTube-real":
        return f"youtube_{name}", f"youtube_{name}"
    if folder == "Celeb-synthesis" and len(parts) >= 3:
        return parts[0], f"{parts[0]}_{parts[1]}"
    return parts[0], parts[0]


def build(root: str) -> pa.Table:
    """Manifest of a Celeb-DF tree; the test list's inverted labels are checked and converted."""
    tree = list_tree(root, LAYOUT)
    videos = {}
    for rel in tree.files:
        c = canonical(rel)
        parts = c.split("/")
        if len(parts) == 2 and parts[0] in FOLDERS and is_video(rel):
            videos[c] = rel
    if not videos:
        raise DeepgenError(f"found no Celeb-DF videos under {root}; expected {LAYOUT}.")
    lists = [f for f in tree.files if canonical(f) == LIST_FILE]
    if not lists:
        raise DeepgenError(
            f"the Celeb-DF test list {tree.uri(LIST_FILE)} is missing; expected {LAYOUT}."
        )

    listed: dict[str, int] = {}  # canonical path -> label (1 = fake)
    for n, line in enumerate(tree.read_text(lists[0]).splitlines(), 1):
        if not line.strip():
            continue
        try:
            raw_label, path = line.split(maxsplit=1)
            celeb_label = int(raw_label)
            if celeb_label not in (0, 1):
                raise ValueError(raw_label)
        except ValueError as e:
            raise DeepgenError(
                f"line {n} of {tree.uri(lists[0])} is not '<1 real|0 fake> <relative path>'; fix the test list."
            ) from e
        listed[canonical(path.strip().replace("\\", "/"))] = 1 - celeb_label

    for c, label in listed.items():
        folder = c.split("/", 1)[0]
        if c in videos and folder in FOLDERS and FOLDERS[folder][0] != label:
            raise DeepgenError(
                f"{tree.uri(lists[0])} labels {c} as {'fake' if label else 'real'} against its folder; "
                "Celeb-DF's list uses 1 for real and 0 for fake, so keep the original file."
            )

    groups = {c: _identities(c.split("/", 1)[0], stem(c)) for c in videos}
    rest = assign_splits((groups[c][0] for c in videos if c not in listed), TRAIN_VAL, salt=DATASET)
    records = []
    for c, rel in videos.items():
        folder = c.split("/", 1)[0]
        label, method = FOLDERS[folder]
        records.append(
            record(tree, DATASET, rel, label, method, "test" if c in listed else rest[groups[c][0]], groups[c][1])
        )
    return to_table(records, root, LAYOUT)

