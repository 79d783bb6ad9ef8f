"""Face detection: one detector interface (RetinaFace, S3FD), tracking, smoothing, padding.

Detectors are imported lazily by :func:`make_detector`, so importing this package does not load
onnxruntime or torch.
"""

from .base import (
    DETECTOR_NAMES,
    Detection,
    DetectorPool,
    DetectorUnavailable,
    FaceDetector,
    detection_size,
    make_detector,
)
from .track import (
    DEFAULT_PADS,
    SMOOTH_WINDOW,
    BoxSmoother,
    FaceTracker,
    iou,
    pad_box,
    select_face,
    smooth_boxes,
)

__all__ = [
    "DETECTOR_NAMES",
    "DEFAULT_PADS",
    "SMOOTH_WINDOW",
    "BoxSmoother",
    "Detection",
    "DetectorPool",
    "DetectorUnavailable",
    "FaceDetector",
    "FaceTracker",
    "detection_size",
    "iou",
    "make_detector",
    "pad_box",
    "select_face",
    "smooth_boxes",
]
