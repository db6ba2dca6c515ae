"""Manifest rows as plain dataclasses, turned into a validated contract table."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import pyarrow as pa

from deepgen.errors import DeepgenError
from deepgen.schema import MANIFEST_SCHEMA, validate_manifest


@dataclass
class Record:
    """One manifest row (see DESIGN.md, manifest contract); ``label`` 1 = fake."""

    media_id: str
    uri: str
    label: int
    dataset: str
    method: str
    split: str
    source_id: str
    compression: str
    media_type: str


def to_table(records: list[Record], root: str, layout: str) -> pa.Table:
    """Sort rows by media_id and build the manifest; no rows at all is a one-line error."""
    if not records:
        raise DeepgenError(f"found no media under {root}; expected {layout}.")
    records = sorted(records, key=lambda r: r.media_id)
    rows = [asdict(r) for r in records]
    cols = {name: [row[name] for row in rows] for name in MANIFEST_SCHEMA.names}
    return validate_manifest(pa.table(cols, schema=MANIFEST_SCHEMA), where=f"the manifest of {root}")


def record(tree, dataset: str, rel: str, label: int, method: str, split: str, source_id: str,
           compression: str = "unknown", media_type: str = "video") -> Record:
    """The manifest row of the file ``rel`` of a dataset tree: ``media_id`` is ``<dataset>/<rel>``."""
    return Record(media_id=f"{dataset}/{rel}", uri=tree.uri(rel), label=label, dataset=dataset, method=method,
                  split=split, source_id=source_id, compression=compression, media_type=media_type)
