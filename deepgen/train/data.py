"""Training data: faces tables from several datasets, mixed, each face carrying its domain and method.

The driver reads the tables (local or ``s3://``) and hands them to the workers as Ray Data datasets;
each worker decodes its shard's JPEG/PNG bytes and augments in its own loop (pseudo-fakes,
perturbations), seeded by (seed, epoch, rank) so runs are reproducible.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import dataclass, field

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from deepgen import storage
from deepgen.augment import other_blend, perturb, self_blend
from deepgen.errors import DeepgenError
from deepgen.faces.extract import read_faces as read_faces_table
from deepgen.train.config import TrainConfig

NEEDED = ("image", "label", "dataset", "method", "split")
OPTIONAL = ("box", "landmarks")
SBI_METHOD = "sbi"
SYNTHETIC_KEY = "#sbi"  # media key suffix of a validation real's pseudo-fake twin
VAL_SHARE = 0.1  # share of training identities carved into validation when a table has no usable val split


@dataclass
class TrainData:
    """Train and validation rows plus the domain and method vocabularies of the heads."""

    train: pa.Table  # image, label, domain, method, box, landmarks
    val: pa.Table  # image, label, dataset, video, track, synthetic (video: index of the face's media item)
    domains: list[str]  # training datasets, index = domain label
    methods: list[str]  # fake methods seen in training (plus "sbi"), index = method label
    val_datasets: list[str]  # every validation dataset, held-out ones included
    heldout_datasets: list[str] = field(default_factory=list)
    validation_fakes: str = "real"  # "real", "synthetic" (pseudo-fakes of the val reals) or "real+synthetic"


def check_faces_paths(faces: list[str]) -> None:
    """Fail with one sentence when no faces table is given or one does not exist."""
    if not faces:
        raise DeepgenError("no faces table given; pass at least one with --faces FACES.")
    for uri in faces:
        if not storage.exists(uri):
            raise DeepgenError(f"faces table {uri} does not exist; run `deepgen extract` first or fix the path.")


def read_faces(faces: list[str]) -> pa.Table:
    """Concatenate the faces tables (only the columns training needs).

    Tables are separate domains: when a later table repeats an earlier table's dataset name (say an
    FF++-layout procedural corpus and an FF++-layout photo corpus), its name becomes ``<name>#<k>``
    (k = its position among ``faces``, from 1), so DANN separates them and their videos stay apart.
    """
    check_faces_paths(faces)
    tables = []
    taken: set[str] = set()
    for k, uri in enumerate(faces, 1):
        t = read_faces_table(uri)  # an extract output directory or a faces table
        missing = [c for c in NEEDED if c not in t.column_names]
        if missing:
            raise DeepgenError(
                f"faces table {uri} lacks the column(s) {', '.join(missing)}; write it with `deepgen extract`."
            )
        cols = {c: t.column(c) for c in NEEDED}
        cols["label"] = cols["label"].cast(pa.int8())
        names = set(cols["dataset"].to_pylist())
        if names & taken:
            renamed = [f"{d}#{k}" if d in taken else d for d in cols["dataset"].to_pylist()]
            cols["dataset"] = pa.array(renamed, pa.string())
            names = set(renamed)
        taken |= names
        n = t.num_rows
        cols["box"] = t.column("box").cast(pa.list_(pa.float32())) if "box" in t.column_names else pa.nulls(
            n, pa.list_(pa.float32()))
        cols["landmarks"] = (t.column("landmarks").cast(pa.list_(pa.float32())) if "landmarks" in t.column_names
                             else pa.nulls(n, pa.list_(pa.float32())))
        # identity, for carving a validation split that shares no identity with training
        ident = next((c for c in ("source_id", "media_id") if c in t.column_names), None)
        cols["source_id"] = (t.column(ident).cast(pa.string()) if ident
                             else pa.array([f"{uri}#{i}" for i in range(n)], pa.string()))
        # the media item and face track of each face, so validation can score videos the way inference does
        media = (pc.cast(t.column("media_id"), pa.string()) if "media_id" in t.column_names
                 else pa.array([str(i) for i in range(n)], pa.string()))
        cols["media_key"] = pc.binary_join_element_wise(pc.cast(cols["dataset"], pa.string()), media, "|")
        cols["track_id"] = (pc.fill_null(t.column("track_id").cast(pa.int32()), 0) if "track_id" in t.column_names
                            else pa.array(np.zeros(n, np.int32)))
        cols["frame_index"] = (pc.fill_null(t.column("frame_index").cast(pa.int64()), 0)
                               if "frame_index" in t.column_names else pa.array(np.arange(n, dtype=np.int64)))
        tables.append(pa.table(cols))
    return pa.concat_tables(tables)


def makes_pseudo_fakes(cfg: TrainConfig) -> bool:
    """Whether the recipe turns real faces into pseudo-fakes (so it can train on real faces alone)."""
    return bool(cfg.sbi_only or cfg.sbi_prob > 0)


def _or(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"


def pseudo_fake_recipes() -> list[str]:
    """The packaged recipes that make pseudo-fakes: the ones a table of real faces alone can train."""
    from deepgen.train.config import load_config, packaged_recipes

    names = []
    for name in packaged_recipes():
        try:
            cfg = load_config(name)
        except DeepgenError:  # not a training recipe (the tune sweep)
            continue
        if makes_pseudo_fakes(cfg):
            names.append((not cfg.sbi_only, name))  # reals-only recipes (sbi) first
    return [name for _, name in sorted(names)]


def frames_per_video(table: pa.Table, n: int) -> pa.Table:
    """At most ``n`` sampled frames of each media item, evenly spaced over the frames it has (every
    face of a kept frame stays): the frames-per-video knob of a training budget."""
    frames = pd.DataFrame({"m": table["media_key"].to_numpy(zero_copy_only=False),
                           "f": table["frame_index"].to_numpy()})
    kept = set()
    for m, g in frames.groupby("m", sort=False):
        uniq = np.unique(g["f"].to_numpy())
        pick = uniq if len(uniq) <= n else uniq[np.round(np.linspace(0, len(uniq) - 1, n)).astype(int)]
        kept.update((m, int(f)) for f in pick)
    mask = np.fromiter(((m, int(f)) in kept for m, f in zip(frames["m"], frames["f"])), bool, len(frames))
    return table.filter(pa.array(mask))


def build_train_data(faces: list[str], cfg: TrainConfig, heldout: list[str] | None = None) -> TrainData:
    """Split the mixed faces into train/val, index domains and methods, and check both are usable.

    ``heldout`` faces tables never train: all their rows join validation under their own dataset
    names, reported per epoch (``heldout_*`` metrics) but used neither for checkpoint selection nor
    for calibration, so a sweep can optimize cross-dataset AUC honestly. A recipe that makes
    pseudo-fakes also validates on a fixed, seeded pseudo-fake twin of every validation real
    (:func:`synthetic_val_fakes`); they stand in for the fakes of a dataset that has none.
    """
    table = read_faces(faces)
    where = ", ".join(faces)
    train = table.filter(pc.equal(table["split"], "train"))
    val = table.filter(pc.equal(table["split"], "val"))
    usable = train.num_rows + val.num_rows  # test rows never train nor validate
    no_fakes = usable > 0 and 1 not in set(train["label"].to_pylist()) | set(val["label"].to_pylist())
    if no_fakes and not makes_pseudo_fakes(cfg):
        raise DeepgenError(
            f"faces {where} hold no fake faces to train or validate on ({usable} train/val faces, all real) and "
            f"recipe {cfg.name!r} "
            f"makes no pseudo-fakes; train on real faces alone with a recipe that makes them "
            f"({_or(['--config ' + n for n in pseudo_fake_recipes()])}), or add fake faces.")
    if no_fakes and 0 not in set(val["label"].to_pylist()):
        train, val = carve_val(train, val, where, cfg.seed, classes=(0,))
    elif not no_fakes and set(val["label"].to_pylist()) != {0, 1}:
        train, val = carve_val(train, val, where, cfg.seed)
    if cfg.sbi_only:
        train = train.filter(pc.equal(train["label"], 0))
    if cfg.frames_per_video:
        train = frames_per_video(train, cfg.frames_per_video)
    if train.num_rows < 2 * cfg.batch_size:
        raise DeepgenError(
            f"faces {where} hold {train.num_rows} usable training faces, fewer than two batches of "
            f"{cfg.batch_size}; extract more faces or lower batch_size."
        )
    labels = set(train["label"].to_pylist())
    if labels != {0, 1} and not makes_pseudo_fakes(cfg):
        raise DeepgenError(f"training faces in {where} hold only label {labels}; add real and fake faces "
                           "or use a pseudo-fake recipe (sbi_prob > 0).")
    val = val.append_column("synthetic", pa.array(np.zeros(val.num_rows, bool)))
    if makes_pseudo_fakes(cfg):
        val = pa.concat_tables([val, synthetic_val_fakes(val, cfg)])
    if set(val["label"].to_pylist()) != {0, 1}:
        raise DeepgenError(f"faces {where} have no validation split with both real and fake faces; "
                           "extract faces with a val split.")
    validation_fakes = validation_fakes_kind(val["label"].to_numpy(), val["synthetic"].to_numpy())
    domains = sorted(set(train["dataset"].to_pylist()))
    fake_methods = set(train.filter(pc.equal(train["label"], 1))["method"].to_pylist())
    if makes_pseudo_fakes(cfg):
        fake_methods.add(SBI_METHOD)
    methods = sorted(fake_methods) or [SBI_METHOD]
    dom_index = {d: i for i, d in enumerate(domains)}
    meth_index = {m: i for i, m in enumerate(methods)}
    train_tab = pa.table({
        "image": train["image"],
        "label": train["label"],
        "domain": pa.array([dom_index[d] for d in train["dataset"].to_pylist()], pa.int32()),
        "method": pa.array([meth_index.get(m, -1) if y == 1 else -1
                            for m, y in zip(train["method"].to_pylist(), train["label"].to_pylist())], pa.int32()),
        "box": train["box"],
        "landmarks": train["landmarks"],
    })
    if heldout:
        held = read_faces(heldout)
        clash = set(held["dataset"].to_pylist()) & set(table["dataset"].to_pylist())
        if clash:
            raise DeepgenError(f"held-out faces share dataset(s) {sorted(clash)} with the training faces; "
                               "hold out datasets that are not trained on.")
        held = held.append_column("synthetic", pa.array(np.zeros(held.num_rows, bool)))
        val = pa.concat_tables([val, held])
    val_datasets = sorted(set(val["dataset"].to_pylist()))
    val_index = {d: i for i, d in enumerate(val_datasets)}
    video = val["media_key"].combine_chunks().dictionary_encode().indices  # one id per media item
    val_tab = pa.table({
        "image": val["image"],
        "label": val["label"],
        "dataset": pa.array([val_index[d] for d in val["dataset"].to_pylist()], pa.int32()),
        "video": video.cast(pa.int32()),
        "track": val["track_id"],
        "synthetic": val["synthetic"],
    })
    held_names = sorted(set(held["dataset"].to_pylist())) if heldout else []
    return TrainData(train_tab, val_tab, domains, methods, val_datasets, held_names, validation_fakes)


def validation_rows(labels: np.ndarray, synthetic: np.ndarray, datasets: np.ndarray) -> np.ndarray:
    """Rows that select and calibrate: every real face and real fake, plus the synthetic fakes of a
    dataset whose validation has no real fakes (a dataset with real fakes keeps its pseudo-fakes apart)."""
    labels, datasets = np.asarray(labels), np.asarray(datasets)
    synthetic = np.asarray(synthetic, bool)
    keep = ~synthetic
    for d in np.unique(datasets[synthetic]):
        if not np.any((datasets == d) & (labels == 1) & ~synthetic):
            keep |= synthetic & (datasets == d)
    return keep


def validation_fakes_kind(labels: np.ndarray, synthetic: np.ndarray) -> str:
    """``real``, ``synthetic`` or ``real+synthetic``: which fakes the validation split holds."""
    labels, synthetic = np.asarray(labels), np.asarray(synthetic, bool)
    has_real, has_synth = bool(np.any((labels == 1) & ~synthetic)), bool(synthetic.any())
    return "real+synthetic" if has_real and has_synth else "synthetic" if has_synth else "real"


class _Decoded:
    """Faces of a table decoded on first use, indexed like a list (the other faces a blend may draw)."""

    def __init__(self, images: list[bytes], rows: np.ndarray):
        self.images, self.rows, self.cache = images, rows, {}

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, k: int) -> np.ndarray:
        i = int(self.rows[k])
        if i not in self.cache:
            self.cache[i] = decode_image(self.images[i])
        return self.cache[i]


def synthetic_val_fakes(val: pa.Table, cfg: TrainConfig) -> pa.Table:
    """A pseudo-fake twin of every real validation face, made as training makes them (:func:`pseudo_fake`).

    Fixed and seeded (``cfg.seed``), so every epoch and every rerun validates on the same images. A
    twin keeps its real's dataset, identity and track under the media key ``<media>#sbi``, is labelled
    fake (method ``sbi``) and flagged ``synthetic``. Another real a Face X-ray blend draws comes from
    a different identity when the split has one. No perturbation: validation reals are not perturbed.
    """
    from deepgen.faces.crop import encode_image

    reals = val.filter(pc.equal(val["label"], 0))
    n = reals.num_rows
    if n == 0:
        return val.slice(0, 0)
    rng = np.random.default_rng([int(cfg.seed), 25])
    images = reals["image"].to_pylist()
    boxes, lms = reals["box"].to_pylist(), reals["landmarks"].to_pylist()
    ids = np.asarray(reals["source_id"].to_pylist(), object)
    out = []
    for i in range(n):
        img = decode_image(images[i])
        others = np.flatnonzero(ids != ids[i])
        others = others if len(others) else np.flatnonzero(np.arange(n) != i)
        fake, _ = pseudo_fake(img, boxes[i], lms[i], _Decoded(images, others), cfg, rng)
        out.append(encode_image(fake, "png" if images[i][:4] == b"\x89PNG" else "jpeg"))
    twins = reals.set_column(reals.schema.get_field_index("image"), "image", pa.array(out, reals.schema.field("image").type))
    n_col = twins.num_rows
    for name, arr in (("label", pa.array(np.ones(n_col, np.int8))),
                      ("method", pa.array([SBI_METHOD] * n_col, twins.schema.field("method").type)),
                      ("media_key", pc.binary_join_element_wise(twins["media_key"], SYNTHETIC_KEY, "")),
                      ("synthetic", pa.array(np.ones(n_col, bool)))):
        twins = twins.set_column(twins.schema.get_field_index(name), name, arr.cast(twins.schema.field(name).type))
    return twins


def _rank(seed: int, source_id: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{source_id}".encode()).digest()[:8], "big")


def carve_val(train: pa.Table, val: pa.Table, where: str, seed: int,
              classes: tuple[int, ...] = (0, 1)) -> tuple[pa.Table, pa.Table]:
    """Move ``VAL_SHARE`` of the training identities (``source_id``, chosen by a seeded hash) into validation.

    Used when the tables have no validation split with every one of ``classes`` (both, or only reals
    for a pseudo-fake recipe on real faces alone); warns once. Fails with one sentence when the faces
    lack one of ``classes`` altogether.
    """
    both = pa.concat_tables([train, val])
    labels = both["label"].to_pylist()
    for cls, name in ((0, "real"), (1, "fake")):
        if cls in classes and cls not in labels:
            raise DeepgenError(f"faces {where} hold no {name} faces at all ({len(labels)} faces, all "
                               f"{'fake' if cls == 0 else 'real'}); add {name} faces to validate on.")
    ids = train["source_id"].to_pylist()
    y = train["label"].to_pylist()
    ranked = sorted(set(ids), key=lambda s: (_rank(seed, s), s))
    picked = set(ranked[: max(1, math.ceil(VAL_SHARE * len(ranked)))])
    have = set(val["label"].to_pylist()) | {lab for i, lab in zip(ids, y) if i in picked}
    for cls in classes:  # make sure validation sees every class it needs: add the first-ranked identity with the class
        if cls not in have:
            with_cls = {i for i, lab in zip(ids, y) if lab == cls}
            first = next((s for s in ranked if s in with_cls), None)
            if first is not None:
                picked.add(first)
    mask = pa.array([i in picked for i in ids])
    moved = train.filter(mask)
    what = "both real and fake faces" if len(classes) > 1 else "real faces"
    warnings.warn(
        f"faces {where} have no validation split with {what}; validating on "
        f"{len(picked)} of {len(ranked)} training identities (source_id, {moved.num_rows} faces, seed {seed}).",
        stacklevel=3,
    )
    return train.filter(pc.invert(mask)), pa.concat_tables([val, moved])


def decode_image(data: bytes) -> np.ndarray:
    """JPEG/PNG bytes -> RGB uint8."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise ValueError("undecodable face image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _crop_geometry(box, landmarks, size: int, margin: float,
                   aligned: bool = False) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Map a frame-pixel face box/landmarks (5 or more points) into crop pixels.

    Box crops are squares of side max(w, h)*(1+margin) around the box centre. With ``aligned`` (faces
    extracted with ``--align``) the crop is the similarity warp onto the 5-point template, so the
    same matrix (recomputed from the stored frame landmarks, :func:`deepgen.faces.align.alignment_matrix`)
    maps box and landmarks; faces without usable landmarks were box-cropped and map as such.
    """
    from deepgen.faces.align import alignment_matrix, apply

    if box is None or len(box) != 4:
        return None, None
    x0, y0, x1, y1 = (float(v) for v in box)
    has_lms = landmarks is not None and len(landmarks) >= 10
    m = alignment_matrix(landmarks, size, margin) if aligned and has_lms else None
    if m is not None:
        corners = apply(m, [(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
        crop_box = np.concatenate([corners.min(0), corners.max(0)])
        pts = apply(m, landmarks).astype(np.float32)
    else:
        side = max(x1 - x0, y1 - y0) * (1.0 + margin)
        if side <= 0:
            return None, None
        s, cx, cy = size / side, (x0 + x1) / 2, (y0 + y1) / 2
        crop_box = np.array([(x0 - cx) * s + size / 2, (y0 - cy) * s + size / 2,
                             (x1 - cx) * s + size / 2, (y1 - cy) * s + size / 2])
        pts = ((np.asarray(landmarks, np.float32).reshape(-1, 2) - (cx, cy)) * s + size / 2) if has_lms else None
    if pts is not None:
        inside = np.mean((pts >= 0).all(1) & (pts < size).all(1))
        pts = pts if inside > 0.9 else None
    return crop_box, pts


def pseudo_fake(img: np.ndarray, box, landmarks, others, cfg: TrainConfig,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A real face crop made into a pseudo-fake, ``(image, blend mask)``: blended with one of ``others``
    (a sequence of real crops) with probability ``blend_other_prob`` (Face X-ray), else with a
    transformed copy of itself (SBI). ``box``/``landmarks`` are the face's frame-pixel geometry."""
    crop_box, pts = _crop_geometry(box, landmarks, img.shape[0], cfg.crop_margin, aligned=cfg.crop_align)
    if cfg.blend_other_prob > 0 and len(others) and rng.random() < cfg.blend_other_prob:
        return other_blend(img, others[int(rng.integers(len(others)))], rng, landmarks=pts, box=crop_box)
    return self_blend(img, rng, landmarks=pts, box=crop_box)


def make_train_batch(batch: dict, cfg: TrainConfig, rng: np.random.Generator, sbi_method: int,
                     with_masks: bool = False) -> tuple:
    """Decode a training batch and augment it: pseudo-fakes from reals, then perturbations.

    A real face becomes a pseudo-fake with probability ``sbi_prob`` (0.5 with ``sbi_only``): blended
    with another real face of the batch with probability ``blend_other_prob`` (Face X-ray), else with
    a transformed copy of itself (SBI). Returns images, labels (1 fake), domains and methods (-1 for
    reals); with ``with_masks`` also a fifth item, one blend mask (float HxW in [0, 1], the crop's
    size) per pseudo-fake and ``None`` for every other face. The random draws are the same either way.
    """
    labels = batch["label"].astype(np.int64).copy()
    methods = batch["method"].astype(np.int64).copy()
    decoded = [decode_image(data) for data in batch["image"]]
    reals = np.flatnonzero(labels == 0)
    images, masks = [], []
    p_sbi = 0.5 if cfg.sbi_only else cfg.sbi_prob
    for i, img in enumerate(decoded):
        mask = None
        if labels[i] == 0 and p_sbi > 0 and rng.random() < p_sbi:
            box = batch["box"][i] if "box" in batch else None
            lms = batch["landmarks"][i] if "landmarks" in batch else None
            img, mask = pseudo_fake(img, box, lms, [decoded[j] for j in reals[reals != i]], cfg, rng)
            labels[i], methods[i] = 1, sbi_method
        masks.append(mask)
        images.append(perturb(img, cfg.perturb, rng))
    if with_masks:
        return images, labels, batch["domain"].astype(np.int64), methods, masks
    return images, labels, batch["domain"].astype(np.int64), methods
