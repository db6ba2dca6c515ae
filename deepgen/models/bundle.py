"""The checkpoint bundle (DESIGN.md contract): a directory, local or ``s3://``, holding

``model.safetensors`` (weights), ``config.json`` (model + recipe), ``calibration.json`` (global and
per-domain temperatures), ``reference_features.npz`` (feature mean, covariance and a small sample, for
shift tests), ``datasets.json`` (training data), ``metrics.json`` (what it was selected on), and any
extra JSON records (e.g. ``alignment.json``).

``model_id`` covers everything that changes a score or a flag: it is the first 16 hex digits of the
SHA-256 of the weights' SHA-256, the preprocessing digest, the calibration digest and the digest of the
scored records (:data:`SCORED_FILES`: the domain check's ``ood.json`` and ``reference_features.npz``, a
temporal bundle's ``temporal.json``; :func:`bundle_model_id`). The digests are written into
``config.json`` at save time (``digests``) and checked at load: the preprocessing (input size,
normalisation, crop margin, alignment), the calibration (temperatures, each finite and > 0) and each
scored record must be what was saved, or the load is refused in one sentence naming the file that was
added, removed or edited. The reference features are checked for shape against the model. A bundle
saved before a digest existed loads with one warning line and its old ``model_id``. Records this module
does not know (other JSON files, other keys) are carried and never checked.
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
OOD = "ood.json"
TEMPORAL = "temporal.json"
SCORED_FILES = (OOD, REFERENCE, TEMPORAL)  # besides weights, config and calibration: records a score or flag reads
MAPPING_RECORDS = ("faces", "temporal")  # JSON records this module reads as mappings (a list there is damage)


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


def bundle_model_id(weights: bytes, preprocessing: dict, calibration: dict, files: dict | None = None) -> str:
    """The model id: first 16 hex digits of SHA-256 over the weights, preprocessing, calibration and the
    scored records' digests (``files``, :func:`scored_digests`; None for a bundle saved before them)."""
    parts = [hashlib.sha256(weights).hexdigest(), _digest(preprocessing), _digest(calibration)]
    if files is not None:
        parts.append(_digest(files))
    return hashlib.sha256("+".join(parts).encode()).hexdigest()[:16]


def _arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def scored_digests(records: dict[str, Any], reference: dict[str, np.ndarray] | None) -> dict[str, str]:
    """Digest of each present file of :data:`SCORED_FILES`: ``records`` maps a JSON record's name (``ood``)
    to its content as read back, ``reference`` is the arrays of ``reference_features.npz``."""
    out = {f"{name}.json": _digest(rec) for name, rec in records.items()
           if f"{name}.json" in SCORED_FILES and rec is not None}
    if reference is not None:
        out[REFERENCE] = _arrays_digest(reference)
    return dict(sorted(out.items()))


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
    if reference is None:
        raise DeepgenError("save_bundle needs reference features; pass the training features for shift tests.")
    ref = reference if isinstance(reference, dict) else reference_stats(reference)
    arrays = {k: np.asarray(v) for k, v in ref.items()}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    files = scored_digests({k: json.loads(_json(v)) for k, v in (extras or {}).items()}, arrays)
    model_id = bundle_model_id(weights, preprocessing, calib, files)
    config = {"model": model_cfg, "recipe": recipe or {}, "model_id": model_id, "preprocessing": preprocessing,
              "digests": {"preprocessing": _digest(preprocessing), "calibration": _digest(calib), "files": files}}
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


def _check_files(uri: str, digests: Any, present: dict[str, str]) -> dict[str, str] | None:
    """Compare the scored records now in the bundle (``present``: name -> digest) with those saved in
    ``config.json``; returns the saved digests (None for a bundle saved before them)."""
    files = digests.get("files") if isinstance(digests, dict) else None
    if not isinstance(files, dict):
        return None
    changes = []
    for name in sorted(set(files) | set(present)):
        if name not in files:
            changes.append(f"{name} added")
        elif name not in present:
            changes.append(f"{name} removed")
        elif files[name] != present[name]:
            changes.append(f"{name} edited")
    if changes:
        raise DeepgenError(f"bundle {uri} has {', '.join(changes)} since it was saved (it no longer matches the "
                           "digest in config.json), so its scores or domain flags would be wrong; restore the "
                           "bundle or retrain it.")
    return files


def _check_records(uri: str, config: dict, calibration: dict, faces: dict | None,
                   temporal: dict | None = None, present: dict[str, str] | None = None
                   ) -> tuple[float, dict, dict, dict, dict | None]:
    """Validate the calibration and compare the scored records (``present``, :func:`scored_digests`),
    preprocessing and calibration with the digests saved beside them; returns (temperature, domain
    temperatures, preprocessing record, calibration record, scored records' digests or None when older)."""
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
        warnings.warn(f"bundle {uri} records no digests (written by an older deepgen), so edits to its "
                      "preprocessing, calibration and domain check cannot be detected; retrain it to add them.",
                      stacklevel=3)
        return temperature, domain_temperatures, preprocessing, calib, None
    files = _check_files(uri, digests, present or {})
    if files is None:
        warnings.warn(f"bundle {uri} records no digests of {', '.join(SCORED_FILES)} (written by an older "
                      "deepgen), so edits to its domain check cannot be detected; retrain it to add them.",
                      stacklevel=3)
    if digests.get("preprocessing") != _digest(preprocessing):
        saved = config.get("preprocessing") if isinstance(config.get("preprocessing"), dict) else {}
        changed = [k for k in preprocessing if k in saved and saved[k] != preprocessing[k]]
        what = ", ".join(f"{k} {saved[k]!r} -> {preprocessing[k]!r}" for k in changed) or "its recorded values"
        raise DeepgenError(f"bundle {uri} was trained with other preprocessing than its config now says ({what}), "
                           "so its scores would be wrong; restore config.json and faces.json or retrain it.")
    if digests.get("calibration") != _digest(calib):
        if files is not None:  # temporal.json already matched its own digest
            what = f"{CALIBRATION} edited"
        elif temporal is not None and digests.get("calibration") == _digest(
                calibration_record(temperature, domain_temperatures)):
            what = f"{TEMPORAL} added"
        elif temporal is None:
            what = f"{CALIBRATION} edited or {TEMPORAL} removed"
        else:
            what = f"{CALIBRATION} or {TEMPORAL} edited"
        raise DeepgenError(f"bundle {uri} has {what} since it was saved (its temperatures no longer match the "
                           "saved digest), so its scores would be wrong; restore it or retrain the bundle.")
    return temperature, domain_temperatures, preprocessing, calib, files


def _read_reference(uri: str) -> dict[str, np.ndarray] | None:
    """The arrays of ``reference_features.npz`` (None when absent); a damaged file is one sentence."""
    path = storage.join(uri, REFERENCE)
    if not storage.exists(path):
        return None
    try:
        with np.load(io.BytesIO(storage.read_bytes(path))) as npz:
            return {k: npz[k] for k in npz.files}
    except Exception as e:  # not a zip, truncated, pickled objects: the same to the user
        raise DeepgenError(f"{path} is damaged or not a numpy .npz archive ({type(e).__name__}); restore the "
                           "bundle or retrain it.") from e


def _check_reference(uri: str, reference: dict[str, np.ndarray], d: int) -> None:
    """The reference arrays the shift test and the domain check read fit the model's ``d`` features."""
    path = storage.join(uri, REFERENCE)
    rows = {"sample": None, "ood_sample": None}
    expected = {"mean": (d,), "cov": (d, d), **rows}
    for key, shape in expected.items():
        if key not in reference:
            continue
        a = reference[key]
        ok = a.dtype.kind in "fiu" and (a.shape == shape if shape is not None else a.ndim == 2 and a.shape[1] == d
                                        and a.shape[0] >= 1)
        if ok and not np.isfinite(a).all():
            raise DeepgenError(f"{key!r} in {path} holds NaN or infinite values; restore the bundle or retrain it.")
        if not ok:
            want = "x".join(map(str, shape)) if shape is not None else f"N x {d}"
            raise DeepgenError(f"{key!r} in {path} has shape {'x'.join(map(str, a.shape)) or 'scalar'} ({a.dtype}), "
                               f"but the model's features need {want} numbers; restore the bundle or retrain it.")


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

    The scored records, calibration and preprocessing are checked against the digests saved with them
    and the reference features against the model (see the module docstring); an inconsistent, truncated
    or mismatched bundle is refused in one sentence.
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
    for name in MAPPING_RECORDS:
        if name in extras and not isinstance(extras[name], dict):
            raise DeepgenError(f"{storage.join(uri, name + '.json')} holds a {type(extras[name]).__name__}, not a "
                               "mapping of fields; restore the bundle or retrain it.")
    reference = _read_reference(uri)
    faces, temporal = extras.get("faces"), extras.get("temporal")
    temperature, domain_temperatures, preprocessing, calib, files = _check_records(
        uri, config, calibration, faces, temporal, scored_digests(extras, reference))
    weights = storage.read_bytes(storage.join(uri, WEIGHTS))
    model = create_detector(cfg)
    _load_weights(uri, model, weights)
    model.to(map_location).eval()
    _check_reference(uri, reference or {}, int(model.num_features))
    return Bundle(
        uri=uri,
        model=model,
        config=config,
        temperature=temperature,
        domain_temperatures=domain_temperatures,
        reference=reference or {},
        datasets=_read_json(uri, DATASETS, []),
        metrics=_read_json(uri, METRICS, {}),
        model_id=bundle_model_id(weights, preprocessing, calib, files),
        extras=extras,
    )
