"""Fault tolerance: a worker node is removed mid-run and training resumes from its last checkpoint.

The test needs its own multi-node Ray cluster (``ray.cluster_utils.Cluster``), which cannot share the
session's embedded Ray, so the whole scenario runs in a subprocess and reports JSON on its last line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

SCRIPT = r'''
import glob, json, os, socket, sys, threading, time
import ray
from ray.cluster_utils import Cluster
from deepgen.train import train
from deepgen.testing.toyfaces import write_toy_faces

work = sys.argv[1]
faces = write_toy_faces(os.path.join(work, "faces.parquet"), n_per_class=40, seed=0)
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
# the head holds no CPU, so the training worker must run on the worker node we remove
cluster = Cluster(initialize_head=True, head_node_args={
    "num_cpus": 0, "gcs_server_port": port, "object_store_memory": 96 * 2**20, "include_dashboard": False})
node = cluster.add_node(num_cpus=1, object_store_memory=80 * 2**20)
cluster.wait_for_nodes()
ray.init(address=cluster.address, log_to_driver=False)
events, outcome = {}, {}
cfg = {"name": "fault", "epochs": 4, "batch_size": 16, "lr": 0.003, "max_failures": 2, "num_to_keep": 2, "ema_decay": 0.9,
       "model": {"backbone": "test_efficientnet", "image_size": 32}}

def run_training():
    try:
        outcome["result"] = train(cfg, [faces], os.path.join(work, "run"), workers=1, address=cluster.address)
    except BaseException as e:
        outcome["error"] = repr(e)

# training runs in a thread: Cluster.add_node installs signal handlers, so it must stay in the main thread
trainer = threading.Thread(target=run_training, daemon=True)
trainer.start()
deadline = time.time() + 240
while trainer.is_alive() and time.time() < deadline:
    # the controller writes its snapshot once a reported checkpoint is registered: kill right after
    if glob.glob(os.path.join(work, "run", "checkpoints", "*", "checkpoint_manager_snapshot.json")):
        cluster.remove_node(node, allow_graceful=False)
        events["removed_at"] = time.time()
        cluster.add_node(num_cpus=1, object_store_memory=80 * 2**20)
        events["replacement_added"] = True
        break
    time.sleep(0.05)
trainer.join(timeout=max(1, deadline - time.time()))
ray.shutdown()
cluster.shutdown()
if "result" not in outcome:
    raise SystemExit(f"training did not finish: {outcome.get('error', 'timed out')}")
result = outcome["result"]
print(json.dumps({"events": events, "history": result["history"], "bundle": result["bundle"]}))
'''


@pytest.mark.slow
def test_training_resumes_after_worker_node_removed(tmp_path):
    # the GCS notices the removed node within a few seconds instead of its default 15-30 s of missed health
    # checks, with enough slack (3 misses of 3 s) that a starved but live raylet on a loaded machine is not taken for dead
    env = {**os.environ, "RAY_DATA_DISABLE_PROGRESS_BARS": "1", "RAY_health_check_initial_delay_ms": "1000",
           "RAY_health_check_period_ms": "1000", "RAY_health_check_timeout_ms": "3000",
           "RAY_health_check_failure_threshold": "3"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "removed_at" in report["events"], "the worker node was never removed"
    history = report["history"]
    assert [h["epoch"] for h in history] == list(range(4))  # every epoch exactly once
    resumed = [h for h in history if h["resumed_from_epoch"] >= 0]
    assert resumed, "training restarted from scratch instead of resuming from a checkpoint"
    first = resumed[0]
    assert first["epoch"] == first["resumed_from_epoch"] + 1  # continued right after the checkpoint
    assert os.path.exists(os.path.join(report["bundle"], "model.safetensors"))
