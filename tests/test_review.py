"""`deepgen review`: the static page renders in real headless Chromium (Debian's package), from s3://,
with its images, no remote URL, and names that stay text; hostile tables (NaN and out-of-range scores,
huge timelines, names and crops, bidi overrides, duplicated chunks) render bounded and in order; the
page never deletes its own input; analysts' verdicts are clicked, downloaded and read back."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from deepgen import storage
from deepgen.cli import main
from deepgen.evaluation.review import MAX_POINTS, review_items
from deepgen.storage import write_table

CHROMIUM = "/usr/bin/chromium"
ITEMS = 240
EVIL = "<script>document.body.setAttribute('data-pwned','1')</script><img src=x onerror=alert(1)>.mp4"


def _scores_table() -> pa.Table:
    """A scores table of ITEMS rows as `deepgen score` writes them: crops, heat maps, timelines, failures."""
    import cv2

    from deepgen.models.explain import overlay_png
    from deepgen.scoring.pipeline import scores_schema
    from deepgen.testing.toyfaces import toy_faces_table

    faces = toy_faces_table(n_per_class=8, size=48, seed=0, dataset="toy").column("image").to_pylist()
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:48, 0:48]
    rows = []
    for i in range(ITEMS):
        failed = i % 20 == 19
        name = EVIL if i == 3 else f"set{i % 3}/video_{i:04d}.mp4"
        row = {"media_id": name, "uri": f"/data/{i}.mp4", "dataset": f"set{i % 3}", "model_id": "m",
               "status": "decode_error" if failed else "ok", "error": "moov atom not found" if failed else None,
               "n_frames": 0 if failed else 8, "n_faces": 0 if failed else 8, "n_tracks": 0 if failed else 1 + (i % 7 == 0)}
        if not failed:
            s = rng.uniform(0, 1, 8)
            crop = cv2.imdecode(np.frombuffer(faces[i % len(faces)], np.uint8), cv2.IMREAD_COLOR)[..., ::-1]
            heat = np.exp(-((xx - rng.uniform(10, 38)) ** 2 + (yy - 24) ** 2) / 120.0)
            ood = float(rng.uniform(0.3, 1.6))
            row.update(score=float(s.max()), logit=0.0, uncertainty=float(rng.uniform(0, 0.69)), ood_score=ood,
                       in_domain=ood <= 1, frame_indices=list(range(0, 32, 4)), frame_times=[j / 25 for j in range(0, 32, 4)],
                       frame_tracks=[0] * 8, frame_scores=s.tolist(), face_crops=[faces[i % len(faces)]],
                       heatmaps=[overlay_png(crop, heat)], heatmap_frames=[int(np.argmax(s)) * 4], heatmap_kind="gradcam")
        rows.append(row)
    return pa.Table.from_pylist(rows, schema=scores_schema())


def _chromium(args: list[str], profile: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run headless Chromium with a fresh profile and the network features off; stop it by PID on timeout."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # its own process group: only the browser this test started
        proc.communicate()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, "")


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="chromium is not installed (apt-get install chromium)")
def test_review_page_renders_in_chromium(s3_bucket, tmp_path, capsys):
    scores = f"{s3_bucket}/scores/run1"
    write_table(_scores_table(), f"{scores}/part-00000.parquet")
    out = tmp_path / "review"
    main(["review", "--scores", scores, "--out", str(out), "--top", str(ITEMS), "--page-size", str(ITEMS)])
    html = (out / "index.html").read_text()
    assert not re.search(r"(?i)\b(?:https?|ftp|wss?)://|(?:src|href)\s*=\s*[\"']?//", html)  # no remote URL
    assert "<script>document" not in html  # the evil name is data, never markup

    t0 = time.perf_counter()
    dom = _chromium(["--dump-dom", (out / "index.html").as_uri()], tmp_path / "profile").stdout
    wall = time.perf_counter() - t0
    m = re.search(r'id="rendered"[^>]*data-rows="(\d+)"[^>]*data-images="(\d+)"[^>]*data-ms="(\d+)"', dom)
    assert m, dom[:2000]
    rows, images, ms = map(int, m.groups())
    expected = 2 * sum(1 for i in range(ITEMS) if i % 20 != 19)  # a crop and a heat map per scored item
    assert rows == ITEMS and images == expected
    assert ms < 10000, f"page took {ms} ms to render {rows} rows and {images} images"  # ~0.7 s measured
    assert "&lt;script&gt;document.body.setAttribute" in dom and not re.search(r"<body[^>]*data-pwned", dom)
    assert dom.count("OUT (") >= 1 and "decode_error" in dom and "moov atom not found" in dom
    print(f"review: {rows} rows, {images} images rendered in {ms} ms (browser start to DOM dump {wall:.1f} s)")

    shot = tmp_path / "review.png"
    _chromium(["--window-size=1400,900", f"--screenshot={shot}", (out / "index.html").as_uri()], tmp_path / "p2")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20000
    if os.environ.get("DEEPGEN_UPDATE_DOCS"):  # the README's screenshot: DEEPGEN_UPDATE_DOCS=1 pytest tests/test_review.py
        shutil.copy(shot, Path(__file__).resolve().parents[1] / "docs" / "review.png")


def _deepgen_table(path: Path, table: pa.Table) -> str:
    """A scores folder as `deepgen score` commits it (atomic, with deepgen's owner marker)."""
    with storage.atomic_dir(str(path)) as tmp:
        write_table(table, storage.join(tmp, "part-00000.parquet"))
    return str(path)


def test_review_never_deletes_its_scores(tmp_path, capsys):
    rows = [{"media_id": f"v{i}.mp4", "uri": f"/d/{i}.mp4", "status": "ok", "score": i / 10} for i in range(4)]
    scores = _deepgen_table(tmp_path / "scores", pa.Table.from_pylist(rows))
    parquet = Path(scores) / "part-00000.parquet"
    before = parquet.read_bytes()
    parent = tmp_path / "parent"
    nested = _deepgen_table(parent / "scores", pa.Table.from_pylist(rows))
    storage.write_marker(str(parent))  # a folder deepgen wrote holding the scores: --overwrite would delete it
    for out in (scores, str(Path(scores) / "review"), str(parent)):
        src = nested if out == str(parent) else scores
        with pytest.raises(SystemExit) as e:
            main(["review", "--scores", src, "--out", out, "--overwrite"])
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
        assert "input" in err or "inside the scores table" in err
    assert parquet.read_bytes() == before and not (Path(scores) / "index.html").exists()
    assert not (Path(scores) / "review").exists() and (Path(nested) / "part-00000.parquet").exists()


def _hostile_rows(n: int = 300) -> list[dict]:
    """Rows a careless or hostile producer could write: NaN and out-of-range scores, a 200k-point
    timeline, a 50k-character name, a crop over the embedding cap, a right-to-left override, NaNs
    in integer-ish columns."""
    rng = np.random.default_rng(1)
    jpeg = b"\xff\xd8\xff\xe0" + bytes(100)
    rows = []
    for i in range(n):
        rows.append({"media_id": f"m{i:04d}.mp4", "uri": f"/d/{i}.mp4", "model_id": "m", "fingerprint": f"f{i}",
                     "status": "ok", "score": float(rng.uniform(0.0, 0.9)), "label": 1.0, "n_frames": 8.0,
                     "frame_scores": [0.5, 0.6], "frame_indices": [0.0, 4.0], "frame_times": [0.0, 0.2],
                     "frame_tracks": [0, 0], "face_crops": [jpeg]})
    rows[10]["score"] = rows[11]["score"] = float("nan")
    rows[12]["media_id"], rows[12]["score"] = "TOP.mp4", 0.99
    for j, bad in zip((13, 14, 15), (7.0, -0.5, float("inf"))):
        rows[j]["score"], rows[j]["media_id"] = bad, f"INVALID{j}.mp4"
    big = 200_000
    rows[20].update(frame_scores=rng.uniform(0, 0.3, big).tolist(), frame_indices=list(range(big)),
                    frame_times=[j / 25 for j in range(big)], frame_tracks=[0] * big)
    rows[20]["frame_scores"][123_457] = 0.97  # the one peak the downsampled timeline must keep
    rows[21]["media_id"] = "L" * 50_000
    rows[22]["face_crops"] = [jpeg + bytes(25 * 1024 * 1024)]
    rows[23]["media_id"] = "evil\u202egnp.exe"
    rows[24].update(label=float("nan"), n_frames=float("nan"), frame_indices=[float("nan"), 4.0])
    return rows


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="chromium is not installed (apt-get install chromium)")
def test_review_hostile_table_renders_bounded_and_in_order(tmp_path):
    rows = _hostile_rows()
    part = tmp_path / "store" / "scores" / "model_id=m" / "date=2026-01-01"
    write_table(pa.Table.from_pylist(rows), str(part / "part-a-00000.parquet"))
    write_table(pa.Table.from_pylist(rows[:8]), str(part / "part-b-00000.parquet"))  # a chunk committed twice
    items = review_items(storage.read_table(str(part)), top=400)
    assert len(items) == len(rows)
    assert items[0]["media_id"] == "TOP.mp4"
    assert [i["media_id"] for i in items[-5:-2]] == ["INVALID13.mp4", "INVALID14.mp4", "INVALID15.mp4"]
    assert all(i["score_invalid"] for i in items[-5:]) and {i["media_id"] for i in items[-2:]} == {"m0010.mp4",
                                                                                                  "m0011.mp4"}
    tl = next(i for i in items if i["media_id"] == "m0020.mp4")["timeline"]
    assert len(tl["s"]) <= MAX_POINTS and tl["n"] == 200_000 and max(tl["s"]) == 0.97

    out = tmp_path / "review"
    main(["review", "--scores", str(part), "--out", str(out), "--top", "400", "--page-size", "400"])
    page = (out / "index.html").stat().st_size
    assert page < 3 * 1024 * 1024, page  # the 25 MB crop and the 200k-point timeline stay out of the page
    dom = _chromium(["--dump-dom", (out / "index.html").as_uri()], tmp_path / "profile").stdout
    m = re.search(r'id="rendered"[^>]*data-rows="(\d+)"[^>]*data-images="(\d+)"[^>]*data-ms="(\d+)"', dom)
    assert m, dom[:2000]
    rows_shown, _, ms = map(int, m.groups())
    assert rows_shown == len(rows) and ms < 10000, (rows_shown, ms)
    names = re.findall(r'<tr data-idx="\d+"><td class="num">\d+</td><td class="name"><div><bdi dir="auto"[^>]*>([^<]*)<',
                       dom)
    assert names[0] == "TOP.mp4" and names[-5:-2] == ["INVALID13.mp4", "INVALID14.mp4", "INVALID15.mp4"]
    assert dom.count(">invalid score<") == 5
    assert "crop too large (25600 KB), not embedded" in dom
    assert "evil[U+202E]gnp.exe" in dom and "\u202e" not in dom
    body = dom[dom.index('<tbody id="rows">'):dom.index("</tbody>")]  # the rows (the data block holds the name)
    assert ("L" * 200 + "\u2026<") in body and "L" * 1001 not in body


def test_review_renders_string_scores_and_crops(tmp_path):
    table = pa.Table.from_pylist([
        {"media_id": "a.mp4", "status": "ok", "score": "0.9", "face_crops": ["not bytes"]},
        {"media_id": "b.mp4", "status": "ok", "score": "0.4", "face_crops": None},
        {"media_id": "c.mp4", "status": "ok", "score": None, "face_crops": ["x"]},
    ])
    items = review_items(table)
    assert [i["media_id"] for i in items] == ["a.mp4", "b.mp4", "c.mp4"]
    assert items[0]["score"] is None and items[0]["score_invalid"] == "0.9"
    assert items[0]["crop_notes"] == ["invalid image value, not embedded"]
    out = tmp_path / "review"
    main(["review", "--scores", _deepgen_table(tmp_path / "s", table), "--out", str(out)])
    assert (out / "index.html").read_text().count('"score_invalid":"0.') == 2


def test_review_page_image_budget(tmp_path, monkeypatch):
    from deepgen.evaluation import review

    png = b"\x89PNG\r\n\x1a\n" + bytes(600)  # about 820 bytes as a data URL
    table = pa.Table.from_pylist([{"media_id": f"v{i}", "status": "ok", "score": 1 - i / 10, "face_crops": [png]}
                                  for i in range(5)])
    monkeypatch.setattr(review, "MAX_EMBEDDED", 2000)
    items = review_items(table)
    assert [len(i["crops"]) for i in items] == [1, 1, 0, 0, 0]
    assert items[2]["crop_notes"] == ["page image budget reached, not embedded"]


class _DevTools:
    """A minimal Chrome DevTools Protocol client (aiohttp's websocket) for one page of a headless
    Chromium started with --remote-debugging-port=0: evaluate, real mouse clicks, downloads."""

    def __init__(self, ws, session: str | None = None):
        self.ws, self.session, self.next_id = ws, session, 0

    async def send(self, method: str, params: dict | None = None, session: bool = True) -> dict:
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            msg["sessionId"] = self.session
        await self.ws.send_json(msg)
        while True:
            reply = await self.ws.receive_json(timeout=30)
            if reply.get("id") == self.next_id:
                assert "error" not in reply, reply
                return reply.get("result", {})

    async def eval(self, js: str):
        res = await self.send("Runtime.evaluate", {"expression": js, "returnByValue": True, "awaitPromise": True})
        assert "exceptionDetails" not in res, res
        return res["result"].get("value")

    async def wait(self, js: str, timeout: float = 20) -> None:
        import asyncio

        t0, last = time.monotonic(), None
        while True:
            try:
                if await self.eval(js):
                    return
            except AssertionError as e:  # the document is being replaced (a reload): ask the new one
                last = e
            assert time.monotonic() - t0 < timeout, f"timed out waiting for {js} (last error: {last})"
            await asyncio.sleep(0.05)

    async def click(self, selector: str) -> None:
        """A real left click (mouse pressed and released) at the centre of the element ``selector``."""
        box = await self.eval(f"(() => {{ const e = document.querySelector({selector!r}); e.scrollIntoView("
                              "{block: 'center'}); const r = e.getBoundingClientRect(); "
                              "return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        for kind in ("mousePressed", "mouseReleased"):
            await self.send("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1], "button": "left",
                                                         "clickCount": 1})


def _drive(page: Path, profile: Path, downloads: Path, script) -> object:
    """Open ``page`` in headless Chromium with downloads into ``downloads`` and run ``script(devtools)``."""
    import asyncio

    import aiohttp

    proc = subprocess.Popen([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                             "--disable-background-networking", "--disable-component-update", "--disable-sync",
                             "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    async def run():
        port_file = profile / "DevToolsActivePort"
        t0 = time.monotonic()
        while not (port_file.exists() and len(port_file.read_text().split()) >= 2):
            assert time.monotonic() - t0 < 30, "chromium did not open its DevTools port"
            await asyncio.sleep(0.05)
        port, path = port_file.read_text().split()[:2]
        async with aiohttp.ClientSession() as http, http.ws_connect(f"ws://127.0.0.1:{port}{path}",
                                                                      max_msg_size=0) as ws:
            dt = _DevTools(ws)
            await dt.send("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
            target = (await dt.send("Target.createTarget", {"url": page.as_uri()}))["targetId"]
            dt.session = (await dt.send("Target.attachToTarget", {"targetId": target, "flatten": True}))["sessionId"]
            await dt.wait("!!(document.getElementById('rendered') && document.getElementById('rendered').dataset.ms)")
            return await script(dt)

    try:
        return asyncio.run(run())
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # its own process group: only the browser this test started
        proc.wait()


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="chromium is not installed (apt-get install chromium)")
def test_review_verdicts_download_and_adapt(ray_session, tiny_bundle, tmp_path, capsys):
    from deepgen.adapt.verdicts import read_verdicts, real_marked_uris
    from deepgen.models.bundle import load_bundle
    from deepgen.testing.toyfaces import toy_faces_table

    faces = toy_faces_table(n_per_class=6, size=48, seed=3, dataset="toy")
    faces_uri = str(tmp_path / "faces.parquet")
    write_table(faces, faces_uri)
    truth = dict(zip(faces.column("media_id").to_pylist(), faces.column("label").to_pylist()))
    ids = sorted(truth)
    rng = np.random.default_rng(0)
    scores = _deepgen_table(tmp_path / "scores", pa.Table.from_pylist(
        [{"media_id": m, "uri": f"/media/{m}", "model_id": "m1", "fingerprint": f"fp{i}", "status": "ok",
          "score": float(rng.uniform())} for i, m in enumerate(ids)]))
    out = tmp_path / "review"
    main(["review", "--scores", scores, "--out", str(out), "--page-size", "5"])
    capsys.readouterr()
    reals = [m for m in ids if truth[m] == 0]
    fakes = [m for m in ids if truth[m] == 1]
    # the analyst: 4 real (one of them a fake in the table: the analyst's word wins), 4 fake, 2 unsure
    marks = {**{m: "real" for m in reals[:3] + fakes[:1]}, **{m: "fake" for m in fakes[1:5]},
             **{m: "unsure" for m in reals[3:5]}}

    async def analyst(dt):
        order = await dt.eval("D.items.map(i => i.media_id)")
        per_page = {}
        for m, v in marks.items():
            per_page.setdefault(order.index(m) // 5, []).append((order.index(m), v))
        for p in range(3):
            for idx, v in per_page.get(p, []):
                await dt.click(f'tr[data-idx="{idx}"] button[data-v="{v}"]')
            if p < 2:
                await dt.click("#next")
        await dt.click("#prev")
        await dt.click("#prev")  # back on page 1: its marks survived paging
        on_first = await dt.eval("[...document.querySelectorAll('#rows tr')].map(tr => "
                                 "[+tr.dataset.idx, (tr.querySelector('button.on') || {}).textContent || null])")
        await dt.click("#download")
        csv_text = await dt.eval("document.getElementById('verdicts-csv').textContent")
        await dt.eval("window.beforeReload = true")  # gone once the reloaded document is the one answering
        await dt.send("Page.reload")  # the marks are kept in localStorage for this scores table
        await dt.wait("!window.beforeReload && document.readyState === 'complete' && "
                      "!!document.getElementById('rendered').dataset.ms")
        kept = await dt.eval("[document.getElementById('marked').dataset.n, document.querySelectorAll('button.on').length]")
        assert kept == [str(len(marks)), sum(order.index(m) < 5 for m in marks)], kept
        return order, on_first, csv_text

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    order, on_first, shown_csv = _drive(out / "index.html", tmp_path / "profile", downloads, analyst)
    assert on_first == [[i, marks.get(order[i])] for i in range(5)]
    t0 = time.monotonic()
    while not (downloads / "verdicts.csv").exists():  # Chromium renames its .crdownload when complete
        assert time.monotonic() - t0 < 20, list(downloads.iterdir())
        time.sleep(0.05)
    raw = (downloads / "verdicts.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and raw[3:].decode() == shown_csv  # the blob download under the CSP
    lines = raw[3:].decode().splitlines()
    assert lines[0] == "media_id,uri,model_id,fingerprint,score,verdict,marked_at" and len(lines) == 1 + len(marks)
    got = {line.split(",")[0]: line.split(",") for line in lines[1:]}
    assert {m: r[5] for m, r in got.items()} == marks and all(r[2] == "m1" and r[6].endswith("Z") for r in got.values())

    verdicts = read_verdicts(str(downloads / "verdicts.csv"), scores)
    assert dict(zip(verdicts["media_id"], verdicts["label"])) == {m: {"real": 0, "fake": 1, "unsure": None}[v]
                                                                  for m, v in marks.items()}
    assert sorted(real_marked_uris(verdicts)) == sorted(f"/media/{m}" for m, v in marks.items() if v == "real")

    adapted = str(tmp_path / "adapted")
    main(["adapt", "fewshot", "--checkpoint", tiny_bundle, "--support", faces_uri, "--labels",
          str(downloads / "verdicts.csv"), "--scores", scores, "--out", adapted, "--k", "4"])
    # with the table's labels instead of the analyst's the marked items would hold 3 reals, fewer than k=4
    rec = load_bundle(adapted).extras["fewshot"]
    assert (rec["marked_real"], rec["marked_fake"], rec["marked_unsure"]) == (4, 4, 2)
    assert rec["labels"] == str(downloads / "verdicts.csv")
    with pytest.raises(SystemExit):
        main(["adapt", "fewshot", "--checkpoint", tiny_bundle, "--support", faces_uri, "--labels",
              str(downloads / "verdicts.csv"), "--scores", scores, "--out", str(tmp_path / "a2"), "--k", "5"])
    assert "fewer than k=5" in capsys.readouterr().err
