"""The HTML report: every referenced plot exists as a non-empty, valid PNG next to the page."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from deepgen import storage
from deepgen.errors import DeepgenError
from deepgen.evaluation.report import write_report
from deepgen.evaluation.shift import shift_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images: list[str] = []
        self.headings: list[str] = []
        self.tables = 0
        self._in_h2 = False

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        elif tag == "table":
            self.tables += 1
        self._in_h2 = tag == "h2"

    def handle_data(self, data):
        if self._in_h2:
            self.headings.append(data)
            self._in_h2 = False


def _predictions(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    for name, spread in (("ffpp", 4.0), ("celebdf", 2.0), ("dfdc", 1.0)):
        z = rng.normal(0, spread, 120)
        y = (rng.random(120) < 1 / (1 + np.exp(-z))).astype(int)  # labels from sigmoid(z)
        parts.append(pd.DataFrame({  # raw logits 2.5x over-confident; score calibrated with T = 2.5
            "media_id": [f"{name}/{i}" for i in range(120)], "dataset": name, "label": y,
            "logit": 2.5 * z, "score": 1 / (1 + np.exp(-z)), "uncertainty": rng.random(120),
            "skin_tone": rng.choice(["light", "dark"], 120),
        }))
    return pd.concat(parts, ignore_index=True)


def _check_page(page_path: Path) -> _Page:
    parser = _Page()
    parser.feed(page_path.read_text(encoding="utf-8"))
    assert parser.images, "the report references no images"
    for src in parser.images:
        assert src.startswith("plots/") and src.endswith(".png")
        img = page_path.parent / src
        assert img.is_file(), f"{src} is missing"
        data = img.read_bytes()
        assert len(data) > 1000 and data.startswith(PNG_MAGIC), f"{src} is not a valid PNG"
    return parser


def test_report_renders_all_plots_and_sections(tmp_path):
    preds = _predictions()
    rng = np.random.default_rng(1)
    shift = {"celebdf": shift_report(rng.normal(size=(80, 8)), rng.normal(size=(60, 8)) + 0.5, n_permutations=200),
             "ffpp": shift_report(rng.normal(size=(80, 8)), rng.normal(size=(60, 8)), n_permutations=200)}
    fig = Figure(figsize=(3, 2))
    fig.add_subplot().plot([0, 1], [0.5, 0.9])
    sections = [
        ("Subgroups", pd.DataFrame({"group": ["light", "dark"], "auc": [0.91, 0.84]})),
        ("Pareto front", fig, "mean vs min AUC per trial"),
        ("Adversarial robustness", {"pgd_2/255": 0.71, "clean": 0.93}),
        ("Notes <script>", "text with <b>markup</b> is escaped"),
    ]
    path = write_report(str(tmp_path / "rep"), preds, {"model_id": "abc123", "val": {"auc": 0.97}},
                        train_datasets="ffpp", temperature=2.5, shift=shift, sections=sections)
    page = Path(path)
    assert page.name == "report.html" and page.is_file()
    parser = _check_page(page)
    names = {Path(s).name for s in parser.images}
    assert {"roc.png", "auc_heatmap.png", "reliability.png", "coverage.png", "pareto_front.png"} <= names
    assert len(parser.images) == len(set(parser.images)) == 5
    for heading in ("ROC curves", "Cross-dataset AUC", "Calibration", "Coverage", "Domain shift",
                    "Subgroups", "Pareto front", "Adversarial robustness", "Notes <script>"):
        assert heading in parser.headings
    text = page.read_text()
    assert "<script>" not in text and "&lt;b&gt;markup" in text
    assert "abc123" in text and "val.auc" in text and "temperature from the checkpoint" in text
    assert parser.tables >= 8
    # every plot file on disk is referenced by the page
    assert {p.name for p in (page.parent / "plots").iterdir()} == names


def test_report_without_optional_inputs(tmp_path):
    preds = _predictions(2).drop(columns=["logit", "uncertainty"])
    preds = preds[preds["dataset"] == "dfdc"]
    path = write_report(str(tmp_path / "min"), preds)
    parser = _check_page(Path(path))
    assert len(parser.images) == 4
    text = Path(path).read_text()
    assert "no shift statistics" in text and "fit on these predictions" in text
    with pytest.raises(DeepgenError, match="lacks column"):
        write_report(str(tmp_path / "bad"), preds.drop(columns=["label"]))
    with pytest.raises(DeepgenError, match="section"):
        write_report(str(tmp_path / "bad2"), preds, sections=[("x", 3)])


def test_report_to_s3(s3_bucket):
    out = f"{s3_bucket}/reports/run1"
    path = write_report(out, _predictions(3), train_datasets=["ffpp"])
    assert path == f"{out}/report.html"
    parser = _Page()
    parser.feed(storage.read_bytes(path).decode("utf-8"))
    for src in parser.images:
        assert storage.read_bytes(storage.join(out, src)).startswith(PNG_MAGIC)
