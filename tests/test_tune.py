"""Tune: sweep settings validate before Ray starts; a 2-trial sweep killed midway resumes and keeps its best."""

from __future__ import annotations

import csv
import glob
import json
import math
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from ray.util.placement_group import placement_group, placement_group_table, remove_placement_group

import deepgen.runtime
from deepgen.cli import COMMANDS
from deepgen.errors import DeepgenError
from deepgen.models.bundle import load_bundle
from deepgen.testing.toyfaces import write_toy_faces
from deepgen.train import load_config
from deepgen.train.config import recipe_path
from deepgen.tune import load_settings, objective_value, tune_sweep
from deepgen.tune.cleanup import release_orphaned_placement_groups
from deepgen.tune.command import tune as tune_command
from deepgen.tune.results import best_row, pareto_front
from deepgen.tune.sweep import with_objective

# the `deepgen tune` click command in a driver process of its own (so the test can SIGKILL it)
DRIVER = "import sys; from deepgen.tune.command import tune; tune.main(sys.argv[1:], prog_name='deepgen tune')"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPACE = {
    "lambda_domain": {"low": 0.0, "high": 1.0},
    "lambda_supcon": {"low": 0.0, "high": 1.0},
    "lambda_method": {"low": 0.0, "high": 1.0},
    "lr": {"low": 0.0003, "high": 0.01, "log": True},
    "sbi_prob": {"low": 0.0, "high": 0.8},
}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A tiny training table and two held-out datasets with other backgrounds (seconds to write)."""
    d = tmp_path_factory.mktemp("tune_faces")
    faces = write_toy_faces(str(d / "toy.parquet"), n_per_class=30, size=48, seed=0, dataset="toy")
    held = [write_toy_faces(str(d / "heldA.parquet"), n_per_class=12, size=48, seed=1, dataset="heldA",
                            background=(120, 220)),
            write_toy_faces(str(d / "heldB.parquet"), n_per_class=12, size=48, seed=2, dataset="heldB",
                            background=(0, 60))]
    return faces, held


def sweep_file(path, **changes) -> str:
    """A sweep file around configs/full.yaml, shrunk for CPU tests."""
    spec = {"recipe": recipe_path("full"),
            "overrides": {"model.image_size": 32, "batch_size": 16}, "epochs": 2, "objective": "weighted",
            "weight": 0.5, "seed": 0, "space": SPACE, "scheduler": {"asha": True, "grace_period": 1}}
    spec.update(changes)
    path.write_text(yaml.safe_dump(spec))
    return str(path)


@pytest.fixture
def no_ray(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("Ray was started before the sweep was validated")

    monkeypatch.setattr(deepgen.runtime, "init_ray", refuse)


def test_shipped_sweep_file_loads():
    s = load_settings("tune")
    assert set(s.space) == {"lambda_domain", "lambda_supcon", "lambda_method", "lr", "sbi_prob"}
    assert s.space["lr"].log and s.objective == "min_auc" and s.search == "optuna" and s.asha
    assert s.recipe["name"] == "full"
    assert s.recipe_with({"lr": 0.001, "sbi_prob": 0.5}).sbi_prob == 0.5


@pytest.mark.parametrize("changes, args, match", [
    ({}, {"objective": "median_auc"}, r"objective 'median_auc' is unknown; use one of min_auc, mean_auc, weighted"),
    ({"space": {"lr": {"low": 0.01, "high": 0.001}}}, {}, r"space.lr has low 0.01 above high 0.001; swap them"),
    ({"space": {"lr": {"low": 0.0, "high": 0.01, "log": True}}}, {}, r"log-uniform with low 0.0"),
    ({"space": {"sbi_prob": {"low": 0.2, "high": 1.5}}}, {}, r"sbi_prob is 1.5; set a probability"),
    ({"space": {"dropout": {"low": 0.1, "high": 0.2}}}, {}, r"space.dropout is not a searchable recipe key"),
    ({"weight": 2}, {}, r"weight is 2; set a number between 0 and 1"),
    ({"search": "grid"}, {}, r"search 'grid' is unknown"),
    ({"scheduler": {"grace": 1}}, {}, r"scheduler has unknown key\(s\) grace"),
])
def test_bad_sweep_fails_before_ray(data, tmp_path, no_ray, changes, args, match):
    faces, held = data
    with pytest.raises(DeepgenError, match=match) as e:
        tune_sweep(sweep_file(tmp_path / "t.yaml", **changes), [faces], held, str(tmp_path / "out"), 4, **args)
    assert "\n" not in str(e.value)


def test_missing_inputs_fail_before_ray(data, tmp_path, no_ray):
    faces, held = data
    cfg = sweep_file(tmp_path / "t.yaml")
    out = str(tmp_path / "out")
    with pytest.raises(DeepgenError, match=r"faces table .*nope.parquet does not exist"):
        tune_sweep(cfg, [str(tmp_path / "nope.parquet")], held, out, 4)
    with pytest.raises(DeepgenError, match=r"no held-out faces table given; pass at least one with --heldout"):
        tune_sweep(cfg, [faces], [], out, 4)
    with pytest.raises(DeepgenError, match=r"held-out faces table .*gone.parquet does not exist"):
        tune_sweep(cfg, [faces], [str(tmp_path / "gone.parquet")], out, 4)
    with pytest.raises(DeepgenError, match=r"tune config .*missing.yaml does not exist"):
        tune_sweep(str(tmp_path / "missing.yaml"), [faces], held, out, 4)
    with pytest.raises(DeepgenError, match=r"there is no sweep to resume in .*; run without --resume"):
        tune_sweep(cfg, [faces], held, out, 4, resume=True)
    os.makedirs(os.path.join(out, "tune", "sweep"))
    with pytest.raises(DeepgenError, match=r"a sweep already exists in .*; pass --resume to continue it"):
        tune_sweep(cfg, [faces], held, out, 4)
    res = CliRunner().invoke(tune_command, ["--config", cfg, "--faces", faces, "--heldout", held[0], "--out",
                                            str(tmp_path / "o2"), "--trials", "0"])
    assert isinstance(res.exception, DeepgenError) and "ask for at least one trial" in str(res.exception)


def test_objective_and_selection_rules():
    assert objective_value(0.8, 0.6, "mean_auc", 0.3) == 0.8
    assert objective_value(0.8, 0.6, "min_auc", 0.3) == 0.6
    assert objective_value(0.8, 0.6, "weighted", 0.25) == pytest.approx(0.25 * 0.6 + 0.75 * 0.8)
    m = with_objective({"heldout_mean_auc": 0.7, "heldout_min_auc": 0.5, "val_auc_a": 0.5}, "weighted", 0.5)
    assert (m["mean_auc"], m["min_auc"], m["objective"], m["val_auc_a"]) == (0.7, 0.5, 0.6, 0.5)
    assert math.isnan(with_objective({"val_mean_auc": 0.9}, "min_auc", 0.5)["objective"])

    mean = np.array([0.9, 0.8, 0.7, 0.85, np.nan, 0.9])
    worst = np.array([0.6, 0.75, 0.7, 0.6, 0.9, 0.5])
    assert pareto_front(mean, worst).tolist() == [True, True, False, False, False, False]
    rows = [{"trial_id": "a", "status": "completed", "objective": 0.6, "mean_auc": 0.7},
            {"trial_id": "b", "status": "stopped", "objective": 0.9, "mean_auc": 0.9},  # no bundle: not eligible
            {"trial_id": "c", "status": "completed", "objective": 0.6, "mean_auc": 0.8},
            {"trial_id": "d", "status": "completed", "objective": float("nan"), "mean_auc": 0.9}]
    assert best_row(rows)["trial_id"] == "c"
    assert best_row(rows[1:2]) is None


def test_orphaned_placement_group_is_released(ray_session):
    """A group whose creating actor died (a Train controller killed with its stopped trial) is removed;
    the driver's own groups (Tune's trial groups) and a live actor's are kept."""
    ray = ray_session

    @ray.remote(num_cpus=0)
    class Maker:
        def make(self):
            pg = placement_group([{"CPU": 0.25}])
            ray.get(pg.ready(), timeout=60)
            return pg.id.hex()

    mine = placement_group([{"CPU": 0.25}])
    ray.get(mine.ready(), timeout=60)
    alive, dead = Maker.remote(), Maker.remote()
    kept, orphan = ray.get([alive.make.remote(), dead.make.remote()], timeout=60)
    ray.kill(dead)
    removed, deadline = [], time.time() + 30
    while orphan not in removed and time.time() < deadline:
        removed += release_orphaned_placement_groups()
        time.sleep(0.2)
    try:
        assert orphan in removed and kept not in removed and mine.id.hex() not in removed
        assert placement_group_table(mine)["state"] == "CREATED"
    finally:
        remove_placement_group(mine)
        ray.kill(alive)


def _state_file(experiment: str) -> str | None:
    """The newest experiment state file Tune has written, if any."""
    files = sorted(glob.glob(os.path.join(experiment, "experiment_state-*.json")))
    return files[-1] if files else None


def _state_trials(experiment: str) -> dict[str, dict]:
    """Trial id -> {status, iterations} from the newest experiment state Tune has written (empty if none yet)."""
    path = _state_file(experiment)
    if path is None:
        return {}
    try:
        with open(path) as f:
            state = json.load(f)
    except (OSError, ValueError):  # being rewritten
        return {}
    out = {}
    for trial_json, meta in state["trial_data"]:
        trial = json.loads(trial_json)
        meta = json.loads(meta) if isinstance(meta, str) else meta
        out[trial["trial_id"]] = {"status": trial["status"],
                                  "iterations": (meta.get("last_result") or {}).get("training_iteration", 0)}
    return out


def _just_after_a_state_write(experiment: str, timeout: float = 10) -> None:
    """Return as soon as Tune has rewritten its experiment state and the new file reads whole."""
    def stamp():
        path = _state_file(experiment)
        return os.stat(path).st_mtime_ns if path else None

    first, deadline = stamp(), time.time() + timeout
    while time.time() < deadline and (stamp() == first or not _state_trials(experiment)):
        time.sleep(0.01)


def _trial_files(experiment: str, out: str, trial_id: str) -> tuple:
    """A trial's reported results (Tune's result.json lines) and its bundle's weights file stamp, if any."""
    (d,) = [d for d in os.listdir(experiment) if d.startswith(f"run_trial_{trial_id}_")]
    with open(os.path.join(experiment, d, "result.json")) as f:
        results = [json.loads(line)["objective"] for line in f]
    weights = os.path.join(out, "trials", trial_id, "bundle", "model.safetensors")
    return results, os.stat(weights).st_mtime_ns if os.path.exists(weights) else None


def test_sweep_killed_midway_resumes(ray_session, data, tmp_path):
    """2 trials x 2 epochs: SIGKILL the driver once a trial is done, resume, and check the outputs."""
    faces, held = data
    cfg = sweep_file(tmp_path / "t.yaml")
    out = str(tmp_path / "sweep")
    experiment = os.path.join(out, "tune", "sweep")
    address = ray_session.get_runtime_context().gcs_address
    t0 = time.perf_counter()
    with open(tmp_path / "driver.log", "wb") as log:
        driver = subprocess.Popen(
            [sys.executable, "-c", DRIVER, "--config", cfg, "--faces", faces, "--heldout", held[0],
             "--heldout", held[1], "--out", out, "--trials", "2", "--address", address],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env={**os.environ, "TUNE_GLOBAL_CHECKPOINT_S": "1"},
        )
        try:
            deadline = time.time() + 300
            while time.time() < deadline and driver.poll() is None:
                done = {t for t, s in _state_trials(experiment).items() if s["status"] == "TERMINATED"}
                if len(done) >= 1:
                    break
                time.sleep(0.5)
            assert driver.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
            _just_after_a_state_write(experiment)  # not while Tune copies its state (it rewrites it every 1 s)
            driver.send_signal(signal.SIGKILL)
            driver.wait(timeout=30)
        finally:
            if driver.poll() is None:
                driver.kill()
    killed_at = time.perf_counter() - t0
    before = _state_trials(experiment)
    done = sorted(t for t, s in before.items() if s["status"] == "TERMINATED")
    assert len(done) == 1, before
    stamps = {t: _trial_files(experiment, out, t) for t in done}

    summary = tune_sweep(cfg, [faces], held, out, 2, resume=True)
    seconds = time.perf_counter() - t0
    rows = summary["rows"]
    assert summary["resumed"] and len(rows) == 2 and {r["status"] for r in rows} <= {"completed", "stopped"}
    assert {r["trial_id"] for r in rows} >= set(before)
    after = _state_trials(experiment)
    assert all(s["status"] == "TERMINATED" for s in after.values()) and len(after) == 2
    for t in done:  # finished before the kill: not run again (same results, bundle untouched)
        assert _trial_files(experiment, out, t) == stamps[t]
        assert after[t]["iterations"] == before[t]["iterations"]

    with open(summary["results"]) as f:
        table = list(csv.DictReader(f))
    assert [r["trial_id"] for r in table] == [r["trial_id"] for r in rows]
    assert [int(r["trial"]) for r in table] == [1, 2]  # creation order, also after the restore
    for r in table:
        assert {"mean_auc", "min_auc", "objective", "epochs", "lr", "sbi_prob", "val_auc_heldA",
                "val_auc_heldB", "val_auc_toy"} <= set(r)
        mean, worst, obj = float(r["mean_auc"]), float(r["min_auc"]), float(r["objective"])
        assert mean == pytest.approx((float(r["val_auc_heldA"]) + float(r["val_auc_heldB"])) / 2)
        assert worst == pytest.approx(min(float(r["val_auc_heldA"]), float(r["val_auc_heldB"])))
        assert obj == pytest.approx(0.5 * worst + 0.5 * mean)
        assert int(r["epochs"]) == 2 or r["status"] == "stopped"
    completed = [r for r in table if r["status"] == "completed"]
    best = summary["best"]
    assert best["objective"] == max(float(r["objective"]) for r in completed)

    bundle = load_bundle(summary["best_bundle"])
    assert bundle.datasets["heldout"] == ["heldA", "heldB"]
    trial_bundle = load_bundle(os.path.join(out, "trials", best["trial_id"], "bundle"))
    assert bundle.model_id == trial_bundle.model_id
    recipe = load_config(summary["best_config"])
    assert recipe.lr == pytest.approx(best["lr"]) and recipe.sbi_prob == pytest.approx(best["sbi_prob"])
    assert recipe.epochs == 2 and recipe.model.image_size == 32
    with open(summary["pareto"], "rb") as f:
        png = f.read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    # resuming a finished sweep runs nothing again and prints the table (the CLI path)
    stamps = {r["trial_id"]: _trial_files(experiment, out, r["trial_id"]) for r in rows}
    res = CliRunner().invoke(tune_command, ["--config", cfg, "--faces", faces, "--heldout", held[0], "--heldout",
                                            held[1], "--out", out, "--trials", "2", "--resume"])
    assert res.exit_code == 0, res.output
    assert f"best trial {best['trial_id']}" in res.output and all(t in res.output for t in stamps)
    assert {t: _trial_files(experiment, out, t) for t in stamps} == stamps
    print(f"\nsweep: killed after {killed_at:.0f} s with {len(done)} trials done; both done after {seconds:.0f} s")
    for r in table:
        print({k: (round(float(v), 4) if k not in ("trial", "trial_id", "status") else v)
               for k, v in r.items() if k != "bundle"})


@pytest.mark.skipif("tune" not in COMMANDS, reason="deepgen.cli does not map the tune command yet")
def test_ray_job_entrypoint_help():
    res = subprocess.run([sys.executable, os.path.join(ROOT, "ray_jobs", "tune.py"), "--help"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "--heldout" in res.stdout and "--resume" in res.stdout
