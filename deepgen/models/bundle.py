"""The checkpoint bundle (DESIGN.md contract): a directory, local or ``s3://``, holding

``model.safetensors`` (weights), ``config.json`` (model + recipe), ``calibration.json`` (global and
per-domain temperatures), ``reference_features.npz`` (feature mean, covariance and a small sample, for
shift tests), ``datasets.json`` (training data), ``metrics.json`` (what it was selected on), and any
extra JSON records (e.g. ``alignment.json``). ``model_id`` is the first 16 hex digits of the SHA-256
of the weights file, so the same weights always get the same id.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
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
REFERENCE_SAMPLE = 256


def weights_model_id(weights: bytes) -> str:
    """The bundle's model id: SHA-256 of the safetensors bytes, first 16 hex digits."""
    return hashlib.sha256(weights).hexdigest()[:16]


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
    model_id = weights_model_id(weights)
    if reference is None:
        raise DeepgenError("save_bundle needs reference features; pass the training features for shift tests.")
    ref = reference if isinstance(reference, dict) else reference_stats(reference)
    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in ref.items()})
    config = {"model": asdict(model.cfg), "recipe": recipe or {}, "model_id": model_id}
    calibration = {"temperature": float(temperature), "domain_temperatures": dict(domain_temperatures or {})}
    for name in extras or {}:
        if f"{name}.json" in CORE_FILES:
            raise DeepgenError(f"extra record {name!r} collides with a bundle file; choose another name.")
    with storage.atomic_dir(out, overwrite=overwrite, inputs=inputs) as tmp:
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

    def predict(self, images, batch_size: int = 64, device: str | None = None) -> dict[str, np.ndarray]:
        """Logits, calibrated P(fake) and features for RGB uint8 face crops (N,H,W,3 or a list)."""
        from deepgen.evaluation.calibration import sigmoid
        from deepgen.inference import default_device, model_frame_outputs

        device = device or default_device()
        out = model_frame_outputs(self.model.to(device), images, device, batch_size=batch_size)
        return {"logit": out["logit"], "score": sigmoid(out["logit"] / self.temperature),
                "features": out["features"]}


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


def load_bundle(uri: str, map_location: str = "cpu") -> Bundle:
    """Load a bundle written by :func:`save_bundle`; the model comes back in eval mode."""
    from safetensors.torch import load as st_load

    from deepgen.models import create_detector

    cfg = read_model_config(uri)

    def read_json(name: str, default: Any) -> Any:
        path = storage.join(uri, name)
        return json.loads(storage.read_bytes(path)) if storage.exists(path) else default

    weights = storage.read_bytes(storage.join(uri, WEIGHTS))
    config = read_json(CONFIG, {})
    model = create_detector(cfg)
    state = st_load(weights)
    model.load_state_dict(state)
    model.to(map_location).eval()
    calibration = read_json(CALIBRATION, {})
    ref_path = storage.join(uri, REFERENCE)
    reference: dict[str, np.ndarray] = {}
    if storage.exists(ref_path):
        with np.load(io.BytesIO(storage.read_bytes(ref_path))) as npz:
            reference = {k: npz[k] for k in npz.files}
    fs, path = storage.get_fs(uri)
    extras = {}
    for p in fs.ls(path, detail=False):
        name = p.rstrip("/").rsplit("/", 1)[-1]
        if name.endswith(".json") and name not in CORE_FILES:
            extras[name[: -len(".json")]] = json.loads(storage.read_bytes(storage.join(uri, name)))
    temperature = calibration.get("temperature")
    return Bundle(
        uri=uri,
        model=model,
        config=config,
        temperature=float(temperature) if temperature else 1.0,
        domain_temperatures={k: float(v) for k, v in calibration.get("domain_temperatures", {}).items()
                             if v is not None},
        reference=reference,
        datasets=read_json(DATASETS, []),
        metrics=read_json(METRICS, {}),
        model_id=weights_model_id(weights),
        extras=extras,
    )
