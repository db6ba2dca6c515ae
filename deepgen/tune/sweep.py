"""``tune_sweep()``: Ray Tune over the loss weights, each trial a Ray Train run scored on held-out datasets.

Layout under ``out``: ``tune/sweep`` (the Tune experiment, what ``--resume`` restores), ``trials/<trial_id>``
(each trial's Train checkpoints and bundle), and the sweep's outputs ``results.csv``, ``pareto.png``,
``best_config.yaml`` and ``best_bundle``.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from ray import tune as _tune
from ray.tune.integration.ray_train import TuneReportCallback

from deepgen import storage
from deepgen.errors import DeepgenError
from deepgen.train.data import check_faces_paths
from deepgen.tune.cleanup import OrphanReaper
from deepgen.tune.results import trial_rows, write_outputs
from deepgen.tune.settings import TuneSettings, load_settings, objective_value

TUNE_DIR = "tune"
EXPERIMENT = "sweep"
TRIALS_DIR = "trials"
TRIAL_DRIVER_CPU = 0.01


class ObjectiveReportCallback(TuneReportCallback):
    """Tune's Train report callback, plus ``mean_auc``, ``min_auc`` and ``objective`` on every epoch's result.

    Runs inside the Train controller: each epoch's rank-0 metrics gain the held-out summary and the
    configured objective before they reach Tune, so ASHA and the searcher act on the objective itself.
    """

    def __init__(self, objective: str, weight: float):
        super().__init__()
        self.objective, self.weight = objective, weight

    def after_report(self, run_context, metrics: list[dict[str, Any]], checkpoint) -> None:
        first = with_objective(metrics[0], self.objective, self.weight)
        super().after_report(run_context, [first, *metrics[1:]], checkpoint)


class TrialLines(_tune.Callback):
    """One progress line per finished (or errored) trial, on the driver's stderr."""

    def __init__(self, trials: int, log: Callable[[str], None] | None = None):
        self.trials, self.done, self.t0 = trials, 0, time.perf_counter()
        self.log = log or (lambda line: print(line, file=sys.stderr, flush=True))

    def _line(self, trial, how: str) -> None:
        self.done += 1
        r = trial.last_result or {}

        def num(key: str) -> str:
            v = r.get(key)
            return "nan" if v is None else f"{float(v):.4f}"

        self.log(f"tune: trial {self.done}/{self.trials} {trial.trial_id} {how} after "
                 f"{r.get('training_iteration', 0)} epoch(s): objective {num('objective')} (mean AUC "
                 f"{num('mean_auc')}, min AUC {num('min_auc')}), {time.perf_counter() - self.t0:.0f}s elapsed")

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._line(trial, "finished")

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._line(trial, "failed")


def with_objective(metrics: dict[str, Any], objective: str, weight: float) -> dict[str, Any]:
    """Copy of one epoch's Train metrics with ``mean_auc``/``min_auc`` (held-out) and ``objective``."""
    out = dict(metrics)
    out["mean_auc"] = float(metrics.get("heldout_mean_auc", math.nan))
    out["min_auc"] = float(metrics.get("heldout_min_auc", math.nan))
    out["objective"] = objective_value(out["mean_auc"], out["min_auc"], objective, weight)
    return out


def run_trial(config: dict, *, recipe: dict, epochs: int, faces: list[str], heldout: list[str], trials_dir: str,
              workers: int, cpus_per_worker: float, objective: str, weight: float) -> None:
    """One Tune trial: a Ray Train run of the recipe with this trial's values, bundle in ``trials/<trial_id>``."""
    from ray import tune

    from deepgen.train import train

    trial_id = tune.get_context().get_trial_id()
    with OrphanReaper():  # frees the CPUs a trial stopped by ASHA may still hold (see deepgen.tune.cleanup)
        train(recipe, faces, storage.join(trials_dir, trial_id), workers=workers,
              overrides={**config, "epochs": epochs}, cpus_per_worker=cpus_per_worker, overwrite=True,
              heldout=heldout, callbacks=[ObjectiveReportCallback(objective, weight)], quiet=True)


def _param_space(settings: TuneSettings) -> dict:
    from ray import tune

    space = {}
    for name, r in settings.space.items():
        space[name] = r.low if r.fixed else (tune.loguniform if r.log else tune.uniform)(r.low, r.high)
    return space


def _scheduler(settings: TuneSettings):
    """ASHA on the objective with every rung before the last epoch, so a trial that reaches the last
    epoch always finishes and writes its bundle (a stop at the final report would kill it mid-save)."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    if not settings.asha or settings.epochs < 2:
        return FIFOScheduler()
    max_t = settings.epochs - 1
    return ASHAScheduler(time_attr="training_iteration", max_t=max_t, grace_period=min(settings.grace_period, max_t),
                         reduction_factor=settings.reduction_factor, stop_last_trials=False)


def _searcher(settings: TuneSettings):
    if settings.search == "optuna":
        from ray.tune.search.optuna import OptunaSearch

        return OptunaSearch(seed=settings.seed)
    from ray.tune.search.basic_variant import BasicVariantGenerator

    return BasicVariantGenerator(random_state=settings.seed)


def tune_sweep(
    config_path: str | dict,
    faces: list[str],
    heldout: list[str],
    out: str,
    trials: int,
    objective: str | None = None,
    weight: float | None = None,
    search: str | None = None,
    asha: bool | None = None,
    workers: int | None = None,
    address: str | None = None,
    resume: bool = False,
    epochs: int | None = None,
    quiet: bool = False,
) -> dict:
    """Run (or with ``resume`` continue) a sweep of ``trials`` Train runs; return the best trial and output paths.

    ``None`` arguments take the sweep file's values. Each trial trains on ``faces`` and reports, per epoch,
    every dataset's AUC, ``mean_auc``/``min_auc`` over the ``heldout`` datasets and ``objective``. The best
    trial is the one with the highest final objective among trials that ran every epoch (ASHA's survivors).
    An existing sweep in ``out`` is never overwritten: pass ``resume=True`` to continue it
    (``Tuner.restore``: finished trials are kept, unfinished and errored ones start again).
    Unless ``quiet``, one line per finished trial goes to stderr.
    """
    import ray
    from ray import tune

    from deepgen.progress import progress_enabled
    from deepgen.runtime import init_ray

    settings = load_settings(config_path, objective=objective, weight=weight, search=search, asha=asha,
                             epochs=epochs, workers=workers)
    faces, heldout = [str(f) for f in faces], [str(f) for f in heldout or []]
    check_faces_paths(faces)
    if not heldout:
        raise DeepgenError("no held-out faces table given; pass at least one with --heldout FACES "
                           "(a dataset the trials never train on).")
    for uri in heldout:
        if not storage.exists(uri):
            raise DeepgenError(f"held-out faces table {uri} does not exist; run `deepgen extract` first or fix "
                               "the path.")
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise DeepgenError(f"trials is {trials!r}; ask for at least one trial with --trials N.")
    storage_path, storage_fs = storage.run_storage(storage.join(out, TUNE_DIR))
    experiment = storage.join(out, TUNE_DIR, EXPERIMENT)
    started = storage.exists(experiment)
    if started and not resume:
        raise DeepgenError(f"a sweep already exists in {experiment}; pass --resume to continue it or choose "
                           "another --out.")
    if resume and not started:
        raise DeepgenError(f"there is no sweep to resume in {experiment}; run without --resume to start one.")
    # the best bundle is replaced at the end: refuse now (before Ray) a folder there that deepgen did not write
    from deepgen.models.bundle import OWNER_MARKERS
    from deepgen.tune.results import BEST_BUNDLE

    storage.check_output_path(storage.join(out, BEST_BUNDLE), inputs=[*faces, *heldout], overwrite=True,
                              markers=OWNER_MARKERS)

    t0 = time.perf_counter()
    init_ray(address)
    trials_dir = storage.join(out, TRIALS_DIR)
    if not storage.is_remote(trials_dir):
        trials_dir = os.path.abspath(trials_dir)
    # The trial only drives Train, whose workers reserve the CPUs/GPUs; Tune refuses an all-zero request,
    # so the driver asks for a sliver of a CPU (on 2 cores: 0.01 + one 1-CPU worker fits).
    trainable = tune.with_resources(
        tune.with_parameters(
            run_trial, recipe=settings.recipe, epochs=settings.epochs, faces=faces, heldout=heldout,
            trials_dir=trials_dir, workers=settings.workers, cpus_per_worker=settings.cpus_per_worker,
            objective=settings.objective, weight=settings.weight,
        ),
        {"CPU": TRIAL_DRIVER_CPU},
    )
    exp_path = os.path.join(storage_path, EXPERIMENT)
    if started:
        if not tune.Tuner.can_restore(exp_path, storage_filesystem=storage_fs):
            raise DeepgenError(f"{experiment} holds no restorable Tune state; remove it or choose another --out.")
        tuner = tune.Tuner.restore(exp_path, trainable, resume_unfinished=True, restart_errored=True,
                                   storage_filesystem=storage_fs)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=_param_space(settings),
            tune_config=tune.TuneConfig(
                metric="objective", mode="max", num_samples=trials, search_alg=_searcher(settings),
                scheduler=_scheduler(settings), max_concurrent_trials=settings.max_concurrent_trials,
            ),
            run_config=tune.RunConfig(
                name=EXPERIMENT, storage_path=storage_path, storage_filesystem=storage_fs,
                failure_config=tune.FailureConfig(max_failures=0), verbose=1,
                callbacks=[TrialLines(trials)] if progress_enabled(quiet) else None,
            ),
        )
    grid = tuner.fit()
    analysis = tune.ExperimentAnalysis(grid.experiment_path, storage_filesystem=storage_fs)
    rows = trial_rows(analysis.trials, settings, trials_dir)
    summary = write_outputs(rows, settings, out)
    summary.update({
        "experiment": experiment,
        "trials_dir": trials_dir,
        "seconds": time.perf_counter() - t0,
        "resumed": started,
        "ray": ray.__version__,
    })
    return summary
