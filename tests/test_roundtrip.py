"""`deepgen synth` -> `deepgen manifest` round trip for every preset, checked against the sidecar."""

from __future__ import annotations

import json
from collections import Counter

import cv2
import numpy as np
import pytest

from deepgen.cli import main
from deepgen.datasets import build_manifest, read_manifest
from deepgen.datasets.wilddeepfake import read_frame_sequence
from deepgen.synth import PRESETS, load_groundtruth, render_preset

NAMED_METHODS = {"ffpp", "celebdf", "deeperforensics"}  # DFDC and WildDeepfake do not name methods


def expected_media(preset: str, gt: dict) -> dict[str, dict]:
    """Ground-truth entries the default adapter options should list, keyed by expected media_id."""
    out = {}
    for key, e in gt["media"].items():
        if preset == "ffpp" and e["compression"] != "c23":
            continue  # c40 copies are not mixed into the default c23 manifest
        if preset == "deeperforensics":
            if e["label"] == 1 and e["variant"] != "end_to_end":
                continue
            key = key.replace("ffpp_reals/", "ffpp/", 1)
        if preset == "wilddeepfake":
            archive, member = key.split("::")
            key = f"{archive.split('/')[0]}/{member}"
        out[f"{preset}/{key}"] = e
    return out


def expected_splits(preset: str, root, table) -> dict[str, str | set]:
    """Split (or allowed splits) of each media_id, read from the tree's own split files."""
    allowed = {"train", "val"}
    out: dict[str, str | set] = {}
    ids = table.column("media_id").to_pylist()
    if preset == "ffpp":
        by_name = {}
        for split in ("train", "val", "test"):
            for a, b in json.loads((root / "splits" / f"{split}.json").read_text()):
                by_name.update({a: split, b: split, f"{a}_{b}": split, f"{b}_{a}": split})
        out = {m: by_name[m.rsplit("/", 1)[1][:-4]] for m in ids}
    elif preset == "celebdf":
        listed = {line.split()[1] for line in (root / "List_of_testing_videos.txt").read_text().splitlines() if line}
        out = {m: "test" if m.split("/", 1)[1] in listed else allowed for m in ids}
    elif preset == "dfdc":
        out = {m: "test" if m.startswith("dfdc/test/") else allowed for m in ids}
    elif preset == "deeperforensics":
        by_name = {}
        for split in ("train", "val", "test"):
            for line in (root / "lists" / "splits" / f"{split}.txt").read_text().split():
                by_name[line.removesuffix(".mp4")] = split
        fakes = {m.rsplit("/", 1)[1][:-4]: by_name[m.rsplit("/", 1)[1][:-4]] for m in ids if "/manipulated_videos/" in m}
        for m in ids:
            name = m.rsplit("/", 1)[1][:-4]
            out[m] = fakes[name] if name in fakes else {s for f, s in fakes.items() if f.split("_")[0] == name}
    else:
        out = {m: "test" if m.split("/")[1].endswith("_test") else allowed for m in ids}
    return out


@pytest.mark.parametrize("preset", PRESETS)
def test_synth_manifest_roundtrip(tmp_path, preset):
    root = tmp_path / preset
    render_preset(preset, str(root), videos=10, seed=3, frames=3, size=64,
                  compressions=("c23", "c40") if preset == "ffpp" else ("c23",))
    options = {"ffpp_root": str(root / "ffpp_reals")} if preset == "deeperforensics" else {}
    table = build_manifest(preset, str(root), **options)
    gt = load_groundtruth(str(root))
    want = expected_media(preset, gt)
    got = {r["media_id"]: r for r in table.to_pylist()}

    assert sorted(got) == sorted(want)
    for m, e in want.items():
        method = e["method"] if preset in NAMED_METHODS or e["label"] == 0 else "unknown"
        assert (got[m]["label"], got[m]["method"], got[m]["media_type"]) == (e["label"], method, e["media_type"]), m
    assert Counter(r["label"] for r in got.values()) == Counter(e["label"] for e in want.values())

    for m, split in expected_splits(preset, root, table).items():
        assert got[m]["split"] in (split if isinstance(split, set) else {split}), m
    if preset == "dfdc":  # a fake and its original share a split
        split_of_name = {m.rsplit("/", 1)[1]: r["split"] for m, r in got.items()}
        for m, e in want.items():
            if e.get("original"):
                assert got[m]["split"] == split_of_name[e["original"]], m
    if preset == "wilddeepfake":
        uri = got[next(m for m in sorted(got) if got[m]["label"] == 1)]["uri"]
        frames = [cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR) for b in read_frame_sequence(uri)]
        assert len(frames) == gt["frames"] and frames[0].shape == (gt["height"], gt["width"], 3)


def test_synth_manifest_roundtrip_on_s3(tmp_path, s3_bucket):
    render_preset("ffpp", f"{s3_bucket}/synth/ffpp", videos=6, seed=1, frames=2, size=64)
    render_preset("ffpp", str(tmp_path / "ffpp"), videos=6, seed=1, frames=2, size=64)
    main(["manifest", "--dataset", "ffpp", "--root", f"{s3_bucket}/synth/ffpp", "--out", f"{s3_bucket}/m.parquet"])
    remote, local = read_manifest(f"{s3_bucket}/m.parquet"), build_manifest("ffpp", str(tmp_path / "ffpp"))
    keys = ["media_id", "label", "split", "method", "source_id"]
    assert remote.select(keys).to_pylist() == local.select(keys).to_pylist()
    assert remote.num_rows == sum(e["compression"] == "c23" for e in load_groundtruth(str(tmp_path / "ffpp"))["media"].values())
