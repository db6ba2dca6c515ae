"""The evaluation report: PNG plots in ``<out>/plots/`` and a ``report.html`` that shows them.

Images are separate PNG files referenced as ``<img src="plots/NAME.png">`` next to the page, so
the directory (local or ``s3://``) is the report. Later features add their own tables or figures
through ``sections`` without touching this module.
"""

from __future__ import annotations

import datetime as _dt
import html
import io
import re
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from deepgen import storage
from deepgen.errors import DeepgenError
from deepgen.evaluation.calibration import (
    apply_temperature,
    calibration_metrics,
    cross_domain_calibration,
    fit_temperature,
    logits_of,
    reliability_curve,
    sigmoid,
    temperature_for,
)
from deepgen.evaluation.crossdataset import check_predictions, cross_dataset_metrics
from deepgen.evaluation.shift import shift_table
from deepgen.evaluation.uncertainty import selective_prediction

CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;
color:#222;line-height:1.45;padding:0 1em}
h1{font-size:1.6em;border-bottom:2px solid #444;padding-bottom:.2em}
h2{font-size:1.25em;margin-top:2em;border-bottom:1px solid #ccc;padding-bottom:.15em}
table{border-collapse:collapse;margin:.6em 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}
tr:nth-child(even) td{background:#fafafa}
img{max-width:100%;border:1px solid #eee;margin:.4em 0}
.note{color:#666;font-size:.9em}
nav a{margin-right:1em}
"""


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "figure"


def _fmt(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (float, np.floating)):
        return "–" if not np.isfinite(v) else f"{v:.4f}"
    return str(v)


def _table_html(df: pd.DataFrame) -> str:
    if df is None or len(df) == 0:
        return '<p class="note">(no rows)</p>'
    shown = df.copy()
    for c in shown.columns:
        shown[c] = [_fmt(v) for v in shown[c]]
    return shown.to_html(index=False, border=0, escape=True)


def _flatten(d: Mapping, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, (pd.DataFrame, np.ndarray)):
            continue
        elif isinstance(v, (list, tuple)):
            out[key] = ", ".join(map(str, v))
        else:
            out[key] = v
    return out


def _mapping_table(d: Mapping) -> pd.DataFrame:
    flat = _flatten(d)
    return pd.DataFrame({"name": list(flat), "value": [_fmt(v) for v in flat.values()]})


def _png(fig: Figure) -> bytes:
    """The figure as PNG bytes, every text drawn literally: a name such as ``$x^$`` is a dataset name,
    not matplotlib mathtext (which would fail to parse, or render as a formula)."""
    import matplotlib
    from matplotlib.text import Text

    with matplotlib.rc_context({"text.parse_math": False}):  # texts made while drawing (tick labels)
        for text in fig.findobj(Text):
            text.set_parse_math(False)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _roc_figure(predictions: pd.DataFrame) -> tuple[Figure, list[str]]:
    fig = Figure(figsize=(5.5, 5))
    ax = fig.add_subplot()
    skipped = []
    for name, g in predictions.groupby("dataset", sort=True):
        y = g["label"].to_numpy().astype(int)
        if y.min() == y.max():
            skipped.append(str(name))
            continue
        fpr, tpr, _ = roc_curve(y, g["score"].to_numpy(dtype=float))
        auc = float(np.trapezoid(tpr, fpr))
        ax.plot(fpr, tpr, lw=1.6, label=f"{name} (AUC {auc:.3f})")
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", xlim=(0, 1), ylim=(0, 1.01),
           title="ROC per dataset")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower right", fontsize=8)
    return fig, skipped


def _heatmap_figure(matrix: pd.DataFrame) -> Figure:
    fig = Figure(figsize=(1.2 * matrix.shape[1] + 2.5, 0.7 * matrix.shape[0] + 2))
    ax = fig.add_subplot()
    vals = matrix.to_numpy(dtype=float)
    finite = vals[np.isfinite(vals)]
    vmin = min(0.5, float(finite.min())) if finite.size else 0.5
    im = ax.imshow(np.ma.masked_invalid(vals), cmap="viridis", vmin=vmin, vmax=1.0, aspect="auto")
    ax.set_xticks(range(matrix.shape[1]), [str(c) for c in matrix.columns], rotation=30, ha="right")
    ax.set_yticks(range(matrix.shape[0]), [str(i) for i in matrix.index])
    for i in range(vals.shape[0]):
        for j in range(vals.shape[1]):
            text = "n/a" if not np.isfinite(vals[i, j]) else f"{vals[i, j]:.3f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=9,
                    color="white" if np.isfinite(vals[i, j]) and vals[i, j] < (vmin + 1) / 2 else "black")
    ax.set(xlabel="test set", ylabel="trained on", title="cross-dataset AUC")
    fig.colorbar(im, ax=ax, fraction=0.046)
    return fig


def _reliability_figure(y: np.ndarray, before: np.ndarray, after: np.ndarray, n_bins: int,
                        t_label: str) -> Figure:
    fig = Figure(figsize=(10, 4.4))
    for k, (probs, name) in enumerate(((before, "before scaling"), (after, f"after scaling ({t_label})"))):
        ax = fig.add_subplot(1, 2, k + 1)
        curve = reliability_curve(y, probs, n_bins)
        m = calibration_metrics(y, probs, n_bins)
        width = 1.0 / n_bins
        centers = (curve["bin_lower"] + curve["bin_upper"]) / 2
        ax.bar(centers, curve["accuracy"], width=width * 0.95, color="#4c72b0", label="accuracy")
        ax.hlines(curve["confidence"], curve["bin_lower"], curve["bin_upper"], colors="crimson", lw=2.2,
                  label="mean confidence")
        ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1)
        ax.set(xlim=(0.45, 1.0), ylim=(0, 1.02), xlabel="top-label confidence", ylabel="accuracy",
               title=f"{name}\nECE {m['ece']:.4f}, NLL {m['nll']:.4f}")
        ax.legend(loc="upper left", fontsize=8)
    return fig


def _coverage_figure(curve: pd.DataFrame, source: str) -> Figure:
    fig = Figure(figsize=(5.5, 4.2))
    ax = fig.add_subplot()
    ax.plot(curve["coverage"], curve["accuracy"], marker="o", ms=3, label="accuracy")
    ax.plot(curve["coverage"], curve["auc"], marker="s", ms=3, label="AUC")
    ax.set(xlabel="coverage (share of items kept)", ylabel="metric on kept items", xlim=(0, 1.02),
           title=f"selective prediction ({source})")
    ax.legend(loc="lower left", fontsize=8)
    return fig


def write_report(
    out_dir: str,
    predictions: pd.DataFrame,
    metrics: Mapping | None = None,
    *,
    train_datasets: str | Iterable[str] | None = None,
    temperature: float | Mapping | None = None,
    auc_matrix: pd.DataFrame | None = None,
    shift: Mapping | pd.DataFrame | None = None,
    sections: Iterable[tuple] = (),
    cross: Mapping | None = None,
    uncertainty_col: str = "mutual_info",
    title: str = "deepgen evaluation report",
    n_bins: int = 15,
    threshold: float = 0.5,
) -> str:
    """Write ``report.html`` and its PNG plots into ``out_dir`` and return the page's path.

    ``predictions``: one row per item with ``media_id``, ``dataset``, ``label``, ``score`` and
    optionally ``logit`` (raw, before temperature) and ``uncertainty``. ``temperature``: the
    checkpoint's T (float or domain -> T mapping); when None it is fit on these predictions and the
    page says so. ``auc_matrix``: a train x test AUC table (default: this model's row). ``shift``: a
    :func:`~deepgen.evaluation.shift.shift_report` dict, a name -> report mapping, or a table.
    ``sections``: ``(title, content[, caption])`` with content a DataFrame, mapping, matplotlib
    Figure or text, appended in order. ``cross``: the caller's
    :func:`~deepgen.evaluation.crossdataset.cross_dataset_metrics` of these predictions, used as
    given (computed here only when absent). Selective prediction abstains on ``uncertainty_col``
    (MC-dropout mutual information by default; 1 - calibrated confidence when the column is absent).
    """
    check_predictions(predictions)
    preds = predictions.reset_index(drop=True)
    plots: dict[str, bytes] = {}
    body: list[str] = []

    def img(name: str, fig: Figure, alt: str) -> str:
        base, i = _slug(name), 1
        fname = f"{base}.png"
        while fname in plots:
            i += 1
            fname = f"{base}_{i}.png"
        plots[fname] = _png(fig)
        return f'<img src="plots/{fname}" alt="{html.escape(alt)}">'

    anchors: set[str] = set()

    def section(heading: str, content: str, anchor: str | None = None) -> None:
        a = base = anchor or _slug(heading)
        while a in anchors:
            a = f"{base}_{len(anchors)}"
        anchors.add(a)
        body.append(f'<h2 id="{a}">{html.escape(heading)}</h2>\n{content}')

    # summary and cross-dataset protocol
    cross = cross or cross_dataset_metrics(preds, train_datasets, threshold)
    summary_parts = [_table_html(_mapping_table(cross["summary"]))]
    if metrics:
        summary_parts.append("<h3>metrics</h3>" + _table_html(_mapping_table(metrics)))
    section("Summary", "\n".join(summary_parts))
    section("Per-dataset metrics", _table_html(cross["per_dataset"]) +
            f'<p class="note">threshold {threshold} on P(fake); gap = train AUC - dataset AUC.</p>')

    fig, skipped = _roc_figure(preds)
    note = f'<p class="note">one class only, no ROC: {html.escape(", ".join(skipped))}</p>' if skipped else ""
    section("ROC curves", img("roc", fig, "ROC curves per dataset") + note)

    if auc_matrix is None:
        per = cross["per_dataset"]
        row_name = "+".join(sorted(cross["summary"]["train_datasets"])) or "model"
        auc_matrix = pd.DataFrame([per["auc"].to_numpy(dtype=float)], index=[row_name],
                                  columns=per["dataset"].tolist())
    section("Cross-dataset AUC", img("auc_heatmap", _heatmap_figure(auc_matrix), "cross-dataset AUC heatmap"))

    # calibration before / after temperature scaling
    y = preds["label"].to_numpy().astype(int)
    z = logits_of(preds)
    if temperature is None and np.unique(y).size == 2:
        t_note = "temperature fit on these predictions (optimistic: no held-out calibration set)"
        temperature = fit_temperature(z, y)
    elif temperature is None:
        t_note, temperature = "one class only, so no temperature could be fit: T = 1 (unscaled)", 1.0
    else:
        t_note = "temperature from the checkpoint"
    t_arr = temperature_for(preds["dataset"].to_numpy(), temperature)
    before, after = sigmoid(z), apply_temperature(z, t_arr)
    t_label = f"T={float(temperature):.3f}" if not isinstance(temperature, Mapping) else "T per domain"
    rows = []
    for name, idx in preds.groupby("dataset", sort=True).groups.items():
        idx = np.asarray(idx)
        b, a = calibration_metrics(y[idx], before[idx], n_bins), calibration_metrics(y[idx], after[idx], n_bins)
        rows.append({"dataset": name, "temperature": float(t_arr[idx][0]),
                     **{f"{k}_before": v for k, v in b.items()}, **{f"{k}_after": v for k, v in a.items()}})
    cal = [img("reliability", _reliability_figure(y, before, after, n_bins, t_label),
               "reliability diagrams before and after temperature scaling"),
           f'<p class="note">{html.escape(t_note)}; top-label confidence, {n_bins} equal-width bins.</p>',
           _table_html(pd.DataFrame(rows))]
    if preds["dataset"].nunique() > 1:
        cdc = cross_domain_calibration(preds.assign(logit=z), n_bins=n_bins)
        cal.append("<h3>cross-domain calibration (fit T on one dataset, measure on another)</h3>")
        cal.append(_table_html(cdc))
    section("Calibration", "\n".join(cal))

    # selective prediction
    if uncertainty_col in preds.columns and np.all(np.isfinite(preds[uncertainty_col].to_numpy(dtype=float))):
        unc, source = preds[uncertainty_col].to_numpy(dtype=float), f"uncertainty column '{uncertainty_col}'"
    else:
        unc, source = 1.0 - np.maximum(after, 1.0 - after), "1 - calibrated confidence"
    curve = selective_prediction(y, after, unc, threshold=threshold)
    section("Coverage", img("coverage", _coverage_figure(curve, source), "accuracy and AUC vs coverage")
            + f'<p class="note">abstaining on the most uncertain items by {html.escape(source)}.</p>'
            + _table_html(curve[["coverage", "n_kept", "uncertainty_threshold", "accuracy", "auc"]]))

    # domain shift
    if shift is None:
        section("Domain shift", '<p class="note">no shift statistics were given.</p>')
    else:
        table = shift if isinstance(shift, pd.DataFrame) else shift_table(shift)
        section("Domain shift", _table_html(table) +
                '<p class="note">MMD two-sample test (RBF kernel, median bandwidth, permutation p-value); '
                "shift detected when p &lt; alpha.</p>")

    # extra sections from later features
    for item in sections:
        if not isinstance(item, tuple) or len(item) not in (2, 3):
            raise DeepgenError("each report section must be (title, content) or (title, content, caption).")
        heading, content = item[0], item[1]
        caption = f'<p class="note">{html.escape(str(item[2]))}</p>' if len(item) == 3 else ""
        if isinstance(content, pd.DataFrame):
            inner = _table_html(content)
        elif isinstance(content, Figure):
            inner = img(str(heading), content, str(heading))
        elif isinstance(content, Mapping):
            inner = _table_html(_mapping_table(content))
        elif isinstance(content, str):
            inner = f"<p>{html.escape(content)}</p>"
        else:
            raise DeepgenError(
                f"report section {heading!r} holds a {type(content).__name__}; give a DataFrame, dict, Figure or text."
            )
        section(str(heading), inner + caption, anchor=f"extra_{_slug(str(heading))}")

    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    nav = " ".join(
        f'<a href="#{m.group(1)}">{m.group(2)}</a>'
        for m in (re.match(r'<h2 id="([^"]+)">(.*?)</h2>', b) for b in body) if m
    )
    page = (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>\n"
        f"<h1>{html.escape(title)}</h1>\n<p class=\"note\">{len(preds)} items, "
        f"{preds['dataset'].nunique()} datasets; written {stamp}.</p>\n<nav>{nav}</nav>\n"
        + "\n".join(body) + "\n</body></html>\n"
    )
    for fname, data in plots.items():
        storage.write_bytes(storage.join(out_dir, "plots", fname), data)
    path = storage.join(out_dir, "report.html")
    storage.write_bytes(path, page.encode("utf-8"))
    return path
