"""Adaptation applied to checkpoint bundles: the result is an ordinary bundle, so scoring and
evaluation need no change.

Alignment is folded into the classifier: for the aligned feature ``A f + c`` the head's logit
``w (A f + c) + b`` equals a linear layer with weight ``w A`` and bias ``w c + b`` on the raw
feature. Few-shot adaptation replaces the classifier's linear layer by the adapted one.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from deepgen import storage
from deepgen.adapt.align import fit_alignment_from_stats
from deepgen.adapt.fewshot import adapt_head, finetune_head, make_tasks, meta_train_fomaml
from deepgen.errors import DeepgenError
from deepgen.models.bundle import OWNER_MARKERS


def _features(checkpoint: str, faces: list[str], split: str = "all",
              labels: dict[str, int] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Backbone features, labels and methods of every face (scored on Ray); with ``labels`` (media_id ->
    label) only the faces of those media, labelled as given instead of as the table says."""
    from deepgen.evaluation.run import _load_faces, score_frames

    table = _load_faces(faces, split, [])
    if labels is not None:
        table = _relabel(table, labels, faces)
    frames = score_frames(table, checkpoint)
    return (np.stack(frames["features"].to_numpy()).astype(np.float32), frames["label"].to_numpy().astype(int),
            frames["method"].astype(str).to_numpy())


def _relabel(table: pa.Table, labels: dict[str, int], faces: list[str]) -> pa.Table:
    """The rows of ``table`` whose media_id ``labels`` names, with the label column replaced by it."""
    ids = table.column("media_id").to_pylist()
    keep = [i for i, m in enumerate(ids) if m in labels]
    if not keep:
        raise DeepgenError(f"none of the {len(labels)} items marked real or fake has faces in {', '.join(faces)}; "
                           "pass the faces tables extracted from the media the review page shows (--support).")
    table = table.take(keep)
    new = pa.array([labels[m] for m in table.column("media_id").to_pylist()], table.schema.field("label").type)
    return table.set_column(table.schema.get_field_index("label"), "label", new)


def _linear(bundle) -> torch.nn.Linear:
    return bundle.model.classifier[1]


def _save(bundle, out: str, extras: dict, overwrite: bool, inputs: list[str]) -> str:
    from deepgen.models.bundle import save_bundle

    return save_bundle(out, bundle.model, recipe=bundle.config.get("recipe"), temperature=bundle.temperature,
                       domain_temperatures=bundle.domain_temperatures, reference=bundle.reference,
                       datasets=bundle.datasets, metrics=bundle.metrics, extras={**bundle.extras, **extras},
                       overwrite=overwrite, inputs=inputs)


def align_bundle(checkpoint: str, target_faces: list[str], out: str, method: str = "coral", eps: float = 0.1,
                 address: str | None = None, overwrite: bool = False) -> dict:
    """Fit moment matching or CORAL of the target domain's features onto the bundle's training
    features and write the aligned bundle to ``out``. Target labels are not used."""
    from deepgen.models.bundle import load_bundle
    from deepgen.runtime import init_ray

    inputs = [checkpoint, *target_faces]
    storage.check_output_path(out, inputs=inputs, overwrite=overwrite, markers=OWNER_MARKERS)  # before any work
    bundle = load_bundle(checkpoint)
    if "mean" not in bundle.reference or "cov" not in bundle.reference:
        raise DeepgenError(f"{checkpoint} stores no reference feature statistics; retrain it with `deepgen train`.")
    init_ray(address)
    feats, _, _ = _features(checkpoint, target_faces)
    alignment = fit_alignment_from_stats(bundle.reference["mean"], bundle.reference["cov"], feats, method, eps)
    lin = _linear(bundle)
    with torch.no_grad():
        w = lin.weight.double().numpy()  # (1, d)
        lin.weight.copy_(torch.from_numpy(w @ alignment.weight).float())
        lin.bias.copy_(torch.from_numpy(w @ alignment.bias + lin.bias.double().numpy()).float())
    model_id = _save(bundle, out, {"alignment": {**alignment.to_dict(), "source_checkpoint": checkpoint,
                                                  "target_faces": list(target_faces), "n_target": len(feats)}},
                     overwrite, inputs)
    return {"out": out, "model_id": model_id, "method": method, "n_target_faces": len(feats)}


def fewshot_bundle(checkpoint: str, support: list[str], out: str, k: int = 5, method: str = "fomaml",
                   meta_faces: list[str] | None = None, steps: int = 50, lr: float = 1e-2, inner_lr: float = 0.5,
                   seed: int = 0, address: str | None = None, overwrite: bool = False,
                   labels: str | None = None, scores: str | None = None) -> dict:
    """Adapt the bundle's head to a new manipulation from ``k`` labelled support faces per class.

    ``finetune``: fine-tune the head on the support set. ``fomaml``: first-order MAML across the
    manipulation types of ``meta_faces`` (tasks = one method vs reals), then the inner loop on the
    support set, with the inner-loop settings recorded in the bundle. With ``labels`` (the review
    page's verdicts CSV, made on the scores table ``scores``) the support set is the faces in
    ``support`` of the items the analyst marked real or fake, labelled as the analyst said.
    """
    from deepgen.models.bundle import load_bundle
    from deepgen.runtime import init_ray

    if method not in ("finetune", "fomaml"):
        raise DeepgenError(f"few-shot method {method!r} is unknown; use finetune or fomaml.")
    if method == "fomaml" and not meta_faces:
        raise DeepgenError("fomaml needs --meta-faces (faces with several manipulation methods); pass them "
                           "or use --method finetune.")
    if (labels is None) != (scores is None):
        raise DeepgenError("--labels (the review page's verdicts CSV) and --scores (the scores table it was made "
                           "on) go together; pass both or neither.")
    inputs = [checkpoint, *support, *(meta_faces or []), *([labels, scores] if labels else [])]
    storage.check_output_path(out, inputs=inputs, overwrite=overwrite, markers=OWNER_MARKERS)  # before any work
    marked, record = None, {}
    if labels is not None:
        from deepgen.adapt.verdicts import read_verdicts, verdict_labels

        verdicts = read_verdicts(labels, scores)
        marked = verdict_labels(verdicts)
        record = {"labels": labels, "scores": scores, "marked_real": sum(v == 0 for v in marked.values()),
                  "marked_fake": sum(v == 1 for v in marked.values()),
                  "marked_unsure": int((verdicts["verdict"] == "unsure").sum())}
    bundle = load_bundle(checkpoint)
    init_ray(address)
    x, y, _ = _features(checkpoint, support, labels=marked)
    rng = np.random.default_rng(seed)
    pick = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:k] for c in (0, 1)])
    if min((y[pick] == 0).sum(), (y[pick] == 1).sum()) < k:
        what = f"the faces of the items {labels} marks" if labels else f"support faces {', '.join(support)}"
        raise DeepgenError(f"{what} hold {(y == 0).sum()} real and {(y == 1).sum()} fake faces, fewer than k={k} "
                           "of each class; mark more items, pass more support faces or a smaller --k.")
    head = torch.nn.Sequential(torch.nn.Identity(), _linear(bundle))  # dropout off while adapting
    inner = {"inner_steps": 10, "inner_lr": inner_lr}
    if method == "finetune":
        adapted = finetune_head(head, x[pick], y[pick], steps=steps, lr=lr)
    else:
        mx, my, mm = _features(checkpoint, meta_faces)
        tasks = make_tasks(mx, my, mm, k=k, rng=rng, episodes_per_method=8)
        meta = meta_train_fomaml(head, tasks, inner_steps=inner["inner_steps"], inner_lr=inner_lr, seed=seed)
        adapted = adapt_head(meta, x[pick], y[pick], **inner)
    with torch.no_grad():
        _linear(bundle).weight.copy_(adapted[1].weight)
        _linear(bundle).bias.copy_(adapted[1].bias)
    model_id = _save(bundle, out, {"fewshot": {"method": method, "k": k, "seed": seed, "support": list(support),
                                                **inner, "source_checkpoint": checkpoint, **record}}, overwrite, inputs)
    return {"out": out, "model_id": model_id, "method": method, "k": k, **record}


def protocol_table(checkpoint: str, faces: list[str], ks: tuple[int, ...] = (0, 1, 5, 20), seed: int = 0,
                   repeats: int = 1, address: str | None = None):
    """Leave-one-manipulation-out AUC vs k for each adaptation method, on the bundle's features."""
    from deepgen.adapt.protocol import leave_one_manipulation_out
    from deepgen.runtime import init_ray

    init_ray(address)
    x, y, m = _features(checkpoint, faces)
    return leave_one_manipulation_out(x, y, np.where(y == 1, m, "real"), ks=ks, seed=seed, repeats=repeats)


__all__ = ["align_bundle", "fewshot_bundle", "protocol_table"]
