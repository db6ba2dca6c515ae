"""`deepgen manifest` on s3:// roots (local moto endpoint) matches the manifest of the local tree."""

from __future__ import annotations

import pytest
from test_datasets import (
    make_celebdf,
    make_deeperforensics,
    make_dfdc,
    make_ffpp,
    make_wilddeepfake,
)

from deepgen.cli import main
from deepgen.datasets import build_manifest, read_manifest
from deepgen.datasets.wilddeepfake import read_frame_sequence
from deepgen.errors import DeepgenError
from deepgen.storage import get_fs

KEYS = ["media_id", "label", "split", "method", "source_id", "compression", "media_type"]


def upload(local, uri: str) -> None:
    fs, path = get_fs(uri)
    fs.put(str(local), path, recursive=True)
    fs.invalidate_cache()


def same_rows(a, b) -> None:
    assert a.select(KEYS).to_pylist() == b.select(KEYS).to_pylist()


def test_manifest_command_on_s3_roots(tmp_path, s3_bucket, capsys):
    ffpp = make_ffpp(tmp_path / "ffpp")
    trees = {
        "ffpp": ffpp,
        "celebdf": make_celebdf(tmp_path / "celebdf"),
        "dfdc": make_dfdc(tmp_path / "dfdc"),
        "deeperforensics": make_deeperforensics(tmp_path / "deeperforensics", tmp_path / "unused")[0],
        "wilddeepfake": make_wilddeepfake(tmp_path / "wilddeepfake"),
    }
    for name, local in trees.items():
        upload(local, f"{s3_bucket}/data/{name}")

    for name, local in trees.items():
        extra = ["--ffpp-root", f"{s3_bucket}/data/ffpp"] if name == "deeperforensics" else []
        local_extra = {"ffpp_root": str(ffpp)} if name == "deeperforensics" else {}
        out = f"{s3_bucket}/manifests/{name}.parquet"
        main(["manifest", "--dataset", name, "--root", f"{s3_bucket}/data/{name}", "--out", out, *extra])
        remote = read_manifest(out)
        same_rows(remote, build_manifest(name, str(local), **local_extra))
        assert all(u.startswith(f"{s3_bucket}/data/") for u in remote.column("uri").to_pylist())
    assert "wrote" in capsys.readouterr().out

    wdf = {r["media_id"]: r["uri"] for r in read_manifest(f"{s3_bucket}/manifests/wilddeepfake.parquet").to_pylist()}
    in_tar = wdf["wilddeepfake/fake train/1/fake/0"]
    assert in_tar == f"{s3_bucket}/data/wilddeepfake/fake train/1.tar.gz#1/fake/0"
    assert read_frame_sequence(in_tar) == [f"1/fake/0:frame{i}".encode() for i in range(12)]
    extracted = wdf["wilddeepfake/real_test/3/real/1"]
    assert read_frame_sequence(extracted) == [f"3/real/1:frame{i}".encode() for i in range(3)]


def test_s3_missing_root_and_split_file(tmp_path, s3_bucket):
    with pytest.raises(DeepgenError, match=r"s3://.*/nothing is missing or holds no files"):
        build_manifest("ffpp", f"{s3_bucket}/nothing")
    root = make_deeperforensics(tmp_path / "df", tmp_path / "ff")[0]
    (root / "lists/splits/test.txt").unlink()
    upload(root, f"{s3_bucket}/df")
    with pytest.raises(DeepgenError, match=rf"{s3_bucket}/df/lists/splits/test\.txt is missing"):
        build_manifest("deeperforensics", f"{s3_bucket}/df")
