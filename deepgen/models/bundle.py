"""The checkpoint bundle (DESIGN.md contract): a directory, local or ``s3://``, holding

``model.safetensors`` (weights), ``config.json`` (model + recipe), ``calibration.json`` (global and
per-domain temperatures), ``reference_features.npz`` (feature mean, covariance and a small sample, for
shift tests), ``datasets.json`` (training data), ``metrics.json`` (what it was selected on), and any
extra JSON records (e.g. ``alignment.json``).

``model_id`` covers everything that changes a score: it is the first 16 hex digits of the SHA-256 of
the weights' SHA-256, the preprocessing digest and the calibration digest (:func:`bundle_model_id`).
The digests are written into ``config.json`` at save time (``digests``) and checked at load: the
preprocessing (input size, normalisation, crop margin, alignment) and the calibration (temperatures,
each finite and > 0) must be what was saved, or the load is refused in one sentence. Records this
module does not know (other JSON files, other keys) are carried and never checked.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from deepgen import storage
from deepgen.errors import DeepgenError

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
CALIBRATION = "calibration.json"
REFERENCE = "reference_features.npz"
DATASETS = "datasets.json"
METRICS = "metrics.json"
CORE_FILES = (WEIGHTS, CONFIG, CALIBRATION, REFERENCE, DATASETS, METRICS)
OWNER_MARKERS = (REFERENCE,)  # a file only deepgen names so: a bundle folder deepgen wrote (storage.remove_owned)
REFERENCE_SAMPLE = 256


def weights_model_id(weights: bytes) -> str:
    """SHA-256 of the safetensors bytes, first 16 hex digits (one part of :func:`bundle_model_id`)."""
    return hashlib.sha256(weights).hexdigest()[:16]


def _digest(record: Any) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def preprocessing_record(model: dict, faces: dict | None) -> dict:
    """What turns a face into the model's input: input size, normalisation (as recorded; null = the
    backbone's default), and the crop margin and alignment of the training faces (null when unknown)."""
    def triple(v):
        return None if v is None else [float(x) for x in v]

    faces = faces or {}
    return {
        "image_size": model.get("image_size"),
        "input_mean": triple(model.get("input_mean")),
        "input_std": triple(model.get("input_std")),
        "crop_margin": None if faces.get("margin") is None else float(faces["margin"]),
        "crop_align": None if faces.get("align") is None else bool(faces["align"]),
    }


TEMPORAL_TEMPERATURES = ("frame_temperature", "temporal_temperature", "fusion_temperature")


def calibration_record(temperature: float, domain_temperatures: dict[str, float],
                       temporal: dict | None = None) -> dict:
    """The calibration a score uses: the global and the per-domain temperatures, and a temporal
    bundle's fusion temperatures (``temporal.json``), each checked finite and > 0."""
    record = {"temperature": float(temperature),
              "domain_temperatures": {str(k): float(v) for k, v in sorted(domain_temperatures.items())}}
    if temporal is not None:
        record["temporal"] = {k: check_temperature(temporal.get(k), f"{k} in temporal.json")
                              for k in TEMPORAL_TEMPERATURES}
    return record


def bundle_model_id(weights: bytes, preprocessing: dict, calibration: dict) -> str:
    """The model id: first 16 hex digits of SHA-256 over the weights, preprocessing and calibration."""
    parts = [hashlib.sha256(weights).hexdigest(), _digest(preprocessing), _digest(calibration)]
    return hashlib.sha256("+".join(parts).encode()).hexdigest()[:16]


def check_temperature(value: Any, where: str) -> float:
    """A calibration temperature as a float, or a one-sentence error unless it is a finite number > 0."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0
    if not ok:
        raise DeepgenError(f"{where} is {value!r}, but a temperature must be a finite number > 0 "
                           "(0 or less inverts or breaks every score); restore the bundle or retrain it.")
    return float(value)


def reference_stats(features: np.ndarray, labels: np.ndarray | None = None,
                    max_sample: int = REFERENCE_SAMPLE, seed: int = 0) -> dict[str, np.ndarray]:
    """Mean, covariance and a seeded random sample (<= ``max_sample`` rows) of reference features."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise DeepgenError(f"reference features have shape {x.shape}; pass an (N, d) array with N >= 2.")
    idx = np.sort(np.random.default_rng(seed).permutation(len(x))[:max_sample])
    out = {
        "mean": x.mean(0),
        "cov": np.cov(x, rowvar=False).reshape(x.shape[1], x.shape[1]),
        "sample": x[idx].astype(np.float32),
        "n": np.array(len(x)),
    }
    if labels is not None:
        out["sample_labels"] = np.asarray(labels)[idx].astype(np.int8)
    return out


def _json(obj: Any) -> bytes:
    def default(o):
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        raise TypeError(f"{type(o).__name__} is not JSON serializable")

    def clean(o):  # NaN is not JSON: write null
        if isinstance(o, float) and not math.isfinite(o):
            return None
        if isinstance(o, dict):
            return {str(k): clean(v) for k, v in o.items()}
        if isinstance(o, list | tuple):
            return [clean(v) for v in o]
        return o

    return json.dumps(clean(obj), indent=2, sort_keys=True, default=default).encode()


def save_bundle(
    out: str,
    model,
    recipe: dict | None = None,
    temperature: float = 1.0,
    domain_temperatures: dict[str, float] | None = None,
    reference: dict[str, np.ndarray] | np.ndarray | None = None,
    datasets: list[str] | dict | None = None,
    metrics: dict | None = None,
    extras: dict[str, dict] | None = None,
    overwrite: bool = False,
    inputs: list[str] | tuple[str, ...] = (),
) -> str:
    """Write ``model`` (a :class:`~deepgen.models.Detector`) and its records to ``out`` atomically; return the model id.

    ``reference`` is either the dict of :func:`reference_stats` or a raw (N, d) feature array.
    ``extras`` maps a name to a JSON record stored as ``<name>.json``.
    """
    from safetensors.torch import save as st_save

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    weights = st_save(state)
    temperature = check_temperature(temperature, f"the temperature to save in {out}")
    domain_temperatures = {str(k): check_temperature(v, f"the temperature of domain {k!r} to save in {out}")
                           for k, v in (domain_temperatures or {}).items()
                           if not (isinstance(v, float) and math.isnan(v))}  # NaN: no temperature of its own
    model_cfg = asdict(model.cfg)
    preprocessing = preprocessing_record(model_cfg, (extras or {}).get("faces"))
    calib = calibration_record(temperature, domain_temperatures, (extras or {}).get("temporal"))
    model_id = bundle_model_id(weights, preprocessing, calib)
    if reference is None:
        raise DeepgenError("save_bundle needs reference features; pass the training features for shift tests.")
    ref = reference if isinstance(reference, dict) else reference_stats(reference)
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in ref.items()})
    config = {"model": model_cfg, "recipe": recipe or {}, "model_id": model_id, "preprocessing": preprocessing,
              "digests": {"preprocessing": _digest(preprocessing), "calibration": _digest(calib)}}
    calibration = dict(calib)
    for name in extras or {}:
        if f"{name}.json" in CORE_FILES:
            raise DeepgenError(f"extra record {name!r} collides with a bundle file; choose another name.")
    with storage.atomic_dir(out, overwrite=overwrite, inputs=inputs, markers=OWNER_MARKERS) as tmp:
        storage.write_bytes(storage.join(tmp, WEIGHTS), weights)
        storage.write_bytes(storage.join(tmp, CONFIG), _json(config))
        storage.write_bytes(storage.join(tmp, CALIBRATION), _json(calibration))
        storage.write_bytes(storage.join(tmp, REFERENCE), buf.getvalue())
        storage.write_bytes(storage.join(tmp, DATASETS), _json(datasets if datasets is not None else []))
        storage.write_bytes(storage.join(tmp, METRICS), _json(metrics or {}))
        for name, record in (extras or {}).items():
            storage.write_bytes(storage.join(tmp, f"{name}.json"), _json(record))
    return model_id


@dataclass
class Bundle:
    """A loaded checkpoint bundle: the model in eval mode plus everything stored beside it."""

    uri: str
    model: Any  # deepgen.models.Detector
    config: dict
    temperature: float
    domain_temperatures: dict[str, float]
    reference: dict[str, np.ndarray]
    datasets: Any
    metrics: dict
    model_id: str
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def model_config(self):
        return self.model.cfg


def is_bundle(uri: str) -> bool:
    return storage.exists(storage.join(uri, WEIGHTS)) and storage.exists(storage.join(uri, CONFIG))


def _check_bundle(uri: str) -> None:
    try:
        ok = is_bundle(uri)
    except Exception as e:  # unreadable location (bad scheme, no credentials, ...)
        raise DeepgenError(f"{uri} could not be read as a checkpoint bundle ({e}); check the path.") from e
    if not ok:
        raise DeepgenError(
            f"{uri} is not a checkpoint bundle (no {WEIGHTS} and {CONFIG}); pass a directory written by `deepgen train`."
        )


def read_model_config(uri: str):
    """The bundle's :class:`~deepgen.models.ModelConfig` (validated), without loading any weights."""
    from deepgen.models import ModelConfig

    _check_bundle(uri)
    try:
        config = json.loads(storage.read_bytes(storage.join(uri, CONFIG)))
    except ValueError as e:
        raise DeepgenError(f"{storage.join(uri, CONFIG)} is not valid JSON ({e}); rewrite the bundle.") from e
    return ModelConfig.from_dict(config.get("model", {}), where=f"bundle {uri}")


def _read_json(uri: str, name: str, default: Any) -> Any:
    path = storage.join(uri, name)
    if not storage.exists(path):
        return default
    try:
        return json.loads(storage.read_bytes(path))
    except ValueError as e:
        raise DeepgenError(f"{path} is not valid JSON ({e}); restore the bundle or retrain it.") from e


def _check_records(uri: str, config: dict, calibration: dict, faces: dict | None,
                   temporal: dict | None = None) -> tuple[float, dict, dict, dict]:
    """Validate the calibration and compare preprocessing and calibration with the digests saved beside
    them; returns (temperature, domain temperatures, preprocessing record, calibration record)."""
    if not isinstance(calibration, dict) or "temperature" not in calibration:
        raise DeepgenError(f"{storage.join(uri, CALIBRATION)} records no temperature; restore the bundle or retrain it.")
    temperature = check_temperature(calibration["temperature"], f"the temperature in {storage.join(uri, CALIBRATION)}")
    domains = calibration.get("domain_temperatures") or {}
    if not isinstance(domains, dict):
        raise DeepgenError(f"domain_temperatures in {storage.join(uri, CALIBRATION)} is not a mapping; restore the "
                           "bundle or retrain it.")
    domain_temperatures = {str(k): check_temperature(v, f"the temperature of domain {k!r} in "
                                                        f"{storage.join(uri, CALIBRATION)}")
                           for k, v in domains.items() if v is not None}
    preprocessing = preprocessing_record(config.get("model", {}), faces)
    calib = calibration_record(temperature, domain_temperatures, temporal)
    digests = config.get("digests")
    if not isinstance(digests, dict):
        warnings.warn(f"bundle {uri} records no preprocessing digest (written by an older deepgen), so its "
                      "preprocessing cannot be checked; retrain it to add one.", stacklevel=3)
        return temperature, domain_temperatures, preprocessing, calib
    if digests.get("preprocessing") != _digest(preprocessing):
        saved = config.get("preprocessing") if isinstance(config.get("preprocessing"), dict) else {}
        changed = [k for k in preprocessing if k in saved and saved[k] != preprocessing[k]]
        what = ", ".join(f"{k} {saved[k]!r} -> {preprocessing[k]!r}" for k in changed) or "its recorded values"
        raise DeepgenError(f"bundle {uri} was trained with other preprocessing than its config now says ({what}), "
                           "so its scores would be wrong; restore config.json and faces.json or retrain it.")
    if digests.get("calibration") != _digest(calib):
        raise DeepgenError(f"bundle {uri} has calibration.json edited since it was saved (its temperatures no longer "
                           "match the saved digest), so its scores would be wrong; restore it or retrain the bundle.")
    return temperature, domain_temperatures, preprocessing, calib


def _load_weights(uri: str, model, weights: bytes) -> None:
    """Load the safetensors bytes into ``model``; a damaged file or a backbone mismatch is one sentence."""
    from safetensors.torch import load as st_load

    path = storage.join(uri, WEIGHTS)
    try:
        state = st_load(weights)
    except Exception as e:
        raise DeepgenError(f"{path} is damaged or truncated ({len(weights)} bytes could not be read as "
                           "safetensors); copy the bundle again or retrain it.") from e
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or mismatched:
        example = (mismatched or missing or unexpected)[0]
        raise DeepgenError(
            f"the weights in {path} do not fit the model config.json describes (backbone "
            f"{model.cfg.backbone!r}: {len(missing)} missing, {len(unexpected)} unexpected and {len(mismatched)} "
            f"differently shaped tensors, e.g. {example!r}); restore the bundle's config.json or retrain it.")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise DeepgenError(f"the weights in {path} do not fit the model config.json describes "
                           f"({str(e).splitlines()[0]}); restore the bundle's config.json or retrain it.") from e


def load_bundle(uri: str, map_location: str = "cpu") -> Bundle:
    """Load a bundle written by :func:`save_bundle`; the model comes back in eval mode.

    The calibration and preprocessing are checked against the digests saved with them (see the module
    docstring); an inconsistent, truncated or mismatched bundle is refused in one sentence.
    """
    from deepgen.models import create_detector

    cfg = read_model_config(uri)
    config = _read_json(uri, CONFIG, {})
    calibration = _read_json(uri, CALIBRATION, {})
    extras = {}
    fs, path = storage.get_fs(uri)
    with storage.remote_errors(uri):
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)]
    for name in names:
        if name.endswith(".json") and name not in CORE_FILES:
            extras[name[: -len(".json")]] = _read_json(uri, name, None)
    faces = extras.get("faces") if isinstance(extras.get("faces"), dict) else None
    temporal = extras.get("temporal") if isinstance(extras.get("temporal"), dict) else None
    temperature, domain_temperatures, preprocessing, calib = _check_records(uri, config, calibration, faces,
                                                                            temporal)
    weights = storage.read_bytes(storage.join(uri, WEIGHTS))
    model = create_detector(cfg)
    _load_weights(uri, model, weights)
    model.to(map_location).eval()
    ref_path = storage.join(uri, REFERENCE)
    reference: dict[str, np.ndarray] = {}
    if storage.exists(ref_path):
        with np.load(io.BytesIO(storage.read_bytes(ref_path))) as npz:
            reference = {k: npz[k] for k in npz.files}
    return Bundle(
        uri=uri,
        model=model,
        config=config,
        temperature=temperature,
        domain_temperatures=domain_temperatures,
        reference=reference,
        datasets=_read_json(uri, DATASETS, []),
        metrics=_read_json(uri, METRICS, {}),
        model_id=bundle_model_id(weights, preprocessing, calib),
        extras=extras,
    )
