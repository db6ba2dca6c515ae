"""Face detection, tracking, cropping and per-media extraction."""

from deepgen.faces.crop import crop_box, crop_face, decode_image, encode_image
from deepgen.faces.detect import DETECTORS, Detection, DlibDetector, HaarDetector, get_detector
from deepgen.faces.media import ExtractConfig, extract_media
from deepgen.faces.track import build_tracks, iou, select_faces

__all__ = [
    "DETECTORS", "Detection", "DlibDetector", "ExtractConfig", "HaarDetector", "build_tracks",
    "crop_box", "crop_face", "decode_image", "encode_image", "extract_media", "get_detector", "iou",
    "select_faces",
]
