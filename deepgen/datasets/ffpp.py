"""FaceForensics++ adapter.

Layout: ``original_sequences/youtube/<comp>/videos/000.mp4`` (real) and
``manipulated_sequences/<Method>/<comp>/videos/<target>_<source>.mp4`` (fake), with ``<comp>``
one of ``raw`` (also spelled ``c0``), ``c23``, ``c40``; only the requested compression is read.
``manipulated_sequences/<Method>/masks/videos/`` holds masks, not samples, and is skipped, as is
``DeepFakeDetection`` (actor recordings with their own originals). Official splits
``splits/{train,val,test}.json`` list id pairs ``[a, b]``; a pair puts ``a``, ``b``, ``a_b`` and
``b_a`` in that split. Without them, ids linked by a fake are kept together and split
deterministically (:mod:`deepgen.datasets.splits`).
"""

from __future__ import annotations

import json
import posixpath
import re

import pyarrow as pa

from deepgen.datasets.records import record, to_table
from deepgen.datasets.splits import DEFAULT_FRACTIONS, UnionFind, assign_splits
from deepgen.datasets.tree import Tree, is_video, list_tree, stem
from deepgen.errors import DeepgenError
from deepgen.schema import SPLITS
from deepgen.storage import get_fs

DATASET = "ffpp"
LAYOUT = (
    "the FaceForensics++ layout original_sequences/youtube/<raw|c0|c23|c40>/videos/000.mp4 and "
    "manipulated_sequences/<Method>/<raw|c0|c23|c40>/videos/000_003.mp4 (optional splits/{train,val,test}.json)"
)
FOLDERS = {"raw": ("raw", "c0"), "c23": ("c23",), "c40": ("c40",)}
SKIPPED_METHODS = {"DeepFakeDetection"}
PAIR = re.compile(r"^(\d+)_(\d+)$")


def normalize_compression(compression: str) -> str:
    """``raw``/``c0`` -> ``raw``; ``c23``; ``c40``; anything else is a one-line error."""
    c = str(compression).strip().lower()
    c = "raw" if c == "c0" else c
    if c not in FOLDERS:
        raise DeepgenError(f"unknown compression {compression!r}; use raw (or c0), c23 or c40.")
    return c


def _read_pairs(fs, path: str, shown: str) -> list[tuple[str, str]]:
    try:
        with fs.open(path, "rb") as f:
            data = json.loads(f.read().decode("utf-8"))
        pairs = [(str(a), str(b)) for a, b in data]
    except FileNotFoundError as e:
        raise DeepgenError(f"the FF++ split file {shown} is missing; expected splits/{{train,val,test}}.json lists of id pairs.") from e
    except (ValueError, TypeError) as e:
        raise DeepgenError(f"the FF++ split file {shown} is not a JSON list of id pairs like [[\"000\", \"003\"], ...]; fix or remove it.") from e
    return pairs


def official_splits(tree: Tree, splits_dir: str | None) -> tuple[dict[str, str], dict[str, str]] | None:
    """Read the official split files; returns (id -> split, "a_b" -> split) or None when absent."""
    if splits_dir is not None:
        fs, base = get_fs(splits_dir)
        locate = {s: (fs, posixpath.join(base, f"{s}.json"), posixpath.join(str(splits_dir), f"{s}.json")) for s in SPLITS}
    else:
        present = {f for f in tree.under("splits") if f.count("/") == 1}
        if not present:
            return None
        locate = {s: (tree.fs, posixpath.join(tree.base, f"splits/{s}.json"), tree.uri(f"splits/{s}.json")) for s in SPLITS}
        for s in SPLITS:
            if f"splits/{s}.json" not in present:
                raise DeepgenError(
                    f"the FF++ split file {tree.uri(f'splits/{s}.json')} is missing; "
                    "expected splits/{train,val,test}.json lists of id pairs (or remove splits/ for a deterministic split)."
                )
    by_id: dict[str, str] = {}
    by_pair: dict[str, str] = {}
    for split, (fs, path, shown) in locate.items():
        for a, b in _read_pairs(fs, path, shown):
            by_id[a] = by_id[b] = split
            by_pair[f"{a}_{b}"] = by_pair[f"{b}_{a}"] = split
    return by_id, by_pair


def build(root: str, compression: str = "c23", splits: str | None = None) -> pa.Table:
    """Manifest of an FF++ tree at one compression level (``raw``/``c0``, ``c23``, ``c40``)."""
    comp = normalize_compression(compression)
    tree = list_tree(root, LAYOUT)
    folders = FOLDERS[comp]
    items: list[tuple[str, int, str, str, list[str]]] = []  # rel, label, method, source_id, ids
    seen: set[str] = set()
    for rel in tree.files:
        parts = rel.split("/")
        if len(parts) != 5 or parts[3] != "videos" or not is_video(rel):
            continue
        name = stem(rel)
        if parts[0] == "original_sequences" and parts[1] == "youtube":
            seen.add(parts[2])
            if parts[2] in folders:
                items.append((rel, 0, "real", name, [name]))
        elif parts[0] == "manipulated_sequences" and parts[2] != "masks" and parts[1] not in SKIPPED_METHODS:
            seen.add(parts[2])
            if parts[2] in folders:
                m = PAIR.match(name)
                items.append((rel, 1, parts[1], name, [m.group(1), m.group(2)] if m else [name]))
    if not items:
        if seen:
            raise DeepgenError(
                f"{root} holds no {comp} videos (compression folders found: {', '.join(sorted(seen))}); "
                f"pass --compression with one of those."
            )
        raise DeepgenError(f"found no FF++ videos under {root}; expected {LAYOUT}.")

    official = official_splits(tree, splits)
    by_id, by_pair = official if official else ({}, {})
    uf = UnionFind()
    for *_, ids in items:
        for other in ids[1:]:
            uf.union(ids[0], other)
    split_of: dict[str, str] = {}
    leftover: list[str] = []
    for rel, _, _, source_id, ids in items:
        s = by_pair.get(source_id) or by_id.get(ids[0])
        if s is None:
            leftover.append(rel)
        else:
            split_of[rel] = s
    if leftover:
        group = {rel: uf.find(ids[0]) for rel, *_, ids in items}
        fallback = assign_splits((group[r] for r in leftover), DEFAULT_FRACTIONS, salt=DATASET)
        split_of.update({r: fallback[group[r]] for r in leftover})

    records = [
        record(tree, DATASET, rel, label, method, split_of[rel], source_id, compression=comp)
        for rel, label, method, source_id, _ in items
    ]
    return to_table(records, root, LAYOUT)
