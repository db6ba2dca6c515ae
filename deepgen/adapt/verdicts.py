"""Analyst verdicts from the review page (``deepgen review``'s "Download verdicts" CSV), read back and
joined with the scores table they were made on, so the marks can adapt a bundle (``adapt fewshot
--labels``) or set an operating point (real-marked items).

The CSV has one row per marked item: ``media_id``, ``verdict`` (real / fake / unsure) and, as the page
writes them, ``uri``, ``model_id``, ``fingerprint``, ``score``, ``marked_at``.
"""

from __future__ import annotations

import csv
import io
import math

import pandas as pd

from deepgen import storage
from deepgen.errors import DeepgenError
from deepgen.schema import dedupe_scores

VERDICTS = {"fake": 1, "real": 0, "unsure": None}
REQUIRED = ("media_id", "verdict")


def _read_csv(csv_uri: str) -> list[dict]:
    """The CSV's rows as dicts of strings (UTF-8, with or without a byte-order mark)."""
    if not storage.exists(csv_uri):
        raise DeepgenError(f"verdicts file {csv_uri} does not exist; download it with the review page's "
                           "Download verdicts button and pass its path.")
    try:
        text = storage.read_bytes(csv_uri).decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise DeepgenError(f"verdicts file {csv_uri} is not UTF-8 text ({e.reason} at byte {e.start}); pass the "
                           "CSV the review page downloaded.") from e
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        fields = [f.strip() for f in reader.fieldnames or []]
        rows = [{k.strip(): (v or "") for k, v in r.items() if k is not None} for r in reader]
    except csv.Error as e:
        raise DeepgenError(f"verdicts file {csv_uri} is not a readable CSV ({e}); pass the CSV the review page "
                           "downloaded.") from e
    missing = [c for c in REQUIRED if c not in fields]
    if missing:
        raise DeepgenError(f"verdicts file {csv_uri} lacks the column(s) {', '.join(missing)}; pass the CSV the "
                           "review page downloaded (columns media_id, uri, model_id, fingerprint, score, verdict, "
                           "marked_at).")
    return rows


def _score(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) else None


def read_verdicts(csv_uri: str, scores_uri: str) -> pd.DataFrame:
    """The analyst's verdicts joined with the scores table they were made on (on ``media_id``, and
    ``model_id`` when both have one): columns media_id, uri, verdict, label (1 fake, 0 real, None
    unsure), score and logit (NaN when the table has no valid one), model_id. Every mismatch is one sentence naming the row and the fix."""
    rows = _read_csv(csv_uri)
    if not storage.exists(scores_uri):
        raise DeepgenError(f"scores table {scores_uri} does not exist; pass the scores table the review page was "
                           "made from.")
    table = storage.read_table(scores_uri)
    if "media_id" not in table.column_names:
        raise DeepgenError(f"scores table {scores_uri} has no media_id column; pass the scores table the review "
                           "page was made from.")
    cols = [c for c in ("media_id", "uri", "model_id", "fingerprint", "score", "logit") if c in table.column_names]
    scored: dict[str, list[dict]] = {}
    for r in dedupe_scores(table).select(cols).to_pylist():
        scored.setdefault(str(r["media_id"]), []).append(r)
    out: dict[tuple[str, str], dict] = {}
    for n, r in enumerate(rows, start=2):  # row 1 is the header
        media_id, verdict = r["media_id"], r["verdict"].strip().lower()
        model_id = (r.get("model_id") or "").strip()
        if verdict not in VERDICTS:
            raise DeepgenError(f"verdicts file {csv_uri} row {n} has the verdict {r['verdict']!r}; use real, fake or "
                               "unsure.")
        matches = scored.get(media_id)
        if not matches:
            raise DeepgenError(f"verdicts file {csv_uri} row {n} names media_id {media_id[:200]!r}, which is not in "
                               f"the scores table {scores_uri}; pass the scores table the review page was made from.")
        if model_id and any(m.get("model_id") is not None for m in matches):
            same = [m for m in matches if str(m.get("model_id")) == model_id]
            if not same:
                found = sorted({str(m.get("model_id")) for m in matches})
                raise DeepgenError(f"verdicts file {csv_uri} row {n} was made on the scores of model_id "
                                   f"{model_id!r} but "
                                   f"{scores_uri} holds model_id {', '.join(found)} for {media_id[:200]!r}; pass the "
                                   f"scores table of model {model_id!r}.")
            matches = same
        fingerprint = (r.get("fingerprint") or "").strip()
        matches = [m for m in matches if str(m.get("fingerprint")) == fingerprint] or matches  # a rescored item
        m = matches[0]
        k = (media_id, str(m.get("model_id") or ""))
        if k in out and out[k]["verdict"] != verdict:
            raise DeepgenError(f"verdicts file {csv_uri} marks {media_id[:200]!r} both {out[k]['verdict']} and "
                               f"{verdict} (row {n}); keep one row per item.")
        out[k] = {"media_id": media_id, "uri": m.get("uri") if m.get("uri") is not None else r.get("uri") or None,
                  "verdict": verdict, "label": VERDICTS[verdict], "score": _score(m.get("score")),
                  "logit": _score(m.get("logit")), "model_id": m.get("model_id")}
    frame = pd.DataFrame(list(out.values()), columns=["media_id", "uri", "verdict", "label", "score", "logit",
                                                      "model_id"])
    frame["label"] = pd.Series([v["label"] for v in out.values()], dtype=object, index=frame.index)
    return frame


def real_marked_uris(verdicts: pd.DataFrame) -> list[str]:
    """The uris of the items the analyst marked real (for an operating point set on known-real media)."""
    return [str(u) for u in verdicts.loc[verdicts["verdict"] == "real", "uri"] if u is not None]


def verdict_labels(verdicts: pd.DataFrame) -> dict[str, int]:
    """media_id -> analyst label (1 fake, 0 real) of the items marked real or fake; unsure ones dropped."""
    sure = verdicts[verdicts["verdict"] != "unsure"]
    return {str(m): int(label) for m, label in zip(sure["media_id"], sure["label"])}


__all__ = ["read_verdicts", "real_marked_uris", "verdict_labels"]
