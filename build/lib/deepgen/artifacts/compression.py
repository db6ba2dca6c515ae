"""Compression evidence: block-grid strength (JPEG 8x8, H.264 4/16 macroblock seams), the JPEG
quantization step read from DCT-coefficient periodicity, and the mismatch of both between the face
and the rest of the frame, which is high when a face was pasted from a differently compressed image.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from deepgen.errors import DeepgenError

_LUMA = np.array([0.299, 0.587, 0.114])
# Low-frequency AC coefficients (row u, column v): many non-zero values even at low quality.
_AC = ((0, 1), (1, 0), (1, 1), (0, 2), (2, 0), (1, 2), (2, 1))
_MAX_STEP = 64
_PERIODIC = 0.6  # mean cos(2*pi*c/q) above which coefficients c sit on a grid of step q
_MIN_COEFFS = 30


def _gray255(image: np.ndarray) -> np.ndarray:
    """JPEG's own luma Y (0-255) of an RGB image; BGR input gives another mix and hides the grid."""
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[2] == 3:
        return a.astype(np.float64) @ _LUMA
    if a.ndim == 2:
        return a.astype(np.float64)
    raise DeepgenError(f"image has shape {a.shape}; pass an HxWx3 RGB uint8 image.")


def _phase_medians(d: np.ndarray, valid: np.ndarray, block: int) -> np.ndarray:
    """Median |difference| per column phase (column index mod block) over valid entries.

    Medians rather than means so a few strong image edges cannot outvote the block grid.
    """
    out = np.zeros(block)
    for p in range(block):
        vals = d[:, p::block][valid[:, p::block]]
        out[p] = np.median(vals) if vals.size else 0.0
    return out


def block_grid(
    image: np.ndarray, block: int = 8, region: np.ndarray | None = None
) -> tuple[float, tuple[int, int]]:
    """Block-grid strength and its phase (row, column offset of the first block) in a region.

    For each direction, the median |neighbour difference| across the strongest phase of a
    ``block`` grid (the block boundaries) is compared with the median phase (inside blocks):
    ``(boundary - inside) / mean``. 0 means no grid; JPEG at quality 30 gives about 0.5 or more.
    ``region`` is an optional HxW bool mask of the pixels to use.
    """
    g = _gray255(image)
    m = np.ones(g.shape, dtype=bool) if region is None else np.asarray(region, dtype=bool)
    strengths, offsets = [], []
    for img, msk in ((g, m), (g.T, m.T)):
        d = np.abs(np.diff(img, axis=1))
        valid = msk[:, 1:] & msk[:, :-1]
        if valid.sum() < 4 * block:
            strengths.append(0.0)
            offsets.append(0)
            continue
        per_phase = _phase_medians(d, valid, block)
        p = int(np.argmax(per_phase))
        mean = per_phase.mean()
        # differences under one grey level count as one, so flat regions cannot inflate the ratio
        strengths.append(float((per_phase[p] - np.median(per_phase)) / max(mean, 1.0)))
        offsets.append((p + 1) % block)  # the difference at column p straddles columns p, p+1
    return float(np.mean(strengths)), (offsets[1], offsets[0])


def blockiness(image: np.ndarray, block: int = 8) -> float:
    """Block-grid strength of a whole image (see :func:`block_grid`); higher = more blocking."""
    return block_grid(image, block)[0]


def _dct_matrix(n: int = 8) -> np.ndarray:
    k = np.arange(n)
    d = np.cos(np.pi * (2 * k[None, :] + 1) * k[:, None] / (2 * n)) * np.sqrt(2.0 / n)
    d[0] /= np.sqrt(2.0)
    return d  # orthonormal DCT-II: the same scaling as the JPEG forward DCT for n = 8


def _block_dct(g: np.ndarray, region: np.ndarray, offset: tuple[int, int]) -> np.ndarray:
    """8x8 DCT coefficients, shape (n_blocks, 8, 8), of the grid blocks lying fully in region."""
    oy, ox = offset
    h, w = (g.shape[0] - oy) // 8, (g.shape[1] - ox) // 8
    if h <= 0 or w <= 0:
        return np.empty((0, 8, 8))
    tiles = g[oy : oy + 8 * h, ox : ox + 8 * w].reshape(h, 8, w, 8).transpose(0, 2, 1, 3)
    inside = region[oy : oy + 8 * h, ox : ox + 8 * w].reshape(h, 8, w, 8).all(axis=(1, 3))
    d = _dct_matrix(8)
    return np.einsum("ij,njk,lk->nil", d, tiles[inside], d)


def _coefficient_step(c: np.ndarray) -> float | None:
    """Largest step q whose multiples the coefficients outside q's zero bin (|c| > q/2) sit on.

    None when too few coefficients are non-zero at any step (a flat region: no evidence).
    """
    informative = False
    for q in range(_MAX_STEP, 1, -1):
        sel = c[np.abs(c) > q / 2]
        if len(sel) < _MIN_COEFFS:
            continue
        informative = True
        if np.cos(2 * np.pi * sel / q).mean() > _PERIODIC:
            return float(q)
    return 1.0 if informative else None


def quantization_step(
    image: np.ndarray,
    region: np.ndarray | None = None,
    offset: tuple[int, int] | None = None,
) -> float:
    """Estimated JPEG quantization step of the low-frequency AC coefficients (median over them).

    Decoded JPEG pixels have DCT coefficients near multiples of the quantization table entry, so
    their histogram is periodic: about 1-2 at quality 95, 10-30 at quality 30, 1 for uncompressed
    content. The 8x8 grid offset is found with :func:`block_grid` unless given.
    """
    g = _gray255(image)
    m = np.ones(g.shape, dtype=bool) if region is None else np.asarray(region, dtype=bool)
    if offset is None:
        offset = block_grid(image, 8, m)[1]
    coeffs = _block_dct(g, m, offset)
    steps = [_coefficient_step(coeffs[:, u, v]) for u, v in _AC] if len(coeffs) else []
    steps = [s for s in steps if s is not None]
    return float(np.median(steps)) if steps else 1.0


def _box_masks(shape: tuple[int, int], box: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Inside (box shrunk by 10% a side, away from the blend seam) and outside (box grown 10%)."""
    h, w = shape
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (x1 > x0 and y1 > y0):
        raise DeepgenError(
            f"face box {list(box)} is empty; pass (x0, y0, x1, y1) with x1>x0, y1>y0."
        )
    mx, my = 0.1 * (x1 - x0), 0.1 * (y1 - y0)

    def rect(a0: float, b0: float, a1: float, b1: float) -> np.ndarray:
        r = np.zeros((h, w), dtype=bool)
        r[
            max(0, int(round(b0))) : max(0, int(round(b1))),
            max(0, int(round(a0))) : max(0, int(round(a1))),
        ] = True
        return r

    inside = rect(x0 + mx, y0 + my, x1 - mx, y1 - my)
    outside = ~rect(x0 - mx, y0 - my, x1 + mx, y1 + my)
    return inside, outside


def compression_evidence(image: np.ndarray, face_box: Sequence[float], block: int = 8) -> dict:
    """Grid strength and quantization step inside the face box and outside it, and the mismatch.

    ``face_box`` is (x0, y0, x1, y1) in the image's pixels (the faces table's ``box``).
    """
    inside, outside = _box_masks(np.asarray(image).shape[:2], face_box)
    if inside.sum() < 64 or outside.sum() < 64:
        raise DeepgenError(
            f"face box {list(face_box)} leaves too few pixels inside or outside the face in an image "
            f"of shape {np.asarray(image).shape}; pass the full frame and a box inside it."
        )
    gi, oi = block_grid(image, block, inside)
    go, oo = block_grid(image, block, outside)
    qi = quantization_step(image, inside, oi if block == 8 else None)
    qo = quantization_step(image, outside, oo if block == 8 else None)
    mismatch = abs(gi - go) + abs(np.log2(qi) - np.log2(qo))
    return {
        "grid_inside": gi,
        "grid_outside": go,
        "qstep_inside": qi,
        "qstep_outside": qo,
        "mismatch": float(mismatch),
    }


def compression_mismatch(image: np.ndarray, face_box: Sequence[float], block: int = 8) -> float:
    """``|grid_in - grid_out| + |log2 qstep_in - log2 qstep_out|``: 0 for one consistent
    compression, high when the face region was compressed differently from the rest of the frame.
    """
    return compression_evidence(image, face_box, block)["mismatch"]
