"""A tiny faces table made by code (drawn face crops, fakes with a blended patch) for tests and benchmarks.

Not a substitute for ``deepgen synth``: it skips video and detection and writes the faces contract
directly, so training can be exercised in seconds.
"""

from __future__ import annotations

import cv2
import numpy as np
import pyarrow as pa

from deepgen import storage
from deepgen.schema import FACES_SCHEMA

METHODS = ("swap", "smooth")


def draw_face(rng: np.random.Generator, size: int = 64, background: tuple[int, int] = (30, 120)) -> np.ndarray:
    """An RGB face-like crop: skin ellipse, eyes, brows, nose, mouth, textured background, sensor noise."""
    img = np.empty((size, size, 3), np.float32)
    img[:] = rng.uniform(*background, 3)
    img += cv2.GaussianBlur(rng.normal(0, 20, (size, size, 3)).astype(np.float32), (0, 0), 3)
    c = size / 2 + rng.uniform(-0.04, 0.04, 2) * size
    axes = (int(size * rng.uniform(0.28, 0.34)), int(size * rng.uniform(0.36, 0.42)))
    skin = rng.uniform([150, 100, 70], [240, 190, 160])
    cv2.ellipse(img, (int(c[0]), int(c[1])), axes, 0, 0, 360, skin.tolist(), -1)
    dark = (skin * 0.25).tolist()
    ey, ex = int(c[1] - axes[1] * 0.25), int(axes[0] * 0.45)
    for sx in (-1, 1):
        cv2.circle(img, (int(c[0] + sx * ex), ey), max(1, size // 24), dark, -1)
        cv2.line(img, (int(c[0] + sx * ex - 4), ey - size // 12), (int(c[0] + sx * ex + 4), ey - size // 12), dark, 1)
    cv2.line(img, (int(c[0]), int(c[1] - 2)), (int(c[0] - 2), int(c[1] + size // 12)), (skin * 0.7).tolist(), 1)
    mouth_y = int(c[1] + axes[1] * 0.5)
    cv2.ellipse(img, (int(c[0]), mouth_y), (int(axes[0] * 0.4), max(1, size // 32)), 0, 0, 360,
                (skin * [0.8, 0.4, 0.4]).tolist(), -1)
    shade = np.linspace(rng.uniform(0.8, 1.0), rng.uniform(1.0, 1.2), size, dtype=np.float32)
    img *= shade[None, :, None] if rng.random() < 0.5 else shade[:, None, None]
    img += rng.normal(0, 6, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def forge(img: np.ndarray, rng: np.random.Generator, method: str) -> np.ndarray:
    """Blend a differently coloured/textured patch into the inner face (swap) or over-smooth it (smooth)."""
    size = img.shape[0]
    mask = np.zeros((size, size), np.float32)
    center = (int(size / 2 + rng.uniform(-3, 3)), int(size * 0.52 + rng.uniform(-3, 3)))
    cv2.ellipse(mask, center, (int(size * 0.24), int(size * 0.3)), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), size / 40)[..., None]
    if method == "swap":
        other = draw_face(rng, size).astype(np.float32)
        other += rng.uniform(25, 50, 3) * rng.choice([-1, 1], 3)
    else:  # over-smoothed, slightly recoloured texture
        other = cv2.GaussianBlur(img, (0, 0), size / 20).astype(np.float32)
        other *= rng.uniform(1.08, 1.2, 3) ** rng.choice([-1, 1], 3)
    out = img.astype(np.float32) * (1 - mask) + other * mask
    return np.clip(out, 0, 255).astype(np.uint8)


def toy_faces_table(n_per_class: int = 60, size: int = 64, seed: int = 0, dataset: str = "toy",
                    splits: tuple[float, float] = (0.7, 0.15), background: tuple[int, int] = (30, 120),
                    quality: int = 90) -> pa.Table:
    """A faces-contract table of ``n_per_class`` real and fake JPEG crops with train/val/test splits."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_per_class):
        split = "train" if i < splits[0] * n_per_class else "val" if i < sum(splits) * n_per_class else "test"
        real = draw_face(rng, size, background)
        method = METHODS[i % len(METHODS)]
        fake = forge(draw_face(rng, size, background), rng, method)
        for label, img, meth in ((0, real, "real"), (1, fake, method)):
            ok, buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
            assert ok
            rows.append({
                "media_id": f"{dataset}/{meth}/{i:04d}.mp4",
                "frame_index": 0,
                "image": buf.tobytes(),
                "box": [size * 0.5 / 1.3 * 0.3, size * 0.5 / 1.3 * 0.3, size - size * 0.5 / 1.3 * 0.3,
                        size - size * 0.5 / 1.3 * 0.3],
                "landmarks": None,
                "det_score": 1.0,
                "label": label,
                "dataset": dataset,
                "method": meth,
                "split": split,
                "source_id": f"{i:04d}",
            })
    return pa.Table.from_pylist(rows, schema=FACES_SCHEMA)


def write_toy_faces(uri: str, **kwargs) -> str:
    """Write :func:`toy_faces_table` to ``uri`` (a Parquet file path or s3:// key) and return it."""
    storage.write_table(toy_faces_table(**kwargs), uri)
    return uri
