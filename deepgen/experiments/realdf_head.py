"""Learning from real forgeries: does a head fitted on real deepfakes carry to real deepfakes of other people?

The trained bundles rank the real development set near chance. This benchmark asks whether the few
real forgeries there are can teach the head what the procedural corpora cannot: folds over the real
items, grouped so that a person (or a source video) is on one side only; on each fold the bundle's
linear head is fitted on the training items' face features and scores the held-out items. Compared,
on the same items and bundles: the bundle as it is, its head fine-tuned from where it stands, and a
new logistic-regression head on the same features, and a logistic-regression probe on frozen ImageNet
features of the crops at their own size (what real forgeries teach without any procedural training).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pandas as pd

VARIANTS = ("as is", "head fine-tuned", "head refit", "ImageNet probe")


def item_groups(media_ids: list[str], source_ids: list[str | None]) -> list[int]:
    """A group per item such that items sharing a person or source video share it: the FF++ ids, DFDC
    video ids and Celeb-DF ``idN`` in the file name, and the manifest's ``source_id``, joined transitively."""
    parent: dict[str, str] = {}

    def find(t: str) -> str:
        while parent.setdefault(t, t) != t:
            parent[t] = parent[parent[t]]
            t = parent[t]
        return t

    tokens = []
    for mid, sid in zip(media_ids, source_ids):
        names = [mid.rsplit("/", 1)[-1]] + ([str(sid).rsplit("/", 1)[-1]] if sid else [])
        parts = [t for n in names for t in re.split(r"[_.\-]", n.lower())]
        people = {t for t in parts if re.fullmatch(r"id\d+", t)}  # Celeb-DF: idA_idB_N, N a clip number
        toks = people or {t for t in parts if re.fullmatch(r"\d{3,}|[a-z]{10}", t)} or {mid}
        toks = sorted(toks)
        for t in toks[1:]:
            parent[find(t)] = find(toks[0])
        tokens.append(toks[0])
    roots = [find(t) for t in tokens]
    ids = {r: i for i, r in enumerate(dict.fromkeys(roots))}
    return [ids[r] for r in roots]


def head_cross_validation(bundle_paths: list[str], df: pd.DataFrame, folds: int = 5, seed: int = 0,
                          steps: int = 200, lr: float = 1e-2, weight_decay: float = 1e-3,
                          log: Callable[[str], None] = print) -> pd.DataFrame:
    """Per bundle and variant, every real item's held-out P(fake) (one row per item): grouped folds over
    the items of ``df`` (faces rows with decoded ``crop``, ``label``, ``source``, ``source_id``)."""
    import torch
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.preprocessing import StandardScaler

    from deepgen.adapt.fewshot import finetune_head
    from deepgen.evaluation.frozen import frozen_features
    from deepgen.experiments.realdf import items_from_logits
    from deepgen.inference import Scorer
    from deepgen.models.bundle import load_bundle

    items = df.groupby("media_id", sort=True)[["label", "source", "source_id"]].first()
    groups = item_groups(list(items.index), list(items["source_id"]))
    y_items = items["label"].to_numpy(int)
    log(f"{len(items)} real-deepfake items ({(y_items == 0).sum()} real, {(y_items == 1).sum()} fake) in "
        f"{len(set(groups))} groups of people or source videos, {folds} grouped folds")
    media = df["media_id"].to_numpy()
    y_faces = df["label"].to_numpy(int)
    crops = list(df["crop"])
    imagenet = frozen_features(crops, crops[0].shape[0])

    def probe(x: np.ndarray, fit: np.ndarray, test: np.ndarray) -> np.ndarray:
        scale = StandardScaler().fit(x[fit])
        clf = LogisticRegression(C=0.1, max_iter=2000, class_weight="balanced")
        return clf.fit(scale.transform(x[fit]), y_faces[fit]).decision_function(scale.transform(x[test]))

    def item_scores(logits: np.ndarray, test: np.ndarray) -> dict[str, float]:
        """P(fake) per held-out item from a fitted head's frame logits, aggregated as scoring does (T = 1)."""
        return items_from_logits(df[test], logits).set_index("media_id")["score"].to_dict()

    rows = []
    for b, path in enumerate(bundle_paths):
        scorer = Scorer([load_bundle(path)], "cpu")
        out = scorer.frame_outputs(crops)  # once: the bundle's features and its own scores
        feats = out["features"].astype(np.float32)
        as_is = items_from_logits(df, out["logit"], scorer.temperature, out.get("ood")).set_index("media_id")["score"]
        lin = scorer.bundles[0].model.classifier[1]
        head = torch.nn.Sequential(torch.nn.Identity(), lin)
        held: dict[str, dict[str, float]] = {v: {} for v in VARIANTS[1:]}
        split = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed + b).split(
            np.zeros(len(items)), y_items, groups)  # other folds for each bundle: the spread includes them
        for k, (tr, te) in enumerate(split):
            fit, test = np.isin(media, items.index[tr]), np.isin(media, items.index[te])
            torch.manual_seed(seed + k)
            tuned = finetune_head(head, feats[fit], y_faces[fit], steps=steps, lr=lr, weight_decay=weight_decay)
            with torch.no_grad():
                logit = tuned(torch.from_numpy(feats[test])).squeeze(-1).numpy()
            held["head fine-tuned"].update(item_scores(logit, test))
            held["head refit"].update(item_scores(probe(feats, fit, test), test))
            held["ImageNet probe"].update(item_scores(probe(imagenet, fit, test), test))
        for variant, scores in (("as is", as_is.to_dict()), *held.items()):
            for mid, s in scores.items():
                rows.append({"bundle": b, "variant": variant, "media_id": mid, "score": float(s),
                             "label": int(items.at[mid, "label"]), "source": items.at[mid, "source"]})
        log(f"  bundle {b}: " + "; ".join(
            f"{v} AUC {_auc([r for r in rows if r['bundle'] == b and r['variant'] == v]):.3f}" for v in VARIANTS))
    return pd.DataFrame(rows)


def _auc(rows: list[dict]) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score([r["label"] for r in rows], [r["score"] for r in rows]))


def summarize_head(raw: pd.DataFrame, threshold: float = 0.5) -> pd.DataFrame:
    """Per variant and source (and all items): AUC, its bootstrap interval and the share of real items at or
    above ``threshold``, mean ± std over bundles."""
    from deepgen.experiments.realdf import source_metrics

    out = []
    for variant in VARIANTS:
        per = [pd.DataFrame(source_metrics(g.assign(in_domain=True), threshold, seed=int(b)))
               for b, g in raw[raw.variant == variant].groupby("bundle")]
        for source, g in pd.concat(per).groupby("source", sort=False):
            out.append({"variant": variant, "source": source, "items": f"{g['real'].iloc[0]} real / "
                        f"{g['fake'].iloc[0]} fake", "bundles": len(g),
                        "auc": f"{g['auc'].mean():.3f} ± {g['auc'].std(ddof=0):.3f}",
                        "real_flagged": f"{g['real_flagged'].mean():.3f} ± {g['real_flagged'].std(ddof=0):.3f}",
                        "auc 95% interval": f"[{g['auc_lo'].mean():.2f}, {g['auc_hi'].mean():.2f}]"})
    return pd.DataFrame(out)
