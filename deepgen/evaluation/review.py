"""``deepgen review``: one self-contained static HTML page for analysts, from a scores table.

Items are sorted by score (highest first, unscored items last) and paged in the browser, with
filters for status, ``in_domain`` and dataset. Each item shows its score, uncertainty, out-of-domain
score, status, the per-frame timeline (a canvas plot drawn from the ``frame_*`` list columns) and,
for the ``top`` highest-scoring items only, its face crops and heat-map overlays as ``data:`` images,
so 10k items stay a few megabytes. Nothing is fetched from anywhere: no remote URL, no external
script or style. Every value reaches the page as JSON inside a ``<script type="application/json">``
block and is inserted with ``textContent``, so a media name is always text, never markup.
"""

from __future__ import annotations

import base64
import json
import math
import time

import pyarrow as pa

from deepgen import storage
from deepgen.errors import DeepgenError

PAGE = "index.html"
FIELDS = ("media_id", "uri", "dataset", "status", "error", "score", "uncertainty", "ood_score", "in_domain",
          "n_frames", "n_faces", "n_tracks", "label", "model_id", "heatmap_kind")


def _num(v, digits: int = 4):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return None
    return round(float(v), digits)


def _image(data: bytes) -> str:
    kind = "png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "jpeg"
    return f"data:image/{kind};base64,{base64.b64encode(data).decode()}"


def review_items(table: pa.Table, top: int = 200) -> list[dict]:
    """The page's items: scalar fields, timeline, and images for the ``top`` highest-scoring items, sorted."""
    cols = set(table.column_names)
    missing = [c for c in ("media_id", "status", "score") if c not in cols]
    if missing:
        raise DeepgenError(f"the scores table lacks the column(s) {', '.join(missing)}; pass a table written by "
                           "`deepgen score` or `deepgen rescore`.")
    keep = [c for c in table.column_names if c in FIELDS or c.startswith("frame_") or c in ("face_crops", "heatmaps",
                                                                                         "heatmap_frames")]
    rows = table.select(keep).to_pylist()
    rows.sort(key=lambda r: (r.get("score") is None, -(r.get("score") or 0.0), str(r.get("media_id"))))
    items = []
    for rank, r in enumerate(rows):
        item = {k: (_num(r.get(k)) if k in ("score", "uncertainty", "ood_score") else r.get(k))
                for k in FIELDS if k in r}
        item = {k: (str(v) if k in ("media_id", "uri", "dataset", "status", "error", "model_id") and v is not None
                    else v) for k, v in item.items()}
        if r.get("frame_scores"):
            item["timeline"] = {"t": [_num(t, 3) for t in r.get("frame_times") or []],
                                "i": r.get("frame_indices") or [], "k": r.get("frame_tracks") or [],
                                "s": [_num(s, 3) for s in r["frame_scores"]]}
        if rank < top:
            item["crops"] = [_image(b) for b in r.get("face_crops") or [] if b]
            item["heatmaps"] = [_image(b) for b in r.get("heatmaps") or [] if b]
            item["heatmap_frames"] = r.get("heatmap_frames") or []
        items.append(item)
    return items


def render_page(items: list[dict], title: str, source: str, page_size: int = 50) -> str:
    """The HTML document: styles, data and script inline; values escaped by construction (JSON + textContent)."""
    data = json.dumps({"items": items, "title": title, "source": source, "page_size": page_size,
                       "generated": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())},
                      separators=(",", ":"), allow_nan=False)
    # inside <script>, only "</" (and "<!--") could end the block early: escape every "<"
    data = data.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return _TEMPLATE.replace("__DATA__", data)


def review(scores: str, out: str, top: int = 200, page_size: int = 50, overwrite: bool = False) -> dict:
    """Write ``out``/index.html for the scores table ``scores`` (local or ``s3://``); return its summary."""
    if top < 0 or page_size < 1:
        raise DeepgenError(f"--top {top} / --page-size {page_size} are out of range; use --top >= 0 and "
                           "--page-size >= 1.")
    if not storage.exists(scores):
        raise DeepgenError(f"scores table {scores} does not exist; pass the --out of `deepgen score` or a store "
                           "partition.")
    table = storage.read_table(scores)
    items = review_items(table, top=top)
    html = render_page(items, title=f"deepgen review: {len(items)} items", source=str(scores), page_size=page_size)
    with storage.atomic_dir(out, overwrite=overwrite) as tmp:
        storage.write_bytes(storage.join(tmp, PAGE), html.encode())
    return {"page": storage.join(out, PAGE), "items": len(items), "with_images": min(top, len(items)),
            "bytes": len(html.encode())}


_TEMPLATE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'">
<title>deepgen review</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:16px;color:#222;background:#fafafa}
h1{font-size:20px;margin:0 0 4px} .meta{color:#666;margin-bottom:10px}
.bar{display:flex;gap:12px;align-items:center;flex-wrap:wrap;margin:8px 0;padding:8px;background:#fff;border:1px solid #ddd}
table{border-collapse:collapse;width:100%;background:#fff} th,td{border-bottom:1px solid #e3e3e3;padding:6px;vertical-align:top;text-align:left}
th{background:#f0f0f0;position:sticky;top:0} .num{font-variant-numeric:tabular-nums;white-space:nowrap}
.fake{color:#b00020;font-weight:600} .real{color:#1b5e20} .ood{background:#fff3cd;padding:1px 4px;border-radius:3px}
.bad{color:#777;font-style:italic} img{width:64px;height:64px;image-rendering:auto;margin:1px;border:1px solid #ccc}
.name{max-width:280px;word-break:break-all} canvas{border:1px solid #ddd}
</style></head>
<body>
<h1 id="title"></h1><div class="meta" id="meta"></div>
<div class="bar">
 <label>status <select id="f-status"><option value="">all</option></select></label>
 <label>in domain <select id="f-domain"><option value="">all</option><option value="yes">in domain</option>
  <option value="no">out of domain</option><option value="unknown">not checked</option></select></label>
 <label>dataset <select id="f-dataset"><option value="">all</option></select></label>
 <button id="prev">&larr; prev</button><span id="pageinfo" class="num"></span><button id="next">next &rarr;</button>
 <span id="rendered" class="meta"></span>
</div>
<table><thead><tr><th>#</th><th>media</th><th>score</th><th>uncertainty</th><th>domain</th><th>status</th>
<th>tracks</th><th>timeline (frame P(fake) by time)</th><th>faces</th><th>heat maps</th></tr></thead>
<tbody id="rows"></tbody></table>
<script type="application/json" id="data">__DATA__</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const items = D.items; let page = 0, shown = [];
const $ = (id) => document.getElementById(id);
function el(tag, text, cls) { const e = document.createElement(tag); if (text !== undefined && text !== null) e.textContent = String(text); if (cls) e.className = cls; return e; }
function fmt(v, d) { return (v === null || v === undefined) ? "\\u2013" : Number(v).toFixed(d); }
function options(sel, values) { for (const v of values) { const o = el("option", v); o.value = v; sel.appendChild(o); } }
$("title").textContent = D.title;
$("meta").textContent = "scores: " + D.source + " \\u00b7 generated " + D.generated + " \\u00b7 sorted by score, highest first";
options($("f-status"), [...new Set(items.map(i => i.status || ""))].sort());
options($("f-dataset"), [...new Set(items.map(i => i.dataset || ""))].sort());
function timeline(tl) {
  const w = 180, h = 48, c = document.createElement("canvas"); c.width = w; c.height = h;
  const g = c.getContext("2d"), xs = tl.t.every(t => t !== null) ? tl.t : tl.i;
  const lo = Math.min(...xs), hi = Math.max(...xs), span = (hi - lo) || 1;
  g.fillStyle = "#fcfcfc"; g.fillRect(0, 0, w, h); g.strokeStyle = "#ccc"; g.setLineDash([3, 3]);
  g.beginPath(); g.moveTo(0, h / 2); g.lineTo(w, h / 2); g.stroke(); g.setLineDash([]);
  const colours = ["#c62828", "#1565c0", "#2e7d32", "#6a1b9a", "#ef6c00"];
  [...new Set(tl.k)].forEach((k, n) => {
    const pts = [];
    tl.k.forEach((kk, j) => { if (kk === k) pts.push([4 + (w - 8) * (xs[j] - lo) / span, h - 3 - (h - 6) * tl.s[j]]); });
    pts.sort((a, b) => a[0] - b[0]);
    g.strokeStyle = g.fillStyle = colours[n % colours.length]; g.lineWidth = 1.5; g.beginPath();
    pts.forEach((p, j) => j ? g.lineTo(p[0], p[1]) : g.moveTo(p[0], p[1])); g.stroke();
    for (const p of pts) { g.beginPath(); g.arc(p[0], p[1], 1.8, 0, 2 * Math.PI); g.fill(); }
  });
  c.title = tl.s.map((s, j) => "frame " + tl.i[j] + (tl.t[j] !== null ? " (" + tl.t[j] + " s)" : "") + ", track " + tl.k[j] + ": " + s).join("\\n");
  c.className = "tl"; return c;
}
let loaded = 0, images = 0;
function img(src, label) { const i = new Image(); images++; i.alt = label; i.title = label; i.onload = () => { loaded++; status(); }; i.src = src; return i; }
function status() { $("rendered").textContent = "rendered " + $("rows").children.length + " rows, " + loaded + "/" + images + " images"; $("rendered").dataset.rows = $("rows").children.length; $("rendered").dataset.images = loaded;
  if (loaded === images) $("rendered").dataset.ms = Math.round(performance.now()); }
function render() {
  const fs = $("f-status").value, fd = $("f-domain").value, fds = $("f-dataset").value;
  shown = items.filter(i => (!fs || (i.status || "") === fs) && (!fds || (i.dataset || "") === fds) &&
    (!fd || (fd === "yes" && i.in_domain === true) || (fd === "no" && i.in_domain === false) || (fd === "unknown" && (i.in_domain === null || i.in_domain === undefined))));
  const pages = Math.max(1, Math.ceil(shown.length / D.page_size)); page = Math.min(page, pages - 1);
  $("pageinfo").textContent = "page " + (page + 1) + " / " + pages + " (" + shown.length + " items)";
  const body = $("rows"); body.replaceChildren(); loaded = 0; images = 0;
  shown.slice(page * D.page_size, (page + 1) * D.page_size).forEach((it, n) => {
    const tr = document.createElement("tr");
    tr.appendChild(el("td", page * D.page_size + n + 1, "num"));
    const name = el("td", null, "name"); name.appendChild(el("div", it.media_id)); name.appendChild(el("div", it.dataset, "meta")); tr.appendChild(name);
    tr.appendChild(el("td", fmt(it.score, 3), "num " + (it.score === null || it.score === undefined ? "bad" : it.score >= 0.5 ? "fake" : "real")));
    tr.appendChild(el("td", fmt(it.uncertainty, 3) + " nats", "num"));
    const dom = el("td", null, "num");
    if (it.in_domain === true) dom.appendChild(el("span", "in (" + fmt(it.ood_score, 2) + ")"));
    else if (it.in_domain === false) dom.appendChild(el("span", "OUT (" + fmt(it.ood_score, 2) + ")", "ood"));
    else dom.appendChild(el("span", "not checked", "bad"));
    tr.appendChild(dom);
    const st = el("td", it.status); if (it.error) st.appendChild(el("div", it.error, "meta")); tr.appendChild(st);
    tr.appendChild(el("td", it.n_tracks, "num"));
    const tl = el("td"); if (it.timeline && it.timeline.s.length) tl.appendChild(timeline(it.timeline)); else tl.appendChild(el("span", "no frames", "bad")); tr.appendChild(tl);
    const faces = el("td"), heat = el("td");
    (it.crops || []).forEach((src, k) => faces.appendChild(img(src, "track " + k + " top frame")));
    (it.heatmaps || []).forEach((src, k) => heat.appendChild(img(src, (it.heatmap_kind || "heat map") + ", frame " + (it.heatmap_frames || [])[k])));
    if (!it.crops) faces.appendChild(el("span", "beyond the top items: not embedded", "bad"));
    tr.appendChild(faces); tr.appendChild(heat); body.appendChild(tr);
  });
  status();
}
for (const id of ["f-status", "f-domain", "f-dataset"]) $(id).addEventListener("change", () => { page = 0; render(); });
$("prev").addEventListener("click", () => { page = Math.max(0, page - 1); render(); });
$("next").addEventListener("click", () => { page += 1; render(); });
render();
</script>
</body></html>
"""
