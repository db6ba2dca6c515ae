"""Analyst verdicts (the review page's CSV) read back against the scores table they were made on:
local and s3://, with or without a byte-order mark, and one sentence for every mismatch."""

from __future__ import annotations

import math

import pyarrow as pa
import pytest

from deepgen import storage
from deepgen.adapt.verdicts import read_verdicts, real_marked_uris, verdict_labels
from deepgen.cli import main
from deepgen.errors import DeepgenError

HEADER = "media_id,uri,model_id,fingerprint,score,verdict,marked_at\r\n"


def _scores(uri: str, model_id: str = "m1") -> str:
    rows = [{"media_id": f"v{i}.mp4", "uri": f"/media/v{i}.mp4", "model_id": model_id, "status": "ok",
             "score": i / 10} for i in range(5)]
    rows.append({"media_id": "odd, \"quoted\"\u202e.mp4", "uri": "/media/odd.mp4", "model_id": model_id,
                 "status": "ok", "score": float("nan")})
    storage.write_table(pa.Table.from_pylist(rows), storage.join(uri, "part-00000.parquet"))
    return uri


def _csv(uri: str, body: str, bom: bool = True) -> str:
    storage.write_bytes(uri, (b"\xef\xbb\xbf" if bom else b"") + (HEADER + body).encode())
    return uri


GOOD = ("v1.mp4,/media/v1.mp4,m1,,0.1,real,2026-01-01T00:00:00Z\r\n"
        "v3.mp4,/media/v3.mp4,m1,,0.3,FAKE,2026-01-01T00:00:01Z\r\n"
        "v4.mp4,/media/v4.mp4,m1,,0.4,unsure,2026-01-01T00:00:02Z\r\n"
        '"odd, ""quoted""\u202e.mp4",/media/odd.mp4,m1,,,real,2026-01-01T00:00:03Z\r\n')


@pytest.mark.parametrize("bom", [True, False])
def test_read_verdicts_joins_the_scores(tmp_path, bom):
    scores = _scores(str(tmp_path / "scores"))
    v = read_verdicts(_csv(str(tmp_path / "v.csv"), GOOD, bom), scores)
    assert list(v.columns) == ["media_id", "uri", "verdict", "label", "score", "logit", "model_id"]
    assert v["verdict"].tolist() == ["real", "fake", "unsure", "real"]
    assert v["label"].tolist() == [0, 1, None, 0] and v["score"].tolist()[:3] == [0.1, 0.3, 0.4]
    assert math.isnan(v["score"].tolist()[3])  # no valid score: NaN in the float column
    assert real_marked_uris(v) == ["/media/v1.mp4", "/media/odd.mp4"]
    assert verdict_labels(v) == {"v1.mp4": 0, "v3.mp4": 1, "odd, \"quoted\"\u202e.mp4": 0}


def test_read_verdicts_from_s3(s3_bucket):
    scores = _scores(f"{s3_bucket}/scores")
    v = read_verdicts(_csv(f"{s3_bucket}/verdicts.csv", GOOD), scores)
    assert len(v) == 4 and v["uri"].tolist()[0] == "/media/v1.mp4"


@pytest.mark.parametrize("body, header, needle", [
    ("v1.mp4,real\r\n", "media_id,label\r\n", "lacks the column(s) verdict"),
    ("v1.mp4,/m,m1,,0.1,maybe,t\r\n", None, "row 2 has the verdict 'maybe'; use real, fake or unsure"),
    ("v9.mp4,/m,m1,,0.1,real,t\r\n", None, "names media_id 'v9.mp4', which is not in the scores table"),
    ("v1.mp4,/m,m2,,0.1,real,t\r\n", None, "made on the scores of model_id 'm2' but"),
    ("v1.mp4,/m,m1,,0.1,real,t\r\nv1.mp4,/m,m1,,0.1,fake,t\r\n", None, "both real and fake (row 3)"),
])
def test_read_verdicts_mismatch_is_one_sentence(tmp_path, body, header, needle):
    scores = _scores(str(tmp_path / "scores"))
    path = str(tmp_path / "v.csv")
    if header:
        storage.write_bytes(path, (header + body).encode())
    else:
        _csv(path, body)
    with pytest.raises(DeepgenError) as e:
        read_verdicts(path, scores)
    assert needle in str(e.value) and str(e.value).count(". ") == 0 and "\n" not in str(e.value)


def test_read_verdicts_not_utf8_or_missing(tmp_path):
    scores = _scores(str(tmp_path / "scores"))
    bad = str(tmp_path / "latin1.csv")
    storage.write_bytes(bad, (HEADER + "caf\xe9.mp4,/m,m1,,0.1,real,t\r\n").encode("latin-1"))
    with pytest.raises(DeepgenError, match="is not UTF-8 text"):
        read_verdicts(bad, scores)
    with pytest.raises(DeepgenError, match="does not exist; download it"):
        read_verdicts(str(tmp_path / "none.csv"), scores)


def test_fewshot_labels_needs_scores(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["adapt", "fewshot", "--checkpoint", str(tmp_path / "b"), "--support", str(tmp_path / "f"),
              "--labels", str(tmp_path / "v.csv"), "--out", str(tmp_path / "o")])
    assert e.value.code == 2 and "--labels (the review page's verdicts CSV) and --scores" in capsys.readouterr().err
