"""DeeperForensics-1.0 adapter.

Layout: ``manipulated_videos/<variant>/<target>_<actor>.mp4`` are fakes (variants
``end_to_end``, ``end_to_end_level_1..5``, ``end_to_end_random_level``,
``end_to_end_mix_{2,3,4}_distortions``, ``reenact_postprocess``; one is read, default
``end_to_end``); ``lists/splits/{train,val,test}.txt`` hold one file name a line, with or
without ``.mp4``. ``source_videos/`` are actor recordings, not the real class: the reals are the
FF++ c23 target videos (``original_sequences/youtube/c23/videos/<target>.mp4``), added when
``ffpp_root`` is given, each in the split of the fakes made from it. Fakes missing from the
lists are split deterministically by target id.
"""

from __future__ import annotations

import logging

import pyarrow as pa

from deepgen.datasets.records import Record, record, to_table
from deepgen.datasets.splits import DEFAULT_FRACTIONS, assign_splits
from deepgen.datasets.tree import is_video, list_tree, stem
from deepgen.errors import DeepgenError
from deepgen.schema import SPLITS

log = logging.getLogger(__name__)

DATASET = "deeperforensics"
METHOD = "DF-VAE"  # the DeeperForensics-1.0 swap method
VARIANTS = (
    "end_to_end",
    *(f"end_to_end_level_{i}" for i in range(1, 6)),
    "end_to_end_random_level",
    *(f"end_to_end_mix_{i}_distortions" for i in (2, 3, 4)),
    "reenact_postprocess",
)
LAYOUT = (
    "the DeeperForensics-1.0 layout manipulated_videos/<variant>/<target>_<actor>.mp4 with "
    "lists/splits/{train,val,test}.txt"
)
FFPP_REALS = "original_sequences/youtube/c23/videos"
SPLIT_PRIORITY = {"test": 0, "val": 1, "train": 2}


def build(root: str, variant: str = "end_to_end", ffpp_root: str | None = None) -> pa.Table:
    """Manifest of one DeeperForensics variant, plus the FF++ c23 target videos as reals."""
    tree = list_tree(root, LAYOUT)
    prefix = f"manipulated_videos/{variant}/"
    fakes = [f for f in tree.files if f.startswith(prefix) and f.count("/") == 2 and is_video(f)]
    if not fakes:
        found = sorted({f.split("/")[1] for f in tree.under("manipulated_videos") if f.count("/") >= 2})
        if found:
            raise DeepgenError(
                f"{root} has no manipulated_videos/{variant}/ videos; pass --variant with one of {', '.join(found)}."
            )
        raise DeepgenError(f"found no DeeperForensics fakes under {root}; expected {LAYOUT}.")

    files = set(tree.files)
    listed: dict[str, str] = {}
    for split in SPLITS:
        rel = f"lists/splits/{split}.txt"
        if rel not in files:
            raise DeepgenError(f"the DeeperForensics split file {tree.uri(rel)} is missing; expected {LAYOUT}.")
        for line in tree.read_text(rel).splitlines():
            if line.strip():
                listed[stem(line.strip().replace("\\", "/"))] = split

    targets = {f: stem(f).split("_")[0] for f in fakes}
    missing = [f for f in fakes if stem(f) not in listed]
    if missing:
        log.warning("%d DeeperForensics fakes are not in lists/splits; split by target id", len(missing))
    fallback = assign_splits((targets[f] for f in missing), DEFAULT_FRACTIONS, salt=DATASET)
    split_of = {f: listed.get(stem(f)) or fallback[targets[f]] for f in fakes}
    records = [
        record(tree, DATASET, rel, 1, METHOD, split_of[rel], stem(rel))
        for rel in fakes
    ]

    if ffpp_root is None:
        log.warning("no --ffpp-root given: the DeeperForensics manifest holds fakes only")
    else:
        target_split: dict[str, str] = {}
        for f in fakes:
            t, s = targets[f], split_of[f]
            if t not in target_split or SPLIT_PRIORITY[s] < SPLIT_PRIORITY[target_split[t]]:
                target_split[t] = s
        ff = list_tree(ffpp_root, f"the FF++ layout {FFPP_REALS}/000.mp4 (reals for DeeperForensics)")
        reals = {stem(f): f for f in ff.under(FFPP_REALS) if f.count("/") == 4 and is_video(f)}
        if not reals:
            raise DeepgenError(
                f"{ffpp_root} has no {FFPP_REALS}/ videos; point --ffpp-root at an FF++ tree with c23 originals."
            )
        absent = sorted(t for t in target_split if t not in reals)
        if absent:
            log.warning("%d DeeperForensics targets have no FF++ c23 video under %s", len(absent), ffpp_root)
        records += [
            Record(
                media_id=f"{DATASET}/ffpp/{reals[t]}",
                uri=ff.uri(reals[t]),
                label=0,
                dataset=DATASET,
                method="real",
                split=s,
                source_id=t,
                compression="c23",
                media_type="video",
            )
            for t, s in sorted(target_split.items())
            if t in reals
        ]
    return to_table(records, root, LAYOUT)
