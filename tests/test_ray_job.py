"""`ray job submit` runs ray_jobs/score.py unchanged against a locally started Ray head."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pytest

from deepgen.storage import read_table, write_table

ROOT = Path(__file__).resolve().parents[1]
RAY = shutil.which("ray", path=os.path.dirname(sys.executable)) or shutil.which("ray")


def _ports(n: int) -> list[int]:
    """``n`` distinct free ports (all bound at once, so the OS cannot hand one out twice)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.fixture
def ray_head():
    """`ray start --head --block` in its own process group, stopped by PID group at the end."""
    pytest.importorskip("ray.dashboard.modules.job", reason="ray[default] is not installed")
    if RAY is None:
        pytest.skip("the ray command is not installed")
    port, dash, agent, agent_grpc, env_agent, client = _ports(6)
    temp = tempfile.mkdtemp(prefix="rj", dir="/tmp")  # short: Ray's unix socket paths must fit 107 bytes
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_AUTH_MODE"] = "disabled"
    proc = subprocess.Popen(
        [RAY, "start", "--head", "--block", f"--port={port}", "--dashboard-host=127.0.0.1",
         f"--dashboard-port={dash}", "--include-dashboard=true", "--num-cpus=2",
         # own agent ports: the session's embedded Ray already holds the defaults (52365, ...)
         f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
         f"--runtime-env-agent-port={env_agent}", f"--ray-client-server-port={client}",
         "--object-store-memory=200000000", f"--temp-dir={temp}", "--disable-usage-stats"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    address = f"http://127.0.0.1:{dash}"
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"ray start --head exited with {proc.returncode}")
        if subprocess.run([RAY, "job", "list", "--address", address], env=env, capture_output=True).returncode == 0:
            break
        time.sleep(1)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the local Ray head did not come up")
    yield address, env
    os.killpg(proc.pid, signal.SIGKILL)  # the head and every process it started (same process group)
    proc.wait()
    shutil.rmtree(temp, ignore_errors=True)


def test_ray_job_submit_score(ray_head, real_faces_dir, tiny_bundle, tmp_path):
    from deepgen.testing.faces import face_frames, load_rgb, write_video

    address, env = ray_head
    video = write_video(str(tmp_path / "v.mp4"), face_frames(load_rgb(real_faces_dir / "img1.jpg"), 6, 320, 240))
    manifest = str(tmp_path / "m.parquet")
    write_table(pa.Table.from_pylist([{"media_id": "j/v.mp4", "uri": video, "label": 1, "dataset": "j"},
                                      {"media_id": "j/gone.mp4", "uri": str(tmp_path / "gone.mp4")}]), manifest)
    out = str(tmp_path / "scores")
    cmd = [RAY, "job", "submit", "--address", address, "--working-dir", str(ROOT), "--",
           sys.executable, "ray_jobs/score.py", "--manifest", manifest, "--checkpoint", tiny_bundle,
           "--out", out, "--frames", "4"]
    deadline = time.time() + 120
    while True:  # the head's job agent can come up after the dashboard answers; nothing ran then
        job = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
        if job.returncode == 0 or "No available agent" not in job.stderr + job.stdout or time.time() > deadline:
            break
        time.sleep(2)
    assert job.returncode == 0, job.stdout[-2000:] + job.stderr[-2000:]
    rows = {r["media_id"]: r["status"] for r in read_table(out).to_pylist()}
    assert rows == {"j/v.mp4": "ok", "j/gone.mp4": "missing"}
