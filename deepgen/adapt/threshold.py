"""Operating points fitted on a user's own real footage (``deepgen adapt threshold``).

A bundle's decision point (P(fake) = 0.5) is fitted on its training domain's validation videos. On a
team's own footage that point can flag many real people. Given videos the team knows are real, the
shift ``s`` on the video logit (the aggregated logit before the final temperature, see
:mod:`deepgen.inference`) is chosen so that at most the asked share of them reach 0.5, and folded
into the classifier's bias, exactly like the balanced offset training fits:

- a frame bundle: the frame logit moves by ``s``, and so does the video logit (a mean and a max are
  shift-equivariant);
- a temporal bundle: the frame logit moves by ``s * T_frame``, so the fused video logit moves by ``s``;
- an ensemble: each member moves by ``s * T_m``, so the mean of calibrated member logits moves by ``s``.

The result is an ordinary bundle (one per ensemble member), with the fit recorded in
``operating_point.json`` and ``metrics.json``; its ``model_id`` changes because its weights do.
"""

from __future__ import annotations

import math
import time

import numpy as np

from deepgen import storage
from deepgen.errors import DeepgenError
from deepgen.models.bundle import OWNER_MARKERS

SHIFT_MARGIN = 0.05  # logit units above the highest kept real video when no real video may be flagged


def min_real_videos(false_alarm: float) -> int:
    """The fewest real videos that can resolve a false-alarm rate: one flagged video must be within it."""
    return math.ceil(1.0 / false_alarm - 1e-9)


def check_enough_reals(n: int, false_alarm: float, what: str, fix: str) -> None:
    """Refuse, in one sentence, ``n`` real videos (described by ``what``) too few to resolve ``false_alarm``."""
    need = min_real_videos(false_alarm)
    if n < need:
        raise DeepgenError(f"{what} {n} real videos, too few to resolve a false-alarm rate of {false_alarm:g} "
                           f"(at least {need} are needed); {fix}.")


def check_false_alarm(false_alarm: float) -> float:
    """A false-alarm rate is a finite number in (0, 1)."""
    try:
        value = float(false_alarm)
    except (TypeError, ValueError):
        value = float("nan")
    if not (0.0 < value < 1.0):
        raise DeepgenError(f"--false-alarm {false_alarm!r} is not a share of videos; pass a number between 0 and 1, "
                           "e.g. 0.05.")
    return value


def fit_false_alarm_shift(real_logits, false_alarm: float) -> float:
    """The shift ``s`` of the video logit after which at most ``false_alarm`` of ``real_logits`` stay
    >= 0 (P(fake) >= 0.5): halfway between the highest real video that must clear and the next one up,
    so the point is not balanced on a single video's value."""
    v = np.sort(np.asarray(real_logits, np.float64))[::-1]
    if not len(v) or not np.isfinite(v).all():
        raise DeepgenError("the real videos' logits are empty or not finite; check the faces tables.")
    k = int(math.floor(check_false_alarm(false_alarm) * len(v) + 1e-9))  # videos allowed at or above 0.5
    if k >= len(v):
        return float(v[-1] - SHIFT_MARGIN)
    above = v[v > v[k]]
    return float((v[k] + above.min()) / 2 if len(above) else v[k] + SHIFT_MARGIN)


def flagged_share(video_logits, shift: float = 0.0) -> float:
    """Share of videos at P(fake) >= 0.5 once the video logit is moved by ``shift``."""
    v = np.asarray(video_logits, np.float64)
    return float(np.mean(v - shift >= 0)) if len(v) else float("nan")


def real_video_logits(checkpoints: list[str], bundles: list, faces: list[str], false_alarm: float = 0.05,
                      quiet: bool = False, already: int = 0) -> tuple[np.ndarray, list[str]]:
    """Video logits (before the final temperature) of every video in ``faces`` under the bundle or
    ensemble ``checkpoints`` (loaded as ``bundles``), scored on Ray through the one inference path;
    refuses tables that hold fakes, or too few videos (with ``already`` real videos from elsewhere) to
    resolve ``false_alarm``, before any scoring."""
    import pyarrow.compute as pc

    from deepgen.evaluation.run import _load_faces, score_frames
    from deepgen.inference import Scorer, aggregate_media

    table = _load_faces(faces, "all", [])
    labels = table.column("label")
    fakes = int(pc.sum(pc.equal(labels, 1)).as_py() or 0)
    if fakes:
        raise DeepgenError(f"the faces tables {', '.join(faces)} hold {fakes} face crops labelled fake; an operating "
                           "point is fitted on real videos only, so pass faces of real footage (label 0).")
    n_videos = len(pc.unique(table.column("media_id")))
    check_enough_reals(n_videos + already, false_alarm, f"the faces tables {', '.join(faces)}"
                       + (f" and the {already} items marked real" if already else "") + " hold",
                       "pass more real footage or a larger --false-alarm")
    scorer = Scorer(bundles, "cpu")  # the temperature and temporal head of what is scored
    frames = score_frames(table, checkpoints[0] if len(checkpoints) == 1 else checkpoints, quiet=quiet)
    frames = frames.sort_values(["media_id", "frame_index"], kind="stable")
    videos = aggregate_media(frames, scorer.temperature, scorer.temporal)
    return videos["logit"].to_numpy(np.float64), videos["media_id"].astype(str).tolist()


def verdict_video_logits(labels: str, scores: str, model_id: str) -> tuple[np.ndarray, list[str]]:
    """Video logits of the items an analyst marked real on the review page (``labels``, the verdicts CSV)
    as the scores table ``scores`` holds them; they must have been scored by ``model_id``."""
    from deepgen.adapt.verdicts import read_verdicts

    v = read_verdicts(labels, scores)
    real = v[v["verdict"] == "real"]
    other = sorted({str(m) for m in real["model_id"] if m is not None and str(m) != model_id})
    if other:
        raise DeepgenError(f"the verdicts in {labels} were made on the scores of model {other[0]}, not of the "
                           f"checkpoint's model {model_id}; rescore the real items with this checkpoint or pass its "
                           "bundle.")
    logits = real["logit"].to_numpy(np.float64)
    if len(real) and not np.isfinite(logits).all():
        raise DeepgenError(f"the scores table {scores} holds no logit for {int((~np.isfinite(logits)).sum())} items "
                           f"marked real in {labels}; rescore them first.")
    return logits, real["media_id"].astype(str).tolist()


def _member_scale(bundle, ensemble: bool) -> float:
    """How far the classifier's bias must move for the video logit to move by 1 (module docstring)."""
    from deepgen.inference import TemporalFusion

    if ensemble:
        return float(bundle.temperature)
    fusion = TemporalFusion.of(bundle)
    return float(fusion.frame_temperature) if fusion is not None else 1.0


def threshold_bundle(checkpoints: list[str], faces: list[str], out: str, false_alarm: float = 0.05,
                     address: str | None = None, overwrite: bool = False, quiet: bool = False,
                     labels: str | None = None, scores: str | None = None) -> dict:
    """Fit the operating point of ``checkpoints`` (one bundle, or an ensemble's members) on the real
    videos of ``faces`` and/or the items an analyst marked real (``labels``: the review page's verdicts
    CSV, with the ``scores`` table it was made from), and write the shifted bundle to ``out`` (an
    ensemble: ``out/member-<i>``)."""
    from deepgen.adapt.bundles import _save
    from deepgen.inference import ensemble_model_id
    from deepgen.models.bundle import load_bundle
    from deepgen.runtime import init_ray

    if not checkpoints or not (faces or labels):
        raise DeepgenError("adapt threshold needs --checkpoint and real videos: --faces tables of real footage "
                           "and/or --labels verdicts.csv with --scores; pass them.")
    if bool(labels) != bool(scores):
        raise DeepgenError("--labels (the review page's verdicts CSV) needs --scores, the scores table the page was "
                           "made from, and --scores needs --labels; pass both.")
    false_alarm = check_false_alarm(false_alarm)
    inputs = [*checkpoints, *faces, *([labels, scores] if labels else [])]
    storage.check_output_path(out, inputs=inputs, overwrite=overwrite, markers=OWNER_MARKERS)  # before any work
    t0 = time.perf_counter()
    bundles = [load_bundle(c) for c in checkpoints]
    logits, media = np.zeros(0), []
    if labels:
        logits, media = verdict_video_logits(labels, scores, ensemble_model_id([b.model_id for b in bundles]))
    if faces:
        init_ray(address)
        more, more_media = real_video_logits(list(checkpoints), bundles, faces, false_alarm, quiet=quiet,
                                             already=len(set(media)))
        logits, media = np.r_[logits, more], media + more_media
    else:
        check_enough_reals(len(logits), false_alarm, f"{labels} marks as real",
                           "mark more real items, add --faces of real footage or pass a larger --false-alarm")
    shift = fit_false_alarm_shift(logits, false_alarm)
    ensemble = len(bundles) > 1
    record = {
        "false_alarm": false_alarm, "n_videos": len(logits), "shift": shift,
        "flagged_before": flagged_share(logits), "flagged_after": flagged_share(logits, shift),
        "fitted_on": [*faces, *([labels] if labels else [])], "source_checkpoints": list(checkpoints),
        "source_model_id": ensemble_model_id([b.model_id for b in bundles]),
        "fitted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    outs, ids = [], []
    for i, b in enumerate(bundles):
        target = storage.join(out, f"member-{i}") if ensemble else out
        b.model.shift_logit(shift * _member_scale(b, ensemble))
        rec = {**record, "member": i} if ensemble else record
        b.metrics = {**b.metrics, "operating_point": rec}
        ids.append(_save(b, target, {"operating_point": rec}, overwrite, inputs))
        outs.append(target)
    result = {"out": out, "bundles": outs, "model_id": ensemble_model_id(ids), **{k: record[k] for k in (
        "false_alarm", "n_videos", "shift", "flagged_before", "flagged_after")},
        "seconds": round(time.perf_counter() - t0, 2)}
    return result

