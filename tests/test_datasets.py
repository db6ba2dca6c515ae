"""Dataset adapters on small hand-made trees of each real layout, traps included."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from deepgen.cli import main
from deepgen.datasets import ADAPTERS, build_manifest, read_manifest, write_manifest
from deepgen.datasets.command import manifest
from deepgen.datasets.splits import assign_splits
from deepgen.datasets.wilddeepfake import list_frames, read_frame_sequence
from deepgen.errors import DeepgenError
from deepgen.schema import MANIFEST_SCHEMA


def touch(root: Path, *rels: str, data: bytes = b"x") -> None:
    for rel in rels:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def rows(table) -> dict[str, dict]:
    return {r["media_id"]: r for r in table.to_pylist()}


# ---------------------------------------------------------------- FF++

FFPP_IDS = ["000", "003", "001", "004", "002", "005"]
FFPP_PAIRS = [("000", "003"), ("001", "004"), ("002", "005")]


def make_ffpp(root: Path, comps=("c23", "c40"), splits: bool = True) -> Path:
    for comp in comps:
        touch(root, *(f"original_sequences/youtube/{comp}/videos/{i}.mp4" for i in FFPP_IDS))
        for method in ("Deepfakes", "FaceSwap"):
            for a, b in FFPP_PAIRS:
                touch(root, f"manipulated_sequences/{method}/{comp}/videos/{a}_{b}.mp4")
                touch(root, f"manipulated_sequences/{method}/{comp}/videos/{b}_{a}.mp4")
    touch(root, "manipulated_sequences/Deepfakes/masks/videos/000_003.mp4")
    touch(root, "original_sequences/youtube/c23/videos/.DS_Store", "README.txt")
    if splits:
        for name, pair in zip(("train", "val", "test"), FFPP_PAIRS):
            touch(root, f"splits/{name}.json", data=json.dumps([list(pair)]).encode())
    return root


def test_ffpp_c23_masks_and_official_splits(tmp_path):
    root = make_ffpp(tmp_path / "ff")
    t = build_manifest("ffpp", str(root))
    assert t.schema == MANIFEST_SCHEMA
    r = rows(t)
    assert len(r) == 6 + 2 * 6  # 6 reals, 2 methods x 6 fakes; no masks, no c40 copies
    assert not any("masks" in m or "/c40/" in m for m in r)
    assert set(t.column("compression").to_pylist()) == {"c23"}
    real = r["ffpp/original_sequences/youtube/c23/videos/000.mp4"]
    assert (real["label"], real["method"], real["source_id"], real["split"]) == (0, "real", "000", "train")
    assert real["uri"] == str(root / "original_sequences/youtube/c23/videos/000.mp4")
    fake = r["ffpp/manipulated_sequences/FaceSwap/c23/videos/004_001.mp4"]
    assert (fake["label"], fake["method"], fake["source_id"], fake["split"]) == (1, "FaceSwap", "004_001", "val")
    split_of = {m.rsplit("/", 1)[1][:-4]: row["split"] for m, row in r.items()}
    for name, (a, b) in zip(("train", "val", "test"), FFPP_PAIRS):
        assert {split_of[a], split_of[b], split_of[f"{a}_{b}"], split_of[f"{b}_{a}"]} == {name}


def test_ffpp_c40_and_raw_spelled_c0(tmp_path):
    root = make_ffpp(tmp_path / "ff", comps=("c23", "c40", "c0"))
    c40 = build_manifest("ffpp", str(root), compression="c40")
    assert c40.num_rows == 18 and all("/c40/" in u for u in c40.column("uri").to_pylist())
    for spelling in ("raw", "c0"):
        raw = build_manifest("ffpp", str(root), compression=spelling)
        assert raw.num_rows == 18 and set(raw.column("compression").to_pylist()) == {"raw"}
        assert all("/c0/" in u for u in raw.column("uri").to_pylist())
    with pytest.raises(DeepgenError, match="unknown compression 'c50'"):
        build_manifest("ffpp", str(root), compression="c50")


def test_ffpp_missing_compression_names_what_exists(tmp_path):
    root = make_ffpp(tmp_path / "ff", comps=("c40",))
    with pytest.raises(DeepgenError, match=r"no c23 videos .*c40.*--compression"):
        build_manifest("ffpp", str(root))


def test_ffpp_deterministic_split_keeps_pairs_together(tmp_path):
    root = tmp_path / "ff"
    ids = [f"{i:03d}" for i in range(20)]
    touch(root, *(f"original_sequences/youtube/c23/videos/{i}.mp4" for i in ids))
    for a, b in zip(ids[0::2], ids[1::2]):
        touch(root, f"manipulated_sequences/Face2Face/c23/videos/{a}_{b}.mp4")
        touch(root, f"manipulated_sequences/Face2Face/c23/videos/{b}_{a}.mp4")
    t1, t2 = build_manifest("ffpp", str(root)), build_manifest("ffpp", str(root))
    assert t1.equals(t2)
    split_of = {r["source_id"]: r["split"] for r in t1.to_pylist()}
    assert set(split_of.values()) == {"train", "val", "test"}
    for a, b in zip(ids[0::2], ids[1::2]):
        assert split_of[a] == split_of[b] == split_of[f"{a}_{b}"] == split_of[f"{b}_{a}"]


def test_ffpp_splits_dir_option_and_missing_split_file(tmp_path):
    root = make_ffpp(tmp_path / "ff", splits=False)
    sdir = tmp_path / "official"
    for name, pair in zip(("train", "val", "test"), reversed(FFPP_PAIRS)):
        touch(sdir, f"{name}.json", data=json.dumps([list(pair)]).encode())
    r = rows(build_manifest("ffpp", str(root), splits=str(sdir)))
    assert r["ffpp/original_sequences/youtube/c23/videos/002.mp4"]["split"] == "train"
    assert r["ffpp/manipulated_sequences/Deepfakes/c23/videos/003_000.mp4"]["split"] == "test"
    (sdir / "val.json").unlink()
    with pytest.raises(DeepgenError, match=r"split file .*val\.json is missing"):
        build_manifest("ffpp", str(root), splits=str(sdir))
    touch(root, "splits/train.json", data=b"[]")
    with pytest.raises(DeepgenError, match=r"splits/val\.json is missing"):
        build_manifest("ffpp", str(root))
    touch(root, "splits/val.json", "splits/test.json", data=b"{not json")
    with pytest.raises(DeepgenError, match="not a JSON list of id pairs"):
        build_manifest("ffpp", str(root))


# ---------------------------------------------------------------- Celeb-DF

CELEB_VIDEOS = [
    *(f"Celeb-real/id{i}_000{k}.mp4" for i in range(6) for k in range(2)),
    "YouTube-real/00000.mp4",
    "YouTube-real/00001.mp4",
    *(f"Celeb-synthesis/id{i}_id{(i + 1) % 6}_0000.mp4" for i in range(6)),
]
# Celeb-DF's own convention: 1 = real, 0 = fake
CELEB_LIST = "1 YouTube-real/00001.mp4\n0 Celeb-synthesis/id5_id0_0000.mp4\n1 Celeb-real/id5_0001.mp4\n\n"


def make_celebdf(root: Path, extra: str = "", listing: str = CELEB_LIST) -> Path:
    touch(root, *(f"{extra}{v}" for v in CELEB_VIDEOS))
    touch(root, "List_of_testing_videos.txt", data=listing.encode())
    return root


@pytest.mark.parametrize("extra", ["", "videos/"])
def test_celebdf_inverted_labels_and_identity_split(tmp_path, extra):
    root = make_celebdf(tmp_path / "celeb", extra=extra)
    r = rows(build_manifest("celebdf", str(root)))
    assert len(r) == len(CELEB_VIDEOS)
    yt = r[f"celebdf/{extra}YouTube-real/00001.mp4"]
    fake = r[f"celebdf/{extra}Celeb-synthesis/id5_id0_0000.mp4"]
    assert (yt["label"], yt["split"], yt["method"]) == (0, "test", "real")
    assert (fake["label"], fake["split"], fake["method"], fake["source_id"]) == (1, "test", "Celeb-synthesis", "id5_id0")
    assert sorted(m for m, x in r.items() if x["split"] == "test") == sorted(
        f"celebdf/{extra}{v}" for v in ("YouTube-real/00001.mp4", "Celeb-synthesis/id5_id0_0000.mp4", "Celeb-real/id5_0001.mp4")
    )
    rest = {x["split"] for x in r.values() if x["split"] != "test"}
    assert rest == {"train", "val"}
    for i in range(5):  # a target identity's reals and fakes share a split
        assert len({r[f"celebdf/{extra}{v}"]["split"] for v in (f"Celeb-real/id{i}_0000.mp4", f"Celeb-real/id{i}_0001.mp4", f"Celeb-synthesis/id{i}_id{i + 1}_0000.mp4")}) == 1
    assert sum(x["label"] for x in r.values()) == 6


def test_celebdf_list_with_deepgen_convention_is_refused(tmp_path):
    root = make_celebdf(tmp_path / "celeb", listing="0 YouTube-real/00001.mp4\n1 Celeb-synthesis/id5_id0_0000.mp4\n")
    with pytest.raises(DeepgenError, match="1 for real and 0 for fake"):
        build_manifest("celebdf", str(root))


def test_celebdf_missing_test_list(tmp_path):
    root = make_celebdf(tmp_path / "celeb")
    (root / "List_of_testing_videos.txt").unlink()
    with pytest.raises(DeepgenError, match=r"List_of_testing_videos\.txt is missing; expected the Celeb-DF layout"):
        build_manifest("celebdf", str(root))


# ---------------------------------------------------------------- DFDC


def make_dfdc(root: Path) -> Path:
    parts = {
        "dfdc_train_part_0": {
            "a.mp4": {"label": "REAL", "split": "train", "original": None},
            "b.mp4": {"label": "FAKE", "split": "train", "original": "a.mp4"},
            "c.mp4": {"label": "FAKE", "split": "train", "original": None},
            "d.mp4": {"label": "FAKE", "split": "train"},
            **{f"r{i}.mp4": {"label": "REAL", "split": "train"} for i in range(8)},
            **{f"f{i}.mp4": {"label": "FAKE", "split": "train", "original": f"r{i}.mp4"} for i in range(8)},
            "not_downloaded.mp4": {"label": "FAKE", "split": "train", "original": "a.mp4"},
        },
        "dfdc_train_part_1": {
            "e.mp4": {"label": "REAL", "split": "train"},
            "g.mp4": {"label": "FAKE", "split": "train", "original": "e.mp4"},
        },
    }
    for part, meta in parts.items():
        touch(root, *(f"train/{part}/{n}" for n in meta if n != "not_downloaded.mp4"))
        touch(root, f"train/{part}/metadata.json", data=json.dumps(meta).encode())
    touch(root, "test/x.mp4", "test/y.mp4")
    touch(root, "test/labels.csv", data=b"filename,label\nx.mp4,1\ny.mp4,0\n")
    return root


def test_dfdc_labels_original_and_same_split(tmp_path):
    root = make_dfdc(tmp_path / "dfdc")
    r = rows(build_manifest("dfdc", str(root)))
    assert len(r) == 4 + 16 + 2 + 2
    p0 = "dfdc/train/dfdc_train_part_0/"
    assert (r[p0 + "a.mp4"]["label"], r[p0 + "b.mp4"]["label"]) == (0, 1)
    assert r[p0 + "b.mp4"]["split"] == r[p0 + "a.mp4"]["split"] and r[p0 + "b.mp4"]["source_id"] == "a"
    for i in range(8):
        assert r[f"{p0}f{i}.mp4"]["split"] == r[f"{p0}r{i}.mp4"]["split"]
    assert r[p0 + "c.mp4"]["source_id"] == "c" and r[p0 + "d.mp4"]["source_id"] == "d"
    g, e = r["dfdc/train/dfdc_train_part_1/g.mp4"], r["dfdc/train/dfdc_train_part_1/e.mp4"]
    assert g["split"] == e["split"] and g["method"] == "unknown" and e["method"] == "real"
    assert {x["split"] for m, x in r.items() if "/train/" in m} == {"train", "val"}
    assert (r["dfdc/test/x.mp4"]["label"], r["dfdc/test/x.mp4"]["split"]) == (1, "test")
    assert (r["dfdc/test/y.mp4"]["label"], r["dfdc/test/y.mp4"]["split"]) == (0, "test")


def test_dfdc_missing_label_files(tmp_path):
    root = make_dfdc(tmp_path / "dfdc")
    touch(root, "train/dfdc_train_part_7/z.mp4")
    with pytest.raises(DeepgenError, match=r"dfdc_train_part_7/metadata\.json is missing; expected the DFDC layout"):
        build_manifest("dfdc", str(root))
    (root / "train/dfdc_train_part_7/z.mp4").unlink()
    (root / "test/labels.csv").unlink()
    with pytest.raises(DeepgenError, match=r"test/labels\.csv is missing"):
        build_manifest("dfdc", str(root))


# ---------------------------------------------------------------- DeeperForensics


def make_deeperforensics(root: Path, ffpp: Path) -> tuple[Path, Path]:
    for variant in ("end_to_end", "end_to_end_level_1"):
        touch(root, *(f"manipulated_videos/{variant}/{t}_M10{k}.mp4" for k, t in enumerate(["000", "001", "002", "003"])))
    touch(root, "source_videos/M100/BlendShape/camera_front/M100_BlendShape_camera_front.mp4")
    touch(root, "source_videos/M101/light_uniform/camera_left.mp4")
    touch(root, "lists/splits/train.txt", data=b"000_M100.mp4\n003_M103\n")
    touch(root, "lists/splits/val.txt", data=b"001_M101\n")
    touch(root, "lists/splits/test.txt", data=b"002_M102.mp4\n")
    for comp in ("c23", "c40"):
        touch(ffpp, *(f"original_sequences/youtube/{comp}/videos/{t}.mp4" for t in ("000", "001", "002", "003", "004")))
    return root, ffpp


def test_deeperforensics_variants_lists_and_ffpp_reals(tmp_path):
    root, ffpp = make_deeperforensics(tmp_path / "df", tmp_path / "ff")
    only_fakes = build_manifest("deeperforensics", str(root))
    assert only_fakes.num_rows == 4 and set(only_fakes.column("label").to_pylist()) == {1}
    assert not any("source_videos" in u for u in only_fakes.column("uri").to_pylist())
    r = rows(build_manifest("deeperforensics", str(root), ffpp_root=str(ffpp)))
    assert len(r) == 8
    fakes = {x["source_id"]: x["split"] for x in r.values() if x["label"] == 1}
    assert fakes == {"000_M100": "train", "001_M101": "val", "002_M102": "test", "003_M103": "train"}
    reals = {x["source_id"]: (x["split"], x["compression"], x["uri"]) for x in r.values() if x["label"] == 0}
    assert {k: v[0] for k, v in reals.items()} == {"000": "train", "001": "val", "002": "test", "003": "train"}
    assert all(v[1] == "c23" and "/c23/videos/" in v[2] and v[2].startswith(str(ffpp)) for v in reals.values())
    lvl = build_manifest("deeperforensics", str(root), variant="end_to_end_level_1")
    assert all("/end_to_end_level_1/" in u for u in lvl.column("uri").to_pylist()) and lvl.num_rows == 4


def test_deeperforensics_errors(tmp_path):
    root, _ = make_deeperforensics(tmp_path / "df", tmp_path / "ff")
    with pytest.raises(DeepgenError, match=r"no manipulated_videos/reenact_postprocess/ .*end_to_end, end_to_end_level_1"):
        build_manifest("deeperforensics", str(root), variant="reenact_postprocess")
    (root / "lists/splits/val.txt").unlink()
    with pytest.raises(DeepgenError, match=r"lists/splits/val\.txt is missing; expected the DeeperForensics-1\.0 layout"):
        build_manifest("deeperforensics", str(root))


# ---------------------------------------------------------------- WildDeepfake


def frame_bytes(seq: str, i: int) -> bytes:
    return f"{seq}:frame{i}".encode()


def write_tar(path: Path, n: str, kind: str, sequences: dict[str, int]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for seq, count in sequences.items():
            for i in reversed(range(count)):  # store out of order: the reader sorts naturally
                data = frame_bytes(f"{n}/{kind}/{seq}", i)
                info = tarfile.TarInfo(f"./{n}/{kind}/{seq}/{i}.png")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))


def make_wilddeepfake(root: Path) -> Path:
    write_tar(root / "fake train" / "1.tar.gz", "1", "fake", {"0": 12, "1": 3})
    write_tar(root / "fake_train" / "5.tar.gz", "5", "fake", {"0": 2})
    write_tar(root / "real_train" / "2.tar.gz", "2", "real", {"0": 2, "1": 2, "2": 2})
    write_tar(root / "real train" / "6.tar.gz", "6", "real", {"0": 2})
    write_tar(root / "fake_test" / "4.tar.gz", "4", "fake", {"0": 2})
    for seq in ("0", "1"):  # extracted in place
        for i in range(3):
            touch(root, f"real_test/3/real/{seq}/{i}.png", data=frame_bytes(f"3/real/{seq}", i))
    write_tar(root / "real_test" / "3.tar.gz", "3", "real", {"0": 3, "1": 3})  # extracted copy wins
    return root


def test_wilddeepfake_archives_spaces_and_sequences(tmp_path):
    root = make_wilddeepfake(tmp_path / "wdf")
    r = rows(build_manifest("wilddeepfake", str(root)))
    assert len(r) == 2 + 1 + 3 + 1 + 1 + 2
    assert set(x["media_type"] for x in r.values()) == {"frames"}
    seq = r["wilddeepfake/fake train/1/fake/0"]
    assert seq["uri"] == f"{root}/fake train/1.tar.gz#1/fake/0" and seq["label"] == 1
    assert seq["source_id"] == "fake_train/1" and seq["split"] in ("train", "val")
    assert r["wilddeepfake/real_test/3/real/1"]["uri"] == str(root / "real_test/3/real/1")
    by_split = {}
    for x in r.values():
        by_split.setdefault(x["split"], []).append(x["label"])
    assert sorted(by_split["test"]) == [0, 0, 1]
    assert len(by_split.get("train", [])) + len(by_split.get("val", [])) == 7
    assert sum(x["label"] for x in r.values()) == 4
    # the sequences of one archive share a split
    assert len({r[f"wilddeepfake/real_train/2/real/{s}"]["split"] for s in "012"}) == 1


def test_wilddeepfake_read_frame_sequence(tmp_path):
    root = make_wilddeepfake(tmp_path / "wdf")
    frames = list_frames(f"{root}/fake train/1.tar.gz#1/fake/0")
    assert [n for n, _ in frames] == [f"{i}.png" for i in range(12)]
    assert read_frame_sequence(f"{root}/fake train/1.tar.gz#1/fake/0") == [frame_bytes("1/fake/0", i) for i in range(12)]
    assert read_frame_sequence(str(root / "real_test/3/real/1")) == [frame_bytes("3/real/1", i) for i in range(3)]
    with pytest.raises(DeepgenError, match="holds no frames"):
        read_frame_sequence(f"{root}/fake train/1.tar.gz#1/fake/9")
    with pytest.raises(FileNotFoundError):
        read_frame_sequence(str(root / "real_test/3/real/9"))
    (root / "broken.tar.gz").write_bytes(b"not a tar")
    with pytest.raises(DeepgenError, match="cannot read the archive"):
        read_frame_sequence(f"{root}/broken.tar.gz#1/fake/0")


def test_wilddeepfake_unknown_layout(tmp_path):
    touch(tmp_path / "wdf", "train/a.png")
    with pytest.raises(DeepgenError, match="no real_train/fake_train/real_test/fake_test folders"):
        build_manifest("wilddeepfake", str(tmp_path / "wdf"))


# ---------------------------------------------------------------- folder


def test_folder_tree_and_csv(tmp_path):
    root = tmp_path / "corpus"
    touch(root, "real/a.mp4", "real/sub/b.jpg", "fake/Deepfakes/c.mp4", "fake/d.png", "fake/notes.txt", "other/e.mp4")
    r = rows(build_manifest("folder", str(root)))
    assert {m: (x["label"], x["method"], x["media_type"]) for m, x in r.items()} == {
        "folder/real/a.mp4": (0, "real", "video"),
        "folder/real/sub/b.jpg": (0, "real", "image"),
        "folder/fake/Deepfakes/c.mp4": (1, "Deepfakes", "video"),
        "folder/fake/d.png": (1, "unknown", "image"),
    }
    incoming = build_manifest("folder", str(root), name="incoming", split="test")
    assert set(incoming.column("split").to_pylist()) == {"test"}
    assert incoming.column("media_id").to_pylist()[0].startswith("incoming/")

    touch(root, "list.csv", data=b"path,label,split\nreal/a.mp4,real,train\nfake/d.png,1,val\n/abs/x.mp4,0,test\n")
    c = rows(build_manifest("folder", str(root / "list.csv")))
    assert c["folder/real/a.mp4"]["uri"] == str(root / "real/a.mp4") and c["folder/real/a.mp4"]["split"] == "train"
    assert (c["folder/fake/d.png"]["label"], c["folder/fake/d.png"]["media_type"]) == (1, "image")
    assert c["folder/abs/x.mp4"]["uri"] == "/abs/x.mp4"
    touch(root, "bad.csv", data=b"path,kind\nreal/a.mp4,real\n")
    with pytest.raises(DeepgenError, match="lacks the columns path,label"):
        build_manifest("folder", str(root / "bad.csv"))
    with pytest.raises(DeepgenError, match=r"label file .*missing\.csv is missing"):
        build_manifest("folder", str(root / "missing.csv"))


# ---------------------------------------------------------------- errors, splits, CLI


def test_unknown_dataset_layout_and_root(tmp_path):
    with pytest.raises(DeepgenError, match="unknown dataset 'ff'; choose one of ffpp"):
        build_manifest("ff", str(tmp_path))
    celeb = make_celebdf(tmp_path / "celeb")
    with pytest.raises(DeepgenError, match="found no FF\\+\\+ videos .*expected the FaceForensics\\+\\+ layout"):
        build_manifest("ffpp", str(celeb))
    with pytest.raises(DeepgenError, match=r"nowhere is missing or holds no files; expected the DFDC layout"):
        build_manifest("dfdc", str(tmp_path / "nowhere"))
    with pytest.raises(DeepgenError, match="do not apply to the celebdf adapter"):
        build_manifest("celebdf", str(celeb), compression="c40")
    assert sorted(ADAPTERS) == ["celebdf", "deeperforensics", "dfdc", "ffpp", "folder", "wilddeepfake"]


def test_assign_splits_proportions_and_determinism():
    groups = [f"g{i}" for i in range(100)]
    a = assign_splits(groups, {"train": 0.72, "val": 0.14, "test": 0.14}, salt="s")
    assert a == assign_splits(list(reversed(groups)), {"train": 0.72, "val": 0.14, "test": 0.14}, salt="s")
    counts = {s: list(a.values()).count(s) for s in ("train", "val", "test")}
    assert counts == {"train": 72, "val": 14, "test": 14}
    tiny = assign_splits(["x", "y", "z"], {"train": 0.8, "val": 0.1, "test": 0.1}, salt="s")
    assert sorted(tiny.values()) == ["test", "train", "val"]


def test_cli_writes_manifest_and_prints_counts(tmp_path):
    root = make_ffpp(tmp_path / "ff")
    out = tmp_path / "out" / "m.parquet"
    res = CliRunner().invoke(manifest, ["--dataset", "ffpp", "--root", str(root), "--out", str(out), "--compression", "c40"])
    assert res.exit_code == 0, res.output
    t = read_manifest(str(out))
    assert t.equals(build_manifest("ffpp", str(root), compression="c40"))
    assert pq.read_schema(out).names[:9] == MANIFEST_SCHEMA.names
    assert "train  fake  Deepfakes" in res.output and "test   real  real" in res.output
    assert "total" in res.output and "wrote 18 rows" in res.output
    res = CliRunner().invoke(manifest, ["--dataset", "celebdf", "--root", str(root), "--out", str(out), "--variant", "x"])
    assert res.exit_code == 2 and "--variant does not apply to --dataset celebdf" in res.output


def test_cli_main_reports_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["manifest", "--dataset", "celebdf", "--root", str(tmp_path / "none"), "--out", str(tmp_path / "m.parquet")])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: the dataset root") and "Celeb-DF layout" in err and "\n" not in err
    assert not (tmp_path / "m.parquet").exists()


def test_celebdf_videos_level_inside_class_folders(tmp_path):
    root = tmp_path / "celeb"
    touch(root, *(v.replace("/", "/videos/", 1) for v in CELEB_VIDEOS))
    touch(root, "List_of_testing_videos.txt", data=CELEB_LIST.encode())
    r = rows(build_manifest("celebdf", str(root)))
    assert len(r) == len(CELEB_VIDEOS)
    assert r["celebdf/YouTube-real/videos/00001.mp4"]["split"] == "test"
    assert r["celebdf/Celeb-synthesis/videos/id5_id0_0000.mp4"]["label"] == 1


def test_unwritable_output_is_one_line_error(tmp_path):
    root = make_ffpp(tmp_path / "ff")
    (tmp_path / "file").write_text("x")
    with pytest.raises(DeepgenError, match="cannot write the manifest to"):
        write_manifest("ffpp", str(root), str(tmp_path / "file" / "m.parquet"))
