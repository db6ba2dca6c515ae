"""``deepgen review``: one self-contained static HTML page for analysts, from a scores table.

Items are deduplicated as every store reader does (:func:`deepgen.schema.dedupe_scores`), sorted by
score (highest first; missing, NaN and out-of-range scores last, the latter flagged "invalid score")
and paged in the browser, with filters for status, ``in_domain`` and dataset. Each item shows its
score, uncertainty, out-of-domain score, status, the per-frame timeline (a canvas plot of at most
``MAX_POINTS`` points, downsampled here keeping each bucket's peak) and, for the ``top`` highest-scoring
items only, its face crops and heat-map overlays as ``data:`` images (each at most ``MAX_IMAGE`` bytes,
all together at most ``MAX_EMBEDDED``), so 10k items stay a few megabytes. An analyst marks items
real / fake / unsure and downloads the verdicts as CSV (:mod:`deepgen.adapt.verdicts` reads it back).
Nothing is fetched from anywhere: no remote URL, no external script or style. Every value reaches the
page as JSON inside a ``<script type="application/json">`` block and is inserted with ``textContent``
(bidi controls shown as ``[U+202E]``, long text cut at 200 characters), so a media name is always text.
"""

from __future__ import annotations

import base64
import json
import math
import time

import pyarrow as pa

from deepgen import storage
from deepgen.errors import DeepgenError
from deepgen.schema import dedupe_scores

PAGE = "index.html"
FIELDS = ("media_id", "uri", "dataset", "status", "error", "score", "uncertainty", "ood_score", "in_domain",
          "n_frames", "n_faces", "n_tracks", "label", "model_id", "fingerprint", "heatmap_kind")
TEXT = ("media_id", "uri", "dataset", "status", "error", "model_id", "fingerprint", "heatmap_kind")
KEYS = ("media_id", "uri", "model_id", "fingerprint")  # kept whole: the verdicts CSV joins on them
MAX_TEXT = 4096  # other text fields are cut here in the data (the page shows 200 characters)
MAX_POINTS = 512  # timeline points per item after downsampling
MAX_IMAGE = 512 * 1024  # one embedded crop or heat map, bytes
MAX_EMBEDDED = 24 * 1024 * 1024  # all embedded images of the page together, bytes


def _num(v, digits: int = 4) -> float | None:
    """A finite number rounded for the page, else None (NaN, inf, strings, bools)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return round(float(v), digits)


def _int(v) -> int | None:
    """An integral finite number as int, else None."""
    f = _num(v, 6)
    return int(f) if f is not None and f == int(f) else None


def _score(v) -> tuple[int, float | None, str | None]:
    """(sort class, valid score, raw text when invalid): 0 a P(fake) in [0, 1], 1 invalid, 2 missing."""
    if v is None:
        return 2, None, None
    f = _num(v, 12)
    if f is not None and 0.0 <= f <= 1.0:
        return 0, f, None
    return (2 if isinstance(v, float) and math.isnan(v) else 1), None, str(v)[:64]


def _image(data) -> tuple[str | None, str | None, int]:
    """(data URL, note when not embedded, bytes used) for one crop or heat map."""
    if not isinstance(data, (bytes, bytearray)):
        return None, "invalid image value, not embedded", 0
    if len(data) > MAX_IMAGE:
        return None, f"crop too large ({len(data) // 1024} KB), not embedded", 0
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        kind = "png"
    elif data[:3] == b"\xff\xd8\xff":
        kind = "jpeg"
    else:
        return None, "not a PNG or JPEG image, not embedded", 0
    url = f"data:image/{kind};base64,{base64.b64encode(data).decode()}"
    return url, None, len(url)


def _images(values, budget: list[int]) -> tuple[list[str], list[str]]:
    """The embeddable images of one list column and notes for the rest; ``budget`` is the page's bytes left."""
    if values is None:
        return [], []
    if not isinstance(values, (list, tuple)):
        return [], ["invalid images value, not embedded"]
    srcs, notes = [], []
    for b in values:
        if not b:
            continue
        src, note, size = _image(b)
        if src is not None and size > budget[0]:
            src, note = None, "page image budget reached, not embedded"
        if src is None:
            notes.append(note)
        else:
            budget[0] -= size
            srcs.append(src)
    return srcs, notes


def _list(v) -> list:
    return list(v) if isinstance(v, (list, tuple)) else []


def downsample(xs: list[float], ss: list[float], ks: list, limit: int = MAX_POINTS) -> list[int]:
    """Indices of at most ``limit`` points (or one per track if there are more tracks) keeping, per
    track, the highest score of each of its equal-count buckets along x, so peaks survive."""
    by_track: dict = {}
    for j, k in enumerate(ks):
        by_track.setdefault(k, []).append(j)
    if len(xs) <= limit:
        return list(range(len(xs)))
    per = max(1, limit // len(by_track))
    keep = []
    for idx in by_track.values():
        idx.sort(key=lambda j: xs[j])
        n = len(idx)
        for b in range(min(per, n)):
            bucket = idx[b * n // min(per, n):(b + 1) * n // min(per, n)]
            keep.append(max(bucket, key=lambda j: ss[j]))
    if len(keep) > max(limit, len(by_track)):
        keep = sorted(keep, key=lambda j: -ss[j])[:limit]
    return sorted(keep, key=lambda j: (ks[j] if isinstance(ks[j], int) else 0, xs[j]))


def _timeline(r: dict) -> dict | None:
    """The per-frame plot of one row: points with a valid score, x in seconds (or frame index, or
    position), downsampled to at most ``MAX_POINTS``; None when there is no frame score."""
    scores = _list(r.get("frame_scores"))
    if not scores:
        return None
    times, index, tracks = _list(r.get("frame_times")), _list(r.get("frame_indices")), _list(r.get("frame_tracks"))
    pts = []
    for j, s in enumerate(scores):
        s = _num(s, 3)
        if s is None or not 0.0 <= s <= 1.0:
            continue
        t = _num(times[j], 3) if j < len(times) else None
        i = _int(index[j]) if j < len(index) else None
        k = _int(tracks[j]) if j < len(tracks) else None
        pts.append((t, i, 0 if k is None else k, s, j))
    if not pts:
        return {"x": [], "s": [], "k": [], "i": [], "t": [], "n": len(scores), "axis": "frame"}
    if all(p[0] is not None for p in pts):
        axis, xs = "s", [p[0] for p in pts]
    elif all(p[1] is not None for p in pts):
        axis, xs = "frame", [float(p[1]) for p in pts]
    else:
        axis, xs = "position", [float(p[4]) for p in pts]
    keep = downsample(xs, [p[3] for p in pts], [p[2] for p in pts])
    return {"x": [xs[j] for j in keep], "s": [pts[j][3] for j in keep], "k": [pts[j][2] for j in keep],
            "i": [pts[j][1] for j in keep], "t": [pts[j][0] for j in keep], "n": len(scores), "axis": axis}


def review_items(table: pa.Table, top: int = 200) -> list[dict]:
    """The page's items, deduplicated and sorted (valid scores high to low, then invalid, then missing):
    scalar fields made JSON-safe, the timeline, and images for the ``top`` highest-scoring items."""
    cols = set(table.column_names)
    missing = [c for c in ("media_id", "status", "score") if c not in cols]
    if missing:
        raise DeepgenError(f"the scores table lacks the column(s) {', '.join(missing)}; pass a table written by "
                           "`deepgen score` or `deepgen rescore`.")
    table = dedupe_scores(table)
    keep = [c for c in table.column_names if c in FIELDS or c.startswith("frame_") or c in ("face_crops", "heatmaps",
                                                                                         "heatmap_frames")]
    rows = table.select(keep).to_pylist()
    for r in rows:
        r["_score"] = _score(r.get("score"))
    rows.sort(key=lambda r: (r["_score"][0], -(r["_score"][1] or 0.0), str(r.get("media_id")),
                             str(r.get("model_id")), str(r.get("uri")), str(r.get("fingerprint"))))
    items, budget = [], [MAX_EMBEDDED]
    for rank, r in enumerate(rows):
        item: dict = {}
        for k in FIELDS:
            if k not in r or k == "score":
                continue
            v = r[k]
            if k in TEXT:
                item[k] = None if v is None else (str(v) if k in KEYS else str(v)[:MAX_TEXT])
            elif k in ("uncertainty", "ood_score"):
                item[k] = _num(v)
            elif k == "in_domain":
                item[k] = v if isinstance(v, bool) else None
            else:
                item[k] = _int(v)
        cls, score, raw = r["_score"]
        item["score"] = score
        if cls == 1 or raw is not None:
            item["score_invalid"] = raw
        tl = _timeline(r)
        if tl is not None:
            item["timeline"] = tl
        if rank < top:
            item["crops"], item["crop_notes"] = _images(r.get("face_crops"), budget)
            item["heatmaps"], item["heatmap_notes"] = _images(r.get("heatmaps"), budget)
            item["heatmap_frames"] = [_int(f) for f in _list(r.get("heatmap_frames"))]
        items.append(item)
    return items


def render_page(items: list[dict], title: str, source: str, page_size: int = 50,
                operating_points: list[str] = ()) -> str:
    """The HTML document: styles, data and script inline; values escaped by construction (JSON + textContent)."""
    data = json.dumps({"items": items, "title": title, "source": source, "page_size": page_size,
                       "operating_points": [str(o)[:MAX_TEXT] for o in operating_points],
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
    if storage.lies_under(out, scores):
        raise DeepgenError(f"--out {out} lies inside the scores table {scores}; choose an output folder outside it.")
    storage.check_output_path(out, inputs=[scores], overwrite=overwrite)  # before reading: scores inside out
    if not storage.exists(scores):
        raise DeepgenError(f"scores table {scores} does not exist; pass the --out of `deepgen score` or a store "
                           "partition.")
    table = storage.read_table(scores)
    items = review_items(table, top=top)
    points = (sorted({str(o) for o in table.column("operating_point").to_pylist() if o})
              if "operating_point" in table.column_names else [])
    html = render_page(items, title=f"deepgen review: {len(items)} items", source=str(scores), page_size=page_size,
                       operating_points=points)
    with storage.atomic_dir(out, overwrite=overwrite, inputs=[scores]) as tmp:
        storage.write_bytes(storage.join(tmp, PAGE), html.encode())
    return {"page": storage.join(out, PAGE), "items": len(items),
            "with_images": sum(1 for i in items if i.get("crops") or i.get("heatmaps")), "bytes": len(html.encode())}


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
.bad{color:#777;font-style:italic} .flag{background:#fde2e1;color:#8a1c14;padding:1px 4px;border-radius:3px;font-style:normal}
img{width:64px;height:64px;image-rendering:auto;margin:1px;border:1px solid #ccc}
.name{max-width:280px;word-break:break-all} canvas{border:1px solid #ddd}
.v button{margin:1px;padding:2px 6px;border:1px solid #bbb;background:#fff;border-radius:3px;cursor:pointer}
.v button.on[data-v=fake]{background:#b00020;color:#fff} .v button.on[data-v=real]{background:#1b5e20;color:#fff}
.v button.on[data-v=unsure]{background:#777;color:#fff}
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
 <button id="download">Download verdicts</button><span id="marked" class="meta"></span>
</div>
<table><thead><tr><th>#</th><th>media</th><th>score</th><th>verdict</th><th>uncertainty</th><th>domain</th><th>status</th>
<th>tracks</th><th>timeline (frame P(fake))</th><th>faces</th><th>heat maps</th></tr></thead>
<tbody id="rows"></tbody></table>
<pre id="verdicts-csv" hidden></pre>
<script type="application/json" id="data">__DATA__</script>
<script>
"use strict";
const D = JSON.parse(document.getElementById("data").textContent);
const items = D.items; let page = 0, shown = [];
const $ = (id) => document.getElementById(id);
const SHOW = 200, TITLE = 1000;
// bidi controls (LRE RLE PDF LRO RLO, LRI RLI FSI PDI) would reorder what follows: shown as visible codes
const BIDI = /[\\u202a-\\u202e\\u2066-\\u2069]/g;
function clean(v, cap) { let s = String(v).replace(BIDI, c => "[U+" + c.charCodeAt(0).toString(16).toUpperCase() + "]");
  return s.length > cap ? s.slice(0, cap) + "\\u2026" : s; }
function el(tag, text, cls) { const e = document.createElement(tag);
  if (text !== undefined && text !== null) { const s = String(text); e.textContent = clean(s, SHOW); if (s.length > SHOW) e.title = clean(s, TITLE); }
  if (cls) e.className = cls; return e; }
function bdi(text, cls) { const e = el("bdi", text, cls); e.dir = "auto"; const d = document.createElement("div"); d.appendChild(e); return d; }
function fmt(v, d) { return (v === null || v === undefined) ? "\\u2013" : Number(v).toFixed(d); }
function options(sel, values) { for (const v of values) { const o = el("option", v); o.value = v; sel.appendChild(o); } }
$("title").textContent = D.title;
$("meta").textContent = "scores: " + clean(D.source, SHOW) + " \\u00b7 generated " + D.generated + " \\u00b7 sorted by score, highest first; invalid and missing scores last"
if ((D.operating_points || []).length) $("meta").textContent += " \\u00b7 decision point: " + D.operating_points.map((o) => clean(o, SHOW)).join(" | ");
options($("f-status"), [...new Set(items.map(i => i.status || ""))].sort());
options($("f-dataset"), [...new Set(items.map(i => i.dataset || ""))].sort());
function range(a) { let lo = Infinity, hi = -Infinity; for (const v of a) { if (v < lo) lo = v; if (v > hi) hi = v; } return [lo, hi]; }
function timeline(tl) {
  const w = 180, h = 48, c = document.createElement("canvas"); c.width = w; c.height = h;
  const g = c.getContext("2d"), xs = tl.x, [lo, hi] = range(xs), span = (hi - lo) || 1;
  g.fillStyle = "#fcfcfc"; g.fillRect(0, 0, w, h); g.strokeStyle = "#ccc"; g.setLineDash([3, 3]);
  g.beginPath(); g.moveTo(0, h / 2); g.lineTo(w, h / 2); g.stroke(); g.setLineDash([]);
  const colours = ["#c62828", "#1565c0", "#2e7d32", "#6a1b9a", "#ef6c00"], tracks = new Map();
  tl.k.forEach((k, j) => { if (!tracks.has(k)) tracks.set(k, []); tracks.get(k).push(j); });
  let n = 0;
  for (const idx of tracks.values()) {
    const pts = idx.map(j => [4 + (w - 8) * (xs[j] - lo) / span, h - 3 - (h - 6) * tl.s[j]]).sort((a, b) => a[0] - b[0]);
    g.strokeStyle = g.fillStyle = colours[n++ % colours.length]; g.lineWidth = 1.5; g.beginPath();
    pts.forEach((p, j) => j ? g.lineTo(p[0], p[1]) : g.moveTo(p[0], p[1])); g.stroke();
    for (const p of pts) { g.beginPath(); g.arc(p[0], p[1], 1.8, 0, 2 * Math.PI); g.fill(); }
  }
  const lines = tl.s.slice(0, 64).map((s, j) => "frame " + (tl.i[j] === null ? "?" : tl.i[j]) + (tl.t[j] !== null ? " (" + tl.t[j] + " s)" : "") + ", track " + tl.k[j] + ": " + s);
  if (tl.s.length > 64 || tl.n > tl.s.length) lines.push(tl.s.length + " of " + tl.n + " frames plotted (peaks kept)");
  c.title = lines.join("\\n"); c.className = "tl"; return c;
}
let loaded = 0, images = 0, failed = 0;
function img(src, label) { const i = new Image(); images++; i.alt = label; i.title = label; i.onload = () => { loaded++; status(); };
  i.onerror = () => { failed++; status(); }; i.src = src; return i; }
function status() { $("rendered").textContent = "rendered " + $("rows").children.length + " rows, " + loaded + "/" + images + " images" + (failed ? ", " + failed + " broken" : "");
  $("rendered").dataset.rows = $("rows").children.length; $("rendered").dataset.images = loaded;
  if (loaded + failed === images) $("rendered").dataset.ms = Math.round(performance.now()); }
// analyst verdicts: kept per item (media_id, model_id, fingerprint), in localStorage per scores table when allowed
const STORE = "deepgen-review-verdicts:" + D.source, V = new Map();
const key = (it) => JSON.stringify([it.media_id, it.model_id || "", it.fingerprint || ""]);
try { for (const [k, v] of JSON.parse(localStorage.getItem(STORE) || "[]")) V.set(k, v); } catch (e) { /* no storage: page memory only */ }
function csvField(v) { const s = (v === null || v === undefined) ? "" : String(v); return /[",\\r\\n]/.test(s) ? '"' + s.replace(/"/g, '""') + '"' : s; }
function verdictsCsv() {
  const lines = ["media_id,uri,model_id,fingerprint,score,verdict,marked_at"];
  for (const it of items) { const v = V.get(key(it)); if (!v) continue;
    lines.push([it.media_id, it.uri, it.model_id, it.fingerprint, it.score, v.verdict, v.marked_at].map(csvField).join(",")); }
  return lines.join("\\r\\n") + "\\r\\n";
}
function saveVerdicts() {
  try { localStorage.setItem(STORE, JSON.stringify([...V])); } catch (e) { /* page memory only */ }
  $("verdicts-csv").textContent = verdictsCsv(); $("marked").textContent = V.size + " marked"; $("marked").dataset.n = V.size;
}
function verdictCell(it) {
  const td = el("td", null, "v"), k = key(it);
  for (const v of ["real", "fake", "unsure"]) {
    const b = el("button", v); b.dataset.v = v; b.type = "button";
    if ((V.get(k) || {}).verdict === v) b.classList.add("on");
    b.addEventListener("click", () => {
      if ((V.get(k) || {}).verdict === v) V.delete(k); else V.set(k, {verdict: v, marked_at: new Date().toISOString()});
      for (const o of td.children) o.classList.toggle("on", (V.get(k) || {}).verdict === o.dataset.v);
      saveVerdicts();
    });
    td.appendChild(b);
  }
  return td;
}
$("download").addEventListener("click", () => {
  const url = URL.createObjectURL(new Blob(["\\ufeff" + verdictsCsv()], {type: "text/csv;charset=utf-8"}));
  const a = document.createElement("a"); a.href = url; a.download = "verdicts.csv"; document.body.appendChild(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60000);
});
function render() {
  const fs = $("f-status").value, fd = $("f-domain").value, fds = $("f-dataset").value;
  shown = items.filter(i => (!fs || (i.status || "") === fs) && (!fds || (i.dataset || "") === fds) &&
    (!fd || (fd === "yes" && i.in_domain === true) || (fd === "no" && i.in_domain === false) || (fd === "unknown" && (i.in_domain === null || i.in_domain === undefined))));
  const pages = Math.max(1, Math.ceil(shown.length / D.page_size)); page = Math.max(0, Math.min(page, pages - 1));
  $("pageinfo").textContent = "page " + (page + 1) + " / " + pages + " (" + shown.length + " items)";
  const body = $("rows"); body.replaceChildren(); loaded = 0; images = 0; failed = 0;
  shown.slice(page * D.page_size, (page + 1) * D.page_size).forEach((it, n) => {
    const tr = document.createElement("tr"); tr.dataset.idx = items.indexOf(it);
    tr.appendChild(el("td", page * D.page_size + n + 1, "num"));
    const name = el("td", null, "name"); name.appendChild(bdi(it.media_id)); name.appendChild(bdi(it.dataset, "meta")); tr.appendChild(name);
    const sc = el("td", null, "num");
    if (it.score_invalid !== undefined) { sc.appendChild(el("div", it.score_invalid, "bad")); sc.appendChild(el("span", "invalid score", "flag")); }
    else sc.appendChild(el("span", fmt(it.score, 3), it.score === null || it.score === undefined ? "bad" : it.score >= 0.5 ? "fake" : "real"));
    tr.appendChild(sc);
    tr.appendChild(verdictCell(it));
    tr.appendChild(el("td", fmt(it.uncertainty, 3) + " nats", "num"));
    const dom = el("td", null, "num");
    if (it.in_domain === true) dom.appendChild(el("span", "in (" + fmt(it.ood_score, 2) + ")"));
    else if (it.in_domain === false) dom.appendChild(el("span", "OUT (" + fmt(it.ood_score, 2) + ")", "ood"));
    else dom.appendChild(el("span", "not checked", "bad"));
    tr.appendChild(dom);
    const st = el("td"); st.appendChild(bdi(it.status)); if (it.error) st.appendChild(bdi(it.error, "meta")); tr.appendChild(st);
    tr.appendChild(el("td", it.n_tracks, "num"));
    const tl = el("td"); if (it.timeline && it.timeline.s.length) tl.appendChild(timeline(it.timeline)); else tl.appendChild(el("span", "no frames", "bad")); tr.appendChild(tl);
    const faces = el("td"), heat = el("td");
    (it.crops || []).forEach((src, k) => faces.appendChild(img(src, "track " + k + " top frame")));
    (it.heatmaps || []).forEach((src, k) => heat.appendChild(img(src, clean(it.heatmap_kind || "heat map", 40) + ", frame " + (it.heatmap_frames || [])[k])));
    for (const note of it.crop_notes || []) faces.appendChild(el("div", note, "bad"));
    for (const note of it.heatmap_notes || []) heat.appendChild(el("div", note, "bad"));
    if (!it.crops) faces.appendChild(el("span", "beyond the top items: not embedded", "bad"));
    tr.appendChild(faces); tr.appendChild(heat); body.appendChild(tr);
  });
  status();
}
for (const id of ["f-status", "f-domain", "f-dataset"]) $(id).addEventListener("change", () => { page = 0; render(); });
$("prev").addEventListener("click", () => { page = Math.max(0, page - 1); render(); });
$("next").addEventListener("click", () => { page += 1; render(); });
saveVerdicts(); render();
</script>
</body></html>
"""
