"""Parametric face renderer: identities, head motion, expressions, lighting, backgrounds, noise.

A face is a shaded ellipsoid with albedo features (eye sockets, brows, eyes, nose, mouth, hair,
glasses) drawn in face-local coordinates, posed per frame (yaw/pitch shift the features, roll
rotates the head) and composited over a background with camera noise. Shading is built so that
OpenCV's Haar cascade finds the faces: dark eye sockets and brows over lighter cheeks and nose
bridge, a dark mouth.

Public:
- :class:`Identity`, :func:`sample_identity` - who (shape, skin tone, features, hair, glasses).
- :class:`Motion`, :func:`sample_motion` - how the head moves, blinks and talks in one video.
- :class:`Scene`, :func:`sample_scene` - lighting, background, camera noise, frame size.
- :func:`render_clip` -> :class:`Clip` (frames, per-frame boxes and landmarks); :func:`render_group`
  renders several people in one clip (one :class:`Clip` per person, same frames).
- :func:`render_identity` - one frontal still of an identity (for tests and test data).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

SKIN_TONES: dict[str, tuple[int, int, int]] = {
    # Fitzpatrick-like categories -> base albedo RGB
    "I": (246, 214, 192),
    "II": (232, 190, 160),
    "III": (208, 160, 122),
    "IV": (176, 124, 88),
    "V": (128, 86, 60),
    "VI": (88, 58, 42),
}
TONE_GROUP = {
    "I": "light",
    "II": "light",
    "III": "medium",
    "IV": "medium",
    "V": "dark",
    "VI": "dark",
}
HAIR_COLORS: dict[str, tuple[int, int, int]] = {
    "black": (28, 24, 22),
    "brown": (84, 56, 36),
    "blonde": (196, 160, 98),
    "red": (150, 66, 36),
    "gray": (150, 148, 144),
}
EYE_COLORS: dict[str, tuple[int, int, int]] = {
    "brown": (92, 58, 34),
    "blue": (70, 110, 160),
    "green": (80, 120, 70),
    "dark": (40, 28, 22),
}
HAIR_STYLES = ("short", "long", "bald", "curly")
GLASSES = ("none", "round", "square")

LANDMARK_NAMES = (
    "brow_l_outer", "brow_l_inner", "brow_r_inner", "brow_r_outer",
    "eye_l", "eye_r", "nose_tip", "mouth_l", "mouth_r", "mouth_top", "mouth_bottom",
    "chin", "jaw_l", "jaw_r", "temple_l", "temple_r",
)  # fmt: skip
# landmarks that outline the inner face (what face swaps replace), in hull order
HULL_LANDMARKS = (14, 0, 3, 15, 13, 11, 12)


@dataclass
class Identity:
    """One synthetic person: geometry in face-relative units, albedo colours, hair and glasses."""

    id: str
    skin_tone: str
    skin_rgb: tuple[float, float, float]
    face_width: float  # half-width / half-height of the face ellipse
    jaw: float  # 0 round .. 0.35 narrow chin
    eye_spacing: float
    eye_size: float
    eye_y: float
    eye_color: str
    brow_thick: float
    brow_tilt: float
    nose_len: float
    nose_width: float
    mouth_width: float
    lip_rgb: tuple[float, float, float]
    hair_style: str
    hair_color: str
    glasses: str
    clothes_rgb: tuple[float, float, float]
    texture_seed: int

    def attributes(self) -> dict:
        """Subgroup attributes recorded in the ground truth (skin tone category and group etc.)."""
        return {
            "skin_tone": self.skin_tone,
            "skin_tone_group": TONE_GROUP[self.skin_tone],
            "hair_style": self.hair_style,
            "hair_color": self.hair_color,
            "glasses": self.glasses != "none",
            "glasses_style": self.glasses,
            "eye_color": self.eye_color,
        }


@dataclass
class Motion:
    """Per-video head motion, blinks and talking (all smooth functions of time)."""

    center: tuple[float, float]  # face centre as a fraction of (width, height)
    face_scale: float  # face half-height as a fraction of min(width, height)
    yaw: tuple[float, float, float]  # amplitude (rad), frequency (Hz), phase
    pitch: tuple[float, float, float]
    roll: tuple[float, float, float]
    drift: tuple[float, float]  # centre drift amplitude as a fraction of the frame
    drift_freq: float
    blink_times: tuple[float, ...]  # seconds
    talk: tuple[float, float, float]  # amplitude (0..1), frequency (Hz), phase
    fps: float = 12.0


@dataclass
class Scene:
    """Frame size, lighting, background and camera noise of one video."""

    width: int
    height: int
    light_dir: tuple[
        float, float, float
    ]  # unit vector towards the light (x right, y down, z to camera)
    light_rgb: tuple[float, float, float]
    ambient: float
    background: str  # studio | room | outdoor | newsroom
    bg_colors: tuple[tuple[float, float, float], ...]
    bg_seed: int
    noise: float  # camera noise sigma in 0..255 units
    exposure: float = 1.0


@dataclass
class Clip:
    """A rendered clip: RGB frames (T,H,W,3 uint8), face boxes (T,4) and landmarks (T,K,2)."""

    frames: np.ndarray
    boxes: np.ndarray
    landmarks: np.ndarray
    identity: Identity
    motion: Motion
    scene: Scene
    meta: dict = field(default_factory=dict)


def _pick(rng: np.random.Generator, options, p=None):
    return options[int(rng.choice(len(options), p=p))]


def sample_identity(
    rng: np.random.Generator,
    identity_id: str,
    tone_weights: dict[str, float] | None = None,
    glasses_rate: float = 0.25,
) -> Identity:
    """Draw a random identity; ``tone_weights`` sets the skin-tone mix of an identity pool."""
    tones = list(SKIN_TONES)
    w = np.array([(tone_weights or {}).get(t, 1.0) for t in tones], dtype=float)
    tone = _pick(rng, tones, w / w.sum())
    base = np.array(SKIN_TONES[tone], dtype=float) * rng.uniform(0.94, 1.06, 3)
    hair_color = _pick(rng, list(HAIR_COLORS), [0.35, 0.3, 0.15, 0.08, 0.12])
    glasses = "none" if rng.random() > glasses_rate else _pick(rng, GLASSES[1:])
    lip = base * np.array([0.82, 0.55, 0.55]) * rng.uniform(0.9, 1.05)
    return Identity(
        id=identity_id,
        skin_tone=tone,
        skin_rgb=tuple(np.clip(base, 20, 255).round(1).tolist()),
        face_width=float(rng.uniform(0.70, 0.84)),
        jaw=float(rng.uniform(0.05, 0.32)),
        eye_spacing=float(rng.uniform(0.36, 0.44)),
        eye_size=float(rng.uniform(0.85, 1.15)),
        eye_y=float(rng.uniform(-0.16, -0.08)),
        eye_color=_pick(rng, list(EYE_COLORS)),
        brow_thick=float(rng.uniform(0.045, 0.075)),
        brow_tilt=float(rng.uniform(-0.06, 0.08)),
        nose_len=float(rng.uniform(0.26, 0.36)),
        nose_width=float(rng.uniform(0.10, 0.15)),
        mouth_width=float(rng.uniform(0.26, 0.36)),
        lip_rgb=tuple(np.clip(lip, 10, 255).round(1).tolist()),
        hair_style=_pick(rng, HAIR_STYLES, [0.4, 0.3, 0.12, 0.18]),
        hair_color=hair_color,
        glasses=glasses,
        clothes_rgb=tuple(rng.uniform(20, 220, 3).round(1).tolist()),
        texture_seed=int(rng.integers(0, 2**31 - 1)),
    )


def sample_motion(
    rng: np.random.Generator,
    duration: float,
    fps: float = 12.0,
    face_scale: tuple[float, float] = (0.26, 0.32),
    motion: float = 1.0,
) -> Motion:
    """Draw smooth head motion, blinks every 2-4 s and talking; ``motion`` scales the amplitudes."""
    blinks, t = [], float(rng.uniform(0.1, 1.5))
    while t < duration:
        blinks.append(round(t, 3))
        t += float(rng.uniform(1.5, 3.5))
    return Motion(
        center=(float(rng.uniform(0.44, 0.56)), float(rng.uniform(0.44, 0.52))),
        face_scale=float(rng.uniform(*face_scale)),
        yaw=(
            float(rng.uniform(0.05, 0.28) * motion),
            float(rng.uniform(0.15, 0.5)),
            float(rng.uniform(0, 6.3)),
        ),
        pitch=(
            float(rng.uniform(0.02, 0.12) * motion),
            float(rng.uniform(0.2, 0.6)),
            float(rng.uniform(0, 6.3)),
        ),
        roll=(
            float(rng.uniform(0.02, 0.12) * motion),
            float(rng.uniform(0.1, 0.4)),
            float(rng.uniform(0, 6.3)),
        ),
        drift=(float(rng.uniform(0.0, 0.04) * motion), float(rng.uniform(0.0, 0.03) * motion)),
        drift_freq=float(rng.uniform(0.1, 0.3)),
        blink_times=tuple(blinks),
        talk=(
            float(rng.uniform(0.3, 1.0)),
            float(rng.uniform(1.5, 4.0)),
            float(rng.uniform(0, 6.3)),
        ),
        fps=float(fps),
    )


def sample_scene(
    rng: np.random.Generator,
    width: int,
    height: int,
    backgrounds: tuple[str, ...] = ("studio", "room", "outdoor", "newsroom"),
    light_spread: float = 0.5,
    noise: tuple[float, float] = (1.5, 4.0),
    light_tint: float = 0.08,
    ambient: tuple[float, float] = (0.35, 0.5),
) -> Scene:
    """Draw lighting (direction spread, tint, ambient), a background style and camera noise."""
    az = rng.uniform(-light_spread, light_spread) * math.pi / 2
    el = rng.uniform(-0.15, 0.45) * light_spread
    d = np.array([math.sin(az) * math.cos(el), -math.sin(el), math.cos(az) * math.cos(el)])
    d /= np.linalg.norm(d)
    tint = 1.0 + rng.uniform(-light_tint, light_tint, 3)
    kind = _pick(rng, list(backgrounds))
    cols = tuple(tuple(rng.uniform(30, 230, 3).round(1).tolist()) for _ in range(4))
    return Scene(
        width=int(width) // 2 * 2,
        height=int(height) // 2 * 2,
        light_dir=tuple(d.round(4).tolist()),
        light_rgb=tuple((tint / tint.mean()).round(4).tolist()),
        ambient=float(rng.uniform(*ambient)),
        background=kind,
        bg_colors=cols,
        bg_seed=int(rng.integers(0, 2**31 - 1)),
        noise=float(rng.uniform(*noise)),
        exposure=float(rng.uniform(0.92, 1.08)),
    )


# --------------------------------------------------------------------------- background


def render_background(scene: Scene, margin: int = 0) -> np.ndarray:
    """A smooth background image (float32 RGB 0..255) of the scene's size plus ``margin`` per side."""
    h, w = scene.height + 2 * margin, scene.width + 2 * margin
    rng = np.random.default_rng(scene.bg_seed)
    c = [np.array(x, dtype=np.float32) for x in scene.bg_colors]
    yy = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    xx = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
    if scene.background == "outdoor":
        sky = np.array([150, 185, 225], np.float32) * (0.8 + 0.2 * c[0] / 255)
        ground = c[1] * np.array([0.6, 0.9, 0.5], np.float32)
        horizon = 0.55 + 0.1 * rng.random()
        img = np.where(yy < horizon, sky * (0.8 + 0.2 * yy), ground * (0.7 + 0.3 * yy)) + 0 * xx
    elif scene.background == "newsroom":
        img = (c[0] * 0.5 + np.array([20, 40, 110], np.float32)) * (0.6 + 0.4 * yy) + 0 * xx
        for _ in range(3):
            y0 = int(rng.uniform(0.1, 0.9) * h)
            img[y0 : y0 + max(2, h // 40)] += 60
    else:
        img = (
            c[0] * (1 - xx) * (1 - yy)
            + c[1] * xx * (1 - yy)
            + c[2] * (1 - xx) * yy
            + c[3] * xx * yy
        )
        img = img * (0.75 if scene.background == "room" else 1.0)
    img = np.ascontiguousarray(img, dtype=np.float32)
    if scene.background in ("room", "outdoor"):
        for _ in range(int(rng.integers(3, 7))):
            x0, y0 = int(rng.uniform(0, w)), int(rng.uniform(0, h))
            x1, y1 = x0 + int(rng.uniform(0.1, 0.4) * w), y0 + int(rng.uniform(0.1, 0.4) * h)
            cv2.rectangle(
                img, (x0, y0), (x1, y1), tuple(float(v) for v in rng.uniform(30, 220, 3)), -1
            )
        img = cv2.GaussianBlur(img, (0, 0), max(w, h) / 60)
    vign = 1.0 - 0.25 * ((xx - 0.5) ** 2 + (yy - 0.5) ** 2)
    return np.clip(img * vign, 0, 255).astype(np.float32)


# --------------------------------------------------------------------------- face


def _skin_texture(identity: Identity, n: int = 96) -> np.ndarray:
    """Identity-specific fine skin texture (pores, blemishes) as a multiplicative map around 1."""
    rng = np.random.default_rng(identity.texture_seed)
    t = rng.standard_normal((n, n)).astype(np.float32)
    t = 0.6 * t + 0.4 * cv2.GaussianBlur(t, (0, 0), 2.0) * 3
    return 1.0 + 0.035 * t


@dataclass
class Pose:
    """The pose and expression of one frame."""

    cx: float
    cy: float
    r: float  # face half-height in pixels
    yaw: float
    pitch: float
    roll: float  # radians
    blink: float  # 0 open .. 1 closed
    mouth: float  # 0 closed .. 1 open


def pose_at(motion: Motion, scene: Scene, t: float) -> Pose:
    """Evaluate the motion at time ``t`` (seconds) in the scene's pixel frame."""

    def osc(p):
        return p[0] * math.sin(2 * math.pi * p[1] * t + p[2])

    w, h = scene.width, scene.height
    dx = motion.drift[0] * math.sin(2 * math.pi * motion.drift_freq * t)
    dy = motion.drift[1] * math.cos(2 * math.pi * motion.drift_freq * t * 1.3)
    blink = 0.0
    for bt in motion.blink_times:
        d = abs(t - bt)
        if d < 0.2:
            blink = max(blink, 1.0 - d / 0.2)
    a, f, ph = motion.talk
    mouth = a * max(0.0, math.sin(2 * math.pi * f * t + ph)) * (0.6 + 0.4 * math.sin(0.7 * t + ph))
    return Pose(
        cx=(motion.center[0] + dx) * w,
        cy=(motion.center[1] + dy) * h,
        r=motion.face_scale * min(w, h),
        yaw=osc(motion.yaw),
        pitch=osc(motion.pitch),
        roll=osc(motion.roll),
        blink=blink,
        mouth=max(0.0, min(1.0, mouth)),
    )


# Relief strengths, tuned by measuring the Haar detection rate: temple shadows, socket depth and
# extent, bridge and cheek highlights, sclera darkening towards the skin, brow thickness factor.
RELIEF = dict(temple=0.45, sock=0.55, sx=0.28, sy=0.15, bridge=0.3, cheek=0.2, scl=0.45, brow=0.75)


def _gauss(u, v, x, y, sx, sy):
    return np.exp(-(((u - x) / sx) ** 2 + ((v - y) / sy) ** 2))


def render_face_layer(
    identity: Identity, pose: Pose, scene: Scene
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, int]:
    """Render the head (upright, in a square patch) and roll it.

    Returns ``(rgb float32 PxPx3, alpha float32 PxP, landmarks Kx2 in patch pixels, x0, y0)``
    where (x0, y0) is the patch's top-left corner in frame pixels.
    """
    b = pose.r
    a = b * identity.face_width
    half = int(math.ceil(1.45 * b))
    size = 2 * half
    x0, y0 = int(round(pose.cx)) - half, int(round(pose.cy)) - half
    ccx, ccy = pose.cx - x0, pose.cy - y0  # face centre inside the patch
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    u = (xs - ccx) / a
    v = (ys - ccy) / b
    sy_, cy_ = math.sin(pose.yaw), math.sin(pose.pitch)

    # face outline: ellipse with a narrower jaw
    ue = u / (1.0 - identity.jaw * np.clip(v, 0, 1) ** 2)
    rr = np.sqrt(ue**2 + v**2)
    face_alpha = np.clip((1.0 - rr) * b * 0.9 + 0.5, 0, 1)

    # hair region (head top), on a slightly larger ellipse shifted against the yaw
    uh = (u + 0.15 * sy_) / 1.1
    vh = (v + 0.08) / 1.12
    rh = np.sqrt(uh**2 + vh**2)
    hair_alpha = np.zeros_like(u)
    style = identity.hair_style
    if style != "bald":
        line = -0.52 + 0.12 * u**2 + (0.03 * np.sin(u * 9) if style == "curly" else 0)
        cap = np.clip((1.0 - rh) * b + 0.5, 0, 1) * np.clip((line - v) * b * 0.5 + 0.5, 0, 1)
        side = np.clip((np.abs(u) - 0.86) * a * 0.6 + 0.5, 0, 1) * np.clip(
            (-0.15 - v) * b * 0.4 + 0.5, 0, 1
        )
        hair_alpha = np.maximum(cap, side * np.clip((1.0 - rh) * b + 0.5, 0, 1))
        if style == "long":
            ub, vb = (u + 0.1 * sy_) / 1.28, (v - 0.12) / 1.3
            back = np.clip((1.0 - np.sqrt(ub**2 + vb**2)) * b * 0.5 + 0.5, 0, 1)
            back *= np.clip((1.2 - v) * b * 0.3, 0, 1)
            hair_alpha = np.maximum(hair_alpha, back * (1 - face_alpha))
    alpha = np.maximum(face_alpha, hair_alpha)

    # lighting: Lambert on an ellipsoid whose normals turn with the yaw
    un = np.clip(u * 0.95 + 0.5 * sy_, -1, 1)
    vn = np.clip(v * 0.95 + 0.4 * cy_, -1, 1)
    nz = np.sqrt(np.clip(1 - un**2 - vn**2, 0.0, 1.0))
    lx, ly, lz = scene.light_dir
    lam = np.clip(un * lx + vn * ly + nz * lz, 0, 1)
    shade = scene.ambient + (1 - scene.ambient) * lam

    # feature positions (face units), shifted by depth under yaw/pitch
    def at(x, y, depth):
        return x + sy_ * depth * 0.9, y + cy_ * depth * 0.6

    es, ey = identity.eye_spacing, identity.eye_y
    el, er = at(-es, ey, 0.55), at(es, ey, 0.55)
    nose = at(0, ey + identity.nose_len + 0.1, 1.0)
    bridge = at(0, ey + 0.05, 0.8)
    mw = identity.mouth_width
    my = 0.52
    mc = at(0, my, 0.75)
    bl, br = at(-es, ey - 0.2, 0.6), at(es, ey - 0.2, 0.6)

    # relief: dark eye sockets, light bridge/cheeks, shadows under nose, mouth and chin
    mult = np.ones_like(u)
    for ex, eyy in (el, er):
        mult *= 1 - RELIEF["sock"] * _gauss(u, v, ex, eyy + 0.02, RELIEF["sx"], RELIEF["sy"])
    mult *= 1 + RELIEF["bridge"] * _gauss(u, v, bridge[0], bridge[1] + 0.1, 0.08, 0.3)
    mult *= 1 + RELIEF["cheek"] * (
        _gauss(u, v, -0.5 + 0.9 * sy_ * 0.5, 0.22, 0.2, 0.15)
        + _gauss(u, v, 0.5 + 0.9 * sy_ * 0.5, 0.22, 0.2, 0.15)
    )
    mult *= 1 - 0.22 * _gauss(u, v, nose[0], nose[1] + 0.06, 0.12, 0.05)
    mult *= 1 - 0.15 * _gauss(u, v, nose[0] + 0.1, nose[1] - 0.12, 0.05, 0.14)
    mult *= 1 - 0.12 * _gauss(u, v, mc[0], mc[1] + 0.2, 0.2, 0.06)
    mult *= 1 + 0.08 * _gauss(u, v, 0, -0.55, 0.4, 0.15)  # forehead highlight
    mult *= 1 - RELIEF["temple"] * (
        _gauss(u, v, -0.85 + 0.3 * sy_, -0.2, 0.15, 0.35)
        + _gauss(u, v, 0.85 + 0.3 * sy_, -0.2, 0.15, 0.35)
    )

    # albedo: skin with texture, then features drawn on it
    skin = np.array(identity.skin_rgb, np.float32)
    tex = cv2.resize(
        _skin_texture(identity),
        (max(2, int(2 * a)), max(2, int(2 * b))),
        interpolation=cv2.INTER_LINEAR,
    )
    tmap = np.ones((size, size), np.float32)
    tx0, ty0 = int(round(ccx - a)), int(round(ccy - b))
    sx0, sy0 = max(0, -tx0), max(0, -ty0)
    ex1, ey1 = min(size, tx0 + tex.shape[1]), min(size, ty0 + tex.shape[0])
    if ex1 > tx0 + sx0 and ey1 > ty0 + sy0:
        tmap[ty0 + sy0 : ey1, tx0 + sx0 : ex1] = tex[sy0 : ey1 - ty0, sx0 : ex1 - tx0]
    albedo = skin[None, None, :] * tmap[..., None]
    albedo = np.ascontiguousarray(albedo)

    def px(p):
        return (float(ccx + p[0] * a), float(ccy + p[1] * b))

    def ipt(p, shift=4):
        x, y = px(p)
        return (int(round(x * (1 << shift))), int(round(y * (1 << shift))))

    def isz(w_, h_, shift=4):
        return (
            max(1, int(round(w_ * a * (1 << shift)))),
            max(1, int(round(h_ * b * (1 << shift)))),
        )

    aa, sh = cv2.LINE_AA, 4
    hair_rgb = np.array(HAIR_COLORS[identity.hair_color], np.float32)
    brow_rgb = tuple(float(c) for c in np.minimum(hair_rgb, skin * 0.45) * 0.9)
    # brows
    for (bx, byy), sgn in ((bl, -1), (br, 1)):
        p0 = (bx - sgn * 0.17, byy + 0.03)
        p1 = (bx + sgn * 0.17, byy - identity.brow_tilt)
        pm = (bx, byy - 0.025)
        pts = np.array([ipt(p0), ipt(pm), ipt(p1)], np.int32)
        cv2.polylines(
            albedo,
            [pts],
            False,
            brow_rgb,
            max(1, int(identity.brow_thick * b * RELIEF["brow"])),
            aa,
            sh,
        )
    # eyes: sclera, iris, pupil; lids close with the blink
    open_ = (1.0 - pose.blink) * identity.eye_size
    iris = tuple(float(c) for c in EYE_COLORS[identity.eye_color])
    for ex, eyy in (el, er):
        c = ipt((ex, eyy))
        if open_ > 0.15:
            cv2.ellipse(
                albedo,
                c,
                isz(0.17 * identity.eye_size, 0.06 * open_),
                0,
                0,
                360,
                tuple(
                    float(x)
                    for x in RELIEF["scl"] * skin + (1 - RELIEF["scl"]) * np.array([235, 232, 228])
                ),
                -1,
                aa,
                sh,
            )
            ir = 0.065 * identity.eye_size * b
            cv2.circle(albedo, ipt((ex + 0.04 * sy_, eyy)), max(1, int(ir * 16)), iris, -1, aa, sh)
            cv2.circle(
                albedo,
                ipt((ex + 0.04 * sy_, eyy)),
                max(1, int(ir * 0.45 * 16)),
                (12, 10, 10),
                -1,
                aa,
                sh,
            )
            lid = tuple(float(x) for x in skin * 0.7)
            cv2.ellipse(
                albedo,
                c,
                isz(0.18 * identity.eye_size, 0.065 * open_),
                0,
                180,
                360,
                lid,
                max(1, int(0.012 * b)),
                aa,
                sh,
            )
        else:
            cv2.ellipse(
                albedo,
                c,
                isz(0.15 * identity.eye_size, 0.01),
                0,
                0,
                360,
                tuple(float(x) for x in skin * 0.45),
                max(1, int(0.02 * b)),
                aa,
                sh,
            )
    # nose: nostrils
    for sgn in (-1, 1):
        cv2.ellipse(
            albedo,
            ipt((nose[0] + sgn * identity.nose_width * 0.6, nose[1] + 0.03)),
            isz(0.04, 0.02),
            0,
            0,
            360,
            tuple(float(x) for x in skin * 0.45),
            -1,
            aa,
            sh,
        )
    # mouth: lips, and a dark opening that grows with the mouth movement
    lip = tuple(float(c) for c in identity.lip_rgb)
    op = pose.mouth
    cv2.ellipse(albedo, ipt(mc), isz(mw, 0.055 + 0.075 * op), 0, 0, 360, lip, -1, aa, sh)
    if op > 0.08:
        cv2.ellipse(
            albedo, ipt(mc), isz(mw * 0.78, 0.012 + 0.07 * op), 0, 0, 360, (45, 22, 24), -1, aa, sh
        )
    else:
        cv2.ellipse(
            albedo,
            ipt(mc),
            isz(mw * 0.9, 0.006),
            0,
            0,
            360,
            (60, 30, 30),
            max(1, int(0.014 * b)),
            aa,
            sh,
        )
    # hair
    albedo = (
        albedo * (1 - hair_alpha[..., None])
        + hair_rgb * (0.85 + 0.3 * tmap[..., None] - 0.3) * hair_alpha[..., None]
    )

    light = np.array(scene.light_rgb, np.float32) * scene.exposure
    hair_shade = scene.ambient + (1 - scene.ambient) * np.clip(
        (u + 0.3 * sy_) / 1.3 * lx + (v + 0.1) / 1.3 * ly + lz * 0.8, 0, 1
    )
    s = np.where(face_alpha > hair_alpha, shade * mult, hair_shade)
    rgb = albedo * s[..., None] * light
    rgb = np.ascontiguousarray(rgb, dtype=np.float32)

    # glasses are drawn on the shaded image (specular frames)
    if identity.glasses != "none":
        fr = (30.0, 30.0, 34.0)
        th = max(1, int(0.025 * b))
        for ex, eyy in (el, er):
            if identity.glasses == "round":
                cv2.ellipse(rgb, ipt((ex, eyy + 0.01)), isz(0.21, 0.13), 0, 0, 360, fr, th, aa, sh)
            else:
                p0 = ipt((ex - 0.21, eyy - 0.11))
                p1 = ipt((ex + 0.21, eyy + 0.13))
                cv2.rectangle(rgb, p0, p1, fr, th, aa, sh)
        cv2.line(rgb, ipt((el[0] + 0.21, el[1])), ipt((er[0] - 0.21, er[1])), fr, th, aa, sh)

    # landmarks in (upright) patch pixels
    lm = np.array(
        [
            px((bl[0] - 0.17, bl[1] + 0.03)),
            px((bl[0] + 0.17, bl[1])),
            px((br[0] - 0.17, br[1])),
            px((br[0] + 0.17, br[1] + 0.03)),
            px(el),
            px(er),
            px(nose),
            px((mc[0] - mw, mc[1])),
            px((mc[0] + mw, mc[1])),
            px((mc[0], mc[1] - 0.055 - 0.075 * op)),
            px((mc[0], mc[1] + 0.055 + 0.075 * op)),
            px((0.0 + 0.3 * sy_, 1.0)),
            px((-0.9 + 0.2 * sy_, 0.55)),
            px((0.9 + 0.2 * sy_, 0.55)),
            px((-0.95 + 0.2 * sy_, -0.3)),
            px((0.95 + 0.2 * sy_, -0.3)),
        ],
        np.float32,
    )

    # roll the patch about the face centre
    if abs(pose.roll) > 1e-4:
        m = cv2.getRotationMatrix2D((ccx, ccy), math.degrees(pose.roll), 1.0)
        rgb = cv2.warpAffine(rgb, m, (size, size), flags=cv2.INTER_LINEAR, borderValue=0)
        alpha = cv2.warpAffine(alpha, m, (size, size), flags=cv2.INTER_LINEAR, borderValue=0)
        lm = lm @ m[:, :2].T + m[:, 2]
    return rgb, alpha, lm, x0, y0


def _paste(dst: np.ndarray, src: np.ndarray, alpha: np.ndarray, x0: int, y0: int) -> None:
    """Alpha-composite ``src`` (with ``alpha``) into ``dst`` at (x0, y0), clipped to the frame."""
    h, w = dst.shape[:2]
    ph, pw = alpha.shape
    sx0, sy0 = max(0, -x0), max(0, -y0)
    dx0, dy0 = max(0, x0), max(0, y0)
    dx1, dy1 = min(w, x0 + pw), min(h, y0 + ph)
    if dx1 <= dx0 or dy1 <= dy0:
        return
    a = alpha[sy0 : sy0 + dy1 - dy0, sx0 : sx0 + dx1 - dx0, None]
    s = src[sy0 : sy0 + dy1 - dy0, sx0 : sx0 + dx1 - dx0]
    region = dst[dy0:dy1, dx0:dx1]
    region *= 1 - a
    region += s * a


def _draw_body(img: np.ndarray, identity: Identity, pose: Pose, scene: Scene) -> None:
    """Neck and shoulders below the head (drawn into the frame before the head)."""
    b = pose.r
    a = b * identity.face_width
    skin = (
        np.array(identity.skin_rgb, np.float32)
        * np.array(scene.light_rgb, np.float32)
        * scene.exposure
    )
    neck = tuple(float(c) for c in skin * (scene.ambient + 0.25))
    cx, cy = pose.cx, pose.cy
    cv2.rectangle(
        img,
        (int(cx - 0.5 * a), int(cy + 0.3 * b)),
        (int(cx + 0.5 * a), int(cy + 1.9 * b)),
        neck,
        -1,
        cv2.LINE_AA,
    )
    cl = tuple(float(c) for c in np.array(identity.clothes_rgb) * (scene.ambient + 0.4))
    cv2.ellipse(
        img,
        (int(cx), int(cy + 2.45 * b)),
        (int(2.3 * a), int(1.0 * b)),
        0,
        0,
        360,
        cl,
        -1,
        cv2.LINE_AA,
    )


def render_frame(
    identity: Identity,
    pose: Pose,
    scene: Scene,
    background: np.ndarray,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Render one frame (uint8 RGB) over ``background``; returns (frame, landmarks Kx2 in frame px)."""
    frame, lms = render_group_frame([(identity, pose)], scene, background, rng)
    return frame, lms[0]


def render_group_frame(
    people: list[tuple[Identity, Pose]],
    scene: Scene,
    background: np.ndarray,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Render several people in one frame (bodies first, then heads, in list order).

    Returns (uint8 RGB frame, one Kx2 landmark array per person in frame pixels).
    """
    img = background.copy()
    for identity, pose in people:
        _draw_body(img, identity, pose, scene)
    lms = []
    for identity, pose in people:
        rgb, alpha, lm, x0, y0 = render_face_layer(identity, pose, scene)
        _paste(img, rgb, alpha, x0, y0)
        lms.append(lm + np.array([x0, y0], np.float32))
    img = cv2.GaussianBlur(img, (3, 3), 0.6)
    if rng is not None and scene.noise > 0:
        img += rng.standard_normal(img.shape, dtype=np.float32) * scene.noise
    return np.clip(img + 0.5, 0, 255).astype(np.uint8), lms


def face_box(pose: Pose, identity: Identity) -> np.ndarray:
    """Face box [x0, y0, x1, y1]: hairline to chin, cheek to cheek, after the head's roll."""
    b = pose.r
    a = b * identity.face_width
    c, s = math.cos(pose.roll), math.sin(pose.roll)
    corners = np.array([[-a, -0.55 * b], [a, -0.55 * b], [a, b], [-a, b]], np.float32)
    pts = corners @ np.array([[c, -s], [s, c]], np.float32) + np.array(
        [pose.cx, pose.cy], np.float32
    )
    return np.concatenate([pts.min(0), pts.max(0)]).astype(np.float32)


def render_clip(
    identity: Identity,
    motion: Motion,
    scene: Scene,
    frames: int,
    seed: int = 0,
    noise: bool = True,
) -> Clip:
    """Render ``frames`` frames of ``identity`` moving per ``motion`` in ``scene``.

    Deterministic for a given ``seed`` (camera noise). With ``noise=False`` no camera noise is
    added (used for donor faces that a forgery pastes in).
    """
    return render_group([identity], [motion], scene, frames, seed, noise)[0]


def render_group(
    identities: list[Identity],
    motions: list[Motion],
    scene: Scene,
    frames: int,
    seed: int = 0,
    noise: bool = True,
) -> list[Clip]:
    """Render several people together (e.g. two side by side); one :class:`Clip` per person.

    Every clip holds the same frames; its boxes, landmarks, identity and motion are that person's,
    so a forgery applied to one clip changes only that person's face.
    """
    margin = int(0.04 * max(scene.width, scene.height)) + 2
    bg_big = render_background(scene, margin)
    rng = np.random.default_rng(seed) if noise else None
    n = len(identities)
    out = np.empty((frames, scene.height, scene.width, 3), np.uint8)
    lms = np.empty((n, frames, len(LANDMARK_NAMES), 2), np.float32)
    boxes = np.empty((n, frames, 4), np.float32)
    poses: list[list[dict]] = [[] for _ in range(n)]
    for i in range(frames):
        t = i / motions[0].fps
        frame_poses = [pose_at(m, scene, t) for m in motions]
        # slow camera pan over the larger background
        ox = int(round(margin * (1 + 0.5 * math.sin(0.5 * t + scene.bg_seed % 7))))
        oy = int(round(margin * (1 + 0.3 * math.cos(0.4 * t))))
        bg = bg_big[oy : oy + scene.height, ox : ox + scene.width]
        out[i], frame_lms = render_group_frame(list(zip(identities, frame_poses)), scene, bg, rng)
        for p, (ident, pose) in enumerate(zip(identities, frame_poses)):
            lms[p, i] = frame_lms[p]
            boxes[p, i] = face_box(pose, ident)
            poses[p].append(asdict(pose))
    return [
        Clip(frames=out, boxes=boxes[p], landmarks=lms[p], identity=identities[p], motion=motions[p],
             scene=scene, meta={"poses": poses[p]})
        for p in range(n)
    ]


def render_identity(
    identity: Identity, size: int = 256, seed: int = 0, scene: Scene | None = None
) -> np.ndarray:
    """One frontal, neutral still (uint8 RGB, ``size`` x ``size``) of ``identity``."""
    scene = scene or Scene(
        width=size,
        height=size,
        light_dir=(0.2, -0.2, 0.96),
        light_rgb=(1.0, 1.0, 1.0),
        ambient=0.4,
        background="studio",
        bg_colors=((120, 130, 140),) * 4,
        bg_seed=seed,
        noise=1.5,
    )
    pose = Pose(
        cx=scene.width / 2,
        cy=scene.height * 0.48,
        r=0.3 * min(scene.width, scene.height),
        yaw=0.0,
        pitch=0.0,
        roll=0.0,
        blink=0.0,
        mouth=0.0,
    )
    frame, _ = render_frame(
        identity, pose, scene, render_background(scene), np.random.default_rng(seed)
    )
    return frame
