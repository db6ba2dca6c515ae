"""Where on the face: per-crop heat maps and the small overlays saved for analysts (``--explain K``).

A bundle with a blending-boundary head shows that head's map (sigmoid of ``boundary_logits``); any other
shows Grad-CAM of the fake logit on the backbone's last feature map. Maps are in [0, 1] at the
crop's size; nothing here runs unless a caller asks for an explanation.
"""

from __future__ import annotations

import numpy as np


def _normalise(cam):
    import torch

    flat = cam.flatten(1)
    lo, hi = flat.min(1).values[:, None, None], flat.max(1).values[:, None, None]
    return (cam - lo) / torch.clamp(hi - lo, min=1e-8)


def gradcam(model, images: list[np.ndarray] | np.ndarray, device: str = "cpu") -> np.ndarray:
    """Grad-CAM of the fake logit on the backbone's last feature map: (N, S, S) in [0, 1], S = input size."""
    import torch
    import torch.nn.functional as F

    was_training = model.training
    model.eval()
    try:
        x = model.preprocess(images).to(device)
        with torch.enable_grad():
            fmap = model.backbone.forward_features(x)
            if getattr(model, "_channels_last", False):
                fmap = fmap.permute(0, 3, 1, 2)
            fmap = fmap.detach().requires_grad_(True)
            feed = fmap.permute(0, 2, 3, 1) if getattr(model, "_channels_last", False) else fmap
            f = model.backbone.forward_head(feed, pre_logits=True)
            if model.frequency is not None:
                f = torch.cat([f, model.frequency(x).to(f.dtype)], dim=1)
            logit = model.classifier(f).squeeze(1)
            (grad,) = torch.autograd.grad(logit.sum(), fmap)
        weights = grad.mean(dim=(2, 3), keepdim=True)
        cam = F.relu((weights * fmap).sum(1)).detach()
        cam = F.interpolate(cam[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        return _normalise(cam).float().cpu().numpy()
    finally:
        model.train(was_training)


def boundary_map(model, images: list[np.ndarray] | np.ndarray, device: str = "cpu") -> np.ndarray:
    """The blending-boundary head's map (sigmoid), upsampled to the input size: (N, S, S) in [0, 1]."""
    import torch
    import torch.nn.functional as F

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            x = model.preprocess(images).to(device)
            b = torch.sigmoid(model(x)["boundary_logits"].float())
            return F.interpolate(b, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0].cpu().numpy()
    finally:
        model.train(was_training)


def heatmaps(model, images: list[np.ndarray] | np.ndarray, device: str = "cpu") -> tuple[np.ndarray, str]:
    """The model's heat maps for face crops and their kind: ``boundary`` (head's map) or ``gradcam``."""
    if not len(images):
        return np.zeros((0, 1, 1), np.float32), "none"
    if getattr(model, "boundary", None) is not None:
        return boundary_map(model, images, device), "boundary"
    return gradcam(model, images, device), "gradcam"


def overlay_png(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> bytes:
    """A small PNG of the RGB crop with ``heat`` (in [0, 1], any size) blended on top as a colour map."""
    import cv2

    h, w = image.shape[:2]
    heat = cv2.resize(np.asarray(heat, np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    colour = cv2.applyColorMap(np.clip(heat * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_JET)  # BGR
    bgr = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", cv2.addWeighted(bgr, 1 - alpha, colour, alpha, 0))
    return buf.tobytes()
