"""Issue 24, findings 2 and 4: rescoring stays exactly-once when two runs overlap (a lease per store and
model), readers deduplicate an already damaged store, and ``--date`` cannot write outside the store."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time

import cv2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from deepgen import storage
from deepgen.cli import main
from deepgen.errors import DeepgenError
from deepgen.scoring import lease as lease_mod
from deepgen.scoring.lease import Lease, lease_uri
from deepgen.scoring.store import read_scores, write_chunk
from deepgen.testing.faces import noise_frames


@pytest.mark.parametrize("date", ["../../../x/evil", "../x", "2026-11-25/../../x", "2026-13-01", "tomorrow"])
def test_date_outside_yyyy_mm_dd_is_refused(tmp_path, tiny_bundle, capsys, date):
    incoming = tmp_path / "incoming"
    incoming.mkdir()  # nothing to score: before the fix the run file went straight to store/runs/<date>...
    store = tmp_path / "a" / "b" / "store"
    with pytest.raises(SystemExit) as e:
        main(["rescore", "--incoming", str(incoming), "--checkpoint", tiny_bundle, "--store", str(store),
              "--date", date])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and err.startswith("error: --date") and "YYYY-MM-DD" in err and "\n" not in err
    assert sorted(os.listdir(tmp_path)) == ["incoming"]  # nothing written anywhere


def test_local_lease_is_exclusive_waits_and_takes_over_an_expired_one(tmp_path, monkeypatch):
    monkeypatch.setattr(lease_mod, "POLL_S", 0.05)
    store = str(tmp_path / "store")
    first = Lease(store, "m1", wait_s=0.3).acquire()
    holder = json.loads(open(lease_uri(store, "m1")).read())
    assert holder["owner"] == first.owner and holder["expires"] > time.time()
    with pytest.raises(DeepgenError, match="another rescore .* has held the lease"):
        Lease(store, "m1", wait_s=0.3).acquire()
    with Lease(store, "m2", wait_s=0.3):  # another model: its own lease
        pass
    first.release()
    assert not os.path.exists(lease_uri(store, "m1"))
    with Lease(store, "m1", wait_s=0.3) as second:
        assert second.held
    # a holder that died: its lease expires and exactly one waiting run takes it over
    dead = Lease(store, "m1", ttl_s=0.2).acquire()
    dead._stop.set()  # no heartbeat any more: as if the process was killed
    time.sleep(0.3)
    taker = Lease(store, "m1", wait_s=2).acquire()
    assert json.loads(open(lease_uri(store, "m1")).read())["owner"] == taker.owner
    dead.renew()
    assert not dead.held  # the dead run cannot renew (nor commit) any more
    taker.release()
    # a killed run on this machine: its process is gone, so its lease is taken over before it expires
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    stale = json.loads(Lease(store, "m1")._content())
    stale.update(pid=gone.pid, owner="killed", expires=time.time() + 3600)
    storage.write_bytes(lease_uri(store, "m1"), json.dumps(stale).encode())
    t0 = time.monotonic()
    with Lease(store, "m1", wait_s=5) as after_kill:
        assert after_kill.held and time.monotonic() - t0 < 2


def test_a_run_killed_inside_a_lease_renewal_wedges_nothing(tmp_path, monkeypatch):
    """A driver SIGKILLed while it renews (the compare-and-swap's lock held) or with a damaged lease
    file leaves a lease the next run takes over at once, not one it waits on forever."""
    monkeypatch.setattr(lease_mod, "POLL_S", 0.05)
    store = str(tmp_path / "store")
    code = (f"import os, signal; from deepgen.scoring.lease import Lease; from deepgen import storage\n"
            f"lease = Lease({store!r}, 'm').acquire()\n"
            f"lock = storage._local_cas_lock(storage.get_fs(lease.uri)[1]); lock.__enter__()\n"
            f"os.kill(os.getpid(), signal.SIGKILL)  # dies inside the renewal's critical section\n")
    killed = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert killed.returncode == -9 and json.loads(open(lease_uri(store, "m")).read())["pid"] > 0
    t0 = time.monotonic()
    with Lease(store, "m", wait_s=5) as taker:
        assert taker.held and time.monotonic() - t0 < 2
        taker.renew()
        assert taker.held  # its own renewals go through the same lock
    storage.write_bytes(lease_uri(store, "m"), b"")  # a damaged lease file
    with Lease(store, "m", wait_s=5) as after:
        assert after.held and time.monotonic() - t0 < 4


def test_s3_lease_uses_conditional_writes(s3_bucket, monkeypatch):
    monkeypatch.setattr(lease_mod, "POLL_S", 0.05)
    uri = f"{s3_bucket}/leases/x.json"
    v1 = storage.create_exclusive(uri, b"one")
    assert v1 is not None and storage.create_exclusive(uri, b"two") is None  # If-None-Match: *
    v2 = storage.replace_if_version(uri, b"three", v1)
    assert v2 is not None and storage.replace_if_version(uri, b"four", v1) is None  # If-Match
    assert storage.read_bytes(uri) == b"three"
    store = f"{s3_bucket}/store"
    held = Lease(store, "m", wait_s=0.3).acquire()
    with pytest.raises(DeepgenError, match="has held the lease"):
        Lease(store, "m", wait_s=0.3).acquire()
    held.release()
    with Lease(store, "m", wait_s=0.3) as again:
        assert again.held


def _rows(ids: list[str], model_id: str, stamp_s: int) -> pa.Table:
    from datetime import datetime, timezone

    from deepgen.scoring.pipeline import scores_schema

    t = datetime.fromtimestamp(1_700_000_000 + stamp_s, timezone.utc)
    return pa.Table.from_pylist([{"media_id": m, "uri": m, "fingerprint": "f", "model_id": model_id,
                                  "status": "ok", "score": 0.25 + stamp_s, "scored_at": t} for m in ids],
                                schema=scores_schema())


def test_readers_and_summaries_deduplicate_a_damaged_store(tmp_path):
    from deepgen.scoring.nightly import run_summary

    store = str(tmp_path / "store")
    write_chunk(store, "m", "2026-11-25", "a", 0, _rows(["x", "y"], "m", 0))
    write_chunk(store, "m", "2026-11-25", "b", 0, _rows(["x", "y", "z"], "m", 1))  # an overlapping run's rows
    table = read_scores(store, "m")
    assert sorted(table.column("media_id").to_pylist()) == ["x", "y", "z"]
    assert {r["media_id"]: r["score"] for r in table.to_pylist()} == {"x": 0.25, "y": 0.25, "z": 1.25}
    summary = run_summary(store, "m", {}, "2026-11-25")
    assert summary["rows"] == 3 and summary["by_status"] == {"ok": 3}


def test_two_concurrent_rescore_processes_leave_one_row_per_item(ray_session, tiny_bundle, tmp_path):
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    for i in range(4):  # tiny images: the race is in the store, not in the decoding
        cv2.imwrite(str(incoming / f"m{i}.png"), noise_frames(1, 64, 48, seed=i)[0])
    store = str(tmp_path / "store")
    address = ray_session.get_runtime_context().gcs_address
    cmd = [sys.executable, "-m", "deepgen.cli", "rescore", "--incoming", str(incoming), "--checkpoint", tiny_bundle,
           "--store", store, "--date", "2026-11-25", "--chunk-size", "1", "--model-batch", "1", "--frames", "1",
           "--address", address, "--quiet"]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) for _ in range(2)]
    try:
        outs = [p.communicate(timeout=240) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert [p.returncode for p in procs] == [0, 0], [o[1].decode()[-2000:] for o in outs]
    summaries = [json.loads(o[0]) for o in outs]
    assert sorted(s["items_scored"] for s in summaries) == [0, 4]  # one run scored, the other waited and skipped
    fs, path = storage.get_fs(os.path.join(store, "scores"))
    raw = [r for f in fs.find(path) if f.endswith(".parquet") for r in pq.read_table(f).to_pylist()]
    ids = [r["media_id"] for r in raw]
    assert sorted(ids) == sorted(f"incoming/m{i}.png" for i in range(4))  # exactly one row per item on disk
    assert not os.path.exists(lease_uri(store, summaries[0]["model_id"]))  # released


_RACER = """
import os, sys, time
from deepgen.errors import DeepgenError
from deepgen.scoring.lease import Lease
store, barrier, me = sys.argv[1], sys.argv[2], sys.argv[3]
lease = Lease(store, "m", wait_s=0)
open(os.path.join(barrier, me), "w").close()
while not os.path.exists(os.path.join(barrier, "go")):
    time.sleep(0.005)
try:
    lease.acquire()
    lease._stop.set()  # keep the lease (no heartbeat, no release) so the parent can read who holds it
    print("held", lease.owner, flush=True)
except DeepgenError:
    print("refused", flush=True)
# stay alive until every racer has answered: a slower one would take over the lease of a holder that exited
while not os.path.exists(os.path.join(barrier, "done")):
    time.sleep(0.005)
"""


@pytest.mark.parametrize("expired", [False, True], ids=["fresh", "expired"])
def test_processes_racing_for_an_s3_lease_get_exactly_one_holder(s3_bucket, tmp_path, expired):
    """Four processes released together onto a free S3 lease (If-None-Match) or onto an expired one
    (If-Match takeover): exactly one holds it, and the lease file names that one."""
    store = f"{s3_bucket}/store"
    if expired:
        storage.write_bytes(lease_uri(store, "m"), json.dumps(
            {"owner": "gone", "host": "elsewhere", "pid": 1, "expires": time.time() - 10}).encode())
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    racers = [subprocess.Popen([sys.executable, "-c", _RACER, store, str(barrier), str(i)], env=env,
                               stdout=subprocess.PIPE, text=True) for i in range(4)]
    deadline = time.monotonic() + 120
    while len(os.listdir(barrier)) < len(racers) and time.monotonic() < deadline:
        time.sleep(0.01)
    (barrier / "go").touch()
    try:  # each racer's answer while all of them are still alive; a racer silent for 120 s answers "timeout"
        deadline = time.monotonic() + 120
        outs = [p.stdout.readline().split() if select.select([p.stdout], [], [], max(0.0, deadline - time.monotonic()))[0]
                else ["timeout"] for p in racers]
    finally:
        (barrier / "done").touch()
        for p in racers:
            try:
                p.communicate(timeout=120)
            except subprocess.TimeoutExpired:
                p.kill()  # a racer that never answered: stopped here, by its PID
                p.communicate()
    holders = [o[1] for o in outs if o and o[0] == "held"]
    assert len(holders) == 1 and sum(o == ["refused"] for o in outs) == 3, outs
    assert json.loads(storage.read_bytes(lease_uri(store, "m")))["owner"] == holders[0]
