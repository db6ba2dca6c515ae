"""Procedural face videos and forgery families, written in the real deepfake datasets' layouts.

Real datasets cannot be downloaded everywhere, so deepgen renders its own for tests, the demo
and benchmarks:

- :mod:`deepgen.synth.face`: parametric identities, motion, scenes and the renderer
  (:func:`render_clip`, :func:`render_identity`); Haar-detectable by construction.
- :mod:`deepgen.synth.forgery`: forgery families (a)-(f) returning frames and per-frame masks.
- :mod:`deepgen.synth.encode`: H.264 (x264 CRF raw/c23/c40) via PyAV, PNG tar.gz, mask strips.
- :mod:`deepgen.synth.presets`: :func:`render_preset` writes ffpp, celebdf, dfdc,
  deeperforensics or wilddeepfake trees plus ``deepgen_groundtruth.json``.
- :mod:`deepgen.synth.photos`: :func:`render_photos` writes the same layouts with REAL people from a
  folder of photos/videos (``deepgen synth --photos DIR``), split by identity, four forgery families.
"""

from deepgen.synth.encode import CRF, read_mask_strip, read_mp4, write_mp4, write_png_tar
from deepgen.synth.face import (
    LANDMARK_NAMES,
    Clip,
    Identity,
    Motion,
    Scene,
    render_clip,
    render_identity,
    sample_identity,
    sample_motion,
    sample_scene,
)
from deepgen.synth.forgery import (
    FAMILIES,
    Forgery,
    deeperforensics,
    gan_upsample,
    neural_textures,
    perturb,
    reenact,
    swap_blend,
    swap_soft,
)
from deepgen.synth.presets import (
    GROUNDTRUTH,
    PRESETS,
    STYLES,
    load_groundtruth,
    load_mask,
    render_preset,
)

__all__ = [
    "CRF", "FAMILIES", "GROUNDTRUTH", "LANDMARK_NAMES", "PRESETS", "STYLES",
    "Clip", "Forgery", "Identity", "Motion", "Scene",
    "deeperforensics", "gan_upsample", "load_groundtruth", "load_mask", "neural_textures", "perturb",
    "read_mask_strip", "read_mp4", "reenact", "render_clip", "render_identity", "render_preset",
    "sample_identity", "sample_motion", "sample_scene", "swap_blend", "swap_soft", "write_mp4", "write_png_tar",
]  # fmt: skip
