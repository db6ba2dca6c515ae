"""Issue 24, findings 1 and 7: deepgen deletes only what it wrote, never a protected place, and refuses a
bad output before any work (no bundle loaded, no Ray started)."""

from __future__ import annotations

import os
import time

import pyarrow as pa
import pytest

from deepgen import storage
from deepgen.cli import main
from deepgen.errors import DeepgenError


def _user_folder(path) -> dict[str, bytes]:
    """A folder a user cares about (no deepgen marker); returns its files for an intactness check."""
    os.makedirs(path / "photos", exist_ok=True)
    (path / "photos" / "thesis.docx").write_bytes(b"four years of work")
    (path / "notes.txt").write_text("do not delete")
    return _snapshot(path)


def _snapshot(path) -> dict[str, bytes]:
    out = {}
    for root, _, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            out[os.path.relpath(p, path)] = open(p, "rb").read()
    return out


def _cli_error(capsys, argv: list[str]) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def _manifest(tmp_path) -> str:
    path = str(tmp_path / "manifest.parquet")
    storage.write_table(pa.Table.from_pylist([
        {"media_id": "t/a.png", "uri": str(tmp_path / "a.png"), "label": 0, "dataset": "t", "method": "real",
         "split": "test", "source_id": "a", "compression": "raw", "media_type": "image"}]), path)
    return path


@pytest.mark.parametrize("command", ["score", "evaluate"])
def test_overwrite_refuses_a_folder_deepgen_did_not_write(command, tmp_path, tiny_bundle, capsys):
    out = tmp_path / "out"
    before = _user_folder(out)
    if command == "score":
        argv = ["score", "--manifest", _manifest(tmp_path), "--checkpoint", tiny_bundle]
    else:
        argv = ["evaluate", "--checkpoint", tiny_bundle, "--faces", str(tmp_path / "faces")]
    err = _cli_error(capsys, [*argv, "--out", str(out), "--overwrite"])
    assert "not written by deepgen" in err
    assert _snapshot(out) == before  # intact


def test_extract_overwrite_and_partial_lookalike_are_refused(tmp_path, capsys):
    manifest = _manifest(tmp_path)
    out = tmp_path / "faces"
    before = _user_folder(out)
    err = _cli_error(capsys, ["extract", "--manifest", manifest, "--out", str(out), "--overwrite"])
    assert "not written by deepgen" in err and _snapshot(out) == before
    # a user folder that merely has the name of extraction's work directory is not deepgen's
    out2 = tmp_path / "faces2"
    partial = tmp_path / "faces2.partial"
    kept = _user_folder(partial)
    err = _cli_error(capsys, ["extract", "--manifest", manifest, "--out", str(out2)])
    assert "faces2.partial" in err and "not written by deepgen" in err
    assert _snapshot(partial) == kept and not out2.exists()


def test_bundle_and_tune_copy_refuse_user_folders(tmp_path, tiny_bundle):
    from deepgen.models.bundle import load_bundle, save_bundle
    from deepgen.tune.results import copy_dir

    b = load_bundle(tiny_bundle)
    out = tmp_path / "adapted"
    before = _user_folder(out)
    with pytest.raises(DeepgenError, match="not written by deepgen"):
        save_bundle(str(out), b.model, temperature=b.temperature, reference=b.reference, overwrite=True)
    with pytest.raises(DeepgenError, match="not written by deepgen"):
        copy_dir(tiny_bundle, str(out))
    assert _snapshot(out) == before
    # what deepgen wrote itself it may replace
    ours = str(tmp_path / "ours")
    save_bundle(ours, b.model, temperature=b.temperature, reference=b.reference)
    assert storage.owned_by_deepgen(ours)
    save_bundle(ours, b.model, temperature=2.0, reference=b.reference, overwrite=True)
    assert load_bundle(ours).temperature == 2.0


def test_protected_places_are_never_outputs(tmp_path, monkeypatch):
    home = tmp_path / "home"
    work = home / "work"
    data = work / "data" / "faces"
    data.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    for uri, why in [("/", "filesystem root"), (".", "working directory"), (str(work), "working directory"),
                     ("~", "home directory"), (str(home), "home directory"), ("s3://bucket", "whole bucket")]:
        with pytest.raises(DeepgenError, match=why):
            storage.check_output_path(uri, overwrite=True)
        with pytest.raises(DeepgenError, match=why):
            storage.remove_owned(uri)
    with pytest.raises(DeepgenError, match="holds the input"):
        storage.check_output_path(str(work / "data"), inputs=[str(data)], overwrite=True)
    with pytest.raises(DeepgenError, match="is or holds the input"):
        storage.check_output_path("data/faces", inputs=[str(data)], overwrite=True)
    assert data.is_dir()
    storage.check_output_path(str(work / "new"), inputs=[str(data)])  # a new folder is fine


def test_evaluate_and_score_refuse_an_existing_output_before_any_work(tmp_path, capsys):
    report = tmp_path / "report"
    report.mkdir()
    (report / "report.html").write_text("<html></html>")
    t0 = time.perf_counter()
    # the checkpoint and faces do not even exist: the output is checked first, so nothing is scored
    err = _cli_error(capsys, ["evaluate", "--checkpoint", str(tmp_path / "nope"), "--faces", str(tmp_path / "nope"),
                              "--out", str(report)])
    assert "already exists" in err
    err = _cli_error(capsys, ["score", "--manifest", str(tmp_path / "nope.parquet"), "--checkpoint",
                              str(tmp_path / "nope"), "--out", str(report)])
    assert "already exists" in err
    assert time.perf_counter() - t0 < 30  # no bundle loaded, no Ray started
