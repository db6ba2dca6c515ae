"""Shared fixtures: one Ray session and one local S3 endpoint (moto) for the whole test run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

SHARED_FACES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real_faces"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Set before Ray starts so every Ray worker inherits the local S3 endpoint and credentials.
S3_PORT = _free_port()
S3_ENDPOINT = f"http://127.0.0.1:{S3_PORT}"
os.environ.update(
    {
        "AWS_ENDPOINT_URL": S3_ENDPOINT,
        "AWS_ENDPOINT_URL_S3": S3_ENDPOINT,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_TRAIN_V2_ENABLED": "1",
        "RAY_DATA_DISABLE_PROGRESS_BARS": "1",
        # the Train controller polls its workers every 2 s by default; on the suite's short runs that wait is a
        # measurable share (a 2-epoch toy run: 26.7 s -> 23.0 s, warm, same machine)
        "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.2",
    }
)


@pytest.fixture(scope="session")
def ray_session():
    """One embedded Ray (2 CPUs, small object store) shared by every test that needs it."""
    import ray

    if not ray.is_initialized():
        ray.init(
            address="local",  # a new embedded Ray, even when another cluster is running on the machine
            num_cpus=2,
            object_store_memory=256 * 1024 * 1024,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server on 127.0.0.1, started and stopped by this fixture (by PID)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(S3_PORT)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 30
    while time.time() < deadline and proc.poll() is None:  # moto exits at once if its port was taken
        try:
            with socket.create_connection(("127.0.0.1", S3_PORT), timeout=0.5):
                break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail(f"moto S3 server did not start on port {S3_PORT} (exit code {proc.poll()})")
    yield S3_ENDPOINT
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def s3_bucket(s3_server):
    """A fresh, empty bucket on the local endpoint; yields its ``s3://`` URI."""
    import uuid

    import boto3

    name = f"test-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=name)
    yield f"s3://{name}"


@pytest.fixture(scope="session")
def real_faces_dir() -> Path:
    if not SHARED_FACES.is_dir():
        pytest.skip("../shared/data/real_faces is absent")
    return SHARED_FACES


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> str:
    """An untrained tiny detector saved as a checkpoint bundle (pipeline tests need no trained model)."""
    import numpy as np
    import torch

    from deepgen.evaluation.ood import fit_ood
    from deepgen.models import ModelConfig, create_detector
    from deepgen.models.bundle import reference_stats, save_bundle

    torch.manual_seed(0)
    model = create_detector(ModelConfig(image_size=48))
    ref = np.random.default_rng(0).normal(size=(64, model.num_features))
    out = str(tmp_path_factory.mktemp("bundle") / "tiny")
    ood = fit_ood(ref[:48], ref[48:], np.arange(16))  # a domain check, so scoring fills ood_score / in_domain
    save_bundle(out, model, temperature=1.5, reference={**reference_stats(ref), "ood_sample": ref[:48]},
                datasets=["t"], extras={"ood": ood})
    return out


@pytest.fixture(scope="session")
def procedural_bundle(ray_session, tmp_path_factory) -> dict:
    """A bundle trained (Ray Train, 1 worker, 1 epoch, packaged ImageNet Lite0 at 64 px) on a small
    procedural FF++-like corpus; returns {"bundle": uri, "root": the corpus, "faces": its faces table}."""
    from deepgen.datasets import write_manifest
    from deepgen.faces.extract import extract_faces
    from deepgen.synth import render_preset
    from deepgen.train import train

    d = tmp_path_factory.mktemp("procedural")
    root = render_preset("ffpp", str(d / "data"), videos=32, seed=0, frames=4, size=128)
    write_manifest("ffpp", root, str(d / "m.parquet"))
    extract_faces(str(d / "m.parquet"), str(d / "faces"), frames=4, size=64, quiet=True)
    run = train("erm", [str(d / "faces" / "faces")], str(d / "run"), workers=1, quiet=True,
                overrides={"epochs": 1, "model": {"image_size": 64}})
    return {"bundle": run["bundle"], "root": root, "faces": str(d / "faces" / "faces")}
