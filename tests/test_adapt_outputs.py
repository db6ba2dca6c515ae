"""`deepgen adapt protocol` checks its output like every other command: never its inputs, never a
folder deepgen did not write; refused in one sentence before any work."""

from __future__ import annotations

import pytest

from deepgen import storage
from deepgen.cli import main


def test_protocol_refuses_its_inputs_and_foreign_folders(tmp_path, capsys):
    faces = tmp_path / "faces"
    faces.mkdir()
    (faces / "part-00000.parquet").write_bytes(b"user data")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "protocol.csv").write_text("an analyst's own file\n")
    missing_bundle = str(tmp_path / "no-bundle")  # the check comes first, so no model is ever loaded
    cases = [(str(faces), "because it is or holds the input"), (str(tmp_path), "because it is or holds the input"),
             (str(mine), "already exists; pass --overwrite")]
    for out, needle in cases:
        with pytest.raises(SystemExit) as e:
            main(["adapt", "protocol", "--checkpoint", missing_bundle, "--faces", str(faces), "--out", out])
        err = capsys.readouterr().err
        assert e.value.code == 2 and needle in err and err.count("\n") == 1, err
    with pytest.raises(SystemExit):
        main(["adapt", "protocol", "--checkpoint", missing_bundle, "--faces", str(faces), "--out", str(mine),
              "--overwrite"])
    assert "was not written by deepgen" in capsys.readouterr().err
    assert (mine / "protocol.csv").read_text() == "an analyst's own file\n"
    assert (faces / "part-00000.parquet").read_bytes() == b"user data" and not storage.exists(
        str(faces / "protocol.csv"))
