"""The one inference path: bundle(s) -> frame logits and features -> per-track and per-video
aggregation -> calibration -> uncertainty.

``deepgen score``, ``rescore``, ``evaluate``, the benchmark and training validation all go through
these functions, so each quantity has one definition:

- frame logit: the detector's real/fake logit of one face crop (an ensemble: the equal-weight mean of
  its members' calibrated logits, ``z_m / T_m``);
- video logit: the max over the media item's face tracks of the track's mean frame logit, so a
  swapped face beside a real one is not averaged away (one track: the mean frame logit);
- ``score``: calibrated P(fake) = sigmoid(video logit / T) (T = 1 for an ensemble, whose logits are
  already calibrated);
- ``uncertainty``: the predictive entropy of ``score``, in nats;
- ``mutual_info``: with MC dropout, the mutual information (BALD) between the prediction and the
  dropout masks, each pass aggregated to the video exactly like the logit;
- ``ood_score``: the mean over the item's face crops of each crop's distance to the bundle's training
  crops, in units of the threshold fitted at training (:mod:`deepgen.evaluation.ood`): the larger of the
  feature distance and the distance of the crop's frozen ImageNet features
  (:mod:`deepgen.evaluation.frozen`), which fine-tuning never shaped;
  ``in_domain`` is ``ood_score <= 1``. An ensemble takes, per crop, the largest of its members'
  distances, so an item is in domain for the ensemble only if it is for every member (mean of the
  max >= each member's mean); NaN / null when a bundle has no ``ood`` record;
- frame score (timeline): sigmoid(frame logit / T), the calibrated P(fake) of one crop.

Temporal fusion (a bundle of arch ``temporal``, faces sampled with ``--sampling clips``): each clip
(the frames of one track and one ``clip_index``, in ``clip_pos`` order) gets a temporal logit from
the head over its frames' ``features``; every frame carries its clip's. A frame's fused logit is
``z_frame / T_frame + z_temporal / T_temporal`` (late fusion of calibrated logits; a frame outside
any clip keeps ``z_frame / T_frame``), the video logit is the max over tracks of the track's mean
fused logit, and ``score = sigmoid(video logit / T_fusion)``; the three temperatures were fitted on
validation videos (``temporal.json`` in the bundle). ``temporal_score`` is
sigmoid(max over tracks of the mean ``z_temporal / T_temporal``): the temporal part alone.
"""

from __future__ import annotations

import hashlib
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from deepgen.evaluation.calibration import sigmoid
from deepgen.evaluation.ensemble import combine_logits
from deepgen.evaluation.uncertainty import binary_entropy, mc_dropout_predict, mc_uncertainty

EVIDENCE = ("frequency_score", "hf_ratio", "boundary_score")  # per-frame artifact evidence, averaged per video


def ensemble_model_id(model_ids: list[str]) -> str:
    """The id scores are keyed by: the bundle's own id, or one derived from all members of an ensemble."""
    if len(model_ids) == 1:
        return model_ids[0]
    return "ens-" + hashlib.sha256("+".join(sorted(model_ids)).encode()).hexdigest()[:12]


def default_device() -> str:
    """``cuda`` when a GPU is visible, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def model_frame_outputs(model, images: list[np.ndarray] | np.ndarray, device: str = "cpu", mc_passes: int = 0,
                        boundary: bool = False, batch_size: int = 256) -> dict[str, np.ndarray]:
    """One detector on RGB uint8 face crops: ``logit`` (N,), ``features`` (N, d), and ``mc_logits``
    (passes, N) with ``mc_passes`` > 0, ``boundary_score`` (N,) with ``boundary``; in batches."""
    import torch

    from deepgen.models.detector import inference_batch

    batch_size = inference_batch(device, batch_size)
    logits, feats, mcs, bounds = [], [], [], []
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if str(device).startswith("cuda") else nullcontext()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for i in range(0, len(images), batch_size):
                x = model.preprocess(images[i : i + batch_size]).to(device)
                with amp:
                    out = model(x)
                logits.append(out["logit"].float().cpu().numpy())
                f = out["features"].float()
                feats.append(f.cpu().numpy())
                if mc_passes:  # only the dropout before the real/fake head is sampled; features once
                    mcs.append(mc_dropout_predict(model.classifier, f, mc_passes, return_logits=True))
                if boundary:
                    from deepgen.models import boundary_scores

                    bounds.append(boundary_scores({k: v.float() for k, v in out.items()}))
    finally:
        model.train(was_training)
    out_np = {
        "logit": np.concatenate(logits).astype(np.float64) if logits else np.zeros(0),
        "features": np.concatenate(feats) if feats else np.zeros((0, model.num_features), np.float32),
    }
    if mc_passes:
        out_np["mc_logits"] = np.concatenate(mcs, axis=1) if mcs else np.zeros((mc_passes, 0))
    if boundary:
        out_np["boundary_score"] = np.concatenate(bounds) if bounds else np.zeros(0)
    return out_np


def bundle_predict(bundle, images: list[np.ndarray] | np.ndarray, batch_size: int = 64,
                   device: str | None = None) -> dict[str, np.ndarray]:
    """One loaded bundle on RGB uint8 face crops (N,H,W,3 or a list): frame ``logit``, calibrated
    ``score`` = sigmoid(logit / T) and ``features``."""
    device = device or default_device()
    out = model_frame_outputs(bundle.model.to(device), images, device, batch_size=batch_size)
    return {"logit": out["logit"], "score": sigmoid(out["logit"] / bundle.temperature), "features": out["features"]}


@dataclass
class Scorer:
    """Loaded checkpoint bundle(s) on one device: frame outputs and the temperature that calibrates them."""

    bundles: list
    device: str = "cpu"

    @classmethod
    def load(cls, checkpoints: str | list[str], device: str | None = None) -> Scorer:
        """Load one bundle (or an ensemble's members) onto ``device`` (default: the GPU if visible)."""
        from deepgen.models.bundle import load_bundle

        device = device or default_device()
        paths = [checkpoints] if isinstance(checkpoints, str) else list(checkpoints)
        return cls([load_bundle(p, map_location=device) for p in paths], device)

    @cached_property
    def ood(self) -> list | None:
        """Each member's fine-tuned domain check, or None unless every member has one (an ensemble checks
        only if all members can); built on first use, so a scorer that never scores a crop fits nothing."""
        oods = [load_ood(b) for b in self.bundles]
        return oods if all(o is not None for o in oods) else None

    @cached_property
    def frozen_ood(self) -> list:
        """Each member's frozen-backbone domain check (None for bundles trained before it)."""
        return [load_frozen_ood(b) for b in self.bundles]

    @property
    def model_id(self) -> str:
        return ensemble_model_id([b.model_id for b in self.bundles])

    @property
    def temperature(self) -> float:
        """T applied to the aggregated logit: the bundle's, or 1 for an ensemble (already calibrated)."""
        return self.bundles[0].temperature if len(self.bundles) == 1 else 1.0

    @property
    def temporal(self) -> TemporalFusion | None:
        """A single temporal bundle's fusion (pass it to :func:`aggregate_media`); None otherwise."""
        return TemporalFusion.of(self.bundles[0], self.device) if len(self.bundles) == 1 else None

    @property
    def operating_point(self) -> str:
        """Which decision point is in force (:func:`describe_operating_point`)."""
        return describe_operating_point(self.bundles)

    @property
    def input_size(self) -> int:
        return int(self.bundles[0].model.cfg.image_size)

    def frame_outputs(self, images: list[np.ndarray], mc_passes: int = 0, evidence: bool = False) -> dict:
        """Frame ``logit`` (ensembles: mean calibrated member logit), ``features``, ``ood`` (each crop's
        distance to the training features in threshold units; ensembles: the members' max) when the
        bundles record a domain check, and when asked ``mc_logits`` (scaled like ``logit``) and the
        artifact evidence of :data:`EVIDENCE`.

        Features, MC dropout and the boundary head come from the first member.
        """
        first = self.bundles[0]
        out = model_frame_outputs(first.model, images, self.device, mc_passes, boundary=evidence)
        rest = [model_frame_outputs(b.model, images, self.device) for b in self.bundles[1:]]
        if self.ood is not None:
            feats = [out["features"]] + [r["features"] for r in rest]
            parts = [o.frame_scores(f) for o, f in zip(self.ood, feats)]
            frozen: dict[int, np.ndarray] = {}  # frozen ImageNet features per input size, shared by the members
            for check in self.frozen_ood:
                if check is not None:
                    from deepgen.evaluation.frozen import frozen_features

                    if check.size not in frozen:
                        frozen[check.size] = frozen_features(images, check.size, self.device)
                    parts.append(check.frame_scores(frozen[check.size]))
            out["ood"] = np.max(parts, axis=0)
        if len(self.bundles) > 1:
            members = [out["logit"]] + [r["logit"] for r in rest]
            out["logit"] = combine_logits(members, temperatures=[b.temperature for b in self.bundles])
            if mc_passes:  # on the ensemble's calibrated scale
                out["mc_logits"] = out["mc_logits"] / first.temperature
        if evidence:
            from deepgen.artifacts import high_frequency_ratio, spectral_peak_score

            out["frequency_score"] = np.array([spectral_peak_score(im) for im in images], np.float64)
            out["hf_ratio"] = np.array([high_frequency_ratio(im) for im in images], np.float64)
        return out


    def explain(self, images: list[np.ndarray]) -> tuple[np.ndarray, str]:
        """Heat maps of the first member for face crops (boundary head's map, else Grad-CAM): (N, S, S), kind."""
        from deepgen.models.explain import heatmaps

        return heatmaps(self.bundles[0].model, images, self.device)


def load_ood(bundle):
    """The bundle's domain check (:class:`~deepgen.evaluation.ood.OodModel`), or None when it records none
    (no ``ood.json``); a record without its reference sample, or an invalid one, is one sentence."""
    from deepgen import storage
    from deepgen.errors import DeepgenError
    from deepgen.evaluation.ood import OodModel
    from deepgen.models.bundle import OOD, REFERENCE

    if "ood" not in bundle.extras:
        return None
    sample = bundle.reference.get("ood_sample")
    if sample is None:
        raise DeepgenError(f"{storage.join(bundle.uri, REFERENCE)} holds no ood_sample for the domain check "
                           f"{OOD} records; restore the bundle or retrain it.")
    return OodModel(bundle.extras["ood"], sample, where=storage.join(bundle.uri, OOD))


def load_bundles(checkpoints: str | list[str]) -> list:
    """Load each bundle and build its domain check here, on the CPU, so a bad bundle is refused in one
    sentence in the driver before any Ray actor loads it (an actor's error would surface as its death)."""
    from deepgen.models.bundle import load_bundle

    bundles = [load_bundle(p) for p in ([checkpoints] if isinstance(checkpoints, str) else list(checkpoints))]
    for b in bundles:
        load_ood(b)
        load_frozen_ood(b)
    return bundles


def load_frozen_ood(bundle):
    """The frozen-backbone part of the bundle's domain check (an :class:`~deepgen.evaluation.ood.OodModel`
    over :func:`~deepgen.evaluation.frozen.frozen_features`, with its input ``size``), or None for a bundle
    trained before it; a record without its sample, or an invalid one, is one sentence."""
    from deepgen import storage
    from deepgen.errors import DeepgenError
    from deepgen.evaluation.ood import OodModel
    from deepgen.models.bundle import OOD, REFERENCE

    record = bundle.extras.get("ood")
    if not isinstance(record, dict) or "frozen" not in record:
        return None
    sample = bundle.reference.get("ood_frozen_sample")
    if sample is None:
        raise DeepgenError(f"{storage.join(bundle.uri, REFERENCE)} holds no ood_frozen_sample for the frozen view "
                           f"{OOD} records; restore the bundle or retrain it.")
    return OodModel.frozen(record["frozen"], sample, where=storage.join(bundle.uri, OOD))


def describe_operating_point(bundles: list) -> str:
    """One line naming the decision point in force for loaded ``bundles``: the user's own real footage
    (``adapt threshold``), the balanced point on validation videos, or the raw logit's zero."""
    op = [b.extras.get("operating_point") for b in bundles]
    if all(isinstance(o, dict) for o in op):
        o = op[0]
        return (f"fitted on {o.get('n_videos')} of your real videos at a false-alarm rate of "
                f"{float(o.get('false_alarm', float('nan'))):g} (adapt threshold)")
    if all("logit_offset" in (b.metrics or {}) for b in bundles):
        return "balanced on the training domain's validation videos"
    return "the model's own (no fitted decision point)"


def frame_scores(logits: np.ndarray, temperature: float) -> np.ndarray:
    """Calibrated P(fake) of single crops, for timelines: sigmoid(frame logit / T)."""
    return sigmoid(np.asarray(logits, np.float64) / temperature)


@dataclass
class TemporalFusion:
    """A temporal bundle's head and the temperatures that fuse its clip logits with the frame logits."""

    model: object  # a TemporalDetector (its ``temporal_logits``)
    frame_temperature: float
    temporal_temperature: float
    temperature: float  # of the fused video logit
    device: str = "cpu"

    @classmethod
    def of(cls, bundle, device: str = "cpu") -> TemporalFusion | None:
        """The fusion of a loaded bundle, or None for a frame-only bundle."""
        rec = getattr(bundle, "extras", {}).get("temporal")
        if rec is None or not hasattr(bundle.model, "temporal_logits"):
            return None
        return cls(bundle.model, float(rec["frame_temperature"]), float(rec["temporal_temperature"]),
                   float(rec["fusion_temperature"]), device)


CLIP_COLUMNS = ("clip_index", "clip_pos")


def clip_groups(frames: pd.DataFrame, clip_len: int) -> list[np.ndarray]:
    """Row positions of each clip of ``frames`` (same media item, track and ``clip_index``), in ``clip_pos``
    order; a run longer than ``clip_len`` is cut into consecutive clips. Rows without a clip are left out."""
    if not all(c in frames.columns for c in CLIP_COLUMNS) or not len(frames):
        return []
    idx = pd.to_numeric(frames["clip_index"], errors="coerce").to_numpy(np.float64)
    pos = pd.to_numeric(frames["clip_pos"], errors="coerce").to_numpy(np.float64)
    ok = np.flatnonzero(np.isfinite(idx) & np.isfinite(pos))
    if not len(ok):
        return []
    tracks = (frames["track_id"].fillna(0).to_numpy(np.int64) if "track_id" in frames.columns
              else np.zeros(len(frames), np.int64))
    key = pd.DataFrame({"m": frames["media_id"].to_numpy()[ok], "t": tracks[ok], "c": idx[ok], "p": pos[ok],
                        "row": ok}).sort_values(["m", "t", "c", "p", "row"], kind="stable")
    out = []
    for _, g in key.groupby(["m", "t", "c"], sort=False):
        rows = g["row"].to_numpy()
        out.extend(rows[i : i + clip_len] for i in range(0, len(rows), clip_len))
    return out


def temporal_frame_logits(frames: pd.DataFrame, fusion: TemporalFusion) -> np.ndarray:
    """Each frame's clip logit from the temporal head (raw, before ``T_temporal``); NaN outside clips.

    Clips of equal length go through the head together, so the result does not depend on batching.
    """
    import torch

    z = np.full(len(frames), np.nan)
    model = fusion.model
    clips = clip_groups(frames, int(model.cfg.clip_len))
    if not clips or "features" not in frames.columns:
        return z
    feats = np.stack(frames["features"].to_numpy()).astype(np.float32)
    by_len: dict[int, list[np.ndarray]] = {}
    for rows in clips:
        by_len.setdefault(len(rows), []).append(rows)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for group in by_len.values():
                seq = torch.from_numpy(np.stack([feats[r] for r in group])).to(fusion.device)
                logits = model.temporal_logits(seq).float().cpu().numpy().astype(np.float64)
                for rows, v in zip(group, logits):
                    z[rows] = v
    finally:
        model.train(was_training)
    return z


def _track_max(values: np.ndarray, media: np.ndarray, tracks: np.ndarray, n_media: int) -> np.ndarray:
    """Per media item: the max over its tracks of the track's mean of ``values`` (..., N) -> (..., n_media)."""
    keys = media.astype(np.int64) * (int(tracks.max(initial=0)) + 1) + tracks.astype(np.int64)
    uniq, inv = np.unique(keys, return_inverse=True)
    counts = np.bincount(inv, minlength=len(uniq)).astype(np.float64)
    flat = values.reshape(-1, values.shape[-1])
    means = np.stack([np.bincount(inv, weights=row, minlength=len(uniq)) / counts for row in flat])
    track_media = uniq // (int(tracks.max(initial=0)) + 1)
    out = np.full((flat.shape[0], n_media), -np.inf)
    for j in range(flat.shape[0]):
        np.maximum.at(out[j], track_media, means[j])
    return out.reshape(values.shape[:-1] + (n_media,))


def aggregate_media(frames: pd.DataFrame, temperature: float, temporal: TemporalFusion | None = None
                    ) -> pd.DataFrame:
    """Frame rows -> one row per media item (sorted by ``media_id``).

    ``frames`` has ``media_id`` and ``logit``; optionally ``track_id`` (missing: one track),
    ``features`` (arrays), ``mc_logits`` (arrays, one value per MC pass) and evidence columns.
    Returns ``media_id``, ``logit`` (video logit, before ``temperature``), ``score``, ``score_raw``
    (T = 1), ``uncertainty``, ``mutual_info`` (NaN without MC passes), ``n_faces``, ``n_tracks``,
    the mean ``features`` and the mean evidence columns; with an ``ood`` frame column also
    ``ood_score`` (its mean) and ``in_domain`` (``ood_score <= 1``). With ``temporal`` (a temporal
    bundle's fusion; ``frames`` then need ``features``, ``clip_index`` and ``clip_pos``) the logit is the
    fused one, ``temperature`` is the fusion's, and ``temporal_score`` is added (see the module docstring).
    """
    ids, media = np.unique(frames["media_id"].to_numpy(), return_inverse=True)
    tracks = (frames["track_id"].fillna(0).to_numpy(np.int64) if "track_id" in frames.columns
              else np.zeros(len(frames), np.int64))
    frame_z = frames["logit"].to_numpy(np.float64)
    if temporal is not None:
        zt = temporal_frame_logits(frames, temporal) / temporal.temporal_temperature
        frame_z = frame_z / temporal.frame_temperature + np.nan_to_num(zt, nan=0.0)
        temperature = temporal.temperature
    z = _track_max(frame_z, media, tracks, len(ids))
    n_faces = np.bincount(media, minlength=len(ids))
    score = sigmoid(z / temperature)
    out = pd.DataFrame({
        "media_id": ids, "logit": z, "score": score, "score_raw": sigmoid(z), "uncertainty": binary_entropy(score),
        "mutual_info": np.full(len(ids), np.nan), "n_faces": n_faces,
        "n_tracks": [len(set(tracks[media == i].tolist())) for i in range(len(ids))],
    })
    if "mc_logits" in frames.columns and len(frames):
        mc = np.stack(frames["mc_logits"].to_numpy()).T  # passes x frames
        samples = sigmoid(_track_max(mc, media, tracks, len(ids)) / temperature)
        out["mutual_info"] = mc_uncertainty(samples)["mutual_information"]
    if "features" in frames.columns and len(frames):
        feats = np.stack(frames["features"].to_numpy()).astype(np.float64)
        sums = np.zeros((len(ids), feats.shape[1]))
        np.add.at(sums, media, feats)
        out["features"] = list((sums / n_faces[:, None]).astype(np.float32))
    for c in EVIDENCE:
        if c in frames.columns:
            out[c] = np.bincount(media, weights=frames[c].to_numpy(np.float64), minlength=len(ids)) / n_faces
    if "ood" in frames.columns:
        out["ood_score"] = np.bincount(media, weights=frames["ood"].to_numpy(np.float64), minlength=len(ids)) / n_faces
        out["in_domain"] = out["ood_score"] <= 1.0
    if temporal is not None:
        has = np.isfinite(zt)
        zt_video = (_track_max(zt[has], media[has], tracks[has], len(ids)) if has.any()
                    else np.full(len(ids), -np.inf))
        out["temporal_score"] = np.where(np.isfinite(zt_video), sigmoid(zt_video), np.nan)
    return out


class BundleActor:
    """Base of the Ray model actors: the bundle(s) loaded once per actor, on its GPU if it has one."""

    def __init__(self, checkpoint: str | list[str], mc_passes: int = 0, evidence: bool = False, explain: int = 0):
        import torch

        device = default_device()
        if device == "cpu":
            torch.set_num_threads(1)
        self.scorer = Scorer.load(checkpoint, device)
        self.model_id = self.scorer.model_id
        self.mc_passes, self.evidence, self.explain = mc_passes, evidence, explain
