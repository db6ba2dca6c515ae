"""Face detection (YuNet default), alignment, tracking, cropping and per-media extraction."""

from deepgen.faces.align import align_face, alignment_matrix, template
from deepgen.faces.crop import crop_box, crop_face, decode_image, encode_image
from deepgen.faces.detect import (
    DETECTORS,
    Detection,
    DlibDetector,
    HaarDetector,
    YuNetDetector,
    get_detector,
)
from deepgen.faces.media import ExtractConfig, extract_media
from deepgen.faces.track import build_tracks, iou, select_faces, track_faces

__all__ = [
    "DETECTORS", "Detection", "DlibDetector", "ExtractConfig", "HaarDetector", "YuNetDetector",
    "align_face", "alignment_matrix", "build_tracks", "crop_box", "crop_face", "decode_image",
    "encode_image", "extract_media", "get_detector", "iou", "select_faces", "template", "track_faces",
]
