"""Dataset adapters: read real on-disk layouts (local or ``s3://``) into the manifest contract.

``build_manifest("ffpp", root, compression="c40")`` returns a validated manifest table;
``read_manifest(uri)`` reads one back for the later stages. Each adapter's module docstring
states the layout facts it relies on.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import pyarrow as pa

from deepgen.datasets import celebdf, deeperforensics, dfdc, ffpp, folder, wilddeepfake
from deepgen.errors import DeepgenError
from deepgen.schema import validate_manifest
from deepgen.storage import read_table, write_table

ADAPTERS: dict[str, Callable[..., pa.Table]] = {
    "ffpp": ffpp.build,
    "celebdf": celebdf.build,
    "dfdc": dfdc.build,
    "deeperforensics": deeperforensics.build,
    "wilddeepfake": wilddeepfake.build,
    "folder": folder.build,
}


def adapter_options(dataset: str) -> list[str]:
    """Names of the keyword options that ``dataset``'s adapter accepts."""
    return [p for p in inspect.signature(_adapter(dataset)).parameters if p != "root"]


def _adapter(dataset: str) -> Callable[..., pa.Table]:
    if dataset not in ADAPTERS:
        raise DeepgenError(f"unknown dataset {dataset!r}; choose one of {', '.join(ADAPTERS)}.")
    return ADAPTERS[dataset]


def build_manifest(dataset: str, root: str, **options) -> pa.Table:
    """Manifest table (validated, sorted by media_id) of the ``dataset`` tree at ``root``."""
    fn = _adapter(dataset)
    allowed = adapter_options(dataset)
    extra = sorted(k for k, v in options.items() if k not in allowed and v is not None)
    if extra:
        raise DeepgenError(
            f"option(s) {', '.join(extra)} do not apply to the {dataset} adapter; it takes "
            f"{', '.join(allowed) or 'no options'}."
        )
    table = fn(str(root), **{k: v for k, v in options.items() if v is not None})
    return attach_attributes(table, str(root))


ATTRIBUTES = ("skin_tone", "skin_tone_group", "glasses", "hair_style", "hair_color", "eye_color")


def attach_attributes(table: pa.Table, root: str) -> pa.Table:
    """Add identity-attribute columns (skin tone, glasses, ...) when the tree carries a synth
    ground-truth sidecar, so evaluation can report subgroup metrics; other trees are unchanged."""
    import json

    from deepgen.storage import exists, get_fs, join, read_bytes, to_uri

    sidecar = join(root, "deepgen_groundtruth.json")
    if not exists(sidecar):
        return table
    media = json.loads(read_bytes(sidecar)).get("media", {})
    fs, path = get_fs(root)
    base = to_uri(fs, path).rstrip("/") + "/"  # the adapters write absolute local paths / s3:// URIs
    values: dict[str, list] = {a: [] for a in ATTRIBUTES}
    for uri in table.column("uri").to_pylist():
        key = uri[len(base):] if uri.startswith(base) else uri
        attrs = (media.get(key) or media.get(key.replace("#", "::")) or {}).get("attributes") or {}
        for a in ATTRIBUTES:
            values[a].append(None if attrs.get(a) is None else str(attrs[a]))
    for a in ATTRIBUTES:
        if any(v is not None for v in values[a]):
            table = table.append_column(a, pa.array(values[a], pa.string()))
    return table


def write_manifest(dataset: str, root: str, out: str, **options) -> pa.Table:
    """Build the manifest of ``root`` and write it as one Parquet file (local or ``s3://``)."""
    table = build_manifest(dataset, root, **options)
    try:
        write_table(table, str(out))
    except OSError as e:
        raise DeepgenError(f"cannot write the manifest to {out} ({e}); check the path and permissions.") from e
    return table


def read_manifest(uri: str) -> pa.Table:
    """Read a manifest Parquet (local or ``s3://``) and check it against the contract."""
    return validate_manifest(read_table(uri), where=str(uri))


__all__ = ["ADAPTERS", "adapter_options", "build_manifest", "read_manifest", "write_manifest"]
